//! End-to-end loading: examples, layering, problem reports.

use std::path::{Path, PathBuf};

use kopa_config::{
    Config, DEFAULT_TOML, LogFormat, Origin, Overrides, Problem, Problems, Source, load, load_str,
    load_with_origins,
};

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The problems of a load expected to fail; empty when it unexpectedly succeeds.
fn problems(text: &str, vars: &[(&str, &str)], overrides: &Overrides) -> Vec<Problem> {
    load_str(text, "kopa.toml", env(vars), overrides)
        .err()
        .map(|Problems(problems)| problems)
        .unwrap_or_default()
}

fn line(problem: &Problem) -> Option<usize> {
    match &problem.origin {
        Origin::File { line, .. } => *line,
        _ => None,
    }
}

#[test]
fn every_example_loads_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = load(Source::File(&path), no_env(), &Overrides::default())
                .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            assert!(config.validate().is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected default.toml and production.toml");
}

#[test]
fn embedded_defaults_equal_config_default() {
    let config = load(Source::Embedded, no_env(), &Overrides::default()).unwrap();
    assert_eq!(config, Config::default());
    let from_empty = load_str("", "empty.toml", no_env(), &Overrides::default()).unwrap();
    assert_eq!(from_empty, Config::default());
    assert!(DEFAULT_TOML.contains("version = 1"));
}

#[test]
fn production_example_has_the_appliance_settings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/production.toml");
    let config = load(Source::File(&path), no_env(), &Overrides::default()).unwrap();
    assert_eq!(config.listen_addr().to_string(), "0.0.0.0:443");
    assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/kopa"));
    assert_eq!(config.log.format, LogFormat::Text);
    assert!(config.server.tls_key_file.is_some());
}

#[test]
fn reports_every_problem_in_a_file_with_its_line() {
    let text = "\
version = 2

[server]
listen = 5
max_connections = \"many\"
lisen = \"0.0.0.0:1\"
keep_alive_secs = 0
public_url = \"http://id.example.lv\"

[log]
format = \"xml\"
colour = true
";
    let found = problems(text, &[], &Overrides::default());
    let summary: Vec<(&str, Option<usize>, &str)> = found
        .iter()
        .map(|p| (p.key.as_str(), line(p), p.message.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "version",
                Some(1),
                "Unsupported config version 2; this Kopa reads version 1"
            ),
            (
                "server.listen",
                Some(4),
                "Expected a string, found an integer"
            ),
            (
                "server.max_connections",
                Some(5),
                "Expected an integer, found a string"
            ),
            (
                "server.lisen",
                Some(6),
                "Unknown key (did you mean `listen`?)"
            ),
            (
                "server.keep_alive_secs",
                Some(7),
                "Out of range: 0 (allowed 1 to 3600)"
            ),
            ("server.public_url", Some(8), "Must start with https://"),
            (
                "log.format",
                Some(11),
                "Unknown value \"xml\" (expected one of `json`, `text`)"
            ),
            ("log.colour", Some(12), "Unknown key"),
        ]
    );
    let shown = Problems(found).to_string();
    assert!(
        shown.starts_with("kopa.toml:1: version: Unsupported"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 8);
}

#[test]
fn unknown_keys_are_reported_at_any_depth() {
    let text = "servr = 1\n[server.tls]\ncert = \"x\"\n[bootstrap]\nadmin_password = \"hunter2\"\n";
    let found = problems(text, &[], &Overrides::default());
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["servr", "server.tls", "bootstrap.admin_password"]);
    assert_eq!(found[0].message, "Unknown key (did you mean `server`?)");
    assert!(!Problems(found).to_string().contains("hunter2"));
}

#[test]
fn syntax_error_is_one_problem_with_its_line() {
    let found = problems(
        "[server]\nlisten = \"a\"\nlisten = \n",
        &[],
        &Overrides::default(),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "");
    assert_eq!(line(&found[0]), Some(3));
    assert!(
        found[0].message.starts_with("Invalid TOML: "),
        "{}",
        found[0].message
    );
}

#[test]
fn cli_beats_env_beats_file_beats_default() {
    let text = "[server]\nlisten = \"127.0.0.1:1000\"\ndata_dir = \"/file\"\nmax_connections = 7\n";
    let vars = [
        ("KOPA__SERVER__LISTEN", "127.0.0.1:2000"),
        ("KOPA__SERVER__DATA_DIR", "/env"),
        ("PATH", "/usr/bin"),
        ("KOPA_BLESS", "1"),
    ];
    let overrides = Overrides {
        listen: Some("127.0.0.1:3000".into()),
        data_dir: None,
    };
    let config = load_str(text, "kopa.toml", env(&vars), &overrides).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:3000");
    assert_eq!(config.server.data_dir, PathBuf::from("/env"));
    assert_eq!(config.server.max_connections, 7);
    assert_eq!(config.server.keep_alive_secs, 75);

    let config = load_str(text, "kopa.toml", env(&vars), &Overrides::default()).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:2000");
    let config = load_str(text, "kopa.toml", no_env(), &Overrides::default()).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:1000");
}

