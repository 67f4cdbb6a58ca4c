//! Semantic checks of a recipe that did not fully check: every top-level section, service and
//! workload that checks on its own is kept, each one that does not is replaced by a stand-in
//! with its name (so references to it still resolve), and the semantic diagnostics about the
//! stand-ins are dropped. The user sees every problem at once.

use std::path::Path;

use serde_json::{json, Map, Value as J};

use crate::check::Checker;
use crate::diagnostic::Diagnostics;
use crate::interpolate::Env;
use crate::model::Recipe;
use crate::yaml::{Node, Value};

/// The semantic diagnostics of the parts of `tree` that check, none about the parts that do
/// not (their own errors are reported already).
pub fn validate(tree: &Node, schema: &J, env: &dyn Env, base_dir: &Path) -> Diagnostics {
    let Some(entries) = tree.as_map() else {
        return Diagnostics::default();
    };
    let mut checker = Checker::new(schema, env);
    let root = checker.resolve(schema).clone();
    let props = root.get("properties").cloned().unwrap_or(J::Null);
    let mut out = Map::new();
    let mut broken: Vec<String> = Vec::new();
    for (key, node) in entries {
        let Some(prop) = props.get(&key.name) else {
            continue;
        };
        let prop = checker.resolve(prop).clone();
        match (key.name.as_str(), &node.value) {
            (list @ ("services" | "workloads"), Value::Seq(items)) => {
                let item_schema = prop.get("items").cloned().unwrap_or(J::Bool(true));
                let mut kept = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{list}[{i}]");
                    match checker.check(item, &item_schema, &path) {
                        Some(v) => kept.push(v),
                        None => {
                            kept.push(stand_in(list, item, i));
                            broken.push(path);
                        }
                    }
                }
                out.insert(key.name.clone(), J::Array(kept));
            }
            _ => match checker.check(node, &prop, &key.name) {
                Some(v) => {
                    out.insert(key.name.clone(), v);
                }
                None => {
                    if key.name == "name" {
                        out.insert("name".into(), J::from("recipe"));
                    }
                    broken.push(key.name.clone());
                }
            },
        }
    }
    // The stand-ins' own problems are reported already (the checker's second opinion is
    // dropped with it).
    let Ok(recipe) = serde_json::from_value::<Recipe>(J::Object(out)) else {
        return Diagnostics::default();
    };
    let mut diags = crate::validate::validate(&recipe, tree, base_dir);
    diags
        .items
        .retain(|d| !broken.iter().any(|b| under(&d.path, b)));
    diags
}

/// Whether a diagnostic's path is `prefix` or inside it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// A service or workload that stands in for one that did not check: its name (and a
/// workload's target), so that references to it resolve.
fn stand_in(list: &str, node: &Node, i: usize) -> J {
    let text = |key: &str| {
        node.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.name == key))
            .and_then(|(_, v)| match &v.value {
                Value::Str { text, .. } => Some(text.clone()),
                _ => None,
            })
    };
    let name = text("name").unwrap_or_else(|| format!("unnamed-{i}"));
    if list == "services" {
        json!({ "name": name, "kind": "command", "command": "true" })
    } else {
        json!({
            "name": name,
            "target": text("target").unwrap_or_default(),
            "protocol": "http",
            "load": { "pattern": "closed-loop", "users": 1 },
        })
    }
}
