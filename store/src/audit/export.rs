//! Export of a time range for SIEMs and auditors: one ECS JSON object per line, or CSV with
//! the ECS field names as header. Records stream from one snapshot; nothing is held whole.

use super::query::{Raw, decode, open, seq_bounds};
use super::record::{AuditRecord, json_str};
use super::{AuditError, RECORDS};
use crate::{Key, Store};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The two export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One ECS JSON object per line (`\n`), absent fields left out.
    Jsonl,
    /// RFC 4180 CSV (`\r\n`) with [`CSV_COLUMNS`] as header, absent fields empty.
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            _ => Err(format!("unknown format {s:?}; one of: jsonl, csv")),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        })
    }
}

/// The CSV columns, in order; the JSON lines use the same names (plus `event.kind` and
/// `event.dataset`).
pub const CSV_COLUMNS: [&str; 17] = [
    "@timestamp",
    "event.sequence",
    "event.category",
    "event.action",
    "event.outcome",
    "event.reason",
    "organization.id",
    "user.name",
    "user.id",
    "source.ip",
    "user_agent.original",
    "kopa.client",
    "kopa.session_id",
    "kopa.method",
    "kopa.details",
    "kopa.prev_hash",
    "kopa.hash",
];

/// One record as the ECS JSON object of a JSONL export line (for query APIs).
pub fn ecs_json(r: &AuditRecord) -> serde_json::Value {
    let mut line = Vec::new();
    write_jsonl(r, &mut line);
    serde_json::from_slice(&line).unwrap_or(serde_json::Value::Null)
}

/// `2026-03-01T08:15:00.250Z`: RFC 3339, UTC, milliseconds.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            ms % 1000
        ),
        Err(_) => format!("@{ms}ms"),
    }
}

/// Parses an RFC 3339 time (`2026-03-01T10:15:00+02:00`, `2026-03-01T08:15:00Z`) or a bare
/// date (`2026-03-01`, midnight UTC) into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Result<u64, String> {
    let t = if s.len() == 10 {
        let parse = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u16>().ok());
        let date = match (
            parse(0..4),
            s.get(4..5),
            parse(5..7),
            s.get(7..8),
            parse(8..10),
        ) {
            (Some(y), Some("-"), Some(m), Some("-"), Some(d)) => {
                time::Month::try_from(u8::try_from(m).unwrap_or(0))
                    .ok()
                    .and_then(|m| {
                        time::Date::from_calendar_date(i32::from(y), m, u8::try_from(d).ok()?).ok()
                    })
            }
            _ => None,
        };
        date.map(|d| d.midnight().assume_utc())
            .ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))?
    } else {
        OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| format!("{s:?} is not an RFC 3339 time (e.g. 2026-03-01T08:15:00Z)"))?
    };
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s:?} is before 1970"))
}

/// Appends `r` as one ECS JSON line.
pub(crate) fn write_jsonl(r: &AuditRecord, out: &mut Vec<u8>) {
    let e = &r.event;
    out.extend_from_slice(b"{\"@timestamp\":");
    json_str(out, &format_rfc3339_ms(r.time_ms));
    out.extend_from_slice(
        format!(
            ",\"event.sequence\":{},\"event.kind\":\"event\",\"event.dataset\":\"kopa.audit\",\"event.category\":[",
            r.seq
        )
        .as_bytes(),
    );
    json_str(out, e.category.as_str());
    out.push(b']');
    let ip = e.source_ip.map(|ip| ip.to_string());
    let fields: [(&str, Option<&str>); 11] = [
        ("event.action", Some(&e.action)),
        ("event.outcome", Some(e.outcome.as_str())),
        ("event.reason", e.reason.as_deref()),
        ("organization.id", e.tenant.as_ref().map(|t| t.as_str())),
        ("user.name", e.user_typed.as_deref()),
        ("user.id", e.user_resolved.as_deref()),
        ("source.ip", ip.as_deref()),
        ("user_agent.original", e.user_agent.as_deref()),
        ("kopa.client", e.client.as_deref()),
        ("kopa.session_id", e.session_id.as_deref()),
        ("kopa.method", e.method.as_deref()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            out.push(b',');
            json_str(out, name);
            out.push(b':');
            json_str(out, v);
        }
    }
    if !e.details.is_empty() {
        out.extend_from_slice(b",\"kopa.details\":");
        details_json(r, out);
    }
    out.extend_from_slice(b",\"kopa.prev_hash\":");
    json_str(out, &r.prev_hash.to_hex());
    out.extend_from_slice(b",\"kopa.hash\":");
    json_str(out, &r.hash.to_hex());
    out.extend_from_slice(b"}\n");
}

