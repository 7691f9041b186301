//! Checks one layer's tree against the JSON schema of `Config`.
//!
//! Every unknown key, wrong type, unknown enum value and out-of-range number is
//! reported, and the offending node is pruned so that the remaining values can still
//! be deserialised and validated: one load reports all problems at once.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::tree::{Node, Value, join};
use crate::validate::range_message;
use crate::{Config, Problem};

/// Longest `$ref` chain followed before giving up (the schema has no cycles).
const MAX_REF_DEPTH: usize = 16;

/// Schema extension on an item type: keys whose values must be unique across the items
/// of an array (see `check_unique_keys`).
pub(crate) const UNIQUE_KEYS: &str = "x-unique-keys";

pub(crate) struct Schema {
    root: Json,
}

impl Schema {
    pub fn of_config() -> Self {
        Self {
            root: schemars::schema_for!(Config).to_value(),
        }
    }

    pub fn root(&self) -> &Json {
        &self.root
    }

    /// Follows `$ref`s into `$defs`.
    pub fn resolve<'a>(&'a self, mut schema: &'a Json) -> &'a Json {
        for _ in 0..MAX_REF_DEPTH {
            let target = schema
                .get("$ref")
                .and_then(Json::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| self.root.get("$defs")?.get(name));
            match target {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    pub fn properties<'a>(&'a self, schema: &'a Json) -> Option<&'a serde_json::Map<String, Json>> {
        self.resolve(schema).get("properties")?.as_object()
    }

    /// The schema of the key at `path`, if the schema knows that key.
    pub fn at_path(&self, path: &[String]) -> Option<&Json> {
        path.iter()
            .try_fold(&self.root, |schema, key| self.properties(schema)?.get(key))
    }

    /// True when values of this schema are strings (plain or enumerated).
    pub fn is_string_like(&self, schema: &Json) -> bool {
        let schema = self.resolve(schema);
        if let Some(alternatives) = alternatives(schema) {
            return alternatives.iter().all(|alt| self.is_string_like(alt));
        }
        types(schema).contains(&"string")
    }

    pub fn allows_null(&self, schema: &Json) -> bool {
        let schema = self.resolve(schema);
        match alternatives(schema) {
            Some(alternatives) => alternatives.iter().any(|alt| self.allows_null(alt)),
            None => types(schema).contains(&"null"),
        }
    }

    /// What values of this schema look like, e.g. "an integer", for messages.
    pub fn expected(&self, schema: &Json) -> String {
        let phrase = expected(&types(self.resolve(schema)));
        if phrase.is_empty() {
            "a TOML value".to_owned()
        } else {
            phrase
        }
    }

    /// Checks `node` (at dotted `path`) against `schema`, pushing problems and pruning
    /// invalid descendants. Returns false when `node` itself must be dropped.
    pub fn check(
        &self,
        node: &mut Node,
        schema: &Json,
        path: &str,
        out: &mut Vec<Problem>,
    ) -> bool {
        let schema = self.resolve(schema);
        if let Json::Bool(allowed) = schema {
            return *allowed;
        }
        if let Some(alternatives) = alternatives(schema) {
            return self.check_alternatives(node, alternatives, path, out);
        }
        let types = types(schema);
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, node)) {
            let message = format!("Expected {}, found {}", expected(&types), node.kind());
            out.push(problem(path, node, message));
            return false;
        }
        if let Some(allowed) = schema.get("enum").and_then(Json::as_array) {
            return check_allowed(node, allowed.iter().collect(), path, out);
        }
        if let Some(constant) = schema.get("const") {
            return check_allowed(node, vec![constant], path, out);
        }
        match &mut node.value {
            Value::Integer(value) => {
                let value = *value;
                check_integer(value, schema, path, node, out)
            }
            Value::Table(_) => self.check_table(node, schema, path, out),
            Value::Array(items) => {
                let Some(item_schema) = schema.get("items") else {
                    return true;
                };
                let mut valid = true;
                for (i, item) in items.iter_mut().enumerate() {
                    valid &= self.check(item, item_schema, &format!("{path}[{i}]"), out);
                }
                check_unique_keys(items, self.resolve(item_schema), path, out);
                valid
            }
            _ => true,
        }
    }

    /// Checks a table's keys; returns false when a required key is missing, so that the
    /// incomplete table is dropped instead of failing deserialisation a second time.
    fn check_table(
        &self,
        node: &mut Node,
        schema: &Json,
        path: &str,
        out: &mut Vec<Problem>,
    ) -> bool {
        let origin = node.origin.clone();
        let Value::Table(map) = &mut node.value else {
            return true;
        };
        let properties = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let child_path = join(path, &key);
            let child_schema = properties
                .and_then(|p| p.get(&key))
                .or(additional.filter(|a| a.is_object()));
            let keep = match (child_schema, map.get_mut(&key)) {
                (_, None) => continue,
                (Some(child_schema), Some(child)) => {
                    self.check(child, child_schema, &child_path, out)
                }
                (None, Some(child)) if additional == Some(&Json::Bool(false)) => {
                    let message = unknown_key_message(&key, properties);
                    out.push(problem(&child_path, child, message));
                    false
                }
                (None, Some(_)) => true,
            };
            if !keep {
                map.remove(&key);
            }
        }
        let mut complete = true;
        for required in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            if !map.contains_key(required) {
                let key = join(path, required);
                out.push(Problem::new(key, origin.clone(), "Missing required key"));
                complete = false;
            }
        }
        complete
    }

    fn check_alternatives(
        &self,
        node: &mut Node,
        alternatives: &[Json],
        path: &str,
        out: &mut Vec<Problem>,
    ) -> bool {
        for alternative in alternatives {
            let mut trial = node.clone();
            let mut scratch = Vec::new();
            if self.check(&mut trial, alternative, path, &mut scratch) && scratch.is_empty() {
                *node = trial;
                return true;
            }
        }
        let constants: Option<Vec<&Json>> = alternatives
            .iter()
            .map(|alt| self.resolve(alt).get("const"))
            .collect();
        match constants {
            Some(allowed) => check_allowed(node, allowed, path, out),
            None => {
                out.push(problem(path, node, "Does not match any allowed form"));
                false
            }
        }
    }
}

