//! The pacer: one thread that releases the tokens of fixed-timing streams at their deadlines.
//!
//! tokio's timer rounds every deadline up to the next millisecond, which would make a
//! reference target late by up to 1 ms. The pacer instead keeps one heap entry per stream (not
//! per token), sleeps on the OS's high-resolution timer until the earliest deadline, then bumps
//! each due stream's released-token counter and wakes its task. It wakes at most once per
//! [`MIN_WAKE_GAP`]: while tokens are sparse each one leaves at its deadline (within the OS's
//! wake-up latency), and when they are dense they are released in batches, so that a thousand
//! streams cost a few thousand pacer wake-ups per second rather than a hundred thousand. A
//! stream registers once, when its request arrives; a token costs the pacer a heap pop and push,
//! one atomic store and one wake, and costs the stream one atomic load. No lock of ours is
//! shared between streams.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The pacer sleeps at least this long between two wake-ups, so that tokens due close together
/// are released in one batch: each wake-up of a tokio worker from this thread costs a system
/// call, which dominates the cost of a token when hundreds of streams run.
pub(crate) const MIN_WAKE_GAP: Duration = Duration::from_micros(250);

/// A handle on the pacer thread; dropping it stops the thread.
pub(crate) struct Pacer {
    tx: Option<Sender<Entry>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// Reference point for `wake_at`.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the pacer will next wake by itself (`u64::MAX`: idle).
    wake_at: AtomicU64,
    stop: AtomicBool,
}

/// One stream's side of the schedule: how many tokens are due, and whom to wake.
pub(crate) struct Slot {
    released: AtomicU32,
    cancelled: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    /// Tokens whose deadline has passed.
    pub(crate) fn released(&self) -> u32 {
        self.released.load(Ordering::Acquire)
    }

    /// Wake `cx` at the next release; returns the released count read after registering, so
    /// that a release racing with the registration is never lost.
    pub(crate) fn register(&self, cx: &Context<'_>) -> u32 {
        {
            let mut guard = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *guard = Some(cx.waker().clone()),
            }
        }
        self.released()
    }

    /// The stream is gone: the pacer drops its entry at the next deadline.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn wake(&self) {
        let guard = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = guard.as_ref() {
            waker.wake_by_ref();
        }
    }
}

struct Entry {
    next: Instant,
    period: Duration,
    released: u32,
    count: u32,
    slot: Arc<Slot>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.next == other.next
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.next.cmp(&self.next)
    }
}

impl Pacer {
    pub(crate) fn start() -> std::io::Result<Pacer> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            wake_at: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("aibench-sim-pacer".into())
            .spawn(move || run(rx, &thread_shared))?;
        Ok(Pacer {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Release `count` tokens at `first`, `first + period`, `first + 2 period`, ...
    pub(crate) fn schedule(&self, first: Instant, period: Duration, count: u32) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            released: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        if count == 0 {
            return slot;
        }
        let entry = Entry {
            next: first,
            period,
            released: 0,
            count,
            slot: slot.clone(),
        };
        let Some(tx) = &self.tx else { return slot };
        if tx.send(entry).is_ok() {
            // Pairs with the fence in `run`: either the pacer sees the entry before it sleeps,
            // or we see its wake time and wake it when the new deadline is earlier.
            fence(Ordering::SeqCst);
            let due = nanos_since(self.shared.epoch, first);
            if due < self.shared.wake_at.load(Ordering::SeqCst) {
                if let Some(thread) = &self.thread {
                    thread.thread().unpark();
                }
            }
        }
        slot
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX - 1)
}

fn run(rx: Receiver<Entry>, shared: &Shared) {
    tighten_timer_slack();
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        heap.extend(rx.try_iter());
        let now = Instant::now();
        while let Some(top) = heap.peek() {
            if top.next > now {
                break;
            }
            let Some(mut entry) = heap.pop() else { break };
            if entry.slot.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            entry.released += 1;
            entry.slot.released.store(entry.released, Ordering::Release);
            entry.slot.wake();
            if entry.released < entry.count {
                entry.next += entry.period;
                heap.push(entry);
            }
        }
        // Sleep until the earliest deadline, but not sooner than MIN_WAKE_GAP after this wake.
        let wake = heap.peek().map(|e| e.next.max(now + MIN_WAKE_GAP));
        let wake_at = wake.map_or(u64::MAX, |t| nanos_since(shared.epoch, t));
        shared.wake_at.store(wake_at, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let mut arrived = rx.try_iter().peekable();
        if arrived.peek().is_some() {
            heap.extend(arrived);
            continue;
        }
        match wake {
            Some(wake) => {
                let now = Instant::now();
                if wake > now {
                    thread::park_timeout(wake - now);
                }
            }
            None => thread::park(),
        }
    }
}

/// Ask Linux to wake this thread within a microsecond of its deadline instead of the default
/// 50 µs timer slack.
#[cfg(target_os = "linux")]
pub(crate) fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only changes this thread's slack.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn tighten_timer_slack() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_tokens_on_their_deadlines() {
        let pacer = Pacer::start().unwrap();
        let start = Instant::now();
        let first = start + Duration::from_millis(5);
        let slot = pacer.schedule(first, Duration::from_millis(2), 3);
        while slot.released() < 3 {
            thread::sleep(Duration::from_micros(200));
        }
        assert!(start.elapsed() >= Duration::from_millis(9));
    }

    #[test]
    fn an_earlier_deadline_wakes_a_sleeping_pacer() {
        let pacer = Pacer::start().unwrap();
        let now = Instant::now();
        let _late = pacer.schedule(now + Duration::from_secs(3600), Duration::from_secs(1), 1);
        thread::sleep(Duration::from_millis(5));
        let soon = pacer.schedule(Instant::now() + Duration::from_millis(1), Duration::ZERO, 1);
        let waited = Instant::now();
        while soon.released() < 1 {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "pacer never woke"
            );
            thread::sleep(Duration::from_micros(200));
        }
    }
}
