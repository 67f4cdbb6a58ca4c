//! Sweeps: expanding a recipe into trials.
//!
//! `matrix` parameters combine in every way (the first varies slowest); each `zip` group varies
//! together and counts as one axis. Every trial gets a readable id derived from its index and
//! parameter values (`03_users=8_prompt_tokens=128`), the same from run to run.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value as J;

use crate::check::Checker;
use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::interpolate::Env;
use crate::locate::KeyPath;
use crate::model::Recipe;
use crate::validate::SECTIONS;
use crate::yaml::{Node, Value};

/// More trials than this is almost certainly a mistake.
pub const MAX_TRIALS: usize = 10_000;

/// One point of a sweep: the recipe with the parameters applied.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    /// Stable and readable: `03_users=8_prompt_tokens=128`.
    pub id: String,
    /// 0-based position in the sweep.
    pub index: usize,
    /// The swept parameters and their values in this trial.
    pub params: IndexMap<String, J>,
    /// Which repeat of its sweep point this is (1-based), when the recipe has `repeat: N > 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    #[serde(skip)]
    pub recipe: Recipe,
}

struct Axis {
    keys: Vec<(String, Vec<J>, Vec<String>)>,
    len: usize,
}

/// The place in the recipe JSON a sweep key addresses, e.g. `chat.load.users` ->
/// `/workloads/0/load/users`.
fn address(key: &str, json: &J, recipe: &Recipe) -> Result<Vec<J>, (String, Option<String>)> {
    let mut segs = key.split('.');
    let head = segs.next().unwrap_or("");
    let mut pointer: Vec<J> = Vec::new();
    if let Some(i) = recipe.services.iter().position(|s| s.name == head) {
        pointer.extend([J::from("services"), J::from(i)]);
    } else if let Some(i) = recipe.workloads.iter().position(|w| w.name == head) {
        pointer.extend([J::from("workloads"), J::from(i)]);
    } else if SECTIONS.contains(&head) {
        pointer.push(J::from(head));
    } else {
        let names: Vec<&str> = recipe
            .services
            .iter()
            .map(|s| s.name.as_str())
            .chain(recipe.workloads.iter().map(|w| w.name.as_str()))
            .chain(SECTIONS)
            .collect();
        let help = did_you_mean(head, names.iter().copied())
            .map(|n| format!("did you mean `{n}`?"))
            .unwrap_or_else(|| {
                format!(
                    "a sweep key starts with a service or workload name or a section: {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        return Err((
            format!("`{head}` is not a service, workload or section"),
            Some(help),
        ));
    }
    let rest: Vec<&str> = segs.collect();
    if rest.is_empty() && head != "seed" {
        return Err((
            format!(
                "`{key}` names a whole {}; sweep one of its fields",
                if pointer.len() > 1 {
                    "entry"
                } else {
                    "section"
                }
            ),
            Some(format!(
                "e.g. `{key}.load.rate` or `{key}.args.max-num-seqs`"
            )),
        ));
    }
    let _ = json;
    pointer.extend(rest.into_iter().map(J::from));
    Ok(pointer)
}

fn get<'a>(json: &'a J, pointer: &[J]) -> Option<&'a J> {
    let mut cur = json;
    for seg in pointer {
        cur = match seg {
            J::String(k) => cur.get(k.as_str())?,
            J::Number(n) => cur.get(n.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn set(json: &mut J, pointer: &[J], value: J) {
    let mut cur = json;
    for seg in pointer {
        cur = match seg {
            J::String(k) => {
                if !cur.is_object() {
                    *cur = J::Object(Default::default());
                }
                let obj = cur.as_object_mut().expect("made an object above");
                obj.entry(k.clone()).or_insert(J::Null)
            }
            J::Number(n) => {
                let i = n.as_u64().unwrap_or(0) as usize;
                match cur.get_mut(i) {
                    Some(c) => c,
                    None => return,
                }
            }
            _ => return,
        };
    }
    *cur = value;
}

/// The schema of the field at `pointer`, choosing tagged-union branches by the recipe's values.
fn leaf_schema(
    checker: &Checker,
    schema: &J,
    json: &J,
    pointer: &[J],
) -> Result<J, (String, Option<String>)> {
    let mut s = checker.resolve(schema).clone();
    let mut here = Some(json);
    for (depth, seg) in pointer.iter().enumerate() {
        // Unwrap optional values and pick the branch of a tagged union that the recipe uses.
        for _ in 0..8 {
            let Some(branches) = s
                .get("oneOf")
                .or_else(|| s.get("anyOf"))
                .and_then(J::as_array)
                .cloned()
            else {
                break;
            };
            let branches: Vec<J> = branches
                .iter()
                .map(|b| checker.resolve(b).clone())
                .filter(|b| b.get("type").and_then(J::as_str) != Some("null"))
                .collect();
            let chosen = if branches.len() == 1 {
                branches[0].clone()
            } else {
                let tag_fits = |b: &&J| {
                    b.get("properties").and_then(J::as_object).is_some_and(|p| {
                        p.iter().all(|(k, v)| match v.get("const") {
                            Some(c) => here.and_then(|h| h.get(k)) == Some(c),
                            None => true,
                        })
                    })
                };
                let has_seg = |b: &&J| matches!(seg, J::String(k) if b.get("properties").and_then(J::as_object).is_some_and(|p| p.contains_key(k)));
                let candidates: Vec<&J> = branches.iter().filter(tag_fits).collect();
                match candidates
                    .iter()
                    .copied()
                    .find(|b| has_seg(b))
                    .or(candidates.first().copied())
                {
                    Some(b) => b.clone(),
                    None => {
                        let field = seg.as_str().unwrap_or("?");
                        let parent = pointer[..depth]
                            .iter()
                            .filter_map(J::as_str)
                            .next_back()
                            .unwrap_or("");
                        return Err((
                            format!("`{field}` cannot be addressed in `{parent}` as this recipe writes it"),
                            Some("sweep fields that the base recipe's `kind`/`pattern` has".into()),
                        ));
                    }
                }
            };
            s = chosen;
        }
        match seg {
            J::String(k) => {
                let props = s.get("properties").and_then(J::as_object);
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    s = checker.resolve(p).clone();
                } else if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    s = checker.resolve(a).clone();
                } else if let Some(p) = props {
                    let help = did_you_mean(k, p.keys().map(String::as_str))
                        .map(|n| format!("did you mean `{n}`?"));
                    let parent = pointer[..depth]
                        .iter()
                        .filter_map(J::as_str)
                        .next_back()
                        .unwrap_or("the recipe");
                    return Err((format!("unknown field `{k}` in `{parent}`"), help));
                } else {
                    return Err((
                        format!("`{k}` cannot be addressed: its parent is not a mapping"),
                        None,
                    ));
                }
                here = here.and_then(|h| h.get(k.as_str()));
            }
            J::Number(n) => {
                s = s
                    .get("items")
                    .map(|i| checker.resolve(i).clone())
                    .unwrap_or(J::Bool(true));
                here = here.and_then(|h| h.get(n.as_u64().unwrap_or(0) as usize));
            }
            _ => {}
        }
    }
    Ok(s)
}

fn label(v: &J) -> String {
    let raw = match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    let out: String = out.chars().take(24).collect();
    if out.is_empty() {
        "x".into()
    } else {
        out
    }
}

fn trial_id(index: usize, total: usize, params: &IndexMap<String, J>) -> String {
    let width = total.to_string().len().max(2);
    let mut id = format!("{:0width$}", index + 1);
    let short: Vec<String> = params
        .keys()
        .map(|k| {
            let last = k.rsplit('.').next().unwrap_or(k);
            let clash = params
                .keys()
                .filter(|o| o.rsplit('.').next() == Some(last))
                .count()
                > 1;
            if clash {
                k.rsplitn(3, '.')
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("-")
            } else {
                last.to_string()
            }
        })
        .collect();
    for (name, value) in short.iter().zip(params.values()) {
        id.push('_');
        id.push_str(name);
        id.push('=');
        id.push_str(&label(value));
    }
    if id.len() > 120 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(serde_json::to_vec(params).unwrap_or_default());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        id = format!("{}~{hex}", id.chars().take(110).collect::<String>());
    }
    id
}

