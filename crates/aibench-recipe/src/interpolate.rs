//! `${VAR}` and `${VAR:-default}` from the environment; `$$` for a literal `$`.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where variables come from: the process environment, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A problem with one `${...}` reference; `offset` counts characters into the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpolationError {
    pub offset: usize,
    pub width: usize,
    pub message: String,
    pub help: String,
}

/// Expand every reference in `text`. Returns every problem, not only the first.
pub fn expand(text: &str, env: &dyn Env) -> Result<String, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                errors.push(InterpolationError {
                    offset: i,
                    width: chars.len() - i,
                    message: "unclosed `${`".into(),
                    help: "write `${NAME}` or `${NAME:-default}`; `$$` is a literal `$`".into(),
                });
                break;
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let width = close + 3;
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner.as_str(), None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                errors.push(InterpolationError {
                    offset: i,
                    width,
                    message: format!("invalid variable name `{name}`"),
                    help: "variable names are letters, digits and `_`, e.g. `${HF_TOKEN}`".into(),
                });
            } else {
                match (env.var(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => errors.push(InterpolationError {
                        offset: i,
                        width,
                        message: format!("environment variable `{name}` is not set"),
                        help: format!("export {name}=..., or give a default: `${{{name}:-value}}`"),
                    }),
                }
            }
            i += width;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Variables that aibench sets for a service when it starts; templates may use them although the
/// environment of `aibench validate` does not have them.
pub const RUNTIME_VARS: [&str; 8] = [
    "AIBENCH_EXE",
    "PORT",
    "HOST",
    "AIBENCH_SERVICE",
    "AIBENCH_RUN_DIR",
    "AIBENCH_DATA_DIR",
    "AIBENCH_NODE_RANK",
    "AIBENCH_HEAD_ADDRESS",
];

/// The environment plus placeholders for [`RUNTIME_VARS`], for checking templates early.
pub struct WithRuntimeVars<'a>(pub &'a dyn Env);

impl Env for WithRuntimeVars<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name).or_else(|| {
            (RUNTIME_VARS.contains(&name) || name.starts_with("AIBENCH_PORT_")).then(String::new)
        })
    }
}

/// True if the text holds at least one `${...}` reference.
pub fn has_reference(text: &str) -> bool {
    text.replace("$$", "").contains("${")
}

/// A value that carries a secret (API key, token, password).
///
/// It keeps the text as written — normally a reference such as `${HF_TOKEN}` — and expands it only
/// when used, so the secret itself never reaches `resolved.yaml`, results or logs. A secret
/// written out literally in a recipe is printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    raw: String,
}

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Secret { raw: raw.into() }
    }

    /// The secret's value, expanded from the environment now.
    pub fn expose(&self, env: &dyn Env) -> Result<String, String> {
        expand(&self.raw, env).map_err(|e| {
            e.into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// True if the recipe holds only references, not the secret itself.
    pub fn is_reference(&self) -> bool {
        has_reference(&self.raw)
    }

    /// What may be shown: the reference as written, or `<redacted>`.
    pub fn display(&self) -> &str {
        if self.is_reference() {
            &self.raw
        } else {
            "<redacted>"
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.display())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.display())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Secret")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "secret",
            "writeOnly": true,
            "description": "a secret, given by reference to the environment: `${HF_TOKEN}`; never written to results or logs",
        })
    }
}

/// A value kept as written and expanded from the environment when the service or client starts,
/// e.g. an environment variable for a service: `HF_HOME: ${SCRATCH}/hf`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Template(pub String);

impl Template {
    pub fn expand(&self, env: &dyn Env) -> Result<String, String> {
        expand(&self.0, env).map_err(|e| {
            e.into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment values are strings; accept numbers and booleans as their text.
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::String(s) => Ok(Template(s)),
            serde_json::Value::Number(n) => Ok(Template(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Template(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string, found {other}"
            ))),
        }
    }
}

impl JsonSchema for Template {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Template")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "number", "boolean"],
            "format": "template",
            "description": "text expanded from the environment when used: `${VAR}`, `${VAR:-default}`",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_and_defaults() {
        assert_eq!(expand("${HOME}/x", &env).unwrap(), "/home/u/x");
        assert_eq!(expand("${NOPE:-8000}", &env).unwrap(), "8000");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "");
        assert_eq!(expand("cost $$5", &env).unwrap(), "cost $5");
        assert_eq!(expand("no refs", &env).unwrap(), "no refs");
    }

    #[test]
    fn reports_every_missing_variable() {
        let e = expand("${A}-${HOME}-${B}", &env).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("`A`"));
        assert_eq!(e[1].offset, 13);
        assert!(expand("${oops", &env).is_err());
        assert!(expand("${1BAD}", &env).is_err());
    }

    #[test]
    fn secrets_never_print_their_value() {
        let s = Secret::new("${HOME}");
        assert_eq!(s.expose(&env).unwrap(), "/home/u");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"${HOME}\"");
        let literal = Secret::new("sk-123");
        assert_eq!(serde_json::to_string(&literal).unwrap(), "\"<redacted>\"");
        assert!(!format!("{literal:?}").contains("sk-123"));
    }
}
