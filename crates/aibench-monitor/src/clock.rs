//! One clock for every series: seconds since the run's start.
//!
//! The run fixes its zero once, as a monotonic [`Instant`] and the wall-clock [`SystemTime`] of
//! that same moment. Samples taken here are placed with the monotonic clock; timestamps that a
//! service writes into its exposition (wall clock) are moved onto the run's clock through the
//! epoch. `metrics/clock.json` records the epoch so that anything else can be lined up.

use std::io;
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// The run's zero.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    pub zero: Instant,
    pub epoch: SystemTime,
}

impl RunClock {
    pub fn new(clock_zero: Instant, epoch_zero: SystemTime) -> RunClock {
        RunClock {
            zero: clock_zero,
            epoch: epoch_zero,
        }
    }

    /// Zero now.
    pub fn start_now() -> RunClock {
        RunClock::new(Instant::now(), SystemTime::now())
    }

    /// Seconds from the zero to `at` (negative before it).
    pub fn t_s(&self, at: Instant) -> f64 {
        match at.checked_duration_since(self.zero) {
            Some(d) => d.as_secs_f64(),
            None => -self.zero.duration_since(at).as_secs_f64(),
        }
    }

    /// Seconds from the zero to now.
    pub fn now_s(&self) -> f64 {
        self.t_s(Instant::now())
    }

    /// The zero as seconds since the Unix epoch.
    pub fn epoch_s(&self) -> f64 {
        epoch_seconds(self.epoch)
    }

    /// A wall-clock time (seconds since the Unix epoch) on the run's clock.
    pub fn from_epoch_s(&self, epoch_s: f64) -> f64 {
        epoch_s - self.epoch_s()
    }

    /// A time on the run's clock as seconds since the Unix epoch.
    pub fn to_epoch_s(&self, t_s: f64) -> f64 {
        self.epoch_s() + t_s
    }

    /// What `clock.json` holds.
    pub fn info(&self) -> ClockInfo {
        let epoch = self.epoch_s();
        ClockInfo {
            epoch_s: epoch,
            epoch_utc: aibench_results::time::utc_with(
                epoch,
                aibench_results::time::Precision::Millis,
            ),
            unit: "t_s in metrics/*.csv: seconds since this instant, on a monotonic clock".into(),
        }
    }

    /// Write `clock.json` into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(&self.info()).map_err(io::Error::other)?;
        write_atomic(&dir.join("clock.json"), &text)
    }
}

/// `metrics/clock.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClockInfo {
    /// The run's t = 0 as seconds since the Unix epoch.
    pub epoch_s: f64,
    /// The same, as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub epoch_utc: String,
    pub unit: String,
}

pub use aibench_results::time::{civil_from_days, days_from_civil, epoch_seconds};
pub use aibench_results::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_on_the_run_clock() {
        let zero = Instant::now();
        let clock = RunClock::new(zero, UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(clock.t_s(zero + Duration::from_millis(1500)), 1.5);
        assert_eq!(clock.from_epoch_s(1_002.25), 2.25);
        assert_eq!(clock.to_epoch_s(2.25), 1_002.25);
        assert_eq!(clock.epoch_s(), 1_000.0);
    }

    #[test]
    fn clock_json_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let clock = RunClock::new(Instant::now(), UNIX_EPOCH + Duration::from_millis(1_500));
        clock.write(dir.path()).unwrap();
        let info: ClockInfo =
            serde_json::from_slice(&std::fs::read(dir.path().join("clock.json")).unwrap()).unwrap();
        assert_eq!(info.epoch_s, 1.5);
        assert_eq!(info.epoch_utc, "1970-01-01T00:00:01.500Z");
    }
}
