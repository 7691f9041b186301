//! The configuration loader on arbitrary text and environment: it must answer with a config
//! or with problems, never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Split off an optional environment section so env parsing is exercised too.
    let (file, env) = text.split_once("\n%%\n").unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = kopa_config::load_str(file, "fuzz.toml", env, &kopa_config::Overrides::default());
});
