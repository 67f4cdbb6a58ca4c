//! Wall-clock times and durations as every aibench file writes and every command reads them:
//! seconds since the Unix epoch, ISO 8601 UTC text, and durations with units (`250ms`, `1h30m`).
//!
//! Dates use the proleptic Gregorian calendar without a time-zone database: run directories
//! and logs are in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch of a wall-clock time (negative before it).
pub fn epoch_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_epoch() -> f64 {
    epoch_seconds(SystemTime::now())
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Count from 0000-03-01 so that each 400-year era ends with its leap day.
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

/// Days since 1970-01-01 of a (year, month, day); the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How many decimals of the second [`utc_with`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn utc(epoch_s: f64) -> String {
    utc_with(epoch_s, Precision::Seconds)
}

/// ISO 8601 UTC text of seconds since the epoch, with the second's fraction to `precision`
/// (rounded; times before the epoch are written as the epoch).
pub fn utc_with(epoch_s: f64, precision: Precision) -> String {
    let (scale, digits) = match precision {
        Precision::Seconds => (1i128, 0),
        Precision::Millis => (1_000, 3),
    };
    let ticks = if epoch_s.is_finite() {
        (epoch_s.max(0.0) * scale as f64).round() as i128
    } else {
        0
    };
    let secs = (ticks / scale) as i64;
    let frac = ticks % scale;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if digits > 0 {
        out.push_str(&format!(".{frac:0digits$}"));
    }
    out.push('Z');
    out
}

/// Seconds since the epoch of `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DDTHH:MM:SS` (UTC,
/// an optional trailing `Z`, `T` or a space between date and time).
pub fn parse_utc(text: &str) -> Option<f64> {
    let t = text.trim().trim_end_matches('Z');
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let mut hms = time.split(':');
        let h: i64 = hms.next()?.parse().ok()?;
        let min: i64 = hms.next()?.parse().ok()?;
        let s: i64 = match hms.next() {
            Some(s) => s.parse().ok()?,
            None => 0,
        };
        if hms.next().is_some() || h > 23 || min > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + min * 60 + s;
    }
    Some(secs as f64)
}

/// Whether a bare number (no unit) is read as seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareNumber {
    /// `30` is 30 seconds (command-line flags).
    Seconds,
    /// `30` is refused, except `0`: a unit is required (recipes, where a bare number is more
    /// likely a mistake than a choice).
    Refused,
}

/// Parse a duration: one or more `<number><unit>` parts, `250ms`, `30s`, `2m`, `1h30m`, `1.5s`;
/// units `ns`, `us` (`µs`), `ms`, `s` (`sec`), `m` (`min`), `h`, `d`, `w`.
pub fn parse_duration(text: &str, bare: BareNumber) -> Result<Duration, String> {
    let s = text.trim();
    let hint = "write a number with a unit, e.g. `250ms`, `30s`, `2m`, `1h30m`";
    if s.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    if let Ok(v) = s.parse::<f64>() {
        return match bare {
            BareNumber::Seconds => seconds(v, s),
            BareNumber::Refused if v == 0.0 => Ok(Duration::ZERO),
            BareNumber::Refused => Err(format!("duration `{s}` has no unit; {hint}")),
        };
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("`{s}` is not a duration; {hint}"));
        }
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid number in duration `{s}`; {hint}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !(c.is_alphabetic()))
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "" if rest.starts_with(char::is_whitespace) => {
                return Err(format!(
                    "invalid duration `{s}`: no spaces between number and unit; {hint}"
                ))
            }
            "" => return Err(format!("duration `{s}` has no unit; {hint}")),
            other => return Err(format!("unknown unit `{other}` in duration `{s}`; {hint}")),
        };
        total += num * scale;
    }
    seconds(total, s)
}

fn seconds(v: f64, text: &str) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    // 30 years; beyond, nanoseconds no longer fit the clock's 64 bits.
    if v > 1e9 {
        return Err(format!(
            "duration `{text}` is too long (more than 30 years)"
        ));
    }
    Ok(Duration::from_nanos((v * 1e9).round() as u64))
}

/// A short text of a duration in its largest exact unit: `150us`, `50ms`, `2s`, `1500ms`, `2m`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let units: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".into();
    }
    for (size, unit) in units {
        if nanos % size == 0 {
            return format!("{}{unit}", nanos / size);
        }
    }
    unreachable!("every count of nanoseconds is a whole number of nanoseconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_437_902.0), "2026-11-23T12:45:02Z");
        assert_eq!(
            utc_with(1_795_437_902.25, Precision::Millis),
            "2026-11-23T12:45:02.250Z"
        );
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(parse_utc("2026-11-23T12:45:02Z"), Some(1_795_437_902.0));
        assert_eq!(parse_utc("2026-11-23 12:45"), Some(1_795_437_900.0));
        assert_eq!(parse_utc("2026-11-23"), Some(1_795_392_000.0));
        assert_eq!(parse_utc("2026-13-01"), None);
        assert_eq!(parse_utc("yesterday"), None);
    }

    #[test]
    fn durations() {
        let p = |s| parse_duration(s, BareNumber::Refused);
        assert_eq!(p("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(p("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(p("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(p("150us").unwrap(), Duration::from_micros(150));
        assert_eq!(p("2w").unwrap(), Duration::from_secs(1_209_600));
        assert_eq!(p("0").unwrap(), Duration::ZERO);
        assert!(p("30").unwrap_err().contains("no unit"));
        assert!(p("5 s").unwrap_err().contains("no spaces"));
        assert!(p("5 parsecs").is_err());
        assert!(p("3y").unwrap_err().contains("unknown unit `y`"));
        assert!(p("").is_err());
        let bare = |s| parse_duration(s, BareNumber::Seconds);
        assert_eq!(bare("30").unwrap(), Duration::from_secs(30));
        assert_eq!(bare("0.5").unwrap(), Duration::from_millis(500));
        assert!(bare("-1").is_err());
    }

    #[test]
    fn durations_print_in_their_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_micros(150)), "150us");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for s in ["150us", "1500ms", "2m", "3h", "7ns"] {
            let d = parse_duration(s, BareNumber::Refused).unwrap();
            assert_eq!(format_duration(d), s);
        }
    }
}
