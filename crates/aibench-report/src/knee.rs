//! Knee detection on a sweep's curves, by two methods.
//!
//! Both work on the curve normalised to the unit square (x and y each scaled to `[0, 1]`), so
//! the answer does not depend on units.
//!
//! - **Maximum curvature**: the signed curvature `y'' / (1 + y'²)^{3/2}` at each interior point,
//!   with first and second derivatives from the three-point formulas for uneven spacing; the
//!   knee is where it is largest in the direction of the bend (upward for a convex latency
//!   curve, downward for a concave throughput curve).
//! - **Kneedle** (Satopää, Albrecht, Irwin and Raghavan, 2011): the difference between the
//!   normalised curve and the diagonal from its first to its last point; the knee is where the
//!   curve is farthest from the diagonal. A knee is *confirmed* when the difference later falls
//!   below `d_knee − S · mean(Δx)` (sensitivity `S`, 1 by default), which tells a real bend from
//!   a sweep that simply ended.

/// Which way a curve bends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Flat, then rising faster and faster: latency against load.
    ConvexIncreasing,
    /// Rising, then flattening: throughput against load.
    ConcaveIncreasing,
}

/// A knee: the index of the point, and the score of every point.
#[derive(Debug, Clone, PartialEq)]
pub struct KneeResult {
    pub index: usize,
    /// The method's measure at the knee.
    pub score: f64,
    /// The method's measure at every point (0 where it is not defined).
    pub scores: Vec<f64>,
    /// Kneedle: confirmed by the threshold test. Maximum curvature: always true.
    pub confirmed: bool,
}

/// Kneedle's default sensitivity.
pub const DEFAULT_SENSITIVITY: f64 = 1.0;

/// A bend smaller than this (in normalised units) is not a knee.
const MIN_SCORE: f64 = 1e-6;

fn normalise(xs: &[f64], ys: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    if xs.len() != ys.len() || xs.len() < 3 || xs.iter().chain(ys).any(|v| !v.is_finite()) {
        return None;
    }
    if xs.windows(2).any(|w| w[1] <= w[0]) {
        return None;
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi - lo)
    };
    let (x0, xr) = range(xs);
    let (y0, yr) = range(ys);
    if xr <= 0.0 || yr <= 0.0 {
        return None;
    }
    Some((
        xs.iter().map(|x| (x - x0) / xr).collect(),
        ys.iter().map(|y| (y - y0) / yr).collect(),
    ))
}

/// The point of maximum curvature (x strictly increasing, at least three points).
pub fn max_curvature(xs: &[f64], ys: &[f64], shape: Shape) -> Option<KneeResult> {
    let (x, y) = normalise(xs, ys)?;
    let n = x.len();
    let mut scores = vec![0.0; n];
    for i in 1..n - 1 {
        let h1 = x[i] - x[i - 1];
        let h2 = x[i + 1] - x[i];
        let d1 = -h2 / (h1 * (h1 + h2)) * y[i - 1]
            + (h2 - h1) / (h1 * h2) * y[i]
            + h1 / (h2 * (h1 + h2)) * y[i + 1];
        let d2 =
            2.0 * (y[i - 1] / (h1 * (h1 + h2)) - y[i] / (h1 * h2) + y[i + 1] / (h2 * (h1 + h2)));
        let k = d2 / (1.0 + d1 * d1).powf(1.5);
        scores[i] = match shape {
            Shape::ConvexIncreasing => k,
            Shape::ConcaveIncreasing => -k,
        };
    }
    let (index, score) = best(&scores)?;
    Some(KneeResult {
        index,
        score,
        scores,
        confirmed: true,
    })
}

/// The Kneedle knee (x strictly increasing, at least three points).
pub fn kneedle(xs: &[f64], ys: &[f64], shape: Shape, sensitivity: f64) -> Option<KneeResult> {
    let (x, y) = normalise(xs, ys)?;
    let n = x.len();
    // The diagonal from the first to the last normalised point.
    let (ya, yb) = (y[0], y[n - 1]);
    let scores: Vec<f64> = (0..n)
        .map(|i| {
            let diag = ya + (yb - ya) * x[i];
            match shape {
                Shape::ConcaveIncreasing => y[i] - diag,
                Shape::ConvexIncreasing => diag - y[i],
            }
        })
        .collect();
    let (index, score) = best(&scores)?;
    let mean_dx = x.windows(2).map(|w| w[1] - w[0]).sum::<f64>() / (n - 1) as f64;
    let threshold = score - sensitivity * mean_dx;
    let confirmed = scores[index + 1..].iter().any(|&d| d < threshold);
    Some(KneeResult {
        index,
        score,
        scores,
        confirmed,
    })
}

fn best(scores: &[f64]) -> Option<(usize, f64)> {
    let (i, &s) = scores
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))?;
    (s > MIN_SCORE).then_some((i, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_or_degenerate_points() {
        assert!(max_curvature(&[1.0, 2.0], &[1.0, 2.0], Shape::ConvexIncreasing).is_none());
        assert!(kneedle(
            &[1.0, 2.0, 3.0],
            &[5.0, 5.0, 5.0],
            Shape::ConvexIncreasing,
            1.0
        )
        .is_none());
        assert!(kneedle(
            &[1.0, 1.0, 3.0],
            &[1.0, 2.0, 5.0],
            Shape::ConvexIncreasing,
            1.0
        )
        .is_none());
        assert!(kneedle(
            &[1.0, 2.0, 3.0],
            &[1.0, f64::NAN, 5.0],
            Shape::ConvexIncreasing,
            1.0
        )
        .is_none());
    }

    #[test]
    fn a_straight_line_has_no_knee() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        let ys: Vec<f64> = xs.iter().map(|x| 2.0 * x + 1.0).collect();
        assert!(max_curvature(&xs, &ys, Shape::ConvexIncreasing).is_none());
        assert!(kneedle(&xs, &ys, Shape::ConvexIncreasing, 1.0).is_none());
        assert!(kneedle(&xs, &ys, Shape::ConcaveIncreasing, 1.0).is_none());
    }
}
