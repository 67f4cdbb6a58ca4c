//! No input makes the loader panic: arbitrary bytes, and valid recipes mutated at random.

use proptest::prelude::*;

fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "value".to_string())
}

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            out.push(std::fs::read_to_string(path).expect("read example"));
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, String),
    Delete(usize, usize),
    SwapLines(usize, usize),
    DuplicateLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let fragment = prop_oneof![
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("\n  ".to_string()),
        Just("{".to_string()),
        Just("]".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("${".to_string()),
        Just("${SET}".to_string()),
        Just("${NOPE}".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("!!str ".to_string()),
        Just("---\n".to_string()),
        Just("\t".to_string()),
        Just("9999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just(".nan".to_string()),
        Just("~".to_string()),
        Just("? ".to_string()),
        Just("|\n".to_string()),
        "[a-z_.]{1,12}",
        any::<String>(),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), fragment).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 0usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for m in muts {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] ^= b;
                }
            }
            Mutation::Insert(i, s) => {
                let i = i % len;
                let i = i.min(bytes.len());
                bytes.splice(i..i, s.bytes());
            }
            Mutation::Delete(i, n) => {
                let i = (i % len).min(bytes.len());
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::SwapLines(a, b) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let (a, b) = (a % lines.len(), b % lines.len());
                    lines.swap(a, b);
                }
                bytes = lines.join("\n").into_bytes();
            }
            Mutation::DuplicateLine(a) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let a = a % lines.len();
                    lines.insert(a, lines[a]);
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
    }
    bytes
}

fn load(bytes: &[u8]) {
    match aibench_recipe::load_bytes("fuzz.yaml", bytes, &env) {
        Ok(loaded) => {
            // A recipe that loads also renders, plans and serializes.
            let _ = loaded.warnings.render(&loaded.source, true);
            let _ = serde_json::to_string(&loaded.recipe).expect("serialize");
        }
        Err(e) => {
            assert!(e.diagnostics.has_errors(), "a failed load must say why");
            for d in &e.diagnostics.items {
                assert!(
                    d.pos.line >= 1 && d.pos.col >= 1,
                    "positions are 1-based: {d:?}"
                );
            }
            let _ = e.render(true);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        load(&bytes);
    }

    #[test]
    fn arbitrary_text(text in "\\PC{0,400}") {
        load(text.as_bytes());
    }

    #[test]
    fn mutated_examples(which in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let examples = examples();
        let text = &examples[which % examples.len()];
        load(&apply(text, &muts));
    }
}

#[test]
fn pathological_inputs() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"\xff\xfe\x00\x01binary".to_vec(),
        "[".repeat(100_000).into_bytes(),
        "{a: ".repeat(50_000).into_bytes(),
        "- ".repeat(50_000).into_bytes(),
        b"a: &x [*x]".to_vec(),
        b"*unknown".to_vec(),
        vec![b'a'; 2 << 20],
        "name: x\n".repeat(10).into_bytes(),
        b"name: \"\\uD800\"".to_vec(),
        b"? [a, b]\n: c".to_vec(),
        b"name: x\nservices: !!map {}\n".to_vec(),
    ];
    for c in cases {
        load(&c);
    }
}