/// Items of an array of tables whose schema lists `x-unique-keys` must not share a
/// value of those keys (compared without regard to case; for a key holding a list of
/// strings, no string may appear in two items). Reported at the later item.
fn check_unique_keys(items: &[Node], item_schema: &Json, path: &str, out: &mut Vec<Problem>) {
    let keys = item_schema
        .get(UNIQUE_KEYS)
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str);
    for key in keys {
        let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let Value::Table(map) = &item.value else {
                continue;
            };
            let key_path = join(&format!("{path}[{i}]"), key);
            // (path of the value, the value's node, the string)
            let values: Vec<(String, &Node, &str)> = match map.get(key) {
                Some(
                    node @ Node {
                        value: Value::String(s),
                        ..
                    },
                ) => vec![(key_path, node, s)],
                Some(Node {
                    value: Value::Array(list),
                    ..
                }) => list
                    .iter()
                    .enumerate()
                    .filter_map(|(j, node)| match &node.value {
                        Value::String(s) => Some((format!("{key_path}[{j}]"), node, s.as_str())),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut seen_here = BTreeSet::new();
            for (value_path, node, value) in values {
                let folded = value.to_lowercase();
                if !seen_here.insert(folded.clone()) {
                    continue;
                }
                match first_seen.get(&folded) {
                    Some(first) => {
                        let message = format!("{value:?} is already used by {path}[{first}]");
                        out.push(problem(&value_path, node, message));
                    }
                    None => {
                        first_seen.insert(folded, i);
                    }
                }
            }
        }
    }
}

fn alternatives(schema: &Json) -> Option<&[Json]> {
    schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Json::as_array)
        .map(Vec::as_slice)
}

