//! Arrival traces (`arrival: trace`): a file with one send offset per line, in seconds from the
//! start (`#` comments and blank lines skipped; anything after a comma, space or tab ignored, so
//! CSV exports work). Read here so that `validate` and `run` judge a trace the same way.

use std::path::Path;
use std::time::Duration;

/// Offsets beyond this (about 115 days) are not a benchmark's.
const MAX_OFFSET_S: f64 = 1e7;

/// The trace's offsets, sorted; or what is wrong with it, naming the file and line.
pub fn read_trace(path: &Path) -> Result<Vec<Duration>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the trace {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split([',', ' ', '\t']).next().unwrap_or("");
        let secs = first
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && (0.0..=MAX_OFFSET_S).contains(s))
            .ok_or_else(|| {
                format!(
                    "{}:{}: expected seconds from the start (0 to {MAX_OFFSET_S:.0}), found `{first}`",
                    path.display(),
                    i + 1
                )
            })?;
        out.push(Duration::from_secs_f64(secs));
    }
    if out.is_empty() {
        return Err(format!(
            "the trace {} has no send offsets (one number of seconds per line)",
            path.display()
        ));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_read_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "# offsets\n0.5,extra\n0\n\n1.25\n").unwrap();
        assert_eq!(
            read_trace(&p).unwrap(),
            [0.0, 0.5, 1.25].map(Duration::from_secs_f64)
        );
        for bad in [
            "-1\n",
            "nan\n",
            "inf\n",
            "1e300\n",
            "soon\n",
            "\n# nothing\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_trace(&p).is_err(), "{bad:?}");
        }
        assert!(read_trace(&dir.path().join("missing")).is_err());
    }
}
