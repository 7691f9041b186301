//! The Markdown reference of every key (`docs/config.md`), generated from the schema.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::check::Schema;
use crate::layer::env_var_name;

const INTRO: &str = "\
# Configuration reference

<!-- Generated from the kopa-config schema by `make docs`; do not edit by hand. -->

Kopa reads one TOML file, `kopa.toml` (`config/examples/production.toml` is a realistic
starting point). Every key is optional: a missing key takes its default.

**Layering.** Values are taken, later winning, from: the built-in defaults, the file,
environment variables, and the command-line flags `--data-dir` and `--listen`. Every
problem in every layer is reported at once, each with its key and where it was set
(`kopa.toml:12: server.listen: ...`, `env KOPA__SERVER__LISTEN: ...`, `--listen: ...`).
Unknown keys are errors, so a misspelt key never goes unnoticed.

**Environment variables.** `KOPA__` followed by the key path in capitals, with `__`
between the parts: `KOPA__SERVER__LISTEN=0.0.0.0:443` sets `server.listen`. String and
path values are taken as written (no quotes); numbers and booleans are parsed as TOML values. An
empty variable unsets an optional key. Other variables are ignored.

**Secrets** are never written in the configuration itself. Keys ending in `_file` name
a file that holds the secret; its content never appears in logs or error messages. One
trailing line break is ignored. Make these files readable only by the `kopa` user.

**Relative paths** are relative to the working directory of the `kopa` process, not to
the configuration file. Use absolute paths in production.

**Version.** `version = 1` identifies the format; a file written for another version is
refused instead of being misread.
";

/// Markdown reference of every key, generated from the schema.
pub fn reference_markdown() -> String {
    let schema = Schema::of_config();
    let mut out = String::from(INTRO);
    let Some(root) = schema.properties(schema.root()) else {
        return out;
    };
    let (sections, rest): (Vec<_>, Vec<_>) = root
        .iter()
        .partition(|(_, s)| schema.properties(s).is_some());
    let (lists, top): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(_, s)| table_items(&schema, s).is_some());
    out.push_str("\n## Top level\n");
    for (key, key_schema) in top {
        let env = env_var_name(&[key]);
        write_key(&mut out, &schema, key, Some(&env), false, key_schema);
    }
    for (section, section_schema) in sections {
        let _ = write!(out, "\n## `[{section}]`\n");
        if let Some(description) = description(section_schema) {
            let _ = write!(out, "\n{description}\n");
        }
        for (key, key_schema) in schema.properties(section_schema).into_iter().flatten() {
            let env = env_var_name(&[section, key]);
            let name = format!("{section}.{key}");
            write_key(&mut out, &schema, &name, Some(&env), false, key_schema);
        }
    }
    for (list, list_schema) in lists {
        let Some(items) = table_items(&schema, list_schema) else {
            continue;
        };
        let _ = write!(out, "\n## `[[{list}]]`\n");
        for text in [description(list_schema), description(schema.resolve(items))]
            .into_iter()
            .flatten()
        {
            let _ = write!(out, "\n{text}\n");
        }
        let _ = write!(
            out,
            "\nEach `[[{list}]]` table is one entry. Entries cannot be set key by key from the \
             environment; `{}` replaces the whole list with a TOML array of inline tables.\n",
            env_var_name(&[list])
        );
        write_entry_keys(&mut out, &schema, &format!("{list}[]"), items);
    }
    out
}

/// The item schema of an array of tables, if `key_schema` is one.
fn table_items<'a>(schema: &'a Schema, key_schema: &'a Json) -> Option<&'a Json> {
    let items = schema.resolve(key_schema).get("items")?;
    schema.properties(items).map(|_| items)
}

/// The keys of one entry of an array of tables, required keys first; nested tables and
/// arrays of tables are expanded under `prefix.key` and `prefix.key[]`.
fn write_entry_keys(out: &mut String, schema: &Schema, prefix: &str, item_schema: &Json) {
    let resolved = schema.resolve(item_schema);
    let required: Vec<&str> = resolved
        .get("required")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect();
    let mut keys: Vec<(&String, &Json)> = schema
        .properties(item_schema)
        .into_iter()
        .flatten()
        .collect();
    keys.sort_by_key(|(key, _)| !required.contains(&key.as_str()));
    for (key, key_schema) in keys {
        let name = format!("{prefix}.{key}");
        if schema.properties(key_schema).is_some() {
            write_entry_keys(out, schema, &name, key_schema);
            continue;
        }
        write_key(
            out,
            schema,
            &name,
            None,
            required.contains(&key.as_str()),
            key_schema,
        );
        if let Some(items) = table_items(schema, key_schema) {
            write_entry_keys(out, schema, &format!("{name}[]"), items);
        }
    }
}

