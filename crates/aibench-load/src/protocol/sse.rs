//! An incremental Server-Sent Events parser (WHATWG HTML, "event stream interpretation").
//!
//! Bytes arrive in arbitrary pieces: a line may be split across frames, a `\r\n` may be split
//! between its two bytes, one frame may hold many events. Lines end with `\n`, `\r\n` or `\r`;
//! lines starting with `:` are comments; a blank line dispatches the event. Buffers are reused,
//! so a long stream does not allocate per event.

/// One dispatched event; borrowed from the parser until the callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, if the event had one.
    pub event: Option<&'a [u8]>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// Incremental SSE parser; feed it body frames in order.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    has_event: bool,
    /// The previous piece ended in `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    /// Still at the very start of the stream (a UTF-8 byte-order mark is skipped there).
    at_start: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser {
            at_start: true,
            ..SseParser::default()
        }
    }

    /// Parse the next piece of the stream, calling `on_event` for every event it completes.
    pub fn feed(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.at_start {
            // Skip a BOM, possibly split across pieces.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            self.line.extend_from_slice(chunk);
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return;
            }
            self.at_start = false;
            let buffered = std::mem::take(&mut self.line);
            let rest = buffered.strip_prefix(BOM).unwrap_or(&buffered);
            self.feed(rest, on_event);
            return;
        }
        if chunk.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (content, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            if chunk[pos] == b'\r' {
                match rest.first() {
                    Some(b'\n') => chunk = &rest[1..],
                    Some(_) => chunk = rest,
                    None => {
                        self.after_cr = true;
                        chunk = rest;
                    }
                }
            } else {
                chunk = rest;
            }
            if self.line.is_empty() {
                self.process_line(content, on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(content);
                self.process_line(&line, on_event);
                line.clear();
                self.line = line;
            }
        }
        self.line.extend_from_slice(chunk);
    }

    /// Bytes held for a line or an event not yet complete.
    pub fn pending(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// The stream ended. A final line without its terminator is taken as complete, and an event
    /// missing its closing blank line is dispatched (lenient: some servers stop without it).
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.at_start {
            self.at_start = false;
            let buffered = std::mem::take(&mut self.line);
            self.feed(&buffered, on_event);
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, on_event);
        }
        self.dispatch(on_event);
        self.after_cr = false;
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
                self.has_event = true;
            }
            // `id` and `retry` matter to reconnecting browsers, not to a benchmark.
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if !self.data.is_empty() {
            let data = &self.data[..self.data.len() - 1];
            on_event(SseEvent {
                event: self.has_event.then_some(&self.event[..]),
                data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_event = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_pieces(pieces: &[&[u8]]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut push = |e: SseEvent<'_>| out.push((e.event.map(<[u8]>::to_vec), e.data.to_vec()));
        for piece in pieces {
            p.feed(piece, &mut push);
        }
        p.finish(&mut push);
        out
    }

    fn data_of(events: &[(Option<Vec<u8>>, Vec<u8>)]) -> Vec<String> {
        events
            .iter()
            .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
            .collect()
    }

    #[test]
    fn openai_style_stream() {
        let s = b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            data_of(&parse_pieces(&[s])),
            vec!["{\"a\":1}", "{\"a\":2}", "[DONE]"]
        );
    }

    #[test]
    fn comments_crlf_and_multiline_data() {
        let s = b": keep-alive\r\n\r\nevent: update\r\ndata: one\r\ndata:two\r\nid: 3\r\n\r\ndata\r\n\r\n";
        let ev = parse_pieces(&[s]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].0.as_deref(), Some(&b"update"[..]));
        assert_eq!(ev[0].1, b"one\ntwo");
        assert_eq!(ev[1], (None, Vec::new()));
    }

    #[test]
    fn cr_lf_split_across_pieces_is_one_line_end() {
        let ev = parse_pieces(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(data_of(&ev), vec!["a", "b"]);
    }

    #[test]
    fn empty_piece_between_cr_and_lf_changes_nothing() {
        let ev = parse_pieces(&[b"event: a\r", b"", b"\ndata: x\r\n\r\n"]);
        assert_eq!(ev, vec![(Some(b"a".to_vec()), b"x".to_vec())]);
    }

    #[test]
    fn bom_is_skipped_even_when_split() {
        let ev = parse_pieces(&[b"\xEF", b"\xBB\xBFdata: x\n\n"]);
        assert_eq!(data_of(&ev), vec!["x"]);
    }

    #[test]
    fn unterminated_tail_is_dispatched_at_finish() {
        assert_eq!(data_of(&parse_pieces(&[b"data: [DONE]"])), vec!["[DONE]"]);
        assert_eq!(data_of(&parse_pieces(&[b"data: x\n"])), vec!["x"]);
        assert!(parse_pieces(&[b": only a comment"]).is_empty());
    }

    #[derive(Debug, Clone)]
    struct Ev {
        event: Option<String>,
        data: Vec<String>,
        comment_before: Option<String>,
    }

    fn text() -> impl Strategy<Value = String> {
        // No line breaks; anything else, including colons, spaces and non-ASCII.
        proptest::string::string_regex("[ -~é€😀:]{0,24}").unwrap()
    }

    fn ev() -> impl Strategy<Value = Ev> {
        (
            proptest::option::of("[a-z]{1,8}"),
            proptest::collection::vec(text(), 1..4),
            proptest::option::of(text()),
        )
            .prop_map(|(event, data, comment_before)| Ev {
                event,
                data,
                comment_before,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn events_survive_any_split(
            events in proptest::collection::vec(ev(), 0..12),
            eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
        ) {
            let mut stream = String::new();
            for e in &events {
                if let Some(c) = &e.comment_before {
                    stream += &format!(":{c}{eol}");
                }
                if let Some(name) = &e.event {
                    stream += &format!("event: {name}{eol}");
                }
                for d in &e.data {
                    stream += &format!("data: {d}{eol}");
                }
                stream += eol;
            }
            let bytes = stream.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            let got = parse_pieces(&pieces);
            let want: Vec<(Option<Vec<u8>>, Vec<u8>)> = events
                .iter()
                .map(|e| (e.event.as_ref().map(|s| s.as_bytes().to_vec()), e.data.join("\n").into_bytes()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
