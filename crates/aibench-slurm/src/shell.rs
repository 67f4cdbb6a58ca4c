//! Writing values into a bash script so that they mean exactly what the recipe says.

/// A literal: single-quoted unless plainly safe, so nothing in it expands.
pub fn literal(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,=+@%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A recipe template as one double-quoted word: `${NAME}` and `${NAME:-default}` stay live and
/// the job's shell expands them (runtime variables, and secrets from the exported environment);
/// `$$` is a literal `$`, as in the recipe; every other `$`, backquote, backslash and double
/// quote is literal too.
pub fn template(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::from("\"");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'$') {
            out.push_str("\\$");
            i += 2;
            continue;
        }
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            if let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') {
                let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner.as_str(), None),
                };
                if is_name(name) {
                    out.push_str("${");
                    out.push_str(name);
                    if let Some(d) = default {
                        // The default is literal text.
                        out.push_str(":-");
                        for dc in d.chars() {
                            if matches!(dc, '$' | '`' | '\\' | '"' | '}') {
                                out.push('\\');
                            }
                            out.push(dc);
                        }
                    }
                    out.push('}');
                    i += close + 3;
                    continue;
                }
            }
        }
        if matches!(c, '$' | '`' | '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
        i += 1;
    }
    out.push('"');
    out
}

/// Is this a variable name a template may reference?
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The variables a template references, with whether each has a default.
pub fn references(s: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = s.replace("$$", "");
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        let (name, has_default) = match inner.split_once(":-") {
            Some((n, _)) => (n, true),
            None => (inner, false),
        };
        if is_name(name) {
            out.push((name.to_string(), has_default));
        }
        rest = after[close + 1..].to_string();
    }
    out
}

/// A JSON string literal, for the discovery record the job writes.
pub fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash(script: &str) -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("TOKEN", "s3cret")
            .env_remove("UNSET_VAR")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn literals_survive_the_shell() {
        for s in ["plain", "with space", "it's", "$HOME `x` \\ \"q\"", ""] {
            assert_eq!(bash(&format!("printf %s {}", literal(s))), s);
        }
    }

    #[test]
    fn templates_keep_references_live_and_everything_else_literal() {
        let cases = [
            ("--port ${TOKEN}", "--port s3cret"),
            ("${UNSET_VAR:-fallback value}", "fallback value"),
            ("cost $$5 and $HOME", "cost $5 and $HOME"),
            ("`id` \\n \"q\"", "`id` \\n \"q\""),
            ("${not a name}", "${not a name}"),
            ("${UNSET_VAR:-a}b}", "ab}"),
        ];
        for (t, want) in cases {
            assert_eq!(bash(&format!("printf %s {}", template(t))), want, "{t}");
        }
    }

    #[test]
    fn finds_references() {
        assert_eq!(
            references("${A} $${B} ${C:-x} ${1x}"),
            vec![("A".into(), false), ("C".into(), true)]
        );
    }
}
