//! Arrival schedules: the absolute intended send times of an open loop, streamed (memory does not
//! grow with the run) and reproducible from a seed.
//!
//! Every process is generated in *operational time* at unit rate (gaps of 1 for constant,
//! Exp(1) for Poisson, Gamma(b, 1/b) for gamma: all with mean 1), then mapped to real time
//! through the inverse of the cumulative rate Λ(t) = ∫₀ᵗ λ(s) ds. With a fixed rate this is the
//! plain process; with a time-varying rate it is the standard time-rescaling construction.
//! The first arrival is at the first instant the rate is positive (time zero for a fixed rate).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp, Gamma};

use crate::spec::{Arrival, Process};

/// Iterator over intended send offsets from the run's start.
pub struct Schedule {
    kind: Kind,
}

enum Kind {
    Trace { offsets: Vec<Duration>, next: usize },
    Rescaled(Box<Rescaled>),
}

struct Rescaled {
    gaps: Gaps,
    rng: SmallRng,
    profile: Profile,
    /// Operational time of the next arrival.
    tau: f64,
    /// Current segment and the operational time at its start.
    seg: Option<Segment>,
    seg_index: usize,
    lam0: f64,
    first: bool,
}

enum Gaps {
    Constant,
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

impl Gaps {
    fn new(p: Process) -> Gaps {
        match p {
            Process::Constant => Gaps::Constant,
            Process::Poisson => Gaps::Exp(Exp::new(1.0).expect("rate 1 is valid")),
            Process::Gamma { burstiness } => {
                Gaps::Gamma(Gamma::new(burstiness, 1.0 / burstiness).expect("validated burstiness"))
            }
        }
    }

    fn sample(&self, rng: &mut SmallRng) -> f64 {
        match self {
            Gaps::Constant => 1.0,
            Gaps::Exp(d) => d.sample(rng),
            Gaps::Gamma(d) => d.sample(rng),
        }
    }
}

/// A stretch of time with a linear rate: λ(t0 + s) = a + b·s for s in [0, len).
#[derive(Debug, Clone, Copy)]
struct Segment {
    t0: f64,
    len: f64,
    a: f64,
    b: f64,
}

impl Segment {
    /// Operational time the segment holds.
    fn capacity(&self) -> f64 {
        if self.len.is_infinite() {
            if self.a > 0.0 || self.b > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        } else {
            self.a * self.len + self.b * self.len * self.len / 2.0
        }
    }

