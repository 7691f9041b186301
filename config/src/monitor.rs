//! `[monitor]`: the security monitor (collectors, time series, controls, alerts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::Problem;
use crate::validate::check_range;

mod limits {
    use std::ops::RangeInclusive;

    pub const INTERVAL_SECS: RangeInclusive<u64> = 1..=86_400;
    pub const RAW_RETENTION_HOURS: RangeInclusive<u32> = 1..=720;
    pub const ROLLUP_5M_DAYS: RangeInclusive<u32> = 1..=400;
    pub const ROLLUP_1H_DAYS: RangeInclusive<u32> = 1..=3650;
    pub const MAX_SERIES: RangeInclusive<u32> = 100..=1_000_000;
    pub const INACTIVE_DAYS: RangeInclusive<u32> = 1..=3650;
    pub const WINDOW_SECS: RangeInclusive<u64> = 1..=86_400;
}

/// Profiles of the controls catalogue (`monitor/controls/catalogue.toml`).
pub const PROFILES: [&str; 3] = ["lv-minimum", "cis-debian", "kopa-operational"];

/// The security monitor: what it collects and how often, how long it keeps it, the
/// compliance profiles it evaluates and where its alerts go. See docs/monitor.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Seconds between samples of the host (CPU, memory, disks, load, network).
    #[schemars(range(min = 1, max = 86_400))]
    pub host_interval_secs: u64,
    /// Seconds between reads of new audit records (failed sign-ins, lockouts).
    #[schemars(range(min = 1, max = 86_400))]
    pub audit_interval_secs: u64,
    /// Seconds between checks of certificates (files and TLS endpoints).
    #[schemars(range(min = 1, max = 86_400))]
    pub certificate_interval_secs: u64,
    /// Seconds between self-checks of the appliance (services, backups, disk, time,
    /// firewall, pending security updates).
    #[schemars(range(min = 1, max = 86_400))]
    pub appliance_interval_secs: u64,
    /// Seconds between reads of virtual-server metrics.
    #[schemars(range(min = 1, max = 86_400))]
    pub vm_interval_secs: u64,
    /// Seconds between evaluations of the controls and the alert rules.
    #[schemars(range(min = 1, max = 86_400))]
    pub evaluate_interval_secs: u64,
    /// Hours raw samples are kept.
    #[schemars(range(min = 1, max = 720))]
    pub raw_retention_hours: u32,
    /// Days the 5-minute rollups (min, max, mean, last) are kept.
    #[schemars(range(min = 1, max = 400))]
    pub rollup_5m_retention_days: u32,
    /// Days the 1-hour rollups are kept.
    #[schemars(range(min = 1, max = 3650))]
    pub rollup_1h_retention_days: u32,
    /// Most distinct series (metric and labels) kept; samples of further series are
    /// dropped and counted in `kopa_monitor_series_refused_total`.
    #[schemars(range(min = 100, max = 1_000_000))]
    pub max_series: u32,
    /// An account whose last sign-in is older than this many days counts as inactive.
    #[schemars(range(min = 1, max = 3650))]
    pub inactive_account_days: u32,
    /// Compliance profiles evaluated: `lv-minimum`, `cis-debian`, `kopa-operational`.
    pub profiles: Vec<String>,
    /// File with the bearer token for `/metrics`. Unset: `/metrics` answers only
    /// requests from loopback addresses.
    pub metrics_token_file: Option<PathBuf>,
    /// Further certificate files (PEM) to watch, besides Kopa's own TLS and signing
    /// certificates and the LDAP CA files.
    #[serde(rename = "certificate_file")]
    pub certificate_files: Vec<WatchedFile>,
    /// Remote TLS endpoints whose certificates to watch.
    #[serde(rename = "tls_endpoint")]
    pub tls_endpoints: Vec<WatchedEndpoint>,
    /// Alert rules besides the built-in ones (docs/monitor.md lists those).
    #[serde(rename = "alert_rule")]
    pub alert_rules: Vec<AlertRuleConfig>,
    /// Built-in alert rules to switch off, by id.
    pub disabled_rules: Vec<String>,
    /// Where alert e-mails go. Unset: no e-mail.
    pub email: Option<EmailConfig>,
    /// Signed webhooks that receive every alert change.
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            host_interval_secs: 10,
            audit_interval_secs: 10,
            certificate_interval_secs: 3600,
            appliance_interval_secs: 60,
            vm_interval_secs: 30,
            evaluate_interval_secs: 30,
            raw_retention_hours: 48,
            rollup_5m_retention_days: 35,
            rollup_1h_retention_days: 400,
            max_series: 20_000,
            inactive_account_days: 90,
            profiles: PROFILES.iter().map(|p| (*p).to_owned()).collect(),
            metrics_token_file: None,
            certificate_files: Vec::new(),
            tls_endpoints: Vec::new(),
            alert_rules: Vec::new(),
            disabled_rules: Vec::new(),
            email: None,
            webhooks: Vec::new(),
        }
    }
}

