//! Writing `requests.jsonl` off the hot path: callers hand records to a channel and a dedicated
//! thread encodes them into a buffered file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::RequestRecord;

enum Msg {
    Records(Vec<RequestRecord>),
    Flush(mpsc::SyncSender<io::Result<()>>),
}

/// A buffered JSON-lines writer running on its own thread.
///
/// [`write`](RecordWriter::write) never blocks and never does I/O; encoding and writing happen on
/// the writer thread. Everything handed over is written by the time [`close`](RecordWriter::close)
/// returns (or the writer is dropped). The first I/O error stops writing and is reported by
/// `flush` or `close`.
pub struct RecordWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<io::Result<u64>>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RecordWriter {
    /// Create (or truncate) `path` and start the writer thread.
    pub fn create(path: &Path) -> io::Result<RecordWriter> {
        let file = File::create(path)?;
        let mut w = RecordWriter::from_writer(file)?;
        w.path = Some(path.to_path_buf());
        Ok(w)
    }

    /// Start a writer thread over any sink (tests use a `Vec` behind a handle, or a pipe).
    pub fn from_writer<W: Write + Send + 'static>(sink: W) -> io::Result<RecordWriter> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("aibench-records".into())
            .spawn(move || writer_loop(BufWriter::with_capacity(1 << 16, sink), rx))?;
        Ok(RecordWriter {
            tx: Some(tx),
            thread: Some(thread),
            path: None,
        })
    }

    /// The file being written, if created with [`RecordWriter::create`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Queue one record; returns at once.
    pub fn write(&self, record: RequestRecord) {
        self.write_batch(vec![record]);
    }

    /// Queue a batch of records; returns at once. One hand-over per batch rather than per
    /// record matters on a busy client: a writer thread woken for every request costs a futex
    /// call and a context switch each, and when the client has one core the woken thread
    /// preempts the sender every time (a third of the client's CPU at 30,000 requests/s).
    pub fn write_batch(&self, batch: Vec<RequestRecord>) {
        if batch.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // A send fails only when the thread has stopped on an I/O error, which `close`
            // reports.
            let _ = tx.send(Msg::Records(batch));
        }
    }

    /// Write out everything queued so far and wait until it is on its way to the file.
    pub fn flush(&self) -> io::Result<()> {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("record writer closed"))?;
        tx.send(Msg::Flush(done_tx))
            .map_err(|_| io::Error::other("record writer stopped"))?;
        done_rx
            .recv()
            .map_err(|_| io::Error::other("record writer stopped"))?
    }

    /// Write everything queued, flush, stop the thread, and return how many records were written.
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

impl Drop for RecordWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The longest a written record stays in the buffer: whatever the load, records reach the
/// file (the kernel's page cache) within this, so a crash of aibench loses at most this much.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

fn writer_loop<W: Write>(mut out: BufWriter<W>, rx: mpsc::Receiver<Msg>) -> io::Result<u64> {
    let mut written = 0u64;
    let mut failed: Option<io::Error> = None;
    // When the oldest record not yet flushed was written.
    let mut dirty_since: Option<Instant> = None;
    loop {
        let wait = dirty_since.map_or(FLUSH_EVERY, |t| FLUSH_EVERY.saturating_sub(t.elapsed()));
        match rx.recv_timeout(wait) {
            Ok(Msg::Records(batch)) => {
                if failed.is_none() {
                    for r in &batch {
                        let res = serde_json::to_writer(&mut out, r)
                            .map_err(io::Error::from)
                            .and_then(|()| out.write_all(b"\n"));
                        if let Err(e) = res {
                            failed = Some(e);
                            break;
                        }
                        written += 1;
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                }
            }
            Ok(Msg::Flush(done)) => {
                let res = match &failed {
                    Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    None => out.flush(),
                };
                dirty_since = None;
                let _ = done.send(res);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Batches arriving without pause must not keep records in the buffer: flush by age.
        if dirty_since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
            if failed.is_none() {
                if let Err(e) = out.flush() {
                    failed = Some(e);
                }
            }
            dirty_since = None;
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    out.flush()?;
    Ok(written)
}

/// Read `requests.jsonl` back, one record per line (blank lines skipped).
pub fn read_records(path: &Path) -> io::Result<impl Iterator<Item = io::Result<RequestRecord>>> {
    let reader = BufReader::new(File::open(path)?);
    Ok(reader
        .lines()
        .enumerate()
        .filter_map(|(i, line)| match line {
            Err(e) => Some(Err(e)),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(serde_json::from_str(&l).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1))
            })),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Phase;

    #[test]
    fn writes_every_record_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let w = RecordWriter::create(&path).unwrap();
        for i in 0..1000 {
            w.write(RequestRecord::new(i, Phase::Measure, i * 10));
            if i == 500 {
                w.flush().unwrap();
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                assert_eq!(lines, 501);
            }
        }
        assert_eq!(w.close().unwrap(), 1000);
        let back: Vec<_> = read_records(&path)
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(back.len(), 1000);
        assert_eq!(back[999].intended_us, 9990);
    }

    #[test]
    fn drop_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        {
            let w = RecordWriter::create(&path).unwrap();
            w.write(RequestRecord::new(1, Phase::Warmup, 0));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn writes_every_batch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let w = RecordWriter::create(&path).unwrap();
        for b in 0..10u64 {
            w.write_batch(
                (0..100)
                    .map(|i| RequestRecord::new(b * 100 + i, Phase::Measure, i))
                    .collect(),
            );
        }
        w.write_batch(Vec::new());
        assert_eq!(w.close().unwrap(), 1000);
        let back: Vec<_> = read_records(&path)
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(back.len(), 1000);
        assert!(back.iter().enumerate().all(|(i, r)| r.id == i as u64));
    }

    /// Records reach the sink within [`FLUSH_EVERY`] even when batches never pause (before, the
    /// flush waited for a full second without a batch).
    #[test]
    fn records_reach_the_file_while_batches_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let w = RecordWriter::create(&path).unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut seen = 0;
        // Batches every 50 ms; look at the file as a reader (or a crash) would.
        while start.elapsed() < FLUSH_EVERY * 4 {
            w.write(RequestRecord::new(sent, Phase::Measure, sent));
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
            seen = std::fs::read_to_string(&path).unwrap().lines().count();
        }
        assert!(
            seen > 0,
            "{sent} records written, none on disk after {:?}",
            start.elapsed()
        );
        assert_eq!(w.close().unwrap(), sent);
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
        let w = RecordWriter::from_writer(Broken).unwrap();
        w.write_batch(vec![RequestRecord::new(1, Phase::Measure, 0); 2000]);
        let err = w.close().unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
