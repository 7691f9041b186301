//! A TOML value tree in which every node remembers the layer (and line) it came from.
//!
//! Each layer (file, environment, CLI) becomes one such tree; the trees are checked
//! against the schema separately and then merged, later layers winning.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use toml_edit::{Item, Key, Table};

use crate::{Origin, Problem};

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(BTreeMap<String, Node>),
}

impl Node {
    pub fn new(value: Value, origin: Origin) -> Self {
        Self { value, origin }
    }

    pub fn empty_table(origin: Origin) -> Self {
        Self::new(Value::Table(BTreeMap::new()), origin)
    }

    /// The kind of value, with its article, for messages such as "found a string".
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    pub fn to_json(&self) -> Json {
        match &self.value {
            Value::String(s) | Value::Datetime(s) => Json::String(s.clone()),
            Value::Integer(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Array(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Table(map) => Json::Object(
                map.iter()
                    .map(|(k, node)| (k.clone(), node.to_json()))
                    .collect(),
            ),
        }
    }

    /// Records the origin of every key below this node under its dotted path.
    pub fn collect_origins(&self, path: &str, out: &mut BTreeMap<String, Origin>) {
        match &self.value {
            Value::Table(map) => {
                for (key, child) in map {
                    let child_path = join(path, key);
                    out.insert(child_path.clone(), child.origin.clone());
                    child.collect_origins(&child_path, out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let child_path = format!("{path}[{i}]");
                    out.insert(child_path.clone(), child.origin.clone());
                    child.collect_origins(&child_path, out);
                }
            }
            _ => {}
        }
    }

    /// Layers `upper` over `self`: tables merge key by key, anything else is replaced.
    pub fn merge(&mut self, upper: Node) {
        match (&mut self.value, upper.value) {
            (Value::Table(lower), Value::Table(upper)) => {
                for (key, node) in upper {
                    match lower.get_mut(&key) {
                        Some(existing) => existing.merge(node),
                        None => {
                            lower.insert(key, node);
                        }
                    }
                }
            }
            (_, value) => *self = Node::new(value, upper.origin),
        }
    }

    /// Sets `leaf` at `path`, creating (or replacing non-table) intermediate nodes as
    /// tables with the leaf's origin.
    pub fn insert(&mut self, path: &[String], leaf: Node) {
        let Some((first, rest)) = path.split_first() else {
            self.merge(leaf);
            return;
        };
        if !matches!(self.value, Value::Table(_)) {
            *self = Node::empty_table(leaf.origin.clone());
        }
        if let Value::Table(map) = &mut self.value {
            map.entry(first.clone())
                .or_insert_with(|| Node::empty_table(leaf.origin.clone()))
                .insert(rest, leaf);
        }
    }

    pub fn remove(&mut self, path: &[String]) {
        let Value::Table(map) = &mut self.value else {
            return;
        };
        match path {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(first) {
                    child.remove(rest);
                }
            }
        }
    }
}

/// Appends `key` to a dotted path, quoting keys that are not plain words so that a
/// hostile key cannot forge a path or break a one-line message.
pub(crate) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// Parses TOML text into a tree whose nodes carry `File` origins with line numbers.
pub(crate) fn parse_file(text: &str, name: &str) -> Result<Node, Problem> {
    let lines = LineIndex::new(text);
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let line = e.span().map(|span| lines.line_of(span.start));
        let message = capitalise(&e.message().trim().replace('\n', " "));
        Problem::new(
            "",
            Origin::file(name, line),
            format!("Invalid TOML: {message}"),
        )
    })?;
    let file = FileTree { name, lines };
    Ok(file.table(doc.as_table(), file.origin(None)))
}

struct FileTree<'a> {
    name: &'a str,
    lines: LineIndex,
}

impl FileTree<'_> {
    fn origin(&self, offset: Option<usize>) -> Origin {
        Origin::file(self.name, offset.map(|o| self.lines.line_of(o)))
    }

    fn key_origin(&self, key: Option<&Key>, fallback: Option<Span>) -> Origin {
        self.origin(key.and_then(Key::span).or(fallback).map(|s| s.start))
    }

    fn table(&self, table: &Table, origin: Origin) -> Node {
        let map = table
            .iter()
            .filter_map(|(key, item)| {
                let origin = self.key_origin(table.key(key), item.span());
                Some((key.to_owned(), self.item(item, origin)?))
            })
            .collect();
        Node::new(Value::Table(map), origin)
    }

    fn item(&self, item: &Item, origin: Origin) -> Option<Node> {
        match item {
            Item::None => None,
            Item::Value(value) => Some(self.value(value, origin)),
            Item::Table(table) => Some(self.table(table, origin)),
            Item::ArrayOfTables(tables) => {
                let items = tables
                    .iter()
                    .map(|t| self.table(t, self.origin(t.span().map(|s| s.start))))
                    .collect();
                Some(Node::new(Value::Array(items), origin))
            }
        }
    }

    fn value(&self, value: &toml_edit::Value, origin: Origin) -> Node {
        convert(value, origin, &|key, span| self.key_origin(key, span))
    }
}

/// Converts a TOML value parsed from an environment variable; its origin is that variable.
pub(crate) fn from_toml_value(value: &toml_edit::Value, origin: &Origin) -> Node {
    convert(value, origin.clone(), &|_, _| origin.clone())
}

type Span = std::ops::Range<usize>;

fn convert(
    value: &toml_edit::Value,
    origin: Origin,
    child_origin: &dyn Fn(Option<&Key>, Option<Span>) -> Origin,
) -> Node {
    use toml_edit::Value as T;
    let value = match value {
        T::String(s) => Value::String(s.value().clone()),
        T::Integer(i) => Value::Integer(*i.value()),
        T::Float(f) => Value::Float(*f.value()),
        T::Boolean(b) => Value::Boolean(*b.value()),
        T::Datetime(d) => Value::Datetime(d.value().to_string()),
        T::Array(array) => Value::Array(
            array
                .iter()
                .map(|v| convert(v, child_origin(None, v.span()), child_origin))
                .collect(),
        ),
        T::InlineTable(table) => Value::Table(
            table
                .iter()
                .map(|(key, v)| {
                    let origin = child_origin(table.key(key), v.span());
                    (key.to_owned(), convert(v, origin, child_origin))
                })
                .collect(),
        ),
    };
    Node::new(value, origin)
}

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Syntax error".to_owned(),
    }
}

/// Byte offset to 1-based line number.
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Self { newlines }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }
}