#[test]
fn env_values_are_typed_by_the_schema() {
    let vars = [
        ("KOPA__SERVER__MAX_CONNECTIONS", "16"),
        ("KOPA__LOG__FORMAT", "text"),
        ("KOPA__SERVER__PUBLIC_URL", "https://id.example.lv"),
    ];
    let config = load_str("", "kopa.toml", env(&vars), &Overrides::default()).unwrap();
    assert_eq!(config.server.max_connections, 16);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(
        config.server.public_url.as_deref(),
        Some("https://id.example.lv")
    );
}

#[test]
fn empty_env_value_unsets_an_optional_key() {
    let text = "[server]\npublic_url = \"https://id.example.lv\"\n";
    let vars = [("KOPA__SERVER__PUBLIC_URL", "")];
    let config = load_str(text, "kopa.toml", env(&vars), &Overrides::default()).unwrap();
    assert_eq!(config.server.public_url, None);
}

#[test]
fn bad_env_values_name_the_variable() {
    let vars = [
        ("KOPA__SERVER__MAX_CONNECTIONS", "many"),
        ("KOPA__SERVER__LISTEN", "nowhere"),
        ("KOPA__SERVER__LISTN", "x"),
        ("KOPA__LOG__FORMAT", "xml"),
        ("KOPA__SERVER__KEEP_ALIVE_SECS", "true"),
        ("KOPA__", "x"),
    ];
    let found = problems("", &vars, &Overrides::default());
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "env KOPA__: Not a configuration key (expected KOPA__SECTION__KEY)",
            "env KOPA__SERVER__MAX_CONNECTIONS: server.max_connections: \
             Expected an integer, found \"many\"",
            "env KOPA__LOG__FORMAT: log.format: \
             Unknown value \"xml\" (expected one of `json`, `text`)",
            "env KOPA__SERVER__KEEP_ALIVE_SECS: server.keep_alive_secs: \
             Expected an integer, found a boolean",
            "env KOPA__SERVER__LISTN: server.listn: Unknown key (did you mean `listen`?)",
            "env KOPA__SERVER__LISTEN: server.listen: \
             Not a socket address: \"nowhere\" (expected e.g. 127.0.0.1:8443)",
        ]
    );
}

#[test]
fn bad_cli_value_names_the_flag() {
    let overrides = Overrides {
        listen: Some("abc".into()),
        data_dir: None,
    };
    let found = problems("", &[], &overrides);
    assert_eq!(
        found[0].to_string(),
        "--listen: server.listen: Not a socket address: \"abc\" (expected e.g. 127.0.0.1:8443)"
    );
}

#[test]
fn cross_key_problem_points_at_the_key_that_is_set() {
    let text = "[server]\ntls_cert_file = \"/etc/kopa/tls/cert.pem\"\n";
    let found = problems(text, &[], &Overrides::default());
    assert_eq!(
        Problems(found).to_string(),
        "kopa.toml:2: server.tls_cert_file: Set without server.tls_key_file (set both or neither)"
    );
}

#[test]
fn check_files_problems_can_be_attributed_to_their_layer() {
    let text = "[bootstrap]\n\nadmin_password_file = \"/nonexistent/kopa/admin-password\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kopa.toml");
    std::fs::write(&path, text).unwrap();
    let (config, origins) =
        load_with_origins(Source::File(&path), no_env(), &Overrides::default()).unwrap();
    let found = origins.attribute(config.check_files());
    assert_eq!(found.len(), 1);
    assert_eq!(line(&found[0]), Some(3));
    assert!(
        found[0].to_string().ends_with(
            ":3: bootstrap.admin_password_file: File not found: /nonexistent/kopa/admin-password"
        ),
        "{}",
        found[0]
    );
}

#[test]
fn missing_file_is_one_problem() {
    let path = Path::new("/nonexistent/kopa.toml");
    let Err(Problems(found)) = load(Source::File(path), no_env(), &Overrides::default()) else {
        panic!("expected a problem");
    };
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].to_string(),
        "/nonexistent/kopa.toml: Cannot read configuration file: entity not found"
    );
}

#[test]
fn values_out_of_integer_range_do_not_wrap() {
    let text = "version = -1\n[server]\nmax_connections = 4294967297\n";
    let found = problems(text, &[], &Overrides::default());
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["version", "server.max_connections"]);
}

#[test]
fn listen_addr_falls_back_instead_of_panicking() {
    let mut config = Config::default();
    config.server.listen = "garbage".into();
    assert_eq!(config.listen_addr().to_string(), "127.0.0.1:8443");
}