/// Expand the recipe's sweep into trials, reporting bad keys and values into `diags`.
pub fn expand(
    recipe: &Recipe,
    json: &J,
    tree: &Node,
    schema: &J,
    env: &dyn Env,
    diags: &mut Diagnostics,
) -> Vec<Trial> {
    let Some(sweep) = &recipe.sweep else {
        return vec![Trial {
            id: "01".into(),
            index: 0,
            params: IndexMap::new(),
            repeat: None,
            recipe: recipe.clone(),
        }];
    };
    let sweep_path = KeyPath::root().key("sweep");
    let mut checker = Checker::new(schema, env);
    let mut axes: Vec<Axis> = Vec::new();
    let mut seen_keys: IndexMap<String, KeyPath> = IndexMap::new();
    let groups = sweep
        .matrix
        .keys()
        .map(|k| (sweep_path.key("matrix"), vec![k.clone()]))
        .chain(
            sweep
                .zip
                .iter()
                .enumerate()
                .map(|(i, g)| (sweep_path.key("zip").index(i), g.keys().cloned().collect())),
        );
    let mut errors_before = diags.error_count();
    for (group_path, keys) in groups {
        let mut axis = Axis {
            keys: Vec::new(),
            len: 0,
        };
        for key in keys {
            let kp = group_path.key(key.clone());
            let (kpos, kwidth) = kp.key_pos(tree).unwrap_or_else(|| kp.pos(tree));
            if let Some(first) = seen_keys.get(&key) {
                let line = first.pos(tree).0.line;
                diags.push(
                    Diagnostic::error(kpos, kp.to_string(), format!("`{key}` is swept twice"))
                        .with_width(kwidth)
                        .with_help(format!("it is already swept at line {line}")),
                );
                continue;
            }
            seen_keys.insert(key.clone(), kp.clone());
            let pointer = match address(&key, json, recipe)
                .and_then(|p| leaf_schema(&checker, schema, json, &p).map(|s| (p, s)))
            {
                Ok(ps) => ps,
                Err((msg, help)) => {
                    let mut d = Diagnostic::error(kpos, kp.to_string(), msg).with_width(kwidth);
                    d.help = help;
                    diags.push(d);
                    continue;
                }
            };
            let (pointer, leaf) = pointer;
            let Some(Node {
                value: Value::Seq(items),
                ..
            }) = kp.node(tree)
            else {
                continue;
            };
            if items.is_empty() {
                diags.push(
                    Diagnostic::error(kpos, kp.to_string(), format!("`{key}` has no values"))
                        .with_width(kwidth)
                        .with_help("list at least one value: `[1, 8, 32]`"),
                );
                continue;
            }
            let mut values = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(v) = checker.check(item, &leaf, &format!("{kp}[{i}]")) {
                    values.push(v);
                }
            }
            if axis.len != 0 && items.len() != axis.len {
                diags.push(
                    Diagnostic::error(
                        kpos,
                        kp.to_string(),
                        format!(
                            "`{key}` has {} values, but the other lists in this zip group have {}",
                            items.len(),
                            axis.len
                        ),
                    )
                    .with_width(kwidth)
                    .with_help("lists in a zip group vary together, so they need equal lengths"),
                );
            }
            axis.len = axis.len.max(items.len());
            let labels = pointer.iter().map(|p| p.to_string()).collect();
            axis.keys.push((key, values, labels));
            let _ = pointer;
        }
        if !axis.keys.is_empty() {
            // Pointers are recomputed when applying; keep the axis.
            axes.push(axis);
        }
    }
    diags.extend(std::mem::take(&mut checker.diags));
    if sweep.matrix.is_empty() && sweep.zip.is_empty() {
        diags.push(
            Diagnostic::warning(sweep_path.pos(tree).0, "sweep", "the sweep is empty")
                .with_help("add `matrix: { chat.load.users: [1, 8, 32] }`, or remove `sweep`"),
        );
    }
    let total: usize = axes
        .iter()
        .map(|a| a.len.max(1))
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .unwrap_or(usize::MAX);
    if total > MAX_TRIALS {
        diags.push(
            Diagnostic::error(
                sweep_path.pos(tree).0,
                "sweep",
                format!("the sweep expands into {total} trials; the limit is {MAX_TRIALS}"),
            )
            .with_help("sweep fewer values, or use `zip` for parameters that vary together"),
        );
    }
    if diags.error_count() > errors_before {
        return Vec::new();
    }
    errors_before = diags.error_count();

    let mut trials = Vec::with_capacity(total);
    for index in 0..total {
        // Odometer: the last axis varies fastest.
        let mut rem = index;
        let mut picks = vec![0usize; axes.len()];
        for (a, axis) in axes.iter().enumerate().rev() {
            picks[a] = rem % axis.len;
            rem /= axis.len;
        }
        let mut doc = json.clone();
        let mut params = IndexMap::new();
        for (axis, pick) in axes.iter().zip(&picks) {
            for (key, values, _) in &axis.keys {
                let value = values[*pick].clone();
                if let Ok(pointer) = address(key, json, recipe) {
                    set(&mut doc, &pointer, value.clone());
                }
                params.insert(key.clone(), value);
            }
        }
        let id = trial_id(index, total, &params);
        match serde_json::from_value::<Recipe>(doc) {
            Ok(r) => trials.push(Trial {
                id,
                index,
                params,
                repeat: None,
                recipe: r,
            }),
            Err(e) => {
                diags.push(Diagnostic::error(
                    sweep_path.pos(tree).0,
                    "sweep",
                    format!("trial {id}: {e}"),
                ));
                if diags.error_count() - errors_before >= 5 {
                    break;
                }
            }
        }
    }
    let _ = get;
    trials
}