fn types(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn type_matches(schema_type: &str, node: &Node) -> bool {
    matches!(
        (schema_type, &node.value),
        ("string", Value::String(_))
            | ("integer" | "number", Value::Integer(_))
            | ("number", Value::Float(_))
            | ("boolean", Value::Boolean(_))
            | ("object", Value::Table(_))
            | ("array", Value::Array(_))
    )
}

/// "a string or an integer"; `null` is left out because TOML cannot express it.
fn expected(types: &[&str]) -> String {
    let phrases: Vec<&str> = types
        .iter()
        .filter_map(|t| match *t {
            "string" => Some("a string"),
            "integer" => Some("an integer"),
            "number" => Some("a number"),
            "boolean" => Some("a boolean"),
            "object" => Some("a table"),
            "array" => Some("an array"),
            _ => None,
        })
        .collect();
    phrases.join(" or ")
}

fn check_allowed(node: &Node, allowed: Vec<&Json>, path: &str, out: &mut Vec<Problem>) -> bool {
    let value = node.to_json();
    if allowed.contains(&&value) {
        return true;
    }
    let list = allowed
        .iter()
        .map(|v| match v {
            Json::String(s) => format!("`{s}`"),
            other => format!("`{other}`"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let message = match &node.value {
        Value::String(s) => format!("Unknown value {s:?} (expected one of {list})"),
        _ => format!("Expected one of {list}, found {}", node.kind()),
    };
    out.push(problem(path, node, message));
    false
}

fn check_integer(
    value: i64,
    schema: &Json,
    path: &str,
    node: &Node,
    out: &mut Vec<Problem>,
) -> bool {
    let (format_min, format_max) = schema
        .get("format")
        .and_then(Json::as_str)
        .and_then(format_bounds)
        .unwrap_or((i128::from(i64::MIN), i128::from(i64::MAX)));
    let bound = |key: &str| schema.get(key).and_then(json_i128);
    let min = bound("minimum").map_or(format_min, |m| m.max(format_min));
    let max = bound("maximum").map_or(format_max, |m| m.min(format_max));
    if (min..=max).contains(&i128::from(value)) {
        return true;
    }
    out.push(problem(
        path,
        node,
        range_message(i128::from(value), min, max),
    ));
    false
}

fn json_i128(value: &Json) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
}

fn format_bounds(format: &str) -> Option<(i128, i128)> {
    let bounds = match format {
        "uint8" => (0, i128::from(u8::MAX)),
        "uint16" => (0, i128::from(u16::MAX)),
        "uint32" | "uint" => (0, i128::from(u32::MAX)),
        "uint64" => (0, i128::from(u64::MAX)),
        "int8" => (i128::from(i8::MIN), i128::from(i8::MAX)),
        "int16" => (i128::from(i16::MIN), i128::from(i16::MAX)),
        "int32" | "int" => (i128::from(i32::MIN), i128::from(i32::MAX)),
        _ => return None,
    };
    Some(bounds)
}

fn problem(path: &str, node: &Node, message: impl Into<String>) -> Problem {
    Problem::new(path, node.origin.clone(), message)
}

fn unknown_key_message(key: &str, known: Option<&serde_json::Map<String, Json>>) -> String {
    let suggestion = known
        .into_iter()
        .flat_map(|m| m.keys())
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    match suggestion {
        Some((_, candidate)) => format!("Unknown key (did you mean `{candidate}`?)"),
        None => "Unknown key".to_owned(),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            let insert = current[j] + 1;
            let delete = previous[j + 1] + 1;
            current.push(substitute.min(insert).min(delete));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("lsten", "listen"), 1);
        assert_eq!(edit_distance("listne", "listen"), 2);
        assert_eq!(edit_distance("", "log"), 3);
    }

    #[test]
    fn unknown_key_suggests_only_close_keys() {
        let schema = Schema::of_config();
        let server = schema.at_path(&["server".into()]).unwrap();
        let props = schema.properties(server);
        assert_eq!(
            unknown_key_message("lisen", props),
            "Unknown key (did you mean `listen`?)"
        );
        assert_eq!(unknown_key_message("colour", props), "Unknown key");
    }

    #[test]
    fn schema_knows_string_like_and_nullable_keys() {
        let schema = Schema::of_config();
        let at = |path: &[&str]| {
            let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
            schema.at_path(&path).unwrap()
        };
        assert!(schema.is_string_like(at(&["log", "format"])));
        assert!(schema.is_string_like(at(&["server", "tls_cert_file"])));
        assert!(!schema.is_string_like(at(&["server", "max_connections"])));
        assert!(schema.allows_null(at(&["server", "public_url"])));
        assert!(!schema.allows_null(at(&["server", "listen"])));
        assert!(schema.at_path(&["server".into(), "nope".into()]).is_none());
    }
}