    /// The offset s into the segment where Λ has grown by `d`.
    fn invert(&self, d: f64) -> f64 {
        if d <= 0.0 {
            return 0.0;
        }
        if self.b.abs() < 1e-12 {
            return d / self.a;
        }
        // a·s + b·s²/2 = d, in the form that stays accurate for small b.
        let disc = (self.a * self.a + 2.0 * self.b * d).max(0.0);
        let s = 2.0 * d / (self.a + disc.sqrt());
        if self.len.is_finite() {
            s.min(self.len)
        } else {
            s
        }
    }
}

enum Profile {
    Fixed(f64),
    Steps(Vec<(f64, f64)>),
    Ramp { from: f64, to: f64, over: f64 },
    OnOff { rate: f64, on: f64, off: f64 },
}

impl Profile {
    fn segment(&self, i: usize) -> Option<Segment> {
        match self {
            Profile::Fixed(r) => (i == 0).then_some(Segment {
                t0: 0.0,
                len: f64::INFINITY,
                a: *r,
                b: 0.0,
            }),
            Profile::Steps(steps) => {
                let t0: f64 = steps.iter().take(i).map(|s| s.1).sum();
                steps.get(i).map(|&(rate, len)| Segment {
                    t0,
                    len,
                    a: rate,
                    b: 0.0,
                })
            }
            Profile::Ramp { from, to, over } => match i {
                0 if *over > 0.0 => Some(Segment {
                    t0: 0.0,
                    len: *over,
                    a: *from,
                    b: (to - from) / over,
                }),
                0 => Some(Segment {
                    t0: 0.0,
                    len: 0.0,
                    a: 0.0,
                    b: 0.0,
                }),
                1 => Some(Segment {
                    t0: *over,
                    len: f64::INFINITY,
                    a: *to,
                    b: 0.0,
                }),
                _ => None,
            },
            Profile::OnOff { rate, on, off } => {
                let period = on + off;
                let k = (i / 2) as f64;
                Some(if i % 2 == 0 {
                    Segment {
                        t0: k * period,
                        len: *on,
                        a: *rate,
                        b: 0.0,
                    }
                } else {
                    Segment {
                        t0: k * period + on,
                        len: *off,
                        a: 0.0,
                        b: 0.0,
                    }
                })
            }
        }
    }
}

impl Schedule {
    /// The schedule of `arrival`, seeded: the same seed gives the same times.
    pub fn new(arrival: &Arrival, seed: u64) -> Schedule {
        let (profile, process) = match arrival {
            Arrival::Trace { offsets } => {
                let mut offsets = offsets.clone();
                offsets.sort();
                return Schedule {
                    kind: Kind::Trace { offsets, next: 0 },
                };
            }
            Arrival::Constant { rate } => (Profile::Fixed(*rate), Process::Constant),
            Arrival::Poisson { rate } => (Profile::Fixed(*rate), Process::Poisson),
            Arrival::Gamma { rate, burstiness } => (
                Profile::Fixed(*rate),
                Process::Gamma {
                    burstiness: *burstiness,
                },
            ),
            Arrival::Step { steps, process } => (
                Profile::Steps(steps.iter().map(|(r, d)| (*r, d.as_secs_f64())).collect()),
                *process,
            ),
            Arrival::Ramp {
                from,
                to,
                over,
                process,
            } => (
                Profile::Ramp {
                    from: *from,
                    to: *to,
                    over: over.as_secs_f64(),
                },
                *process,
            ),
            Arrival::OnOff {
                rate,
                on,
                off,
                process,
            } => (
                Profile::OnOff {
                    rate: *rate,
                    on: on.as_secs_f64(),
                    off: off.as_secs_f64(),
                },
                *process,
            ),
        };
        let seg = profile.segment(0);
        Schedule {
            kind: Kind::Rescaled(Box::new(Rescaled {
                gaps: Gaps::new(process),
                rng: SmallRng::seed_from_u64(seed ^ 0x6172_7269_7661_6c73),
                profile,
                tau: 0.0,
                seg,
                seg_index: 0,
                lam0: 0.0,
                first: true,
            })),
        }
    }
}

impl Rescaled {
    fn next_offset(&mut self) -> Option<f64> {
        if self.first {
            self.first = false;
        } else {
            self.tau += self.gaps.sample(&mut self.rng);
        }
        loop {
            let seg = self.seg?;
            let cap = seg.capacity();
            // The first arrival sits at the first instant with a positive rate: skip segments
            // that hold no operational time.
            if cap > 0.0 && (self.tau - self.lam0 < cap || cap.is_infinite()) {
                return Some(seg.t0 + seg.invert(self.tau - self.lam0));
            }
            if cap.is_infinite() {
                return None;
            }
            self.lam0 += cap;
            self.seg_index += 1;
            self.seg = self.profile.segment(self.seg_index);
            // Guard against a profile that never accrues time again (all-zero repeating).
            if self.seg_index > 10_000_000 {
                return None;
            }
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        match &mut self.kind {
            Kind::Trace { offsets, next } => {
                let d = offsets.get(*next).copied();
                *next += 1;
                d
            }
            Kind::Rescaled(r) => r.next_offset().map(Duration::from_secs_f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(arrival: &Arrival, n: usize, seed: u64) -> Vec<f64> {
        let t: Vec<f64> = Schedule::new(arrival, seed)
            .take(n + 1)
            .map(|d| d.as_secs_f64())
            .collect();
        t.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn mean_cv(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn constant_spacing_is_exact() {
        let t: Vec<Duration> = Schedule::new(&Arrival::Constant { rate: 4.0 }, 1)
            .take(5)
            .collect();
        let ms: Vec<u128> = t.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 250, 500, 750, 1000]);
        for (k, d) in Schedule::new(&Arrival::Constant { rate: 1000.0 }, 1)
            .take(100_000)
            .enumerate()
        {
            let want = k as f64 / 1000.0;
            assert!((d.as_secs_f64() - want).abs() < 1e-9, "arrival {k}: {d:?}");
        }
    }

    #[test]
    fn poisson_has_mean_gap_and_cv_one() {
        let g = gaps(&Arrival::Poisson { rate: 50.0 }, 200_000, 7);
        let (mean, cv) = mean_cv(&g);
        assert!((mean - 0.02).abs() < 0.02 * 0.02, "mean {mean}");
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn gamma_cv_is_one_over_sqrt_burstiness() {
        for b in [0.25, 0.5, 2.0, 4.0] {
            let g = gaps(
                &Arrival::Gamma {
                    rate: 10.0,
                    burstiness: b,
                },
                200_000,
                11,
            );
            let (mean, cv) = mean_cv(&g);
            let want = 1.0 / f64::sqrt(b);
            assert!(
                (mean - 0.1).abs() < 0.1 * 0.03,
                "burstiness {b}: mean {mean}"
            );
            assert!(
                (cv - want).abs() < want * 0.03,
                "burstiness {b}: cv {cv}, want {want}"
            );
        }
    }

    #[test]
    fn same_seed_same_schedule_other_seed_differs() {
        let a = Arrival::Poisson { rate: 10.0 };
        let x: Vec<_> = Schedule::new(&a, 3).take(1000).collect();
        let y: Vec<_> = Schedule::new(&a, 3).take(1000).collect();
        let z: Vec<_> = Schedule::new(&a, 4).take(1000).collect();
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn steps_follow_their_rates_and_end() {
        let a = Arrival::Step {
            steps: vec![
                (10.0, Duration::from_secs(2)),
                (0.0, Duration::from_secs(1)),
                (20.0, Duration::from_secs(1)),
            ],
            process: Process::Constant,
        };
        let t: Vec<f64> = Schedule::new(&a, 0).map(|d| d.as_secs_f64()).collect();
        assert_eq!(t.len(), 20 + 20, "{t:?}");
        assert!(t.iter().filter(|&&x| x < 2.0).count() == 20);
        assert!(t.iter().all(|&x| !(2.0..3.0).contains(&x)));
        assert!((t[21] - t[20] - 0.05).abs() < 1e-9);
    }

    #[test]
    fn ramp_count_matches_integral() {
        // Rate 0 -> 100 over 10 s: 500 arrivals in the ramp, then 100/s.
        let a = Arrival::Ramp {
            from: 0.0,
            to: 100.0,
            over: Duration::from_secs(10),
            process: Process::Constant,
        };
        let t: Vec<f64> = Schedule::new(&a, 0)
            .take(1000)
            .map(|d| d.as_secs_f64())
            .collect();
        let in_ramp = t.iter().filter(|&&x| x < 10.0).count();
        assert!((499..=501).contains(&in_ramp), "{in_ramp}");
        // Λ(t) = 5 t² in the ramp: arrival k at sqrt(k / 5).
        assert!((t[125] - 5.0).abs() < 1e-6, "{}", t[125]);
        let late: Vec<f64> = t.windows(2).skip(600).map(|w| w[1] - w[0]).collect();
        assert!(late.iter().all(|g| (g - 0.01).abs() < 1e-9));
    }

    #[test]
    fn on_off_is_silent_when_off() {
        let a = Arrival::OnOff {
            rate: 10.0,
            on: Duration::from_secs(1),
            off: Duration::from_secs(1),
            process: Process::Poisson,
        };
        let t: Vec<f64> = Schedule::new(&a, 5)
            .take(5000)
            .map(|d| d.as_secs_f64())
            .collect();
        assert!(t.iter().all(|x| x.rem_euclid(2.0) <= 1.0 + 1e-9));
        let span = t.last().unwrap();
        let rate = t.len() as f64 / (span / 2.0);
        assert!((rate - 10.0).abs() < 0.5, "{rate}");
    }

    #[test]
    fn trace_is_replayed_sorted() {
        let a = Arrival::Trace {
            offsets: vec![Duration::from_millis(30), Duration::from_millis(10)],
        };
        let t: Vec<_> = Schedule::new(&a, 0).collect();
        assert_eq!(
            t,
            vec![Duration::from_millis(10), Duration::from_millis(30)]
        );
    }
}
