//! How much of a change is noise: 95 % confidence intervals for the change of a p99 latency, a
//! throughput and the success rate between a baseline and a candidate, by bootstrap.
//!
//! A trial's records are cut into consecutive blocks of its measure window (one per second,
//! at least [`MIN_BLOCKS`] and at most [`MAX_BLOCKS`]), each record in the block it finished in.
//! A resample draws blocks with replacement: a *block* bootstrap, because requests close in
//! time share the machine's hiccups and the server's batches, and resampling them one by one
//! would call a hiccup signal. When a side has several repeats of a trial (`repeat: N`), a
//! resample first draws repeats with replacement, then blocks within each, so the spread
//! between runs counts as well as the spread within one.
//!
//! Each resample gives both sides' statistic; the change between them over [`RESAMPLES`]
//! resamples gives the interval (its 2.5th to 97.5th percentile). A change is beyond the noise
//! when the whole interval lies beyond a limit. Latencies are counted in buckets 0.2 % wide;
//! counts are exact. The random generator has a fixed seed: the same inputs always give the
//! same interval, so a verdict in CI does not flicker.

use std::path::Path;

use aibench_results::{Phase, RequestRecord, Summary};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Resamples per interval.
pub const RESAMPLES: usize = 2000;
/// Coverage of the intervals.
pub const LEVEL: f64 = 0.95;
/// Fewest blocks a measure window is cut into.
pub const MIN_BLOCKS: usize = 10;
/// Most blocks a measure window is cut into.
pub const MAX_BLOCKS: usize = 60;

/// The resampling's seed: fixed, so that the same runs always get the same verdict.
const SEED: u64 = 0x0061_6962_656e_6368; // "aibench"

/// Width of a latency bucket: a factor of 1.002.
const LN_STEP: f64 = 0.001_998_002_662_673_056; // ln(1.002)

/// A statistic that can be judged with its noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    TtftP99,
    TpotP99,
    ItlP99,
    E2eP99,
    E2eFromIntendedP99,
    RequestsPerS,
    OutputTokensPerS,
    /// In percent; its change is in percentage points.
    SuccessRate,
}

const LATENCIES: usize = 5;

impl Stat {
    fn latency(self) -> Option<usize> {
        match self {
            Stat::TtftP99 => Some(0),
            Stat::TpotP99 => Some(1),
            Stat::ItlP99 => Some(2),
            Stat::E2eP99 => Some(3),
            Stat::E2eFromIntendedP99 => Some(4),
            _ => None,
        }
    }

    /// Whether the change is a difference (percentage points) rather than a ratio (percent).
    pub fn is_difference(self) -> bool {
        self == Stat::SuccessRate
    }
}

/// One latency metric of a side: cumulative bucket counts per block.
#[derive(Debug, Clone, Default)]
struct Series {
    /// The bucket of column 0.
    lo: i64,
    width: usize,
    /// `cum[block * width + j]`: samples of the block in buckets `lo..=lo + j`.
    cum: Vec<u32>,
}

impl Series {
    fn build(per_block: &[Vec<i64>]) -> Series {
        let all = per_block.iter().flatten();
        let (Some(&lo), Some(&hi)) = (all.clone().min(), all.max()) else {
            return Series::default();
        };
        let width = (hi - lo + 1) as usize;
        let mut cum = vec![0u32; per_block.len() * width];
        for (b, buckets) in per_block.iter().enumerate() {
            let row = &mut cum[b * width..(b + 1) * width];
            for &k in buckets {
                row[(k - lo) as usize] += 1;
            }
            for j in 1..width {
                row[j] += row[j - 1];
            }
        }
        Series { lo, width, cum }
    }

    fn count(&self, block: usize) -> u64 {
        if self.width == 0 {
            0
        } else {
            u64::from(self.cum[block * self.width + self.width - 1])
        }
    }

