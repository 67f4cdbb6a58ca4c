//! Quantities with units, written the way people write them: durations (`250ms`, `2m`,
//! `1h30m`), sizes (`4KiB`, `64GiB`), rates (`50/s`, `3000/min`) and percentages (`1%`).
//!
//! Each type parses from a string, prints back in a canonical form, and describes itself in the
//! JSON Schema with a `format` (which the validator uses to explain a bad value) and a `pattern`
//! (which editors use to flag one).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_unit {
    ($ty:ident, $name:literal, $format:literal, $pattern:expr, $desc:literal, $number:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($desc)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        let f: fn(f64) -> Result<$ty, String> = $number;
                        f(v as f64).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        let f: fn(f64) -> Result<$ty, String> = $number;
                        f(v as f64).map_err(E::custom)
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        let f: fn(f64) -> Result<$ty, String> = $number;
                        f(v).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "format": $format,
                    "pattern": $pattern,
                    "description": $desc,
                })
            }
        }
    };
}

/// A length of time. Written as one or more `<number><unit>` parts: `250ms`, `30s`, `2m`, `1h30m`,
/// `1.5s`; units `us`, `ms`, `s`, `m`, `h`, `d`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn from_secs_f64(s: f64) -> Self {
        Duration(std::time::Duration::from_secs_f64(s))
    }
    pub fn as_secs_f64(&self) -> f64 {
        self.0.as_secs_f64()
    }
    pub fn std(&self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // A bare number is refused: in a recipe it is more likely a forgotten unit than seconds.
        crate::time::parse_duration(s, crate::time::BareNumber::Refused).map(Duration)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us == 0 {
            return f.write_str("0s");
        }
        if us % 1000 != 0 {
            return write!(f, "{us}us");
        }
        let ms = us / 1000;
        if ms % 1000 != 0 {
            return write!(f, "{ms}ms");
        }
        let mut secs = ms / 1000;
        let h = secs / 3600;
        secs %= 3600;
        let m = secs / 60;
        secs %= 60;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if secs > 0 {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

string_unit!(
    Duration,
    "Duration",
    "duration",
    r"^\s*([0-9]+(\.[0-9]+)?(us|µs|ms|s|sec|m|min|h|d))+\s*$",
    "a duration such as `250ms`, `30s`, `2m`, `1h30m`",
    |v| Err(format!(
        "duration `{v}` has no unit; write e.g. `{v}s` or `{v}ms`"
    ))
);

/// An amount of memory or data: `512MiB`, `64GiB`, `4KiB`, `1GB`, `1000` (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let hint = "write a number with a unit, e.g. `4KiB`, `512MiB`, `64GiB`, `1GB`";
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("invalid size `{s}`; {hint}"))?;
        let scale: f64 = match unit.trim() {
            "" | "B" => 1.0,
            "K" | "KiB" => 1024.0,
            "M" | "MiB" => 1024f64.powi(2),
            "G" | "GiB" => 1024f64.powi(3),
            "T" | "TiB" => 1024f64.powi(4),
            "kB" | "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            other => return Err(format!("unknown unit `{other}` in size `{s}`; {hint}")),
        };
        let bytes = num * scale;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("size `{s}` is too large"));
        }
        Ok(Size(bytes.round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= scale && self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Size {
    /// Megabytes (MiB), the unit Slurm's `--mem` takes.
    pub fn mebibytes_ceil(&self) -> u64 {
        self.0.div_ceil(1 << 20)
    }
}

string_unit!(
    Size,
    "Size",
    "size",
    r"^\s*[0-9]+(\.[0-9]+)?\s*(B|K|KiB|M|MiB|G|GiB|T|TiB|kB|KB|MB|GB|TB)?\s*$",
    "a size such as `4KiB`, `512MiB`, `64GiB`, `1GB`",
    |v| if v >= 0.0 && v.fract() == 0.0 {
        Ok(Size(v as u64))
    } else {
        Err(format!("invalid size `{v}`"))
    }
);

/// Events per second. Written `50/s`, `3000/min`, `10/h`, or a bare number meaning per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let hint = "write e.g. `50/s`, `3000/min`, `10/h`, or a number of requests per second";
        let (num, unit) = match t.split_once('/') {
            Some((n, u)) => (n.trim(), u.trim()),
            None => (t, "s"),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid rate `{s}`; {hint}"))?;
        let per = match unit {
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit `/{other}` in rate `{s}`; {hint}")),
        };
        rate_from(n / per)
    }
}

/// The rates aibench can schedule: from one request a day to a million a second (beyond that
/// no client keeps time, and the gaps would be below the scheduler's microsecond clock).
pub const MIN_RATE_PER_S: f64 = 1.0 / 86_400.0;
pub const MAX_RATE_PER_S: f64 = 1e6;

fn rate_from(v: f64) -> Result<Rate, String> {
    if !(v.is_finite() && v > 0.0) {
        Err(format!("a rate must be above zero, got `{v}`"))
    } else if v < MIN_RATE_PER_S {
        Err(format!(
            "a rate of {v:e}/s is below one request a day; write e.g. `1/h`"
        ))
    } else if v > MAX_RATE_PER_S {
        Err(format!(
            "a rate of {v:e}/s is above the 1000000/s one client process can keep; spread the \
             load over client processes (`clients: {{ processes: N }}`)"
        ))
    } else {
        Ok(Rate(v))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1.0 && (self.0 * 60.0).fract().abs() < 1e-9 {
            write!(f, "{}/min", self.0 * 60.0)
        } else {
            write!(f, "{}/s", self.0)
        }
    }
}

string_unit!(
    Rate,
    "Rate",
    "rate",
    r"^\s*[0-9]+(\.[0-9]+)?\s*(/\s*(s|sec|m|min|h))?\s*$",
    "a rate such as `50/s`, `3000/min`, or a number per second",
    rate_from
);

/// A share of a whole, written `1%` or `0.5%`.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// As a fraction: `1%` is 0.01.
    pub fn fraction(&self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let num = t
            .strip_suffix('%')
            .ok_or_else(|| format!("`{s}` is not a percentage; write it with `%`, e.g. `1%`"))?;
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("invalid percentage `{s}`"))?;
        percent_from(v)
    }
}

