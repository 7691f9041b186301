//! The environment and command-line layers, each turned into its own tree.

use crate::check::Schema;
use crate::tree::{Node, Value, from_toml_value};
use crate::{Origin, Overrides, Problem};

/// Prefix of the environment variables that set configuration keys.
pub(crate) const ENV_PREFIX: &str = "KOPA__";
const ENV_SEPARATOR: &str = "__";

/// What the environment contributes: values to set, and optional keys to unset
/// (an empty variable unsets an optional key, so a file's value can be cleared).
pub(crate) struct EnvLayer {
    pub tree: Node,
    pub unset: Vec<Vec<String>>,
}

/// The environment variable that sets the key at `path`.
pub(crate) fn env_var_name(path: &[&str]) -> String {
    let upper: Vec<String> = path.iter().map(|s| s.to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", upper.join(ENV_SEPARATOR))
}

pub(crate) fn env_layer(
    schema: &Schema,
    env: impl IntoIterator<Item = (String, String)>,
    out: &mut Vec<Problem>,
) -> EnvLayer {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Sorted so that the result never depends on the order the OS lists variables in.
    vars.sort();
    let mut layer = EnvLayer {
        tree: Node::empty_table(Origin::Default),
        unset: Vec::new(),
    };
    for (var, raw) in vars {
        let origin = Origin::Env { var: var.clone() };
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(|segment| segment.is_empty()) {
            let message = "Not a configuration key (expected KOPA__SECTION__KEY)";
            out.push(Problem::new("", origin, message));
            continue;
        }
        let key = path.join(".");
        let Some(schema_at) = schema.at_path(&path) else {
            // Unknown keys go into the tree as strings; the schema check reports them.
            layer
                .tree
                .insert(&path, Node::new(Value::String(raw), origin));
            continue;
        };
        if raw.is_empty() && schema.allows_null(schema_at) {
            layer.unset.push(path);
            continue;
        }
        if schema.is_string_like(schema_at) {
            layer
                .tree
                .insert(&path, Node::new(Value::String(raw), origin));
            continue;
        }
        match raw.trim().parse::<toml_edit::Value>() {
            Ok(value) => layer.tree.insert(&path, from_toml_value(&value, &origin)),
            Err(_) => {
                let message = format!("Expected {}, found {raw:?}", schema.expected(schema_at));
                out.push(Problem::new(key, origin, message));
            }
        }
    }
    layer
}

pub(crate) fn cli_layer(overrides: &Overrides, out: &mut Vec<Problem>) -> Node {
    let mut tree = Node::empty_table(Origin::Default);
    let mut set = |path: [&str; 2], flag: &str, value: Option<&str>| {
        let origin = Origin::Cli {
            flag: flag.to_owned(),
        };
        match value {
            Some(value) => {
                let path = path.map(str::to_owned);
                tree.insert(&path, Node::new(Value::String(value.to_owned()), origin));
            }
            None => out.push(Problem::new(
                path.join("."),
                origin,
                "Path is not valid UTF-8",
            )),
        }
    };
    if let Some(dir) = &overrides.data_dir {
        set(["server", "data_dir"], "--data-dir", dir.to_str());
    }
    if let Some(listen) = &overrides.listen {
        set(["server", "listen"], "--listen", Some(listen));
    }
    tree
}