    /// The `q` quantile of the blocks drawn `w[b]` times, in milliseconds.
    fn quantile(&self, drawn: &[(usize, u32)], q: f64) -> Option<f64> {
        if self.width == 0 {
            return None;
        }
        let total: u64 = drawn
            .iter()
            .map(|&(b, w)| u64::from(w) * self.count(b))
            .sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let below = |j: usize| -> u64 {
            drawn
                .iter()
                .map(|&(b, w)| u64::from(w) * u64::from(self.cum[b * self.width + j]))
                .sum()
        };
        let (mut lo, mut hi) = (0usize, self.width - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if below(mid) >= rank {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some((((self.lo + lo as i64) as f64 + 0.5) * LN_STEP).exp() / 1000.0)
    }
}

fn bucket(us: u64) -> i64 {
    ((us.max(1) as f64).ln() / LN_STEP).floor() as i64
}

/// One block's counts.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// Length of the block, seconds.
    len_s: f64,
    /// Successes that finished inside the window (any phase, as throughput counts them).
    completed: u64,
    output_tokens: u64,
    /// Measured requests, and those of them that succeeded.
    measured: u64,
    succeeded: u64,
}

/// The records of every repeat of one trial on one side, cut into blocks.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Each repeat's range of blocks.
    repeats: Vec<std::ops::Range<usize>>,
    blocks: Vec<Counts>,
    series: [Series; LATENCIES],
}

/// One repeat's records, read but not yet bucketed.
#[derive(Default)]
struct RawRepeat {
    blocks: Vec<Counts>,
    lat: [Vec<Vec<i64>>; LATENCIES],
}

fn read_repeat(requests: &Path, summary: &Summary) -> Option<RawRepeat> {
    let w = summary.window.as_ref()?;
    let (start_us, end_us) = ((w.start_ms * 1000.0) as u64, (w.end_ms * 1000.0) as u64);
    if end_us <= start_us {
        return None;
    }
    let span = end_us - start_us;
    let n = ((span as f64 / 1e6).round() as usize).clamp(MIN_BLOCKS, MAX_BLOCKS);
    let block_us = span.div_ceil(n as u64).max(1);
    let mut raw = RawRepeat {
        blocks: (0..n)
            .map(|i| Counts {
                len_s: (span.min((i as u64 + 1) * block_us) - span.min(i as u64 * block_us)) as f64
                    / 1e6,
                ..Counts::default()
            })
            .collect(),
        lat: std::array::from_fn(|_| vec![Vec::new(); n]),
    };
    let block_of = |us: u64| ((us.saturating_sub(start_us) / block_us) as usize).min(n - 1);
    for rec in aibench_results::read_records(requests).ok()? {
        let Ok(r): Result<RequestRecord, _> = rec else {
            continue;
        };
        let success = r.error.is_none() && r.is_success();
        let finished = r.done_us.or(r.end_us).unwrap_or(r.intended_us);
        if success && (start_us..end_us).contains(&finished) {
            let c = &mut raw.blocks[block_of(finished)];
            c.completed += 1;
            c.output_tokens += u64::from(r.output_tokens.unwrap_or(0));
        }
        if r.phase != Phase::Measure {
            continue;
        }
        let b = block_of(finished);
        raw.blocks[b].measured += 1;
        if !success {
            continue;
        }
        raw.blocks[b].succeeded += 1;
        let lat = &mut raw.lat;
        for (i, v) in [
            r.ttft_us(),
            r.tpot_us(),
            None,
            r.e2e_us(),
            r.e2e_from_intended_us(),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(v) = v {
                lat[i][b].push(bucket(v));
            }
        }
        lat[2][b].extend(r.itl_us.iter().map(|&g| bucket(u64::from(g))));
    }
    Some(raw)
}

impl Samples {
    /// Read the repeats of one trial: each its `requests.jsonl` and its summary (for the
    /// window). `None` when any of them has no records or no window.
    pub fn read(repeats: &[(&Path, &Summary)]) -> Option<Samples> {
        let mut out = Samples::default();
        let mut lat: [Vec<Vec<i64>>; LATENCIES] = Default::default();
        for (dir, summary) in repeats {
            let raw = read_repeat(&dir.join("requests.jsonl"), summary)?;
            let first = out.blocks.len();
            out.blocks.extend(raw.blocks);
            out.repeats.push(first..out.blocks.len());
            for (all, mine) in lat.iter_mut().zip(raw.lat) {
                all.extend(mine);
            }
        }
        if out.blocks.iter().all(|b| b.measured == 0) {
            return None;
        }
        out.series = lat.map(|l| Series::build(&l));
        Some(out)
    }

