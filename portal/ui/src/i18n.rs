//! The two languages of the UI.

/// Latvian (default) or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Lv,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Lv => "lv",
            Lang::En => "en",
        }
    }
}

/// The text in `lang`.
pub fn tr<'a>(lang: Lang, lv: &'a str, en: &'a str) -> &'a str {
    match lang {
        Lang::Lv => lv,
        Lang::En => en,
    }
}

/// A case state's name.
pub fn state(lang: Lang, s: &str) -> &'static str {
    let (lv, en) = match s {
        "registered" => ("Reģistrēta", "Registered"),
        "in_progress" => ("Procesā", "In progress"),
        "waiting_for_client" => ("Gaida klientu", "Waiting for the client"),
        "forwarded_to_institution" => ("Nosūtīta iestādei", "Forwarded to the institution"),
        "decided" => ("Lēmums pieņemts", "Decided"),
        "result_delivered" => ("Rezultāts izsniegts", "Result delivered"),
        "rejected" => ("Atteikta", "Rejected"),
        "withdrawn" => ("Atsaukta", "Withdrawn"),
        _ => ("?", "?"),
    };
    if lang == Lang::Lv { lv } else { en }
}

/// A channel's name.
pub fn channel(lang: Lang, c: &str) -> &'static str {
    let (lv, en) = match c {
        "in_person" => ("Klātienē", "In person"),
        "vpvkac_phone" => ("VPVKAC tālrunis", "VPVKAC phone"),
        "latvija_lv_phone" => ("latvija.lv tālrunis", "latvija.lv phone"),
        "email" => ("E-pasts", "E-mail"),
        "e_service" => ("E-pakalpojums", "E-service"),
        _ => ("?", "?"),
    };
    if lang == Lang::Lv { lv } else { en }
}

/// Every state's wire name, in life order.
pub const STATES: [&str; 8] = [
    "registered",
    "in_progress",
    "waiting_for_client",
    "forwarded_to_institution",
    "decided",
    "result_delivered",
    "rejected",
    "withdrawn",
];

/// A time in milliseconds as `YYYY-MM-DD HH:MM` (local time of the browser).
pub fn datetime(ms: u64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes()
    )
}

/// A duration in milliseconds, in days and hours.
pub fn duration(lang: Lang, ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "—".into();
    };
    let hours = ms / 3_600_000;
    let (d, h) = (hours / 24, hours % 24);
    match lang {
        Lang::Lv => format!("{d} d. {h} st."),
        Lang::En => format!("{d} d {h} h"),
    }
}
