//! The appliance's own state: its services, the disk holding its data, time
//! synchronisation, the firewall, pending security updates and the audit chain's head.
//!
//! What cannot be detected on this host (no firewall tool, no package manager) is left
//! out, so the controls that read it say "not applicable" rather than guess.

use crate::series::Sample;
use kopa_store::audit::AuditLog;
use kopa_web::ReadinessProbe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads the appliance; slow checks (firewall, updates) run at most every `slow_every`.
#[derive(Debug)]
pub struct Appliance {
    pub probes: Vec<Arc<dyn ReadinessProbe>>,
    pub data_dir: PathBuf,
    pub audit: AuditLog,
    slow_every: Duration,
    next_slow: Instant,
    firewall: Option<bool>,
    updates: Option<u64>,
}

async fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the clock is synchronised: systemd-timesyncd's flag file, chrony, or
/// timedatectl, whichever the host has.
async fn time_synchronized() -> Option<bool> {
    if std::path::Path::new("/run/systemd/timesync/synchronized").exists() {
        return Some(true);
    }
    if let Some(out) = run("chronyc", &["-n", "tracking"]).await {
        return Some(
            out.lines()
                .any(|l| l.starts_with("Leap status") && !l.contains("Not synchronised")),
        );
    }
    let out = run("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]).await?;
    Some(out.trim() == "yes")
}

/// Whether a packet filter holds rules: nftables, else iptables.
async fn firewall_active() -> Option<bool> {
    if let Some(out) = run("nft", &["list", "ruleset"]).await {
        return Some(out.lines().any(|l| l.trim_start().starts_with("chain ")));
    }
    let out = run("iptables", &["-S"]).await?;
    // Only default ACCEPT policies: no filtering.
    Some(
        out.lines()
            .any(|l| !(l.is_empty() || l.starts_with("-P ") && l.ends_with(" ACCEPT"))),
    )
}

/// Security updates apt would install (a simulation: nothing changes, no lock taken).
async fn pending_security_updates() -> Option<u64> {
    let out = run("apt-get", &["-s", "-o", "Debug::NoLocking=1", "upgrade"]).await?;
    Some(
        out.lines()
            .filter(|l| l.starts_with("Inst ") && l.contains("-security"))
            .count() as u64,
    )
}

/// The slow checks wait this long after start: a start (or a test's appliance) is not
/// the moment to run apt.
const FIRST_SLOW_CHECK: Duration = Duration::from_secs(120);

impl Appliance {
    pub fn new(
        probes: Vec<Arc<dyn ReadinessProbe>>,
        data_dir: PathBuf,
        audit: AuditLog,
        slow_every: Duration,
    ) -> Self {
        Self {
            probes,
            data_dir,
            audit,
            slow_every,
            next_slow: Instant::now() + FIRST_SLOW_CHECK,
            firewall: None,
            updates: None,
        }
    }

    pub async fn sample(&mut self, now: u64) -> Vec<Sample> {
        let mut out = Vec::new();
        for p in &self.probes {
            let ok = tokio::time::timeout(Duration::from_secs(5), p.check())
                .await
                .is_ok_and(|r| r.is_ok());
            out.push(Sample::new(
                "appliance.service_healthy",
                &[("service", &p.name())],
                f64::from(u8::from(ok)),
                now,
            ));
        }
        let dir = self.data_dir.clone();
        if let Ok(Some(free)) =
            tokio::task::spawn_blocking(move || super::host::free_ratio_of(&dir)).await
        {
            out.push(Sample::new(
                "appliance.data_disk_free_ratio",
                &[],
                free,
                now,
            ));
        }
        if let Some(sync) = time_synchronized().await {
            out.push(Sample::new(
                "appliance.time_synchronized",
                &[],
                f64::from(u8::from(sync)),
                now,
            ));
        }
        if Instant::now() >= self.next_slow {
            self.next_slow = Instant::now() + self.slow_every;
            self.firewall = firewall_active().await;
            self.updates = pending_security_updates().await;
        }
        if let Some(fw) = self.firewall {
            out.push(Sample::new(
                "appliance.firewall_active",
                &[],
                f64::from(u8::from(fw)),
                now,
            ));
        }
        if let Some(n) = self.updates {
            out.push(Sample::new(
                "appliance.security_updates_pending",
                &[],
                n as f64,
                now,
            ));
        }
        let store = self.audit.store().clone();
        let key = self.audit.public_key();
        let chain_ok = tokio::task::spawn_blocking(move || {
            match kopa_store::audit::head(&store) {
                // An empty log has nothing to prove yet.
                Ok(None) => true,
                Ok(Some(head)) => head.signature_valid() && head.public_key == key,
                Err(_) => false,
            }
        })
        .await
        .unwrap_or(false);
        out.push(Sample::new(
            "appliance.audit_chain_ok",
            &[],
            f64::from(u8::from(chain_ok)),
            now,
        ));
        out
    }
}