fn details_json(r: &AuditRecord, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in r.event.details.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, k);
        out.push(b':');
        json_str(out, v);
    }
    out.push(b'}');
}

/// `records` as CSV with its header row (the columns of `kopa audit export --format csv`).
pub fn csv(records: &[AuditRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    write_csv_header(&mut out);
    for r in records {
        write_csv(r, &mut out);
    }
    out
}

pub(crate) fn write_csv_header(out: &mut Vec<u8>) {
    out.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `r` as one CSV row.
pub(crate) fn write_csv(r: &AuditRecord, out: &mut Vec<u8>) {
    let e = &r.event;
    let details = if e.details.is_empty() {
        String::new()
    } else {
        let mut d = Vec::new();
        details_json(r, &mut d);
        String::from_utf8_lossy(&d).into_owned()
    };
    let cells: [String; 17] = [
        format_rfc3339_ms(r.time_ms),
        r.seq.to_string(),
        e.category.as_str().to_owned(),
        e.action.clone(),
        e.outcome.as_str().to_owned(),
        e.reason.clone().unwrap_or_default(),
        e.tenant.as_ref().map(|t| t.to_string()).unwrap_or_default(),
        e.user_typed.clone().unwrap_or_default(),
        e.user_resolved.clone().unwrap_or_default(),
        e.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        e.user_agent.clone().unwrap_or_default(),
        e.client.clone().unwrap_or_default(),
        e.session_id.clone().unwrap_or_default(),
        e.method.clone().unwrap_or_default(),
        details,
        r.prev_hash.to_hex(),
        r.hash.to_hex(),
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_cell(cell, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// One CSV cell: quoted when it holds a quote, comma or line break (quotes doubled). A
/// cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a
/// leading `'`: user names and user agents come from whoever typed them.
fn csv_cell(cell: &str, out: &mut Vec<u8>) {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || cell.contains(['"', ',', '\n', '\r']);
    if quote {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    for b in cell.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if quote {
        out.push(b'"');
    }
}

/// A piece of an export, for transports that carry it in several messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPage {
    /// The formatted records (and the CSV header on the first page).
    pub data: String,
    /// Records in `data`.
    pub records: u64,
    /// Pass as `after_seq` for the next page; `None` at the end.
    pub next_after_seq: Option<u64>,
}

/// Streams records in `[since_ms, until_ms)` (open ends when `None`) after `after_seq` to
/// `sink`, at most `max` of them; returns how many and the cursor when stopped early.
fn export_range(
    records: &Raw,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    after_seq: Option<u64>,
    max: u64,
    format: ExportFormat,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), AuditError>,
) -> Result<(u64, Option<u64>), AuditError> {
    let Some((mut lo, hi)) = seq_bounds(records, since_ms, until_ms)? else {
        return Ok((0, None));
    };
    if let Some(a) = after_seq {
        lo = lo.max(a.saturating_add(1));
    }
    if lo > hi {
        return Ok((0, None));
    }
    let mut count = 0;
    let mut last = None;
    let mut buf = Vec::with_capacity(1024);
    for item in records.range::<&[u8]>(lo.encode().as_slice()..=hi.encode().as_slice())? {
        let (k, v) = item?;
        let seq = u64::decode(k.value())?;
        if count == max {
            return Ok((count, last));
        }
        last = Some(seq);
        let r = decode(seq, v.value())?;
        buf.clear();
        match format {
            ExportFormat::Jsonl => write_jsonl(&r, &mut buf),
            ExportFormat::Csv => write_csv(&r, &mut buf),
        }
        sink(&buf)?;
        count += 1;
    }
    Ok((count, None))
}

/// Writes every record in `[since_ms, until_ms)` to `out` from one snapshot; returns how
/// many. Blocking.
pub fn export(
    store: &Store,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let txn = store.begin_read()?;
    if format == ExportFormat::Csv {
        let mut header = Vec::new();
        write_csv_header(&mut header);
        out.write_all(&header).map_err(AuditError::Write)?;
    }
    let Some(records) = open(txn.raw(), RECORDS.def())? else {
        return Ok(0);
    };
    let mut sink = |b: &[u8]| out.write_all(b).map_err(AuditError::Write);
    let (count, _) = export_range(
        &records,
        since_ms,
        until_ms,
        None,
        u64::MAX,
        format,
        &mut sink,
    )?;
    out.flush().map_err(AuditError::Write)?;
    Ok(count)
}

/// Up to `max_records` records of `[since_ms, until_ms)` after `after_seq`, formatted; the
/// CSV header comes with the first page (`after_seq` of `None`). Blocking.
pub fn export_page(
    store: &Store,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    format: ExportFormat,
    after_seq: Option<u64>,
    max_records: u64,
) -> Result<ExportPage, AuditError> {
    let txn = store.begin_read()?;
    let mut data = Vec::new();
    if format == ExportFormat::Csv && after_seq.is_none() {
        write_csv_header(&mut data);
    }
    let Some(records) = open(txn.raw(), RECORDS.def())? else {
        return Ok(ExportPage::default());
    };
    let mut sink = |b: &[u8]| {
        data.extend_from_slice(b);
        Ok(())
    };
    let (records, next_after_seq) = export_range(
        &records,
        since_ms,
        until_ms,
        after_seq,
        max_records.max(1),
        format,
        &mut sink,
    )?;
    Ok(ExportPage {
        // Built from &str pieces only, so this never replaces anything.
        data: String::from_utf8_lossy(&data).into_owned(),
        records,
        next_after_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, Category, ChainHash, Outcome};

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_772_352_900_250),
            "2026-03-01T08:15:00.250Z"
        );
        assert_eq!(
            parse_rfc3339_ms("2026-03-01T08:15:00.250Z"),
            Ok(1_772_352_900_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-03-01T10:15:00.250+02:00"),
            Ok(1_772_352_900_250)
        );
        assert_eq!(parse_rfc3339_ms("2026-03-01"), Ok(1_772_323_200_000));
        for bad in [
            "2026-13-01",
            "yesterday",
            "1969-12-31T00:00:00Z",
            "2026-03-01T08:15",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        let cell = |s: &str| {
            let mut out = Vec::new();
            csv_cell(s, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(cell("Jānis Bērziņš"), "Jānis Bērziņš");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn jsonl_uses_ecs_names_and_leaves_out_absent_fields() {
        let event = AuditEvent::new(Category::Authentication, "login", Outcome::Failure)
            .reason("wrong_password")
            .user_typed("ģirts")
            .detail("k", "v");
        let r = AuditRecord::seal(3, 1_772_352_900_250, event, ChainHash::GENESIS);
        let mut out = Vec::new();
        write_jsonl(&r, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["@timestamp"], "2026-03-01T08:15:00.250Z");
        assert_eq!(v["event.sequence"], 3);
        assert_eq!(v["event.category"], serde_json::json!(["authentication"]));
        assert_eq!(v["event.outcome"], "failure");
        assert_eq!(v["event.reason"], "wrong_password");
        assert_eq!(v["user.name"], "ģirts");
        assert_eq!(v["kopa.details"]["k"], "v");
        assert_eq!(v["kopa.hash"], r.hash.to_hex());
        assert!(v.get("source.ip").is_none());
        assert!(v.get("organization.id").is_none());
    }

    #[test]
    fn the_field_catalogue_documents_every_column() {
        let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit-events.md");
        let doc = std::fs::read_to_string(doc).unwrap();
        let names = CSV_COLUMNS
            .iter()
            .chain(&["event.kind", "event.dataset"])
            .chain(&[crate::audit::RETENTION_ACTION, crate::audit::ANOMALY_ACTION]);
        for name in names {
            assert!(
                doc.contains(&format!("| `{name}`")),
                "docs/audit-events.md lacks {name}"
            );
        }
    }
}
