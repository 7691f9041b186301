//! The controls catalogue (`monitor/controls/catalogue.toml`, data, not code) and its
//! evaluation: each control compares one fact (the latest values of one series) with a
//! bound, per tenant or for the whole platform, and answers pass, fail or not applicable
//! with the values and times it looked at.

use crate::latest::Latest;
use crate::series::Labels;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The catalogue shipped with Kopa.
pub const CATALOGUE_TOML: &str = include_str!("../controls/catalogue.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: String,
    pub title_lv: String,
    pub title_en: String,
    pub description_en: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Weight in the compliance score.
    pub fn weight(self) -> u32 {
        match self {
            Self::Low => 1,
            Self::Medium => 2,
            Self::High => 3,
            Self::Critical => 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Platform,
    Tenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduce {
    Min,
    Max,
    Sum,
    Count,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Eq => (a - b).abs() < 1e-9,
            Self::Ne => (a - b).abs() >= 1e-9,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub fact: String,
    pub reduce: Reduce,
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub title_lv: String,
    pub title_en: String,
    pub source: String,
    pub profiles: Vec<String>,
    pub severity: Severity,
    pub scope: Scope,
    pub remediation_lv: String,
    pub remediation_en: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    #[serde(rename = "profile")]
    pub profiles: Vec<Profile>,
    #[serde(rename = "control")]
    pub controls: Vec<Control>,
}

impl Catalogue {
    /// Parses and checks a catalogue: unique ids, known profiles.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut ids = BTreeSet::new();
        let profiles: BTreeSet<&str> = c.profiles.iter().map(|p| p.id.as_str()).collect();
        for control in &c.controls {
            if !ids.insert(control.id.as_str()) {
                return Err(format!("control {} appears twice", control.id));
            }
            if let Some(p) = control
                .profiles
                .iter()
                .find(|p| !profiles.contains(p.as_str()))
            {
                return Err(format!("control {} names unknown profile {p}", control.id));
            }
            if !control.check.value.is_finite() {
                return Err(format!("control {}: value must be finite", control.id));
            }
        }
        Ok(c)
    }

    /// The catalogue shipped with Kopa.
    pub fn builtin() -> Result<Self, String> {
        Self::parse(CATALOGUE_TOML)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotApplicable,
}

/// One value a result looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub labels: Labels,
    pub value: f64,
    pub time_ms: u64,
}

/// A control's result in one scope (`platform` or a tenant id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    pub control: String,
    pub scope: String,
    pub status: Status,
    /// The reduced value compared, when there was one.
    pub observed: Option<f64>,
    pub evidence: Vec<Evidence>,
    pub evaluated_ms: u64,
}

/// The scope name of platform-wide results.
pub const PLATFORM: &str = "platform";

/// Values older than this are stale and not evidence.
pub const STALE_MS: u64 = 24 * 3_600_000;

/// `config.audit.retention_days = 0` means "kept forever".
fn effective(fact: &str, v: f64) -> f64 {
    if fact == "config.audit.retention_days" && v == 0.0 {
        f64::INFINITY
    } else {
        v
    }
}

fn reduce(r: Reduce, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match r {
        Reduce::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Reduce::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Reduce::Sum => values.iter().sum(),
        Reduce::Count => values.len() as f64,
        Reduce::Any => f64::from(u8::from(values.iter().any(|v| *v != 0.0))),
    })
}

/// Evaluates every control of the enabled `profiles` over the latest values; tenant
/// controls once per tenant in `tenants`.
pub fn evaluate(
    catalogue: &Catalogue,
    profiles: &[String],
    latest: &Latest,
    tenants: &BTreeSet<String>,
    now: u64,
) -> Vec<ControlResult> {
    let mut out = Vec::new();
    for c in catalogue
        .controls
        .iter()
        .filter(|c| c.profiles.iter().any(|p| profiles.contains(p)))
    {
        let fresh: Vec<Evidence> = latest
            .values_of(&c.check.fact)
            .into_iter()
            .filter(|(_, t, _)| now.saturating_sub(*t) <= STALE_MS)
            .map(|(labels, time_ms, value)| Evidence {
                labels,
                value,
                time_ms,
            })
            .collect();
        let scopes: Vec<(String, Vec<Evidence>)> = match c.scope {
            Scope::Platform => vec![(PLATFORM.to_owned(), fresh)],
            Scope::Tenant => tenants
                .iter()
                .map(|t| {
                    let mine = fresh
                        .iter()
                        .filter(|e| e.labels.get("tenant") == Some(t))
                        .cloned()
                        .collect();
                    (t.clone(), mine)
                })
                .collect(),
        };
        for (scope, evidence) in scopes {
            let values: Vec<f64> = evidence
                .iter()
                .map(|e| effective(&c.check.fact, e.value))
                .collect();
            let observed = reduce(c.check.reduce, &values);
            let status = match observed {
                None => Status::NotApplicable,
                Some(v) if c.check.op.holds(v, c.check.value) => Status::Pass,
                Some(_) => Status::Fail,
            };
            out.push(ControlResult {
                control: c.id.clone(),
                scope,
                status,
                observed: observed.filter(|v| v.is_finite()),
                evidence,
                evaluated_ms: now,
            });
        }
    }
    out
}

