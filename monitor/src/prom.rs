//! `/metrics`: the latest value of every series in the Prometheus text format (0.0.4).
//! Series names get a `kopa_` prefix with dots turned into underscores. Labels are only
//! ever tenants, certificate, mount, service, profile, scope, rule and VM names: never a
//! user name or an address.

use crate::series::Labels;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Label names that may reach `/metrics`.
pub const ALLOWED_LABELS: [&str; 9] = [
    "tenant",
    "cert",
    "mount",
    "service",
    "profile",
    "scope",
    "vm",
    "collector",
    "severity",
];

/// Series kept in days or hours internally (the controls read them so), exported in the
/// base unit Prometheus expects: (series, metric suffix, factor).
const RESCALED: [(&str, &str, f64); 2] = [
    ("cert.days_left", "cert_expiry_seconds", 86_400.0),
    (
        "appliance.backup_age_hours",
        "appliance_backup_age_seconds",
        3_600.0,
    ),
];

fn metric_name(series: &str) -> String {
    if let Some((_, suffix, _)) = RESCALED.iter().find(|(s, _, _)| *s == series) {
        return format!("kopa_{suffix}");
    }
    let mut out = String::from("kopa_");
    out.extend(
        series
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn help(series: &str) -> &'static str {
    match series {
        "host.cpu.usage_ratio" => "CPU busy share of all cores (0-1).",
        "host.memory.used_ratio" => "Memory in use, excluding what the kernel can reclaim (0-1).",
        "host.disk.free_ratio" => "Free share of each file system (0-1).",
        "cert.days_left" => "Seconds until the certificate's notAfter; negative when expired.",
        "appliance.backup_age_hours" => "Seconds since the last backup.",
        "auth.failed_logins_total" => "Failed sign-ins recorded in the audit log.",
        "auth.logins_total" => "Successful sign-ins recorded in the audit log.",
        "auth.lockouts_total" => "Accounts locked by the brute-force guard.",
        "appliance.service_healthy" => "1 when the service's readiness probe passes.",
        "appliance.audit_chain_ok" => "1 when the audit chain head's signature verifies.",
        "compliance.score" => {
            "Compliance score (0-100, weighted by severity) per profile and scope."
        }
        "alerts.firing" => "Alerts firing, by severity.",
        _ => "Kopa monitor series (docs/monitor.md).",
    }
}

/// Renders `values` (series name, labels, value). Counters are the series ending in
/// `_total`; everything else is a gauge.
pub fn render(values: &[(String, Labels, f64)]) -> String {
    let mut by_name: BTreeMap<&str, Vec<(&Labels, f64)>> = BTreeMap::new();
    for (name, labels, v) in values {
        by_name.entry(name).or_default().push((labels, *v));
    }
    let mut out = String::new();
    for (name, rows) in by_name {
        let metric = metric_name(name);
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {metric} {}", help(name));
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        let factor = RESCALED
            .iter()
            .find(|(s, _, _)| *s == name)
            .map_or(1.0, |(_, _, f)| *f);
        for (labels, v) in rows {
            let v = v * factor;
            out.push_str(&metric);
            let shown: Vec<String> = labels
                .iter()
                .filter(|(k, _)| ALLOWED_LABELS.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if !shown.is_empty() {
                let _ = write!(out, "{{{}}}", shown.join(","));
            }
            let value = if v.is_nan() {
                "NaN".to_owned()
            } else if v.is_infinite() {
                if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
            } else {
                format!("{v}")
            };
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_types() {
        let l = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let text = render(&[
            (
                "auth.failed_logins_total".into(),
                l(&[("tenant", "talsi"), ("user", "anna")]),
                3.0,
            ),
            ("cert.days_left".into(), l(&[("cert", "a\"b\\c\nd")]), -1.5),
        ]);
        assert!(text.contains("# TYPE kopa_auth_failed_logins_total counter\n"));
        assert!(text.contains("kopa_auth_failed_logins_total{tenant=\"talsi\"} 3\n"));
        assert!(!text.contains("anna"));
        assert!(text.contains("kopa_cert_expiry_seconds{cert=\"a\\\"b\\\\c\\nd\"} -129600\n"));
    }
}