pub use aibench_results::{point_of, REPEAT_SUFFIX};

/// The trials run `repeat` times, in rounds: every sweep point once, then again. Ids gain
/// `_repeat=<n>`; indices stay the sweep point's. More than [`MAX_TRIALS`] in all is an error.
pub fn repeat(trials: Vec<Trial>, times: u32, tree: &Node, diags: &mut Diagnostics) -> Vec<Trial> {
    if times <= 1 || trials.is_empty() {
        return trials;
    }
    let total = trials.len().saturating_mul(times as usize);
    if total > MAX_TRIALS {
        let kp = KeyPath::root().key("repeat");
        let (pos, width) = kp.key_pos(tree).unwrap_or_else(|| kp.pos(tree));
        diags.push(
            Diagnostic::error(
                pos,
                "repeat",
                format!(
                    "{} trials repeated {times} times make {total} trials; the limit is \
                     {MAX_TRIALS}",
                    trials.len()
                ),
            )
            .with_width(width)
            .with_help("repeat fewer times, or sweep fewer values"),
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(total);
    for round in 1..=times {
        for t in &trials {
            out.push(Trial {
                id: format!("{}{REPEAT_SUFFIX}{round}", t.id),
                repeat: Some(round),
                ..t.clone()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_file_safe() {
        assert_eq!(label(&J::from("10/s")), "10-s");
        assert_eq!(label(&J::from(128)), "128");
        assert_eq!(label(&J::from("facebook/opt-125m")), "facebook-opt-125m");
    }
}
