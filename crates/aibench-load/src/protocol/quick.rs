//! A quick read of the common OpenAI stream chunk, without serde.
//!
//! Every streamed token arrives as a JSON object such as
//! `{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,
//! "text":"t0 ","logprobs":null,"finish_reason":null}],"usage":null}`, and all the client needs
//! from it is how many characters of content it carries and the token usage, if any. Decoding
//! it with serde costs about a microsecond — as much as the kernel spends receiving it — mostly
//! on the fields nobody reads. [`scan`] walks the object once, checking its syntax as it goes,
//! and reads only what matters.
//!
//! It answers only when the answer is certain to be serde's: anything unusual (an escape in a
//! string it reads, non-ASCII in a string it skips, an `error` that is not null, an `object` of
//! `"error"`, a field given twice, a value of an unexpected type, an out-of-range count,
//! malformed JSON) gives `None`, and the caller decodes the chunk with serde, which then decides
//! what it means and how it fails.

/// What a chunk says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Characters of content (text, content, reasoning) over all choices.
    pub chars: u64,
    /// `usage.prompt_tokens` and `usage.completion_tokens`.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

/// Deeper nesting than this is left to serde (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// Read a chunk, or `None` when serde must (see the module documentation).
pub(crate) fn scan(json: &[u8]) -> Option<Chunk> {
    let mut p = Parser { b: json, i: 0 };
    let mut chunk = Chunk {
        chars: 0,
        prompt_tokens: None,
        completion_tokens: None,
    };
    let mut seen = [false; 5];
    p.ws();
    p.object(|p, key| {
        let slot = match key {
            b"choices" => 0,
            b"usage" => 1,
            b"error" => 2,
            b"object" => 3,
            b"message" => 4,
            _ => return p.skip(0),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match slot {
            0 => {
                p.array(|p| {
                    chunk.chars += p.choice()?;
                    Some(())
                })?;
            }
            1 => {
                if !p.null() {
                    let (prompt, completion) = p.usage()?;
                    chunk.prompt_tokens = prompt;
                    chunk.completion_tokens = completion;
                }
            }
            2 => {
                if !p.null() {
                    return None;
                }
            }
            3 => {
                if !p.null() && p.string()? == b"error" {
                    return None;
                }
            }
            _ => {
                if !p.null() {
                    p.string()?;
                }
            }
        }
        Some(())
    })?;
    p.ws();
    (p.i == p.b.len()).then_some(chunk)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    /// A `null` here (consumed), or not (nothing consumed).
    fn null(&mut self) -> bool {
        self.ws();
        self.literal(b"null").is_some()
    }

    /// `{ "key": value, ... }`, calling `field` with the parser at each value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[ value, ... ]`, calling `item` with the parser at each value.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes, its raw bytes (valid UTF-8).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let s = &self.b[start..start + len];
        if self.b[start + len] != b'"' {
            return None;
        }
        if !s.is_ascii() {
            std::str::from_utf8(s).ok()?;
        }
        self.i = start + len + 1;
        Some(s)
    }

    /// The characters of a string or null (0), as serde's `Option<Cow<str>>` would count them.
    fn text(&mut self) -> Option<u64> {
        if self.null() {
            return Some(0);
        }
        let s = self.string()?;
        Some(s.iter().filter(|&&c| (c & 0xC0) != 0x80).count() as u64)
    }

    /// One element of `choices`: an object whose `text` is a string, and whose `delta` and
    /// `message` are objects of strings (`content`, `reasoning_content`, `reasoning`).
    fn choice(&mut self) -> Option<u64> {
        let mut chars = 0;
        let mut seen = [false; 3];
        self.object(|p, key| {
            let slot = match key {
                b"text" => 0,
                b"delta" => 1,
                b"message" => 2,
                _ => return p.skip(0),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            if slot == 0 {
                chars += p.text()?;
            } else if !p.null() {
                chars += p.delta()?;
            }
            Some(())
        })?;
        Some(chars)
    }

    fn delta(&mut self) -> Option<u64> {
        let mut chars = 0;
        let mut seen = [false; 3];
        self.object(|p, key| {
            let slot = match key {
                b"content" => 0,
                b"reasoning_content" => 1,
                b"reasoning" => 2,
                _ => return p.skip(0),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            chars += p.text()?;
            Some(())
        })?;
        Some(chars)
    }

    fn usage(&mut self) -> Option<(Option<u32>, Option<u32>)> {
        let mut counts = [None; 2];
        let mut seen = [false; 2];
        self.object(|p, key| {
            let slot = match key {
                b"prompt_tokens" => 0,
                b"completion_tokens" => 1,
                _ => return p.skip(0),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            if !p.null() {
                counts[slot] = Some(p.count()?);
            }
            Some(())
        })?;
        Some((counts[0], counts[1]))
    }

    /// A plain unsigned integer that fits in 32 bits.
    fn count(&mut self) -> Option<u32> {
        self.ws();
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty()
            || (digits.len() > 1 && digits[0] == b'0')
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    /// Skip any value, checking its syntax; `None` for anything this reader leaves to serde.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => self.object(|p, _| p.skip(depth + 1)),
            b'[' => self.array(|p| p.skip(depth + 1)),
            b'"' => self.skip_string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A string that is not read: escapes are fine if valid; non-ASCII is left to serde.
    fn skip_string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            let plain = self.b[self.i..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))?;
            self.i += plain;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            // Surrogates must pair up; leave them to serde.
                            if matches!(hex[0], b'd' | b'D') && !matches!(hex[1], b'0'..=b'7') {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// A JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let digits = |p: &mut Self| {
            let start = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - start
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        // A number runs into nothing but a separator or the end.
        match self.peek() {
            None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') => Some(()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::response::OaChunk;
    use super::*;
    use proptest::prelude::*;

    /// The serde reading of a chunk, as `ResponseState` does it: `None` when it fails or reports
    /// an error.
    fn by_serde(json: &[u8]) -> Option<Chunk> {
        let c: OaChunk<'_> = serde_json::from_slice(json).ok()?;
        if c.error.is_some() || c.object.as_deref() == Some("error") {
            return None;
        }
        Some(Chunk {
            chars: c.content_chars(),
            prompt_tokens: c.usage.as_ref().and_then(|u| u.prompt_tokens),
            completion_tokens: c.usage.as_ref().and_then(|u| u.completion_tokens),
        })
    }

    fn agree(json: &str) {
        let quick = scan(json.as_bytes());
        if let Some(q) = quick {
            assert_eq!(Some(q), by_serde(json.as_bytes()), "{json}");
        }
    }

    #[test]
    fn reads_the_usual_chunks() {
        let vllm = r#"{"id":"cmpl-ff43","object":"text_completion","created":1795446970,"model":"sim","choices":[{"index":0,"text":"t0 ","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}"#;
        assert_eq!(scan(vllm.as_bytes()).map(|c| c.chars), Some(3));
        let chat = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"héllo €"},"finish_reason":null}]}"#;
        assert_eq!(scan(chat.as_bytes()).map(|c| c.chars), Some(7));
        let usage = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":32,"total_tokens":132,"completion_tokens":100}}"#;
        assert_eq!(
            scan(usage.as_bytes()),
            Some(Chunk {
                chars: 0,
                prompt_tokens: Some(32),
                completion_tokens: Some(100)
            })
        );
        for s in [vllm, chat, usage] {
            agree(s);
        }
    }

    #[test]
    fn leaves_the_unusual_to_serde() {
        for s in [
            r#"{"error":{"message":"boom"}}"#,
            r#"{"object":"error","message":"bad"}"#,
            r#"{"choices":[{"text":"a\nb"}]}"#,
            r#"{"choices":[{"text":"a"}],"choices":[]}"#,
            r#"{"choices":[{"text":1}]}"#,
            r#"{"choices":null}"#,
            r#"{"usage":{"prompt_tokens":-1}}"#,
            r#"{"usage":{"prompt_tokens":4294967296}}"#,
            r#"{"usage":{"prompt_tokens":1.0}}"#,
            r#"{"id":"naïve","choices":[]}"#,
            r#"{"choices":[{"text":"a"}]} x"#,
            r#"{"choices":[{"text":"a"},]}"#,
            r#"{"a":01}"#,
            r#"{"a":"\ud800"}"#,
            r#"[1]"#,
            "",
        ] {
            assert_eq!(scan(s.as_bytes()), None, "{s}");
        }
        // ...but what is fine is read.
        assert!(
            scan(br#" { "a" : [ 1 , -2.5e+3 , true , false , null , {"b":"\u00e9\n"} ] } "#)
                .is_some()
        );
    }

    fn value(depth: u32) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| serde_json::to_string(&x).unwrap()),
            "[ -~é\\\\\"\n]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        prop_oneof![
            leaf,
            proptest::collection::vec(value(depth - 1), 0..3)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z]{1,3}", value(depth - 1)), 0..3).prop_map(|v| {
                let f: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                format!("{{{}}}", f.join(","))
            }),
        ]
        .boxed()
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            "[ -~é€😀\n\\\\]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("7".to_string()),
        ]
    }

    fn chunk() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            text().prop_map(|t| format!("\"text\":{t}")),
            (text(), text())
                .prop_map(|(a, b)| format!("\"delta\":{{\"content\":{a},\"reasoning\":{b}}}")),
            text()
                .prop_map(|t| format!("\"message\":{{\"reasoning_content\":{t},\"role\":\"x\"}}")),
            value(2).prop_map(|v| format!("\"logprobs\":{v}")),
        ];
        let choice =
            proptest::collection::vec(field, 0..4).prop_map(|f| format!("{{{}}}", f.join(",")));
        let top = prop_oneof![
            proptest::collection::vec(choice, 0..3)
                .prop_map(|c| format!("\"choices\":[{}]", c.join(","))),
            prop_oneof![
                Just("null".to_string()),
                (any::<u32>(), any::<u64>()).prop_map(|(a, b)| format!(
                    "{{\"prompt_tokens\":{a},\"completion_tokens\":{b}}}"
                ))
            ]
            .prop_map(|u| format!("\"usage\":{u}")),
            prop_oneof![Just("null"), Just("\"e\""), Just("{}")]
                .prop_map(|e| format!("\"error\":{e}")),
            prop_oneof![Just("\"text_completion\""), Just("\"error\""), Just("null")]
                .prop_map(|o| format!("\"object\":{o}")),
            value(2).prop_map(|v| format!("\"id\":{v}")),
        ];
        proptest::collection::vec(top, 0..6).prop_map(|f| format!("{{{}}}", f.join(",")))
    }

    #[test]
    fn the_generated_chunks_exercise_the_quick_path() {
        // The agreement tests below only mean something if many chunks are read quickly.
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = chunk();
        let (mut quick, n) = (0, 500);
        for _ in 0..n {
            let json = strategy.new_tree(&mut runner).unwrap().current();
            quick += usize::from(scan(json.as_bytes()).is_some());
        }
        assert!(quick * 5 >= n, "only {quick} of {n} read quickly");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn never_disagrees_with_serde(json in chunk()) {
            agree(&json);
        }

        #[test]
        fn never_disagrees_on_damaged_chunks(
            json in chunk(),
            cut in any::<proptest::sample::Index>(),
            junk in proptest::sample::select(vec!["", ",", "}", "]", "\"", ":", "0", "-", " ", "\\", "é"]),
        ) {
            let mut s = json.into_bytes();
            let at = cut.index(s.len() + 1);
            let tail = s.split_off(at);
            s.extend_from_slice(junk.as_bytes());
            s.extend_from_slice(&tail[tail.len().min(1)..]);
            if let Ok(s) = String::from_utf8(s) {
                agree(&s);
            }
        }
    }
}