    /// How many repeats the samples hold.
    pub fn repeats(&self) -> usize {
        self.repeats.len()
    }

    /// Every block once.
    fn all(&self) -> Vec<(usize, u32)> {
        (0..self.blocks.len()).map(|b| (b, 1)).collect()
    }

    /// A resample: repeats drawn with replacement, then blocks within each.
    fn draw(&self, rng: &mut SmallRng, weights: &mut [u32]) -> Vec<(usize, u32)> {
        weights.iter_mut().for_each(|w| *w = 0);
        let n = self.repeats.len();
        for _ in 0..n {
            let r = if n == 1 { 0 } else { rng.random_range(0..n) };
            let range = self.repeats[r].clone();
            for _ in range.clone() {
                weights[rng.random_range(range.clone())] += 1;
            }
        }
        weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0)
            .map(|(b, w)| (b, *w))
            .collect()
    }

    /// The statistic over the blocks drawn.
    fn stat(&self, s: Stat, drawn: &[(usize, u32)]) -> Option<f64> {
        if let Some(i) = s.latency() {
            return self.series[i].quantile(drawn, 0.99);
        }
        let sum = |f: fn(&Counts) -> f64| -> f64 {
            drawn
                .iter()
                .map(|&(b, w)| f64::from(w) * f(&self.blocks[b]))
                .sum()
        };
        match s {
            Stat::RequestsPerS | Stat::OutputTokensPerS => {
                let len = sum(|c| c.len_s);
                let n = if s == Stat::RequestsPerS {
                    sum(|c| c.completed as f64)
                } else {
                    sum(|c| c.output_tokens as f64)
                };
                (len > 0.0).then(|| n / len)
            }
            _ => {
                let total = sum(|c| c.measured as f64);
                (total > 0.0).then(|| 100.0 * sum(|c| c.succeeded as f64) / total)
            }
        }
    }

    /// The statistic over every block: the point estimate.
    pub fn point(&self, s: Stat) -> Option<f64> {
        self.stat(s, &self.all())
    }
}

/// The change of one statistic from the baseline to the candidate, with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    pub baseline: f64,
    pub candidate: f64,
    /// Percent for latencies and throughput; percentage points for the success rate.
    pub change: f64,
    /// The 95 % interval of the change.
    pub low: f64,
    pub high: f64,
    /// Repeats on each side.
    pub repeats: [usize; 2],
}

fn change(s: Stat, b: f64, c: f64) -> Option<f64> {
    if s.is_difference() {
        Some(c - b)
    } else if b > 0.0 {
        Some(100.0 * (c / b - 1.0))
    } else {
        None
    }
}

