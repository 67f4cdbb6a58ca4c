//! YAML text to a tree that remembers where every key and value came from.
//!
//! Built on `saphyr-parser`'s event stream (a maintained YAML 1.2 parser that reports positions
//! and returns errors instead of panicking). The tree builder is iterative and bounded — nesting
//! depth, node count after alias expansion — so no input can exhaust the stack or memory.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diagnostic::{Diagnostic, Diagnostics, Pos};

/// Nesting deeper than this is refused (recipes are a handful of levels deep).
pub const MAX_DEPTH: usize = 64;
/// Nodes after alias expansion; guards against "billion laughs".
pub const MAX_NODES: usize = 200_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Length in characters of the scalar's text (for carets); 1 for collections.
    pub width: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// `plain` is true for unquoted scalars: only those are re-typed after `${VAR}` expansion.
    Str {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str { .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The scalar's text as the user would read it, for messages.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some("null".into()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str { text, .. } => Some(text.clone()),
            _ => None,
        }
    }

    /// Convert to JSON, the form the typed model deserializes from.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str { text, .. } => J::String(text.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Resolve a plain scalar by the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(hex) = text.strip_prefix("0x") {
        if digits(hex, 16) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Int(i);
            }
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if digits(oct, 8) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Value::Int(i);
            }
        }
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned, 10) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        // Beyond 64 bits: kept as written, so that an error can quote it (a text field takes
        // it as text).
        return Value::Str {
            text: text.to_string(),
            plain: true,
        };
    }
    let looks_float = !unsigned.is_empty()
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned.chars().any(|c| c.is_ascii_digit());
    if looks_float {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str {
        text: text.to_string(),
        plain: true,
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line().max(1),
        col: span.start.col() + 1,
    }
}

enum Frame {
    Seq(Node, Vec<Node>, usize),
    /// The mapping node, its entries, a pending key, and the anchor.
    Map(Node, Vec<(Key, Node)>, Option<Key>, usize),
}

/// Parse one YAML document into a [`Node`]. All problems are returned as diagnostics.
pub fn parse(text: &str) -> Result<Node, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: Vec<(usize, Node)> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;

    let mut parser = Parser::new_from_str(text).keep_tags(true);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let m = e.marker();
                let pos = Pos {
                    line: m.line().max(1),
                    col: m.col() + 1,
                };
                diags.push(
                    Diagnostic::error(pos, "", format!("YAML syntax error: {}", e.info()))
                        .with_help(
                            "check the indentation and quoting on this line and the one above",
                        ),
                );
                return Err(diags);
            }
        };
        let pos = pos_of(&span);
        let node = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    diags.push(
                        Diagnostic::error(
                            pos,
                            "",
                            "a recipe is one YAML document, but a second one starts here",
                        )
                        .with_help("remove the `---` line, or split the file into two recipes"),
                    );
                    return Err(diags);
                }
                continue;
            }
            Event::Alias(id) => match anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, n)) => {
                    nodes += count_nodes(n);
                    let mut n = n.clone();
                    n.pos = pos;
                    n
                }
                None => {
                    diags.push(Diagnostic::error(
                        pos,
                        "",
                        "alias refers to an unknown anchor",
                    ));
                    return Err(diags);
                }
            },
            Event::Scalar(value, style, anchor, tag) => {
                let width = value.chars().count().max(1);
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let v = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&value)
                } else {
                    Value::Str {
                        text: value.into_owned(),
                        plain: false,
                    }
                };
                let n = Node {
                    value: v,
                    pos,
                    width,
                };
                if anchor > 0 {
                    anchors.push((anchor, n.clone()));
                }
                nodes += 1;
                n
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    diags.push(
                        Diagnostic::error(
                            pos,
                            "",
                            format!("nesting deeper than {MAX_DEPTH} levels"),
                        )
                        .with_help("a recipe needs only a few levels; is this the right file?"),
                    );
                    return Err(diags);
                }
                nodes += 1;
                let is_seq = matches!(event, Event::SequenceStart(..));
                let shell = Node {
                    value: Value::Null,
                    pos,
                    width: 1,
                };
                stack.push(if is_seq {
                    Frame::Seq(shell, Vec::new(), anchor)
                } else {
                    Frame::Map(shell, Vec::new(), None, anchor)
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(mut shell, items, anchor)) => {
                    shell.value = Value::Seq(items);
                    if anchor > 0 {
                        anchors.push((anchor, shell.clone()));
                    }
                    shell
                }
                _ => {
                    diags.push(Diagnostic::error(
                        pos,
                        "",
                        "YAML syntax error: unbalanced sequence",
                    ));
                    return Err(diags);
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(mut shell, entries, _, anchor)) => {
                    shell.value = Value::Map(entries);
                    if anchor > 0 {
                        anchors.push((anchor, shell.clone()));
                    }
                    shell
                }
                _ => {
                    diags.push(Diagnostic::error(
                        pos,
                        "",
                        "YAML syntax error: unbalanced mapping",
                    ));
                    return Err(diags);
                }
            },
        };
        if nodes > MAX_NODES {
            diags.push(
                Diagnostic::error(
                    pos,
                    "",
                    format!("more than {MAX_NODES} values (after expanding aliases)"),
                )
                .with_help("a recipe is small; this looks like an alias bomb or the wrong file"),
            );
            return Err(diags);
        }
        // Attach the finished node to its parent.
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    diags.push(Diagnostic::error(
                        pos,
                        "",
                        "unexpected content after the document",
                    ));
                    return Err(diags);
                }
                root = Some(node);
            }
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending, _)) => match pending.take() {
                None => {
                    let name = match node.scalar_text() {
                        Some(t) => t,
                        None => {
                            diags.push(
                                Diagnostic::error(
                                    node.pos,
                                    "",
                                    "mapping keys must be plain names, not lists or mappings",
                                )
                                .with_help("write `key: value`"),
                            );
                            String::from("?")
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        diags.push(
                            Diagnostic::error(node.pos, "", format!("duplicate key `{name}`"))
                                .with_width(name.chars().count())
                                .with_help(format!(
                                    "`{name}` is already set at line {}; keep one of them",
                                    first.pos.line
                                )),
                        );
                    }
                    *pending = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    match root {
        Some(node) => Ok(node),
        None => {
            diags.push(
                Diagnostic::error(Pos::START, "", "the recipe is empty").with_help(
                    "start with `name: my-experiment`; `aibench schema` lists every key",
                ),
            );
            Err(diags)
        }
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// A plain scalar that is a decimal integer (with an optional sign), whatever its size.
pub fn is_integer_text(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let n = parse("a: 1\nb:\n  - x\n  - 2.5\nc: 'true'\nd: true\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!(b.pos, Pos { line: 3, col: 3 });
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert!(matches!(
            n.get("c").unwrap().value,
            Value::Str { plain: false, .. }
        ));
        assert_eq!(n.get("d").unwrap().value, Value::Bool(true));
        let m = n.as_map().unwrap();
        assert_eq!(m[1].0.pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.items[0].pos, Pos { line: 3, col: 1 });
        assert!(e.items[0].message.contains("duplicate key `a`"));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse(&bomb).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn empty_and_multi_document() {
        assert!(parse("").unwrap_err().items[0].message.contains("empty"));
        assert!(parse("# only a comment\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
