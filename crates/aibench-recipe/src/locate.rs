//! Finding the place in the YAML text that a key path refers to.

use crate::diagnostic::Pos;
use crate::yaml::{Node, Value};

/// One step of a path into the recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path, shown to users as `workloads[0].load.rate`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.into()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// The node at this path, if the recipe spells it out.
    pub fn node<'a>(&self, tree: &'a Node) -> Option<&'a Node> {
        let mut node = tree;
        for seg in &self.0 {
            node = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(entries)) => {
                    &entries.iter().find(|(key, _)| key.name == *k)?.1
                }
                (Seg::Index(i), Value::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Where to point for this path: the value if written, else the nearest written ancestor.
    pub fn pos(&self, tree: &Node) -> (Pos, usize) {
        let mut p = self.clone();
        loop {
            if let Some(n) = p.node(tree) {
                return (n.pos, n.width);
            }
            if p.0.pop().is_none() {
                return (Pos::START, 1);
            }
        }
    }

    /// Where the key of the last segment is written (for "unknown key" style messages).
    pub fn key_pos(&self, tree: &Node) -> Option<(Pos, usize)> {
        let (last, parent) = self.0.split_last()?;
        let Seg::Key(k) = last else {
            return self.node(tree).map(|n| (n.pos, n.width));
        };
        let parent = KeyPath(parent.to_vec()).node(tree)?;
        parent
            .as_map()?
            .iter()
            .find(|(key, _)| key.name == *k)
            .map(|(key, _)| (key.pos, key.name.chars().count()))
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Best-effort position of a dotted path such as `workloads[0].load` (from serde errors).
pub fn pos_of_dotted(tree: &Node, dotted: &str) -> Option<Pos> {
    let mut path = KeyPath::root();
    for part in dotted.split('.').filter(|p| !p.is_empty() && *p != "?") {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            path = path.key(key);
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                path = path.index(i);
            }
        }
    }
    Some(path.pos(tree).0)
}
