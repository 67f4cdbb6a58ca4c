//! Writing `requests.jsonl` off the hot path, a batch of records at a time.
//!
//! The collector hands records over in batches ([`BatchWriter::write`]); a dedicated thread
//! encodes them into a buffered file, one JSON object per line (the format
//! [`aibench_results::read_records`] reads). One hand-over per batch rather than per record
//! matters: a writer thread woken for every request costs a futex call and a context switch
//! each, and when the client has one core the woken thread preempts the sender every time — a
//! third of the client's CPU at 30,000 requests/s.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use aibench_results::RequestRecord;

/// How often buffered lines are flushed to the file while the run goes on.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Size of the file buffer.
const BUFFER: usize = 1 << 16;

/// A buffered JSON-lines writer on its own thread, fed whole batches.
///
/// [`write`](BatchWriter::write) never blocks and does no I/O. Everything handed over is
/// written by the time [`close`](BatchWriter::close) returns (or the writer is dropped). The
/// first I/O error stops writing and is reported by `close`.
pub(crate) struct BatchWriter {
    tx: Option<mpsc::Sender<Vec<RequestRecord>>>,
    thread: Option<JoinHandle<io::Result<u64>>>,
    path: PathBuf,
}

impl BatchWriter {
    /// Create (or truncate) `path` and start the writer thread.
    pub fn create(path: &Path) -> io::Result<BatchWriter> {
        let file = File::create(path)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("aibench-records".into())
            .spawn(move || write_loop(BufWriter::with_capacity(BUFFER, file), rx))?;
        Ok(BatchWriter {
            tx: Some(tx),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a batch of records; returns at once.
    pub fn write(&self, batch: Vec<RequestRecord>) {
        if let Some(tx) = &self.tx {
            // A send fails only when the thread has stopped on an I/O error, which `close`
            // reports.
            let _ = tx.send(batch);
        }
    }

    /// Write everything queued, flush, stop the thread; returns how many records were written.
    pub fn close(mut self) -> io::Result<u64> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<u64> {
        drop(self.tx.take());
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("record writer thread panicked"))?,
            None => Ok(0),
        }
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn write_loop<W: Write>(
    mut out: BufWriter<W>,
    rx: mpsc::Receiver<Vec<RequestRecord>>,
) -> io::Result<u64> {
    let mut written = 0u64;
    let mut dirty = false;
    loop {
        let batch = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(b) => b,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if dirty {
                    out.flush()?;
                    dirty = false;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        for r in &batch {
            serde_json::to_writer(&mut out, r).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        dirty |= !batch.is_empty();
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aibench_results::{read_records, Phase};

    #[test]
    fn writes_every_batch_in_order_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let w = BatchWriter::create(&path).unwrap();
        assert_eq!(w.path(), path);
        for b in 0..10u64 {
            w.write(
                (0..100)
                    .map(|i| RequestRecord::new(b * 100 + i, Phase::Measure, i))
                    .collect(),
            );
        }
        w.write(Vec::new());
        assert_eq!(w.close().unwrap(), 1000);
        let back: Vec<_> = read_records(&path)
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(back.len(), 1000);
        assert!(back.iter().enumerate().all(|(i, r)| r.id == i as u64));
    }

    #[test]
    fn drop_writes_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        {
            let w = BatchWriter::create(&path).unwrap();
            w.write(vec![RequestRecord::new(1, Phase::Warmup, 0)]);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn an_io_error_is_reported_at_close() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("disk full"))
            }
        }
        let (tx, rx) = mpsc::channel();
        tx.send(vec![RequestRecord::new(1, Phase::Measure, 0); 2000])
            .unwrap();
        drop(tx);
        let err = write_loop(BufWriter::with_capacity(BUFFER, Broken), rx).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