fn write_key(
    out: &mut String,
    schema: &Schema,
    name: &str,
    env: Option<&str>,
    required: bool,
    key_schema: &Json,
) {
    let resolved = schema.resolve(key_schema);
    let _ = write!(out, "\n### `{name}`\n\n");
    let optional = if schema.allows_null(key_schema) {
        ", optional"
    } else {
        ""
    };
    let _ = writeln!(out, "- Type: {}{optional}", type_name(schema, key_schema));
    if required {
        let _ = writeln!(out, "- Required");
    } else {
        let default = key_schema
            .get("default")
            .or_else(|| resolved.get("default"));
        let _ = writeln!(
            out,
            "- Default: {}",
            default.map_or("none".to_owned(), toml_literal)
        );
    }
    if let Some(allowed) = allowed_values(schema, key_schema) {
        let _ = writeln!(out, "- Allowed: {allowed}");
    }
    if let Some(env) = env {
        let _ = writeln!(out, "- Environment: `{env}`");
    }
    if let Some(description) = description(key_schema) {
        let _ = write!(out, "\n{description}\n");
    }
}

fn type_name(schema: &Schema, key_schema: &Json) -> String {
    if schema.resolve(key_schema).get("format") == Some(&Json::from("path")) {
        return "path".to_owned();
    }
    if schema.is_string_like(key_schema) {
        return "string".to_owned();
    }
    let expected = schema.expected(key_schema);
    expected
        .split(" or ")
        .map(|phrase| phrase.trim_start_matches("an ").trim_start_matches("a "))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn allowed_values(schema: &Schema, key_schema: &Json) -> Option<String> {
    let resolved = schema.resolve(key_schema);
    if let Some(alternatives) = resolved.get("oneOf").and_then(Json::as_array) {
        let values: Vec<String> = alternatives
            .iter()
            .filter_map(|alt| schema.resolve(alt).get("const"))
            .map(toml_literal)
            .collect();
        return Some(values.join(", "));
    }
    let bound = |key: &str| key_schema.get(key).or_else(|| resolved.get(key));
    match (bound("minimum"), bound("maximum")) {
        (Some(min), Some(max)) => Some(format!("{min} to {max}")),
        _ => None,
    }
}

fn description(schema: &Json) -> Option<&str> {
    schema.get("description").and_then(Json::as_str)
}

/// A default or allowed value as it would be written in `kopa.toml`.
fn toml_literal(value: &Json) -> String {
    match toml_value(value) {
        None => "none".to_owned(),
        Some(value) => format!("`{value}`"),
    }
}

/// The TOML form of a JSON value (`null` has none); lists and tables become inline.
fn toml_value(value: &Json) -> Option<toml_edit::Value> {
    let value = match value {
        Json::Null => return None,
        Json::Bool(b) => toml_edit::Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => toml_edit::Value::from(i),
            None => toml_edit::Value::from(n.as_f64()?),
        },
        Json::String(s) => toml_edit::Value::from(s.as_str()),
        Json::Array(items) => {
            let mut array: toml_edit::Array = items.iter().filter_map(toml_value).collect();
            array.fmt();
            toml_edit::Value::Array(array)
        }
        Json::Object(map) => {
            let mut table: toml_edit::InlineTable = map
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), toml_value(v)?)))
                .collect();
            table.fmt();
            toml_edit::Value::InlineTable(table)
        }
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn reference_doc_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
        let checked = kopa_core::generated::check_or_bless(&path, &reference_markdown());
        assert!(checked.is_ok(), "{checked:?}");
    }

    #[test]
    fn every_key_is_documented_with_its_env_var() {
        let doc = reference_markdown();
        for needle in [
            "### `version`",
            "### `server.listen`",
            "- Environment: `KOPA__SERVER__LISTEN`",
            "- Default: `\"127.0.0.1:8443\"`",
            "### `log.format`",
            "- Allowed: `\"json\"`, `\"text\"`",
            "### `bootstrap.admin_password_file`",
            "- Type: path, optional",
            "- Allowed: 1024 to 67108864",
            "## `[[directory]]`",
            "### `directory[].id`\n\n- Type: string\n- Required\n",
            "### `directory[].attributes.given_name`",
            "### `directory[].account_rules[].bit`",
            "- Allowed: `\"ldap\"`, `\"local\"`",
            "- Default: `[{ attribute = \"pwdAccountLockedTime\"",
        ] {
            assert!(doc.contains(needle), "missing {needle:?} in:\n{doc}");
        }
    }
}
