//! Checks the YAML tree against the recipe's JSON Schema and reports every problem at once.
//!
//! The schema is the one `aibench schema` prints, generated from the Rust types, so the check
//! and the types cannot disagree. Walking the tree ourselves (rather than stopping at serde's
//! first error) lets us report every problem with its position, explain unit syntax, and suggest
//! the key or value that was probably meant. Along the way `${VAR}` references are expanded
//! (except in secrets and templates, which keep their references) and the tree becomes JSON for
//! the typed model.

use serde_json::{Map, Value as J};

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics, Pos};
use crate::interpolate::{expand, has_reference, Env};
use crate::units::{Duration, Percent, Rate, Size, SlurmTime};
use crate::yaml::{resolve_plain, Node, Value};

pub struct Checker<'a> {
    root: &'a J,
    env: &'a dyn Env,
    pub diags: Diagnostics,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a J, env: &'a dyn Env) -> Self {
        Checker {
            root,
            env,
            diags: Diagnostics::default(),
        }
    }

    fn error(
        &mut self,
        node_pos: Pos,
        width: usize,
        path: &str,
        msg: String,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::error(node_pos, path, msg).with_width(width);
        d.help = help;
        self.diags.push(d);
    }

    /// Follow `$ref`s to the schema that says something.
    pub fn resolve<'s>(&'s self, mut schema: &'s J) -> &'s J {
        for _ in 0..32 {
            match schema.get("$ref").and_then(J::as_str) {
                Some(r) => {
                    let name = r.rsplit('/').next().unwrap_or("");
                    match self.root.get("$defs").and_then(|d| d.get(name)) {
                        Some(s) => schema = s,
                        None => return &J::Bool(true),
                    }
                }
                None => return schema,
            }
        }
        schema
    }

    /// Expand `${VAR}` in a string scalar; a plain scalar is re-typed afterwards, so
    /// `port: ${PORT:-8000}` is an integer.
    fn interpolate(&mut self, node: &Node, path: &str) -> Option<Node> {
        let Value::Str { text, plain } = &node.value else {
            return Some(node.clone());
        };
        if !has_reference(text) && !text.contains("$$") {
            return Some(node.clone());
        }
        match expand(text, self.env) {
            Ok(expanded) => {
                let value = if *plain {
                    resolve_plain(&expanded)
                } else {
                    Value::Str {
                        text: expanded,
                        plain: false,
                    }
                };
                Some(Node {
                    value,
                    pos: node.pos,
                    width: node.width,
                })
            }
            Err(errors) => {
                self.report_interpolation(node, path, errors);
                None
            }
        }
    }

    fn report_interpolation(
        &mut self,
        node: &Node,
        path: &str,
        errors: Vec<crate::interpolate::InterpolationError>,
    ) {
        let quoted = matches!(node.value, Value::Str { plain: false, .. });
        for e in errors {
            let pos = Pos {
                line: node.pos.line,
                col: node.pos.col + e.offset + usize::from(quoted),
            };
            self.error(pos, e.width, path, e.message, Some(e.help));
        }
    }

    /// Check `node` against `schema`; return its JSON form, or `None` after reporting problems.
    pub fn check(&mut self, node: &Node, schema: &J, path: &str) -> Option<J> {
        let schema = self.resolve(schema).clone();
        if schema == J::Bool(true) || schema.as_object().is_some_and(|o| o.is_empty()) {
            return Some(self.any(node, path));
        }
        let format = schema.get("format").and_then(J::as_str).unwrap_or("");
        if matches!(format, "secret" | "template") {
            return self.deferred(node, path, format);
        }
        if let Some(branches) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(J::as_array)
        {
            return self.choice(node, branches, path);
        }
        let node = &self.interpolate(node, path)?;
        if let Some(values) = schema.get("enum").and_then(J::as_array) {
            let names: Vec<String> = values
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            return self.one_of_names(node, &names, path, "value");
        }
        if let Some(c) = schema.get("const").and_then(J::as_str) {
            return self.one_of_names(node, &[c.to_string()], path, "value");
        }
        if let Some(unit) = Unit::from_format(format) {
            return self.unit(node, unit, path);
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(J::String(t)) => vec![t.as_str()],
            Some(J::Array(ts)) => ts.iter().filter_map(J::as_str).collect(),
            _ => return Some(self.any(node, path)),
        };
        if matches!(node.value, Value::Null) && types.contains(&"null") {
            return Some(J::Null);
        }
        match &node.value {
            Value::Map(_) if types.contains(&"object") => self.object(node, &schema, path),
            Value::Seq(items) if types.contains(&"array") => {
                let item_schema = schema.get("items").cloned().unwrap_or(J::Bool(true));
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.check(item, &item_schema, &format!("{path}[{i}]")) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if let Some(min) = schema.get("minItems").and_then(J::as_u64) {
                    if (items.len() as u64) < min {
                        self.error(
                            node.pos,
                            1,
                            path,
                            format!("needs at least {min} item(s)"),
                            None,
                        );
                        ok = false;
                    }
                }
                ok.then_some(J::Array(out))
            }
            Value::Int(i) if types.contains(&"integer") || types.contains(&"number") => self
                .bounds(node, *i as f64, &schema, path)
                .then(|| J::from(*i)),
            Value::Float(f) if types.contains(&"integer") && f.fract() == 0.0 && f.is_finite() => {
                self.bounds(node, *f, &schema, path)
                    .then(|| J::from(*f as i64))
            }
            Value::Float(f) if types.contains(&"number") => {
                if !f.is_finite() {
                    self.error(
                        node.pos,
                        node.width,
                        path,
                        format!("expected a finite number, found `{f}`"),
                        None,
                    );
                    return None;
                }
                self.bounds(node, *f, &schema, path).then(|| J::from(*f))
            }
            Value::Bool(b) if types.contains(&"boolean") => Some(J::Bool(*b)),
            Value::Str { text, .. } if types.contains(&"string") => Some(J::String(text.clone())),
            // Numbers where text is expected (a model called `7`, a version `15`) are taken as text.
            Value::Int(_) | Value::Float(_) if types.contains(&"string") => {
                node.scalar_text().map(J::String)
            }
            // An integer too large for 64 bits stays text (see `yaml`): quote it as written.
            Value::Str { text, plain: true }
                if types.contains(&"integer") && crate::yaml::is_integer_text(text) =>
            {
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("`{text}` is out of range for an integer"),
                    None,
                );
                None
            }
            _ => {
                let expected = types
                    .iter()
                    .filter(|t| **t != "null")
                    .map(|t| match *t {
                        "object" => "a mapping",
                        "array" => "a list",
                        "integer" => "an integer",
                        "number" => "a number",
                        "boolean" => "`true` or `false`",
                        "string" => "a string",
                        _ => "a value",
                    })
                    .collect::<Vec<_>>()
                    .join(" or ");
                let found = match node.scalar_text() {
                    Some(t) if !matches!(node.value, Value::Null) => {
                        format!("{} `{t}`", node.type_name())
                    }
                    _ => node.type_name().to_string(),
                };
                let help = match (types.first(), &node.value) {
                    (Some(&"array"), Value::Str { text, .. }) => {
                        Some(format!("write a list: `[{text}]`"))
                    }
                    (Some(&"boolean"), Value::Str { text, .. })
                        if matches!(text.as_str(), "yes" | "no" | "on" | "off") =>
                    {
                        Some("YAML 1.2 booleans are `true` and `false`".into())
                    }
                    _ => None,
                };
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("expected {expected}, found {found}"),
                    help,
                );
                None
            }
        }
    }

    fn bounds(&mut self, node: &Node, v: f64, schema: &J, path: &str) -> bool {
        if let Some(min) = schema.get("minimum").and_then(J::as_f64) {
            if v < min {
                let msg = if min == 0.0 {
                    "must not be negative".to_string()
                } else {
                    format!("must be at least {min}")
                };
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("{msg}, found {v}"),
                    None,
                );
                return false;
            }
        }
        if let Some(max) = schema.get("maximum").and_then(J::as_f64) {
            if v > max {
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("must be at most {max}, found {v}"),
                    None,
                );
                return false;
            }
        }
        // The integer type's own range (schemars says `format: uint32` rather than a maximum).
        let range = match schema.get("format").and_then(J::as_str) {
            Some("uint8") => Some((0.0, f64::from(u8::MAX))),
            Some("uint16") => Some((0.0, f64::from(u16::MAX))),
            Some("uint32") | Some("uint") => Some((0.0, f64::from(u32::MAX))),
            Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            Some("uint64") => Some((0.0, 2f64.powi(53))),
            Some("int64") | Some("int") => Some((-(2f64.powi(53)), 2f64.powi(53))),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            if v < lo || v > hi {
                let shown = node.scalar_text().unwrap_or_default();
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("`{shown}` is out of range: from {lo} to {hi}"),
                    None,
                );
                return false;
            }
        }
        true
    }

    /// Any value: expand references in every string, keep the rest.
    fn any(&mut self, node: &Node, path: &str) -> J {
        let Some(node) = self.interpolate(node, path) else {
            return J::Null;
        };
        match &node.value {
            Value::Seq(items) => J::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.any(n, &format!("{path}[{i}]")))
                    .collect(),
            ),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), self.any(v, &join(path, &k.name))))
                    .collect(),
            ),
            _ => node.to_json(),
        }
    }

    /// Secrets and templates keep their `${...}` references; only check that they resolve.
    fn deferred(&mut self, node: &Node, path: &str, format: &str) -> Option<J> {
        let text = match &node.value {
            Value::Str { text, .. } => text.clone(),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) if format == "template" => {
                node.scalar_text()?
            }
            _ => {
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("expected a string, found {}", node.type_name()),
                    None,
                );
                return None;
            }
        };
        let runtime = crate::interpolate::WithRuntimeVars(self.env);
        let env: &dyn Env = if format == "template" {
            &runtime
        } else {
            self.env
        };
        if let Err(errors) = expand(&text, env) {
            self.report_interpolation(node, path, errors);
            return None;
        }
        if format == "secret" && !has_reference(&text) && !text.is_empty() {
            self.diags.push(
                Diagnostic::warning(node.pos, path, "a secret is written into the recipe")
                    .with_width(node.width)
                    .with_help("keep it in the environment and refer to it: `${MY_TOKEN}`"),
            );
        }
        Some(J::String(text))
    }

    fn unit(&mut self, node: &Node, unit: Unit, path: &str) -> Option<J> {
        let text = match &node.value {
            Value::Str { text, .. } => text.clone(),
            Value::Int(_) | Value::Float(_) => node.scalar_text()?,
            _ => {
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!("expected {}, found {}", unit.describe(), node.type_name()),
                    None,
                );
                return None;
            }
        };
        let parsed = match unit {
            Unit::Duration => text.parse::<Duration>().map(|_| ()),
            Unit::Size => text.parse::<Size>().map(|_| ()),
            Unit::Rate => text.parse::<Rate>().map(|_| ()),
            Unit::Percent => text.parse::<Percent>().map(|_| ()),
            Unit::SlurmTime => text.parse::<SlurmTime>().map(|_| ()),
        };
        match parsed {
            Ok(()) => Some(J::String(text)),
            Err(msg) => {
                let (msg, help) = match msg.split_once("; ") {
                    Some((m, h)) => (m.to_string(), Some(h.to_string())),
                    None => (msg, None),
                };
                self.error(node.pos, node.width, path, msg, help);
                None
            }
        }
    }

    fn one_of_names(&mut self, node: &Node, names: &[String], path: &str, what: &str) -> Option<J> {
        let text = match &node.value {
            Value::Str { text, .. } => text.clone(),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                node.scalar_text().unwrap_or_default()
            }
            _ => {
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!(
                        "expected one of {}, found {}",
                        list(names),
                        node.type_name()
                    ),
                    None,
                );
                return None;
            }
        };
        if names.contains(&text) {
            return Some(J::String(text));
        }
        let help = match did_you_mean(&text, names.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of {}", list(names)),
        };
        self.error(
            node.pos,
            node.width,
            path,
            format!("unknown {what} `{text}`"),
            Some(help),
        );
        None
    }

    fn object(&mut self, node: &Node, schema: &J, path: &str) -> Option<J> {
        let entries = node.as_map()?;
        let empty = Map::new();
        let props = schema
            .get("properties")
            .and_then(J::as_object)
            .unwrap_or(&empty);
        let additional = schema.get("additionalProperties");
        let mut out = Map::new();
        let mut ok = true;
        for (key, value) in entries {
            let child_path = join(path, &key.name);
            if let Some(prop) = props.get(&key.name) {
                match self.check(value, prop, &child_path) {
                    Some(v) => {
                        out.insert(key.name.clone(), v);
                    }
                    None => ok = false,
                }
                continue;
            }
            match additional {
                Some(J::Bool(false)) => {
                    ok = false;
                    let names: Vec<&str> = props.keys().map(String::as_str).collect();
                    let help = match synonym(&key.name)
                        .filter(|s| names.contains(s))
                        .or_else(|| did_you_mean(&key.name, names.iter().copied()))
                    {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "expected one of {}",
                            list(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                        ),
                    };
                    let shown = if path.is_empty() {
                        "the recipe".to_string()
                    } else {
                        format!("`{path}`")
                    };
                    self.error(
                        key.pos,
                        key.name.chars().count(),
                        path,
                        format!("unknown field `{}` in {shown}", key.name),
                        Some(help),
                    );
                }
                Some(s) if s.is_object() => {
                    let s = s.clone();
                    match self.check(value, &s, &child_path) {
                        Some(v) => {
                            out.insert(key.name.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                _ => {
                    let v = self.any(value, &child_path);
                    out.insert(key.name.clone(), v);
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(J::as_array) {
            for r in required.iter().filter_map(J::as_str) {
                if !entries.iter().any(|(k, _)| k.name == r) {
                    ok = false;
                    let desc = props
                        .get(r)
                        .map(|p| self.resolve(p))
                        .and_then(|p| p.get("description"))
                        .and_then(J::as_str)
                        .map(|d| d.lines().next().unwrap_or("").to_string());
                    let shown = if path.is_empty() {
                        "the recipe".to_string()
                    } else {
                        format!("`{path}`")
                    };
                    self.error(
                        node.pos,
                        1,
                        path,
                        format!("missing field `{r}` in {shown}"),
                        desc.map(|d| format!("add `{r}:` — {d}")),
                    );
                }
            }
        }
        ok.then_some(J::Object(out))
    }

    /// `oneOf` / `anyOf`: optional values, tagged unions, and untagged alternatives.
    fn choice(&mut self, raw: &Node, branches: &[J], path: &str) -> Option<J> {
        let branches: Vec<J> = branches.iter().map(|b| self.resolve(b).clone()).collect();
        let is_null = |b: &J| b.get("type").and_then(J::as_str) == Some("null");
        // Decide on the expanded value; hand the raw one on, so secrets keep their references
        // and expansion problems are reported once, by the branch's own check.
        let node = &Checker::new(self.root, self.env)
            .interpolate(raw, path)
            .unwrap_or_else(|| raw.clone());
        if matches!(node.value, Value::Null) && branches.iter().any(is_null) {
            return Some(J::Null);
        }
        let branches: Vec<J> = branches.into_iter().filter(|b| !is_null(b)).collect();
        if branches.len() == 1 {
            return self.check(raw, &branches[0], path);
        }
        // A closed set of names, each with its own description.
        let consts: Vec<String> = branches
            .iter()
            .filter_map(|b| b.get("const").and_then(J::as_str).map(String::from))
            .collect();
        if consts.len() == branches.len() && !consts.is_empty() {
            return self.one_of_names(node, &consts, path, "value");
        }
        // A tagged union: every branch fixes the same property to a constant.
        if let Some(tag) = tag_property(&branches) {
            let Some(entries) = node.as_map() else {
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!(
                        "expected a mapping with `{tag}:`, found {}",
                        node.type_name()
                    ),
                    None,
                );
                return None;
            };
            let names: Vec<String> = branches
                .iter()
                .filter_map(|b| branch_tag(b, &tag))
                .collect();
            let Some((key, value)) = entries.iter().find(|(k, _)| k.name == tag) else {
                self.error(
                    node.pos,
                    1,
                    path,
                    format!("missing field `{tag}` in `{path}`"),
                    Some(format!("add `{tag}:` with one of {}", list(&names))),
                );
                return None;
            };
            let value = self.interpolate(value, &join(path, &key.name))?;
            let text = value.scalar_text().unwrap_or_default();
            return match branches
                .iter()
                .find(|b| branch_tag(b, &tag).as_deref() == Some(text.as_str()))
            {
                Some(branch) => {
                    let branch = branch.clone();
                    self.check(raw, &branch, path)
                }
                None => {
                    self.one_of_names(&value, &names, &join(path, &tag), &format!("`{tag}`"))?;
                    None
                }
            };
        }
        // Untagged alternatives: the first that fits wins; otherwise explain the closest.
        let mut best: Option<(usize, Diagnostics)> = None;
        for branch in &branches {
            let mut trial = Checker::new(self.root, self.env);
            let out = trial.check(raw, branch, path);
            if let (Some(v), false) = (&out, trial.diags.has_errors()) {
                self.diags.extend(trial.diags);
                return Some(v.clone());
            }
            let type_fits = branch_accepts_type(branch, node);
            let score = trial.diags.error_count() + if type_fits { 0 } else { 1000 };
            if best.as_ref().is_none_or(|(s, _)| score < *s) {
                best = Some((score, trial.diags));
            }
        }
        match best {
            Some((score, diags)) if score < 1000 => self.diags.extend(diags),
            _ => {
                let expected: Vec<String> = branches.iter().map(describe_branch).collect();
                self.error(
                    node.pos,
                    node.width,
                    path,
                    format!(
                        "expected {}, found {}",
                        expected.join(" or "),
                        node.type_name()
                    ),
                    None,
                );
            }
        }
        None
    }
}

/// Words that other benchmark tools use for fields that aibench names differently.
fn synonym(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().replace('-', "_").as_str() {
        "concurrency" | "concurrencey" | "max_concurrency" | "clients" | "vus" | "connections" => {
            "users"
        }
        "qps" | "rps" | "request_rate" | "requests_per_second" => "rate",
        "num_prompts" | "num_requests" | "count" | "max_requests" => "requests",
        "think" | "sleep" => "think_time",
        "warm_up" | "warmup_time" => "warmup",
        "max_inflight" | "inflight" => "max_in_flight",
        "input_tokens" | "input_len" | "prompt_len" | "isl" => "prompt_tokens",
        "max_tokens" | "output_len" | "osl" => "output_tokens",
        "image" | "sif" => "image",
        "gpu" | "num_gpus" => "gpus",
        "mem" => "memory",
        "url" | "endpoint_url" => "target",
        "type" => "kind",
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Unit {
    Duration,
    Size,
    Rate,
    Percent,
    SlurmTime,
}

impl Unit {
    fn from_format(f: &str) -> Option<Unit> {
        Some(match f {
            "duration" => Unit::Duration,
            "size" => Unit::Size,
            "rate" => Unit::Rate,
            "percent" => Unit::Percent,
            "slurm-time" => Unit::SlurmTime,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Unit::Duration => "a duration such as `30s`",
            Unit::Size => "a size such as `64GiB`",
            Unit::Rate => "a rate such as `50/s`",
            Unit::Percent => "a percentage such as `1%`",
            Unit::SlurmTime => "a time limit such as `02:00:00`",
        }
    }
}

fn branch_tag(branch: &J, tag: &str) -> Option<String> {
    let p = branch.get("properties")?.get(tag)?;
    p.get("const")
        .and_then(J::as_str)
        .or_else(|| {
            p.get("enum")
                .and_then(J::as_array)
                .filter(|a| a.len() == 1)
                .and_then(|a| a[0].as_str())
        })
        .map(String::from)
}

fn tag_property(branches: &[J]) -> Option<String> {
    let first = branches.first()?.get("properties")?.as_object()?;
    first
        .keys()
        .find(|k| branches.iter().all(|b| branch_tag(b, k).is_some()))
        .cloned()
}

fn branch_accepts_type(branch: &J, node: &Node) -> bool {
    let types: Vec<&str> = match branch.get("type") {
        Some(J::String(t)) => vec![t.as_str()],
        Some(J::Array(ts)) => ts.iter().filter_map(J::as_str).collect(),
        _ => return true,
    };
    let t = match node.value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "number",
        Value::Str { .. } => "string",
        Value::Seq(_) => "array",
        Value::Map(_) => "object",
    };
    types.contains(&t) || (t == "integer" && types.contains(&"number"))
}

fn describe_branch(branch: &J) -> String {
    match branch.get("type") {
        Some(J::String(t)) if t == "object" => {
            let keys: Vec<String> = branch
                .get("properties")
                .and_then(J::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            format!("a mapping with {}", list(&keys))
        }
        Some(J::String(t)) if t == "array" => "a list".into(),
        Some(J::String(t)) if t == "integer" => "an integer".into(),
        Some(J::String(t)) if t == "number" => "a number".into(),
        Some(J::String(t)) if t == "boolean" => "a boolean".into(),
        Some(J::String(t)) if t == "string" => "a string".into(),
        _ => "a value".into(),
    }
}
