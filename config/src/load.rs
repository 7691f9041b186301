//! Loading: parse the file, layer environment and CLI over it, check, deserialise, validate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::check::Schema;
use crate::layer::{cli_layer, env_layer};
use crate::tree::{Node, parse_file};
use crate::{Config, DEFAULT_TOML, Origin, Problem, Problems};

/// Where the configuration file comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The built-in `DEFAULT_TOML`, for running without a file.
    Embedded,
    /// A `kopa.toml` on disk.
    File(&'a Path),
}

/// Command-line flags that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--listen`
    pub listen: Option<String>,
}

/// Where each key of a loaded configuration came from, by dotted path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, Origin>);

impl Origins {
    /// The layer that set `key`, or `Origin::Default` when no layer did.
    pub fn of(&self, key: &str) -> Origin {
        self.0.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Replaces the `Origin::Default` of problems from `Config::validate` or
    /// `Config::check_files` with the layer that actually set the key.
    pub fn attribute(&self, problems: Vec<Problem>) -> Vec<Problem> {
        problems
            .into_iter()
            .map(|mut problem| {
                if problem.origin == Origin::Default {
                    problem.origin = self.of(&problem.key);
                }
                problem
            })
            .collect()
    }
}

/// Label of the embedded defaults in problems.
const EMBEDDED_NAME: &str = "default.toml (built-in)";

/// Loads the configuration: parse the source, apply `KOPA__...` environment variables,
/// apply CLI overrides, check against the schema, deserialise and `validate()`.
/// Every problem found along the way is returned at once.
pub fn load(
    source: Source<'_>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, Problems> {
    load_with_origins(source, env, overrides).map(|(config, _)| config)
}

/// Like [`load`], from text already read; `origin_name` labels its problems.
pub fn load_str(
    text: &str,
    origin_name: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, Problems> {
    load_text(text, origin_name, env, overrides).map(|(config, _)| config)
}

/// Like [`load`], also returning where each key came from, so that the problems of a
/// later `check_files()` can be attributed with [`Origins::attribute`].
pub fn load_with_origins(
    source: Source<'_>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<(Config, Origins), Problems> {
    match source {
        Source::Embedded => load_text(DEFAULT_TOML, EMBEDDED_NAME, env, overrides),
        Source::File(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                let message = format!("Cannot read configuration file: {}", e.kind());
                Problems(vec![Problem::new("", Origin::file(&name, None), message)])
            })?;
            load_text(&text, &name, env, overrides)
        }
    }
}

fn load_text(
    text: &str,
    name: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<(Config, Origins), Problems> {
    let schema = Schema::of_config();
    let mut problems = Vec::new();
    let (mut tree, parsed) = match parse_file(text, name) {
        Ok(tree) => (tree, true),
        Err(problem) => {
            problems.push(problem);
            (Node::empty_table(Origin::file(name, None)), false)
        }
    };
    let mut env = env_layer(&schema, env, &mut problems);
    let mut cli = cli_layer(overrides, &mut problems);
    for layer in [&mut tree, &mut env.tree, &mut cli] {
        schema.check(layer, schema.root(), "", &mut problems);
    }
    for path in &env.unset {
        tree.remove(path);
    }
    tree.merge(env.tree);
    tree.merge(cli);

    let mut origins = BTreeMap::new();
    tree.collect_origins("", &mut origins);
    let origins = Origins(origins);
    let config = match serde_json::from_value::<Config>(tree.to_json()) {
        Ok(config) => Some(config),
        Err(e) => {
            let message = format!("Cannot read configuration: {e}");
            problems.push(Problem::new("", Origin::file(name, None), message));
            None
        }
    };
    // Semantic checks on a file that did not parse would judge defaults, not the file.
    if let Some(config) = config.as_ref().filter(|_| parsed) {
        let reported: BTreeSet<String> = problems.iter().map(|p| p.key.clone()).collect();
        let semantic = origins.attribute(config.validate());
        problems.extend(semantic.into_iter().filter(|p| !reported.contains(&p.key)));
    }
    match config {
        Some(config) if problems.is_empty() => Ok((config, origins)),
        _ => {
            problems.sort_by_key(|p| p.origin.rank());
            Err(Problems(problems))
        }
    }
}
