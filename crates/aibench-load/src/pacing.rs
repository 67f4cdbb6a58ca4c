//! Sleeping until an absolute deadline with sub-millisecond precision, on a plain thread.
//!
//! tokio's timer has a 1 ms granularity, which would add up to a millisecond of lag to every
//! open-loop arrival. The open-loop scheduler therefore runs on its own thread: it sleeps with
//! the OS timer until shortly before the deadline, then spins (yielding the core between checks)
//! for the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long before a deadline to stop sleeping and start spinning.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(200);
/// Longest single OS sleep, so a stop request is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Sleep until `deadline`, waking early if `stop` becomes true. Returns whether it stopped early.
pub fn sleep_until(deadline: Instant, spin: Duration, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let left = deadline - now;
        if left > spin {
            std::thread::sleep((left - spin).min(MAX_SLEEP));
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_wakes_before_the_deadline() {
        let stop = AtomicBool::new(false);
        for us in [0u64, 50, 300, 1_500, 10_000] {
            let deadline = Instant::now() + Duration::from_micros(us);
            assert!(!sleep_until(deadline, DEFAULT_SPIN, &stop));
            assert!(Instant::now() >= deadline);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(sleep_until(Instant::now() + Duration::from_secs(60), DEFAULT_SPIN, &stop));
    }
}
