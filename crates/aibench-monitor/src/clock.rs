//! One clock for every series: seconds since the run's start.
//!
//! The run fixes its zero once, as a monotonic [`Instant`] and the wall-clock [`SystemTime`] of
//! that same moment. Samples taken here are placed with the monotonic clock; timestamps that a
//! service writes into its exposition (wall clock) are moved onto the run's clock through the
//! epoch. `metrics/clock.json` records the epoch so that anything else can be lined up.

use std::io;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
            epoch_utc: utc(epoch),
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

/// Seconds since the Unix epoch (negative before it).
pub fn epoch_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for seconds since the Unix epoch.
pub fn utc(epoch_s: f64) -> String {
    let ms_total = if epoch_s.is_finite() {
        (epoch_s * 1000.0).round() as i64
    } else {
        0
    };
    let secs = ms_total.div_euclid(1000);
    let ms = ms_total.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a (year, month, day) (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Write a file so that readers see the old content or the new, never a part: a temporary
/// file beside it (hidden, so globs like `*.json` skip it), then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn dates() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_795_437_902.5), "2026-11-23T12:45:02.500Z");
        for days in [-800_000, -1, 0, 1, 59, 60, 20_000, 1_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
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