/// Compliance scores (0–100, weighted by severity) per profile and overall, for one
/// scope: a tenant's score counts the platform's results too, since the tenant runs on
/// the platform; `None` for the overall score counts every result.
pub fn scores(
    catalogue: &Catalogue,
    profiles: &[String],
    results: &[ControlResult],
    scope: Option<&str>,
) -> BTreeMap<String, f64> {
    let by_id: BTreeMap<&str, &Control> = catalogue
        .controls
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let mut sums: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for r in results {
        let in_scope = match scope {
            None => true,
            Some(s) => r.scope == s || r.scope == PLATFORM,
        };
        let Some(c) = by_id.get(r.control.as_str()) else {
            continue;
        };
        if !in_scope || r.status == Status::NotApplicable {
            continue;
        }
        let w = c.severity.weight();
        let passed = if r.status == Status::Pass { w } else { 0 };
        for p in c
            .profiles
            .iter()
            .filter(|p| profiles.contains(p))
            .map(String::as_str)
            .chain(["overall"])
        {
            let e = sums.entry(p.to_owned()).or_default();
            e.0 += passed;
            e.1 += w;
        }
    }
    sums.into_iter()
        .map(|(p, (passed, total))| (p, 100.0 * f64::from(passed) / f64::from(total.max(1))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Sample;

    fn all_profiles(c: &Catalogue) -> Vec<String> {
        c.profiles.iter().map(|p| p.id.clone()).collect()
    }

    #[test]
    fn the_shipped_catalogue_parses_and_names_only_known_facts() {
        let c = Catalogue::builtin().unwrap();
        assert!(c.controls.len() >= 20, "{}", c.controls.len());
        for p in kopa_config::PROFILES {
            let n = c
                .controls
                .iter()
                .filter(|x| x.profiles.iter().any(|q| q == p))
                .count();
            assert!(n >= 6, "profile {p} has {n} controls");
        }
        for control in &c.controls {
            assert!(
                crate::FACTS.contains(&control.check.fact.as_str()),
                "{} reads unknown fact {}",
                control.id,
                control.check.fact
            );
        }
        assert!(Catalogue::parse("[[profile]]\nid = 1").is_err());
    }

    #[test]
    fn a_control_fails_then_passes_when_its_condition_changes() {
        let text = r#"
[[profile]]
id = "p"
title_lv = "P"
title_en = "P"
description_en = "P"

[[control]]
id = "CERT-1"
title_lv = "Sertifikāti nav beigušies"
title_en = "Certificates valid for 14 days"
source = "test"
profiles = ["p"]
severity = "high"
scope = "platform"
remediation_lv = "Atjaunojiet"
remediation_en = "Renew"
[control.check]
fact = "cert.days_left"
reduce = "min"
op = ">="
value = 14

[[control]]
id = "AUTH-1"
title_lv = "a"
title_en = "a"
source = "test"
profiles = ["p"]
severity = "low"
scope = "tenant"
remediation_lv = "a"
remediation_en = "a"
[control.check]
fact = "auth.failed_logins_1h"
reduce = "sum"
op = "<"
value = 50
"#;
        let c = Catalogue::parse(text).unwrap();
        let latest = Latest::new(60_000);
        let tenants: BTreeSet<String> = ["talsi".to_owned(), "ventspils".to_owned()].into();
        latest.record(&[
            Sample::new("cert.days_left", &[("cert", "kopa-tls")], 200.0, 1_000),
            Sample::new("cert.days_left", &[("cert", "ldap-ca")], 10.0, 1_000),
            Sample::new("auth.failed_logins_1h", &[("tenant", "talsi")], 80.0, 1_000),
        ]);
        let r = evaluate(&c, &all_profiles(&c), &latest, &tenants, 2_000);
        let status = |id: &str, scope: &str| {
            r.iter()
                .find(|x| x.control == id && x.scope == scope)
                .map(|x| x.status)
        };
        assert_eq!(status("CERT-1", PLATFORM), Some(Status::Fail));
        assert_eq!(status("AUTH-1", "talsi"), Some(Status::Fail));
        assert_eq!(status("AUTH-1", "ventspils"), Some(Status::NotApplicable));
        let cert = r.iter().find(|x| x.control == "CERT-1").unwrap();
        assert_eq!(cert.observed, Some(10.0));
        assert_eq!(cert.evidence.len(), 2);
        let s = scores(&c, &all_profiles(&c), &r, Some("talsi"));
        assert_eq!(s["p"], 0.0);

        // The LDAP CA is renewed; the next evaluation passes.
        latest.record(&[Sample::new(
            "cert.days_left",
            &[("cert", "ldap-ca")],
            700.0,
            3_000,
        )]);
        let r = evaluate(&c, &all_profiles(&c), &latest, &tenants, 4_000);
        assert_eq!(
            r.iter().find(|x| x.control == "CERT-1").unwrap().status,
            Status::Pass
        );
        // Platform passes (weight 3), Talsi's own control fails (weight 1): 75.
        let s = scores(&c, &all_profiles(&c), &r, Some("talsi"));
        assert!((s["overall"] - 75.0).abs() < 1e-9, "{s:?}");
        // Stale values are not evidence.
        let r = evaluate(
            &c,
            &all_profiles(&c),
            &latest,
            &tenants,
            3_000 + STALE_MS + 1,
        );
        assert!(r.iter().all(|x| x.status == Status::NotApplicable));
    }
}
