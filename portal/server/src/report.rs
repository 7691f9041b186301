//! Quality reports over cases: counts, median and 90th percentile of the three times,
//! deadline compliance, grouped by whatever the report asks (institution, service,
//! channel, centre, period, specialist); and their CSV form.

use crate::case::Indicators;
use serde::Serialize;
use std::collections::BTreeMap;

/// Median and 90th percentile of one time indicator, in milliseconds, over the cases
/// that have it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Spread {
    /// How many cases have this indicator.
    pub count: u64,
    pub median: Option<u64>,
    pub p90: Option<u64>,
}

/// One row of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Cases in the group.
    pub cases: u64,
    pub time_to_apply: Spread,
    pub execution_time: Spread,
    pub time_to_deliver: Spread,
    /// Cases past their statutory deadline.
    pub deadline_breached: u64,
    /// Share of cases within their deadline (1.0 when there are none).
    pub deadline_compliance: f64,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending).
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() || p == 0 || p > 100 {
        return None;
    }
    let n = sorted.len() as u64;
    // ceil(p/100 * n), as an index from 1.
    let rank = (u64::from(p) * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

fn spread(mut values: Vec<u64>) -> Spread {
    values.sort_unstable();
    Spread {
        count: values.len() as u64,
        median: percentile(&values, 50),
        p90: percentile(&values, 90),
    }
}

/// The summary of one group of cases.
pub fn summarize<'a>(cases: impl IntoIterator<Item = &'a Indicators>) -> Summary {
    let (mut apply, mut exec, mut deliver) = (Vec::new(), Vec::new(), Vec::new());
    let (mut total, mut breached) = (0_u64, 0_u64);
    for i in cases {
        total += 1;
        breached += u64::from(i.deadline_breached);
        apply.extend(i.time_to_apply);
        exec.extend(i.execution_time);
        deliver.extend(i.time_to_deliver);
    }
    Summary {
        cases: total,
        time_to_apply: spread(apply),
        execution_time: spread(exec),
        time_to_deliver: spread(deliver),
        deadline_breached: breached,
        deadline_compliance: if total == 0 {
            1.0
        } else {
            (total - breached) as f64 / total as f64
        },
    }
}

/// Summaries of `cases` grouped by `key`, in key order.
pub fn group<T, K: Ord>(
    cases: &[T],
    key: impl Fn(&T) -> K,
    indicators: impl Fn(&T) -> &Indicators,
) -> BTreeMap<K, Summary> {
    let mut groups: BTreeMap<K, Vec<&Indicators>> = BTreeMap::new();
    for c in cases {
        groups.entry(key(c)).or_default().push(indicators(c));
    }
    groups
        .into_iter()
        .map(|(k, list)| (k, summarize(list)))
        .collect()
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break; and a
/// leading `=`, `+`, `-`, `@`, tab or carriage return is prefixed with `'`, so a
/// spreadsheet opening the export never runs a value as a formula.
pub fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// A CSV document: a header row, then the rows; CRLF line ends (RFC 4180).
pub fn csv(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let line = |cells: &mut dyn Iterator<Item = String>| -> String {
        cells.map(|c| csv_field(&c)).collect::<Vec<_>>().join(",") + "\r\n"
    };
    let mut out = line(&mut header.iter().map(|h| (*h).to_owned()));
    for row in rows {
        out.push_str(&line(&mut row.into_iter()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(apply: u64, exec: Option<u64>, breached: bool) -> Indicators {
        Indicators {
            time_to_apply: Some(apply),
            execution_time: exec,
            time_to_deliver: None,
            deadline_breached: breached,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&v, 100), Some(10));
        assert_eq!(percentile(&v, 1), Some(1));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&v, 0), None);
    }

    #[test]
    fn summaries_count_what_each_case_has() {
        let cases = [
            case(10, Some(100), false),
            case(20, None, true),
            case(30, Some(300), false),
            case(40, Some(200), true),
        ];
        let s = summarize(&cases);
        assert_eq!(s.cases, 4);
        assert_eq!(s.time_to_apply.median, Some(20));
        assert_eq!(s.time_to_apply.p90, Some(40));
        assert_eq!(s.execution_time.count, 3);
        assert_eq!(s.execution_time.median, Some(200));
        assert_eq!(s.time_to_deliver.count, 0);
        assert_eq!(s.time_to_deliver.median, None);
        assert_eq!(s.deadline_breached, 2);
        assert!((s.deadline_compliance - 0.5).abs() < 1e-9);
        assert!((summarize(&[]).deadline_compliance - 1.0).abs() < 1e-9);

        let by = group(&cases, |c| c.deadline_breached, |c| c);
        assert_eq!(by[&true].cases, 2);
        assert_eq!(by[&false].execution_time.median, Some(100));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("Bērziņš"), "Bērziņš");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        let doc = csv(&["service", "cases"], [vec!["VPVKAC 1".into(), "3".into()]]);
        assert_eq!(doc, "service,cases\r\nVPVKAC 1,3\r\n");
    }
}
