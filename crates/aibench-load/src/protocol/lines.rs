//! Splitting a body into lines across arbitrary frame boundaries (for NDJSON streams).

/// Incremental line splitter: `\n`-terminated lines, a trailing `\r` removed, blank lines skipped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn new() -> Self {
        LineSplitter::default()
    }

    /// Feed the next piece, calling `on_line` for every line it completes.
    pub fn feed(&mut self, mut chunk: &[u8], on_line: &mut impl FnMut(&[u8])) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (content, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            chunk = rest;
            if self.buf.is_empty() {
                emit(content, on_line);
            } else {
                self.buf.extend_from_slice(content);
                let line = std::mem::take(&mut self.buf);
                emit(&line, on_line);
                self.buf = line;
                self.buf.clear();
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held for a line not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The body ended: emit a last line that had no terminator.
    pub fn finish(&mut self, on_line: &mut impl FnMut(&[u8])) {
        let line = std::mem::take(&mut self.buf);
        emit(&line, on_line);
    }
}

fn emit(line: &[u8], on_line: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(u8::is_ascii_whitespace) {
        on_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lines_survive_any_split(
            lines in proptest::collection::vec("[a-z{}\":,0-9 ]{1,30}", 0..10),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..20),
        ) {
            let lines: Vec<String> = lines.into_iter().filter(|l| !l.trim().is_empty()).collect();
            let eol = if crlf { "\r\n" } else { "\n" };
            let body: String = lines.iter().map(|l| format!("{l}{eol}")).collect();
            let bytes = body.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.extend([0, bytes.len()]);
            points.sort();
            let mut s = LineSplitter::new();
            let mut got = Vec::new();
            let mut push = |l: &[u8]| got.push(String::from_utf8(l.to_vec()).unwrap());
            for w in points.windows(2) {
                s.feed(&bytes[w[0]..w[1]], &mut push);
            }
            s.finish(&mut push);
            prop_assert_eq!(got, lines);
        }
    }

    #[test]
    fn unterminated_last_line_is_kept() {
        let mut s = LineSplitter::new();
        let mut got = Vec::new();
        s.feed(b"{\"a\":1}\n{\"done\":", &mut |l: &[u8]| {
            got.push(l.to_vec())
        });
        s.feed(b"true}", &mut |l: &[u8]| got.push(l.to_vec()));
        s.finish(&mut |l: &[u8]| got.push(l.to_vec()));
        assert_eq!(
            got,
            vec![b"{\"a\":1}".to_vec(), b"{\"done\":true}".to_vec()]
        );
    }
}
