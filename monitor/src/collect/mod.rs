//! The collectors. Each turns what it reads into [`Sample`]s; the monitor stores them and
//! keeps the latest values for the controls, the alert rules and `/metrics`.

pub mod appliance;
pub mod audit;
pub mod certs;
pub mod host;

use crate::series::Sample;
use kopa_config::{Config, DirectoryKind};
use kopa_core::vm::VmMetricsSource;
use std::collections::BTreeMap;

/// The configuration values the controls check, as samples (`config.*`).
/// `local_password_min_length` comes from the IdP, which enforces it.
pub fn config_facts(c: &Config, local_password_min_length: usize, now: u64) -> Vec<Sample> {
    let privileged = ["platform_admin", "security_officer", "tenant_admin"];
    let mfa = privileged
        .iter()
        .all(|r| c.mfa.required_roles.iter().any(|x| x == r));
    let insecure = c
        .directories
        .iter()
        .filter(|d| d.kind == DirectoryKind::Ldap && d.allow_insecure)
        .count();
    [
        (
            "config.login.lockout_threshold",
            f64::from(c.login.lockout_threshold),
        ),
        ("config.login.lockout_secs", c.login.lockout_secs as f64),
        ("config.mfa.privileged_required", f64::from(u8::from(mfa))),
        (
            "config.session.idle_timeout_secs",
            c.session.idle_timeout_secs as f64,
        ),
        (
            "config.session.absolute_timeout_secs",
            c.session.absolute_timeout_secs as f64,
        ),
        (
            "config.audit.retention_days",
            f64::from(c.audit.retention_days),
        ),
        (
            "config.local.password_min_length",
            local_password_min_length as f64,
        ),
        ("config.ldap.insecure_directories", insecure as f64),
        // rustls offers TLS 1.2 and 1.3 only; 1.0 and 1.1 cannot be turned on.
        ("config.tls.min_version", 12.0),
    ]
    .into_iter()
    .map(|(name, v)| Sample::new(name, &[], v, now))
    .collect()
}

/// The samples of the virtual servers' latest figures.
pub fn vm_samples(source: &dyn VmMetricsSource, now: u64) -> Result<Vec<Sample>, String> {
    let vms = source.vm_samples()?;
    let mut per_tenant: BTreeMap<String, (u32, u32, bool)> = BTreeMap::new();
    let mut out = Vec::new();
    for vm in &vms {
        let tenant = vm.tenant.as_str();
        let t = per_tenant.entry(tenant.to_owned()).or_default();
        t.0 += 1;
        t.1 += u32::from(vm.running);
        t.2 |= vm.quota_exceeded;
        let l = [("tenant", tenant), ("vm", vm.vm.as_str())];
        out.push(Sample::new("vm.cpu_seconds_total", &l, vm.cpu_seconds, now));
        out.push(Sample::new(
            "vm.memory_bytes",
            &l,
            vm.memory_bytes as f64,
            now,
        ));
        out.push(Sample::new("vm.disk_bytes", &l, vm.disk_bytes as f64, now));
    }
    for (tenant, (count, running, over)) in per_tenant {
        let l = [("tenant", tenant.as_str())];
        out.push(Sample::new("vm.count", &l, f64::from(count), now));
        out.push(Sample::new("vm.running", &l, f64::from(running), now));
        out.push(Sample::new(
            "vm.quota_exceeded",
            &l,
            f64::from(u8::from(over)),
            now,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopa_core::TenantId;
    use kopa_core::vm::VmSample;

    /// A hypervisor stand-in: the port is what the monitor depends on.
    #[derive(Debug)]
    struct TwoTenants;

    impl VmMetricsSource for TwoTenants {
        fn vm_samples(&self) -> Result<Vec<VmSample>, String> {
            let vm = |t: &str, name: &str, running, over| VmSample {
                tenant: TenantId::new(t).unwrap(),
                vm: name.into(),
                running,
                vcpus: 2,
                cpu_seconds: 12.5,
                memory_bytes: 1 << 30,
                disk_bytes: 10 << 30,
                quota_exceeded: over,
            };
            Ok(vec![
                vm("ventspils", "web", true, false),
                vm("ventspils", "db", false, false),
                vm("talsi", "gis", true, true),
            ])
        }
    }

    #[test]
    fn vm_figures_become_per_tenant_samples() {
        let got = vm_samples(&TwoTenants, 5).unwrap();
        let find = |name: &str, tenant: &str| {
            got.iter()
                .find(|s| s.name == name && s.labels["tenant"] == tenant)
                .map(|s| s.value)
        };
        assert_eq!(find("vm.count", "ventspils"), Some(2.0));
        assert_eq!(find("vm.running", "ventspils"), Some(1.0));
        assert_eq!(find("vm.quota_exceeded", "talsi"), Some(1.0));
        assert_eq!(find("vm.quota_exceeded", "ventspils"), Some(0.0));
        assert_eq!(
            got.iter().filter(|s| s.name == "vm.memory_bytes").count(),
            3
        );
    }

    #[test]
    fn configuration_facts_follow_the_configuration() {
        let mut c = Config::default();
        let get = |c: &Config, name: &str| {
            config_facts(c, 9, 0)
                .into_iter()
                .find(|s| s.name == name)
                .unwrap()
                .value
        };
        assert_eq!(get(&c, "config.mfa.privileged_required"), 1.0);
        assert_eq!(get(&c, "config.login.lockout_threshold"), 5.0);
        c.mfa.required_roles.retain(|r| r != "tenant_admin");
        assert_eq!(get(&c, "config.mfa.privileged_required"), 0.0);
    }
}
