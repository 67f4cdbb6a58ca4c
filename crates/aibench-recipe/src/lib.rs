//! The recipe stage of aibench: YAML text in, a validated [`Recipe`] and its trials out.
//!
//! ```text
//! bytes -> yaml::parse (positions, duplicates, limits) -> check (JSON Schema from the types,
//!       every error at once, ${VAR} expansion) -> serde (typed Recipe) -> validate (semantics)
//!       -> sweep::expand (trials)
//! ```
//!
//! Every problem is a [`Diagnostic`] with file:line:col, the key path and a suggested fix. No input
//! makes the loader panic: a fuzz-style property test feeds it arbitrary bytes and mutated recipes.

pub mod check;
pub mod diagnostic;
pub mod interpolate;
pub mod kinds;
pub mod locate;
pub mod model;
mod partial;
pub mod reference;
pub mod sweep;
pub mod trace;
/// Quantities with units (durations, sizes, rates, percentages), shared with the results.
pub use aibench_results::units;
pub mod validate;
pub mod yaml;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics, Pos, Severity, Source};
pub use interpolate::{Env, ProcessEnv, Secret, Template};
pub use model::*;
pub use sweep::Trial;
pub use units::{Duration, Percent, Rate, Size, SlurmTime};

/// Recipes larger than this are refused before parsing.
pub const MAX_RECIPE_BYTES: usize = 1 << 20;

/// The `$id` of the recipe schema, as editors see it.
pub const SCHEMA_ID: &str = "https://aibench.dev/schema/recipe.schema.json";

/// A recipe that passed every check, with what it was made from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub recipe: Recipe,
    pub source: Source,
    /// The recipe as JSON after `${VAR}` expansion (secrets keep their references).
    pub json: serde_json::Value,
    /// The trials the sweep expands into (one when there is no sweep).
    pub trials: Vec<Trial>,
    /// Problems that do not stop the recipe from running.
    pub warnings: Diagnostics,
}

/// A recipe that could not be loaded: every problem found, and the text they point into.
#[derive(Clone, Debug)]
pub struct LoadError {
    pub source: Source,
    pub diagnostics: Diagnostics,
}

impl LoadError {
    pub fn render(&self, color: bool) -> String {
        self.diagnostics.render(&self.source, color)
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for LoadError {}

/// The recipe JSON Schema (draft 2020-12), generated from [`Recipe`].
pub fn schema() -> serde_json::Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let generator = settings.into_generator();
    let schema = generator.into_root_schema_for::<Recipe>();
    let mut value = serde_json::to_value(schema).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("$id".into(), SCHEMA_ID.into());
        obj.insert("title".into(), "aibench recipe".into());
    }
    value
}

/// The schema as the pretty JSON that `aibench schema` prints and `schema/recipe.schema.json` holds.
pub fn schema_string() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}

/// Load a recipe file, reading variables from the process environment.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => load_bytes(&name, &bytes, &ProcessEnv),
        Err(e) => Err(LoadError {
            source: Source::new(name, ""),
            diagnostics: {
                let mut d = Diagnostics::default();
                d.push(Diagnostic::error(
                    Pos::START,
                    "",
                    format!("cannot read the recipe: {e}"),
                ));
                d
            },
        }),
    }
}

/// Load a recipe from raw bytes.
pub fn load_bytes(name: &str, bytes: &[u8], env: &dyn Env) -> Result<Loaded, LoadError> {
    let fail = |text: String, d: Diagnostic| {
        let mut diagnostics = Diagnostics::default();
        diagnostics.push(d);
        Err(LoadError {
            source: Source::new(name, text),
            diagnostics,
        })
    };
    if bytes.len() > MAX_RECIPE_BYTES {
        return fail(
            String::new(),
            Diagnostic::error(
                Pos::START,
                "",
                format!(
                    "the file is {:.1} MiB; recipes are limited to {} KiB",
                    bytes.len() as f64 / (1 << 20) as f64,
                    MAX_RECIPE_BYTES >> 10
                ),
            )
            .with_help(
                "is this the right file? Large inputs such as prompts belong in a dataset file",
            ),
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(name, text, env),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let text = String::from_utf8_lossy(bytes).into_owned();
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            fail(
                text,
                Diagnostic::error(
                    Pos { line, col },
                    "",
                    format!(
                        "the file is not UTF-8 text (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                )
                .with_help("a recipe is a YAML text file; is this the right file?"),
            )
        }
    }
}

/// Load a recipe from text.
pub fn load_str(name: &str, text: &str, env: &dyn Env) -> Result<Loaded, LoadError> {
    let source = Source::new(name, text);
    let err = |mut diagnostics: Diagnostics| {
        diagnostics.sort();
        LoadError {
            source: source.clone(),
            diagnostics,
        }
    };
    let tree = yaml::parse(text).map_err(err)?;
    if tree.as_map().is_none() {
        let mut d = Diagnostics::default();
        d.push(
            Diagnostic::error(
                tree.pos,
                "",
                format!("a recipe is a mapping of keys, found {}", tree.type_name()),
            )
            .with_help("start with `name: my-experiment`; `aibench schema` lists every key"),
        );
        return Err(err(d));
    }
    let schema = schema();
    let mut checker = check::Checker::new(&schema, env);
    let json = checker.check(&tree, &schema, "");
    let mut diags = checker.diags;
    let base_dir = Path::new(name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let Some(json) = json.filter(|_| !diags.has_errors()) else {
        // Every problem at once: the parts that did check still get their semantic checks,
        // so a type error in one workload does not hide a dangling target in another.
        diags.extend(partial::validate(&tree, &schema, env, &base_dir));
        return Err(err(diags));
    };
    let recipe: Recipe = match serde_path_to_error::deserialize(&json) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let pos = locate::pos_of_dotted(&tree, &path).unwrap_or(Pos::START);
            diags.push(Diagnostic::error(pos, path, e.inner().to_string()));
            return Err(err(diags));
        }
    };
    diags.extend(validate::validate(&recipe, &tree, &base_dir));
    let trials = sweep::expand(&recipe, &json, &tree, &schema, env, &mut diags);
    let trials = sweep::repeat(trials, recipe.repeat, &tree, &mut diags);
    diags.extend(validate::shared_jobs(&recipe, &trials, &tree));
    if diags.has_errors() {
        return Err(err(diags));
    }
    diags.sort();
    Ok(Loaded {
        recipe,
        source,
        json,
        trials,
        warnings: diags,
    })
}
