//! The recipe reference in Markdown, generated from the JSON Schema (and so from the types).
//! The README embeds it; a test fails when the two drift apart.

use serde_json::Value as J;

fn type_of(schema: &J, root: &J) -> String {
    if let Some(r) = schema.get("$ref").and_then(J::as_str) {
        let name = r.rsplit('/').next().unwrap_or("");
        let def = root.get("$defs").and_then(|d| d.get(name));
        return match def.and_then(|d| d.get("format")).and_then(J::as_str) {
            Some("duration") => "duration".into(),
            Some("size") => "size".into(),
            Some("rate") => "rate".into(),
            Some("percent") => "percent".into(),
            Some("slurm-time") => "time limit".into(),
            Some("secret") => "secret".into(),
            Some("template") => "text (expanded at start)".into(),
            _ => match def {
                Some(d) if is_enum(d) => enum_values(d).join(" | "),
                _ => format!("[{name}](#{})", name.to_ascii_lowercase()),
            },
        };
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(J::as_array) {
            let parts: Vec<String> = branches
                .iter()
                .filter(|b| b.get("type").and_then(J::as_str) != Some("null"))
                .map(|b| type_of(b, root))
                .collect();
            return parts.join(" or ");
        }
    }
    if is_enum(schema) {
        return enum_values(schema).join(" | ");
    }
    match schema.get("type") {
        Some(J::String(t)) if t == "array" => {
            format!(
                "list of {}",
                schema
                    .get("items")
                    .map(|i| type_of(i, root))
                    .unwrap_or_else(|| "values".into())
            )
        }
        Some(J::String(t)) if t == "object" => match schema.get("additionalProperties") {
            Some(a) if a.is_object() => format!("map of {}", type_of(a, root)),
            _ => "mapping".into(),
        },
        Some(J::String(t)) => t.clone(),
        Some(J::Array(ts)) => ts
            .iter()
            .filter_map(J::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

fn is_enum(s: &J) -> bool {
    s.get("enum").is_some()
        || s.get("oneOf")
            .and_then(J::as_array)
            .is_some_and(|b| b.iter().all(|b| b.get("const").is_some()))
}

fn enum_values(s: &J) -> Vec<String> {
    if let Some(values) = s.get("enum").and_then(J::as_array) {
        return values
            .iter()
            .filter_map(J::as_str)
            .map(|v| format!("`{v}`"))
            .collect();
    }
    s.get("oneOf")
        .and_then(J::as_array)
        .map(|b| {
            b.iter()
                .filter_map(|b| b.get("const").and_then(J::as_str))
                .map(|v| format!("`{v}`"))
                .collect()
        })
        .unwrap_or_default()
}

fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

fn table(out: &mut String, title: &str, schema: &J, root: &J) {
    let Some(props) = schema.get("properties").and_then(J::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(J::as_array)
        .map(|r| r.iter().filter_map(J::as_str).collect())
        .unwrap_or_default();
    out.push_str(&format!("### {title}\n\n"));
    if let Some(d) = schema.get("description").and_then(J::as_str) {
        out.push_str(&cell(d));
        out.push_str("\n\n");
    }
    out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (name, prop) in props {
        let ty = type_of(prop, root);
        let default = match prop.get("default") {
            Some(J::Null) | None if required.contains(&name.as_str()) => "required".to_string(),
            Some(J::Null) | None => String::new(),
            Some(J::String(s)) => format!("`{s}`"),
            Some(v) => format!("`{v}`"),
        };
        let desc = prop.get("description").and_then(J::as_str).unwrap_or("");
        out.push_str(&format!(
            "| `{name}` | {} | {default} | {} |\n",
            cell(&ty),
            cell(desc)
        ));
    }
    out.push('\n');
}

/// The reference: one table per section of the recipe.
pub fn markdown() -> String {
    let root = crate::schema();
    let mut out = String::new();
    out.push_str(
        "Generated from the recipe types (`aibench schema` prints the same as JSON Schema). \
         Units: durations `250ms` `30s` `2m` `1h30m`; sizes `4KiB` `64GiB`; rates `50/s` `3000/min`; \
         percentages `1%`. Any value may use `${VAR}` or `${VAR:-default}` from the environment.\n\n",
    );
    table(&mut out, "Recipe", &root, &root);
    if let Some(defs) = root.get("$defs").and_then(J::as_object) {
        for (name, def) in defs {
            if def.get("properties").is_some() {
                table(&mut out, name, def, &root);
            }
            if let Some(branches) = def.get("oneOf").and_then(J::as_array) {
                for b in branches {
                    let tag = b.get("properties").and_then(J::as_object).and_then(|p| {
                        p.iter().find_map(|(k, v)| {
                            v.get("const")
                                .and_then(J::as_str)
                                .map(|c| format!("{k}: {c}"))
                        })
                    });
                    if let Some(tag) = tag {
                        table(&mut out, &format!("{name} (`{tag}`)"), b, &root);
                    }
                }
            }
        }
    }
    out
}