/// A certificate file to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchedFile {
    /// Name shown on dashboards and in the `cert` label.
    pub name: String,
    /// PEM file; every certificate in it is checked.
    pub path: PathBuf,
}

/// A TLS endpoint to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchedEndpoint {
    /// Name shown on dashboards and in the `cert` label.
    pub name: String,
    /// `host:port`.
    pub address: String,
}

/// How an alert rule reads its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The latest value compared with `value`.
    Threshold,
    /// The increase of a counter over `window_secs` compared with `value`.
    Increase,
    /// No sample for `window_secs`.
    Absence,
}

/// An alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// Unique id (`a-z`, `0-9`, `-`).
    pub id: String,
    /// Latvian title.
    pub title_lv: String,
    /// English title.
    pub title_en: String,
    pub kind: RuleKind,
    /// Series name, e.g. `auth_failed_logins_total`.
    pub series: String,
    /// `<`, `<=`, `>`, `>=`, `==` or `!=` (not used by `absence`).
    #[serde(default = "default_op")]
    pub op: String,
    #[serde(default)]
    pub value: f64,
    /// Window of `increase` and `absence`, in seconds.
    #[serde(default = "default_window")]
    #[schemars(range(min = 1, max = 86_400))]
    pub window_secs: u64,
    /// How long the condition must hold before the alert fires.
    #[serde(default)]
    pub for_secs: u64,
    /// `low`, `medium`, `high` or `critical`.
    #[serde(default = "default_severity")]
    pub severity: String,
}

// Thresholds are finite (validate refuses NaN), so equality is an equivalence.
impl Eq for AlertRuleConfig {}

fn default_op() -> String {
    ">".into()
}
fn default_window() -> u64 {
    300
}
fn default_severity() -> String {
    "medium".into()
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on a loopback address.
    None,
}

/// Alert e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP AUTH PLAIN user (only over TLS). Unset: no authentication.
    pub username: Option<String>,
    /// File with the SMTP password.
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

fn default_smtp_port() -> u16 {
    587
}

/// A webhook: each alert change is POSTed as JSON, signed with HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    /// `https://…`; `http://` only to a loopback address.
    pub url: String,
    /// File with the shared secret (at least 16 bytes) the signature is made with.
    pub secret_file: PathBuf,
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_series(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

impl MonitorConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        let p = |out: &mut Vec<Problem>, key: String, m: String| {
            out.push(Problem::default_origin(key, m));
        };
        for (key, v) in [
            ("monitor.host_interval_secs", self.host_interval_secs),
            ("monitor.audit_interval_secs", self.audit_interval_secs),
            (
                "monitor.certificate_interval_secs",
                self.certificate_interval_secs,
            ),
            (
                "monitor.appliance_interval_secs",
                self.appliance_interval_secs,
            ),
            ("monitor.vm_interval_secs", self.vm_interval_secs),
            (
                "monitor.evaluate_interval_secs",
                self.evaluate_interval_secs,
            ),
        ] {
            check_range(out, key, v, &limits::INTERVAL_SECS);
        }
        check_range(
            out,
            "monitor.raw_retention_hours",
            self.raw_retention_hours,
            &limits::RAW_RETENTION_HOURS,
        );
        check_range(
            out,
            "monitor.rollup_5m_retention_days",
            self.rollup_5m_retention_days,
            &limits::ROLLUP_5M_DAYS,
        );
        check_range(
            out,
            "monitor.rollup_1h_retention_days",
            self.rollup_1h_retention_days,
            &limits::ROLLUP_1H_DAYS,
        );
        check_range(
            out,
            "monitor.max_series",
            self.max_series,
            &limits::MAX_SERIES,
        );
        check_range(
            out,
            "monitor.inactive_account_days",
            self.inactive_account_days,
            &limits::INACTIVE_DAYS,
        );
        for (i, profile) in self.profiles.iter().enumerate() {
            if !PROFILES.contains(&profile.as_str()) {
                p(
                    out,
                    format!("monitor.profiles[{i}]"),
                    format!(
                        "Unknown profile {profile:?}; known: {}",
                        PROFILES.join(", ")
                    ),
                );
            }
        }
        for (i, e) in self.tls_endpoints.iter().enumerate() {
            let ok = e
                .address
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                p(
                    out,
                    format!("monitor.tls_endpoint[{i}].address"),
                    format!("Expected host:port, got {:?}", e.address),
                );
            }
        }
        for (i, r) in self.alert_rules.iter().enumerate() {
            let key = |f: &str| format!("monitor.alert_rule[{i}].{f}");
            if !valid_id(&r.id) {
                p(
                    out,
                    key("id"),
                    "Use 1-64 characters of a-z, 0-9 and '-'".into(),
                );
            }
            if self.alert_rules[..i].iter().any(|o| o.id == r.id) {
                p(out, key("id"), format!("Rule id {:?} is used twice", r.id));
            }
            if !valid_series(&r.series) {
                p(
                    out,
                    key("series"),
                    format!("Not a series name: {:?}", r.series),
                );
            }
            if !["<", "<=", ">", ">=", "==", "!="].contains(&r.op.as_str()) {
                p(
                    out,
                    key("op"),
                    format!("Expected <, <=, >, >=, == or !=, got {:?}", r.op),
                );
            }
            if !r.value.is_finite() {
                p(out, key("value"), "Must be a finite number".into());
            }
            check_range(
                out,
                &key("window_secs"),
                r.window_secs,
                &limits::WINDOW_SECS,
            );
            if !["low", "medium", "high", "critical"].contains(&r.severity.as_str()) {
                p(
                    out,
                    key("severity"),
                    format!(
                        "Expected low, medium, high or critical, got {:?}",
                        r.severity
                    ),
                );
            }
        }
        if let Some(e) = &self.email {
            if e.security == SmtpSecurity::None && !is_loopback_host(&e.smtp_host) {
                p(
                    out,
                    "monitor.email.security".into(),
                    "\"none\" sends mail in clear text and is allowed only to a loopback relay"
                        .into(),
                );
            }
            if e.to.is_empty() {
                p(
                    out,
                    "monitor.email.to".into(),
                    "Name at least one recipient".into(),
                );
            }
            for (key, addr) in std::iter::once(("from".to_owned(), &e.from)).chain(
                e.to.iter()
                    .enumerate()
                    .map(|(i, a)| (format!("to[{i}]"), a)),
            ) {
                if !plausible_address(addr) {
                    p(
                        out,
                        format!("monitor.email.{key}"),
                        format!("Not an e-mail address: {addr:?}"),
                    );
                }
            }
            if e.username.is_some() != e.password_file.is_some() {
                p(
                    out,
                    "monitor.email.password_file".into(),
                    "Set both username and password_file, or neither".into(),
                );
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let fine = match w.url.split_once("://") {
                Some(("https", rest)) => !rest.is_empty(),
                Some(("http", rest)) => {
                    let authority = rest.split('/').next().unwrap_or_default();
                    let host = match authority.rsplit_once(':') {
                        Some((h, port)) if port.parse::<u16>().is_ok() => h,
                        _ => authority,
                    };
                    is_loopback_host(host)
                }
                _ => false,
            };
            if !fine {
                p(
                    out,
                    format!("monitor.webhook[{i}].url"),
                    format!(
                        "Expected an https:// URL (http:// only to a loopback address), got {:?}",
                        w.url
                    ),
                );
            }
        }
    }
}