fn percent_from(v: f64) -> Result<Percent, String> {
    if (0.0..=100.0).contains(&v) {
        Ok(Percent(v))
    } else {
        Err(format!("a percentage lies between 0% and 100%, got {v}%"))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

string_unit!(
    Percent,
    "Percent",
    "percent",
    r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$",
    "a percentage such as `1%` or `0.5%`",
    |v| Err(format!("write the percentage with `%`: `{v}%`"))
);

/// A Slurm time limit: `HH:MM:SS`, `D-HH:MM:SS`, `MM`, or a duration such as `2h`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlurmTime(pub u64);

impl FromStr for SlurmTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid time limit `{s}`; write `HH:MM:SS`, `D-HH:MM:SS` or a duration like `2h`"
            )
        };
        if t.chars().any(|c| c.is_ascii_alphabetic()) {
            let d: Duration = t.parse()?;
            return Ok(SlurmTime(d.0.as_secs().max(60)));
        }
        let (days, clock) = match t.split_once('-') {
            Some((d, c)) => (d.parse::<u64>().map_err(|_| bad())?, c),
            None => (0, t),
        };
        let parts: Vec<u64> = clock
            .split(':')
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let secs = match parts.as_slice() {
            [m] if days == 0 => m * 60,
            [h] => h * 3600,
            [m, s] if days == 0 => m * 60 + s,
            [h, m] => h * 3600 + m * 60,
            [h, m, s] => h * 3600 + m * 60 + s,
            _ => return Err(bad()),
        };
        Ok(SlurmTime(days * 86400 + secs))
    }
}

impl fmt::Display for SlurmTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, rest) = (self.0 / 86400, self.0 % 86400);
        let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
        if d > 0 {
            write!(f, "{d}-{h:02}:{m:02}:{s:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{s:02}")
        }
    }
}

string_unit!(
    SlurmTime,
    "SlurmTime",
    "slurm-time",
    r"^\s*(([0-9]+-)?[0-9]+(:[0-9]+){0,2}|([0-9]+(\.[0-9]+)?(s|m|min|h|d))+)\s*$",
    "a Slurm time limit such as `02:00:00`, `1-12:00:00` or `90m`",
    |v| Ok(SlurmTime((v as u64) * 60))
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<Duration>().unwrap().0;
        assert_eq!(d("250ms").as_millis(), 250);
        assert_eq!(d("2m").as_secs(), 120);
        assert_eq!(d("1h30m").as_secs(), 5400);
        assert_eq!(d("1.5s").as_millis(), 1500);
        assert_eq!(d("100us").as_micros(), 100);
        assert!("30".parse::<Duration>().unwrap_err().contains("no unit"));
        assert!("5 minutes".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
        assert!("2x"
            .parse::<Duration>()
            .unwrap_err()
            .contains("unknown unit `x`"));
        for s in ["250ms", "2m", "1h30m", "45s", "100us"] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn sizes_rates_percents() {
        assert_eq!("4KiB".parse::<Size>().unwrap().0, 4096);
        assert_eq!("64GiB".parse::<Size>().unwrap().0, 64 << 30);
        assert_eq!("1GB".parse::<Size>().unwrap().0, 1_000_000_000);
        assert_eq!("64GiB".parse::<Size>().unwrap().to_string(), "64GiB");
        assert!("4 furlongs".parse::<Size>().is_err());
        assert_eq!("50/s".parse::<Rate>().unwrap().0, 50.0);
        assert_eq!("3000/min".parse::<Rate>().unwrap().0, 50.0);
        assert_eq!("12".parse::<Rate>().unwrap().0, 12.0);
        assert!("0/s".parse::<Rate>().is_err());
        assert!("5/fortnight".parse::<Rate>().is_err());
        assert_eq!("1%".parse::<Percent>().unwrap().fraction(), 0.01);
        assert!("1".parse::<Percent>().is_err());
        assert!("150%".parse::<Percent>().is_err());
    }

    #[test]
    fn slurm_times() {
        let t = |s: &str| s.parse::<SlurmTime>().unwrap().0;
        assert_eq!(t("02:00:00"), 7200);
        assert_eq!(t("1-12:00:00"), 129_600);
        assert_eq!(t("30"), 1800);
        assert_eq!(t("90m"), 5400);
        assert_eq!(
            "02:00:00".parse::<SlurmTime>().unwrap().to_string(),
            "02:00:00"
        );
        assert!("soon".parse::<SlurmTime>().is_err());
    }
}