/// The change of each statistic with its interval (`None` where either side lacks it).
pub fn changes(base: &Samples, cand: &Samples, stats: &[Stat]) -> Vec<Option<Change>> {
    let mut rng = SmallRng::seed_from_u64(SEED);
    let mut draws: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(RESAMPLES); stats.len()];
    let (mut wb, mut wc) = (vec![0u32; base.blocks.len()], vec![0u32; cand.blocks.len()]);
    for _ in 0..RESAMPLES {
        let db = base.draw(&mut rng, &mut wb);
        let dc = cand.draw(&mut rng, &mut wc);
        for (s, out) in stats.iter().zip(draws.iter_mut()) {
            let d = match (base.stat(*s, &db), cand.stat(*s, &dc)) {
                (Some(b), Some(c)) => change(*s, b, c),
                _ => None,
            };
            out.push(d);
        }
    }
    stats
        .iter()
        .zip(draws)
        .map(|(s, d)| {
            let (b, c) = (base.point(*s)?, cand.point(*s)?);
            let mut d: Vec<f64> = d.into_iter().flatten().collect();
            // A statistic missing from many resamples (a handful of samples) has no interval.
            if d.len() < RESAMPLES * 9 / 10 {
                return None;
            }
            d.sort_by(f64::total_cmp);
            let at = |q: f64| d[((q * (d.len() - 1) as f64).round() as usize).min(d.len() - 1)];
            let tail = (1.0 - LEVEL) / 2.0;
            Some(Change {
                baseline: b,
                candidate: c,
                change: change(*s, b, c)?,
                low: at(tail),
                high: at(1.0 - tail),
                repeats: [base.repeats(), cand.repeats()],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples of one repeat from (finish time µs, E2E µs) pairs over a 20 s window.
    fn samples(reqs: &[(u64, u64)]) -> Samples {
        let n = 20;
        let mut raw = RawRepeat {
            blocks: vec![
                Counts {
                    len_s: 1.0,
                    ..Counts::default()
                };
                n
            ],
            lat: std::array::from_fn(|_| vec![Vec::new(); n]),
        };
        for &(t, e2e) in reqs {
            let b = ((t / 1_000_000) as usize).min(n - 1);
            raw.blocks[b].completed += 1;
            raw.blocks[b].measured += 1;
            raw.blocks[b].succeeded += 1;
            raw.lat[3][b].push(bucket(e2e));
        }
        Samples {
            repeats: std::iter::once(0..n).collect(),
            blocks: raw.blocks,
            series: raw.lat.map(|l| Series::build(&l)),
        }
    }

    /// A deterministic spread of latencies around `base` µs: `count` requests over 20 s.
    fn run(count: u64, base: f64, seed: u64) -> Vec<(u64, u64)> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..count)
            .map(|i| {
                let t = i * 20_000_000 / count;
                let jitter: f64 = rng.random_range(0.8..1.25);
                (t, (base * jitter) as u64)
            })
            .collect()
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_exact_ones() {
        let reqs = run(5000, 100_000.0, 1);
        let s = samples(&reqs);
        let mut exact: Vec<u64> = reqs.iter().map(|r| r.1).collect();
        exact.sort_unstable();
        let p99 = exact[(0.99 * exact.len() as f64).ceil() as usize - 1] as f64 / 1000.0;
        let got = s.point(Stat::E2eP99).unwrap();
        assert!((got / p99 - 1.0).abs() < 0.002, "{got} vs {p99}");
        assert_eq!(s.point(Stat::RequestsPerS), Some(250.0));
        assert_eq!(s.point(Stat::SuccessRate), Some(100.0));
    }

    #[test]
    fn the_same_load_twice_has_an_interval_around_zero() {
        let (a, b) = (
            samples(&run(2000, 50_000.0, 1)),
            samples(&run(2000, 50_000.0, 2)),
        );
        let c = changes(&a, &b, &[Stat::E2eP99, Stat::RequestsPerS]);
        let lat = c[0].as_ref().unwrap();
        assert!(lat.low < 0.0 && lat.high > 0.0, "{lat:?}");
        assert!(lat.high - lat.low < 10.0, "{lat:?}");
        let thr = c[1].as_ref().unwrap();
        assert!(thr.low <= 0.0 && thr.high >= 0.0, "{thr:?}");
    }

    #[test]
    fn a_slower_candidate_has_an_interval_beyond_ten_percent() {
        let (a, b) = (
            samples(&run(2000, 50_000.0, 1)),
            samples(&run(2000, 60_000.0, 2)),
        );
        let c = changes(&a, &b, &[Stat::E2eP99]);
        let lat = c[0].as_ref().unwrap();
        assert!((lat.change - 20.0).abs() < 3.0, "{lat:?}");
        assert!(lat.low > 10.0 && lat.high > lat.change, "{lat:?}");
    }

    #[test]
    fn a_hiccup_in_one_second_widens_the_interval() {
        // One second of 3x latencies: the p99 moves, but a block bootstrap knows it is one
        // burst, so the interval reaches back to zero.
        let calm = run(2000, 50_000.0, 1);
        let mut bumpy = run(2000, 50_000.0, 2);
        for r in bumpy.iter_mut().filter(|r| r.0 / 1_000_000 == 7) {
            r.1 *= 3;
        }
        let c = changes(&samples(&calm), &samples(&bumpy), &[Stat::E2eP99]);
        let lat = c[0].as_ref().unwrap();
        assert!(lat.change > 50.0, "{lat:?}");
        assert!(lat.low < 10.0, "{lat:?}");
    }

    #[test]
    fn intervals_are_the_same_every_time() {
        let (a, b) = (
            samples(&run(500, 50_000.0, 1)),
            samples(&run(500, 55_000.0, 2)),
        );
        assert_eq!(
            changes(&a, &b, &[Stat::E2eP99]),
            changes(&a, &b, &[Stat::E2eP99])
        );
    }
}
