//! Knee detection on curves whose knee is known.

use aibench_report::knee::{kneedle, max_curvature, Shape, DEFAULT_SENSITIVITY};

/// A fixed pseudo-random factor in `[1 - a, 1 + a]`, so noisy curves are reproducible.
fn noise(i: usize, a: f64) -> f64 {
    let h = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    1.0 + a * ((h % 2001) as f64 / 1000.0 - 1.0)
}

fn both(xs: &[f64], ys: &[f64], shape: Shape) -> (f64, f64) {
    let c = max_curvature(xs, ys, shape).expect("a curvature knee");
    let k = kneedle(xs, ys, shape, DEFAULT_SENSITIVITY).expect("a Kneedle knee");
    (xs[c.index], xs[k.index])
}

#[test]
fn hockey_stick_latency_knee_is_where_it_turns() {
    // Flat at 100 ms up to load 10, then +40 ms per unit of load.
    let xs: Vec<f64> = (1..=20).map(f64::from).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x <= 10.0 {
                100.0
            } else {
                100.0 + 40.0 * (x - 10.0)
            }
        })
        .collect();
    assert_eq!(both(&xs, &ys, Shape::ConvexIncreasing), (10.0, 10.0));
    let k = kneedle(&xs, &ys, Shape::ConvexIncreasing, DEFAULT_SENSITIVITY).unwrap();
    assert!(k.confirmed);
}

#[test]
fn noisy_hockey_stick_still_finds_the_knee() {
    let xs: Vec<f64> = (1..=20).map(f64::from).collect();
    let ys: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            (if x <= 12.0 {
                200.0
            } else {
                200.0 + 120.0 * (x - 12.0)
            }) * noise(i, 0.03)
        })
        .collect();
    let (c, k) = both(&xs, &ys, Shape::ConvexIncreasing);
    assert!((c - 12.0).abs() <= 1.0, "max curvature at {c}");
    assert!((k - 12.0).abs() <= 1.0, "Kneedle at {k}");
}

#[test]
fn saturating_throughput_knee_is_the_capacity() {
    // Throughput follows the offered rate up to a capacity of 12/s, then stays there.
    let xs: Vec<f64> = (1..=12).map(|i| 2.0 * f64::from(i)).collect();
    let ys: Vec<f64> = xs.iter().map(|&x| x.min(12.0)).collect();
    assert_eq!(both(&xs, &ys, Shape::ConcaveIncreasing), (12.0, 12.0));
}

#[test]
fn unevenly_spaced_loads() {
    let xs = [1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0];
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x: &f64| x.min(16.0) * noise(x as usize, 0.01))
        .collect();
    let (c, k) = both(&xs, &ys, Shape::ConcaveIncreasing);
    assert_eq!(c, 16.0);
    assert_eq!(k, 16.0);
}

#[test]
fn queueing_curve_knee_lies_at_high_utilisation() {
    // M/M/1 latency 1/(mu - lambda) with mu = 10: no sharp knee, but the bend lies at high load.
    let xs: Vec<f64> = (2..=19).map(|i| f64::from(i) * 0.5).collect();
    let ys: Vec<f64> = xs.iter().map(|&l| 1.0 / (10.0 - l)).collect();
    let (c, k) = both(&xs, &ys, Shape::ConvexIncreasing);
    assert!((7.0..=9.5).contains(&c), "max curvature at {c}");
    assert!((7.0..=9.5).contains(&k), "Kneedle at {k}");
}

#[test]
fn a_weak_bend_is_not_confirmed_a_strong_one_is() {
    let xs: Vec<f64> = (0..=10).map(f64::from).collect();
    let weak: Vec<f64> = xs.iter().map(|x| x + 0.02 * x * x).collect();
    let k = kneedle(&xs, &weak, Shape::ConvexIncreasing, DEFAULT_SENSITIVITY).unwrap();
    assert!(!k.confirmed, "{k:?}");
    let strong: Vec<f64> = xs
        .iter()
        .map(|x| {
            if *x < 8.0 {
                1.0
            } else {
                1.0 + 50.0 * (x - 7.0)
            }
        })
        .collect();
    let k = kneedle(&xs, &strong, Shape::ConvexIncreasing, DEFAULT_SENSITIVITY).unwrap();
    assert!(k.confirmed, "{k:?}");
    assert_eq!(xs[k.index], 7.0);
}

#[test]
fn a_flat_curve_or_the_wrong_bend_has_no_knee() {
    let xs: Vec<f64> = (1..=8).map(f64::from).collect();
    let concave: Vec<f64> = xs.iter().map(|&x| x.min(4.0)).collect();
    // Looking for an upward (latency) bend in a curve that only bends downward.
    assert!(max_curvature(&xs, &concave, Shape::ConvexIncreasing).is_none());
    assert!(kneedle(&xs, &concave, Shape::ConvexIncreasing, 1.0).is_none());
}