/// One `@`, no spaces or angle brackets, no line breaks: enough to keep an address from
/// smuggling SMTP commands or headers.
fn plausible_address(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && a.len() <= 254
        && a.chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[],;:\\\"".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let mut out = Vec::new();
        MonitorConfig::default().validate(&mut out);
        assert!(out.is_empty(), "{out:?}");

        let bad = MonitorConfig {
            host_interval_secs: 0,
            profiles: vec!["iso-27001".into()],
            tls_endpoints: vec![WatchedEndpoint {
                name: "x".into(),
                address: "nohost".into(),
            }],
            alert_rules: vec![AlertRuleConfig {
                id: "Bad Id".into(),
                title_lv: String::new(),
                title_en: String::new(),
                kind: RuleKind::Threshold,
                series: "9x".into(),
                op: "~".into(),
                value: f64::NAN,
                window_secs: 0,
                for_secs: 0,
                severity: "grave".into(),
            }],
            email: Some(EmailConfig {
                smtp_host: "mail.example.lv".into(),
                smtp_port: 25,
                security: SmtpSecurity::None,
                username: Some("u".into()),
                password_file: None,
                from: "kopa@example.lv\r\nRCPT TO:<x@y>".into(),
                to: vec![],
            }),
            webhooks: vec![WebhookConfig {
                name: "w".into(),
                url: "http://hooks.example.lv/x".into(),
                secret_file: "/s".into(),
            }],
            ..MonitorConfig::default()
        };
        bad.validate(&mut out);
        let keys: Vec<_> = out.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "monitor.host_interval_secs",
                "monitor.profiles[0]",
                "monitor.tls_endpoint[0].address",
                "monitor.alert_rule[0].id",
                "monitor.alert_rule[0].series",
                "monitor.alert_rule[0].op",
                "monitor.alert_rule[0].value",
                "monitor.alert_rule[0].window_secs",
                "monitor.alert_rule[0].severity",
                "monitor.email.security",
                "monitor.email.to",
                "monitor.email.from",
                "monitor.email.password_file",
                "monitor.webhook[0].url",
            ]
        );
        let mut out = Vec::new();
        MonitorConfig {
            webhooks: vec![WebhookConfig {
                name: "w".into(),
                url: "http://127.0.0.1:9000/hook".into(),
                secret_file: "/s".into(),
            }],
            ..MonitorConfig::default()
        }
        .validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
