//! The vectors of a vector workload: generated from the seed, or read from a file (`.npy`
//! float32/float64 2-D arrays, `.fvecs`).
//!
//! Generated vectors are Gaussian clusters, like embeddings: about `sqrt(N)` centres drawn from
//! N(0, 1) in every dimension, and each vector is a centre plus N(0, 0.5²) noise. Uniform noise
//! alone would make every vector about as far from a query as every other (no structure for an
//! index to find, and recall would say little). Query vectors are drawn the same way from their
//! own seed stream, so they are never copies of collection vectors. Every vector is drawn from a
//! generator seeded by (seed, stream, index): the same seed gives the same vectors, whatever the
//! number of threads.

use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::error::LoadError;

/// Vectors of one dimension, stored row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn truncate(&mut self, n: usize) {
        self.data.truncate(n * self.dim);
    }
}

/// Seed streams: the collection, the queries, the inserted vectors, the cluster centres.
pub(crate) const STREAM_BASE: u64 = 1;
pub(crate) const STREAM_QUERIES: u64 = 2;
pub(crate) const STREAM_INSERTS: u64 = 3;
const STREAM_CENTRES: u64 = 4;

/// Spread of a generated vector around its cluster centre (the centres have spread 1).
const CLUSTER_NOISE: f32 = 0.5;

fn rng_for(seed: u64, stream: u64, i: u64) -> SmallRng {
    // SplitMix64's finaliser over the three parts: neighbouring indices get unrelated seeds.
    let mut z =
        seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// Number of cluster centres for a collection of `n` vectors.
pub(crate) fn clusters(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(1, 4096)
}

/// The cluster centres of a generated collection (`clusters` of them).
fn centres(dim: usize, clusters: usize, seed: u64) -> Vectors {
    let mut data = Vec::with_capacity(dim * clusters);
    for c in 0..clusters {
        let mut rng = rng_for(seed, STREAM_CENTRES, c as u64);
        data.extend((0..dim).map(|_| -> f32 { StandardNormal.sample(&mut rng) }));
    }
    Vectors { dim, data }
}

/// `n` generated vectors of stream `stream` around `clusters` centres.
pub fn generate(dim: usize, n: usize, clusters: usize, seed: u64, stream: u64) -> Vectors {
    let centres = centres(dim, clusters.max(1), seed);
    let mut data = vec![0f32; dim * n];
    let threads = worker_threads(n * dim, 1 << 20);
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (t, chunk) in data.chunks_mut((per * dim).max(1)).enumerate() {
            let centres = &centres;
            s.spawn(move || {
                for (j, row) in chunk.chunks_mut(dim).enumerate() {
                    let i = (t * per + j) as u64;
                    let mut rng = rng_for(seed, stream, i);
                    let c = centres.get(rng.random_range(0..centres.len()));
                    for (x, m) in row.iter_mut().zip(c) {
                        let e: f32 = StandardNormal.sample(&mut rng);
                        *x = m + CLUSTER_NOISE * e;
                    }
                }
            });
        }
    });
    Vectors { dim, data }
}

/// `n` vectors near a loaded collection's: each the midpoint of two collection vectors picked
/// from the seed (queries for a data file given without a query file; inserted vectors).
pub fn midpoints(base: &Vectors, n: usize, seed: u64, stream: u64) -> Vectors {
    let mut data = Vec::with_capacity(base.dim * n);
    for i in 0..n {
        let mut rng = rng_for(seed, stream, i as u64);
        let a = base.get(rng.random_range(0..base.len()));
        let b = base.get(rng.random_range(0..base.len()));
        data.extend(a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)));
    }
    Vectors {
        dim: base.dim,
        data,
    }
}

/// Threads worth using for `work` units, at least `grain` each.
pub(crate) fn worker_threads(work: usize, grain: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (work / grain.max(1)).clamp(1, cores)
}

/// Read vectors from `path` (`.npy` or `.fvecs`), keeping the first `limit` if given.
pub fn load(path: &Path, limit: Option<usize>) -> Result<Vectors, LoadError> {
    let bad = |m: String| LoadError::InvalidSpec(vec![format!("{}: {m}", path.display())]);
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut v =
        match ext.as_str() {
            "npy" => parse_npy(&bytes).map_err(bad)?,
            "fvecs" => parse_fvecs(&bytes).map_err(bad)?,
            _ => return Err(bad(
                "unknown vector file type: use a NumPy `.npy` (2-D float32) or an `.fvecs` file"
                    .into(),
            )),
        };
    if v.dim == 0 || v.is_empty() {
        return Err(bad("the file holds no vectors".into()));
    }
    if let Some(n) = limit {
        if n > v.len() {
            return Err(bad(format!(
                "{n} vectors asked for, but the file holds only {}",
                v.len()
            )));
        }
        v.truncate(n);
    }
    if v.data.iter().any(|x| !x.is_finite()) {
        return Err(bad("the file holds NaN or infinite values".into()));
    }
    Ok(v)
}

/// A NumPy `.npy` file (format 1.0, 2.0 or 3.0) holding a C-ordered 2-D array of
/// little-endian float32 (`<f4`) or float64 (`<f8`, converted).
pub fn parse_npy(b: &[u8]) -> Result<Vectors, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a NumPy .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = b
        .get(start..start + header_len)
        .ok_or("the .npy header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |name: &str| -> Option<&str> {
        let at = header.find(&format!("'{name}'"))? + name.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or("the .npy header has no `descr`")?;
    let width = if descr.starts_with("'<f4'") || descr.starts_with("'=f4'") {
        4
    } else if descr.starts_with("'<f8'") || descr.starts_with("'=f8'") {
        8
    } else {
        return Err(format!(
            "the array holds {}; only little-endian float32 (`<f4`) or float64 (`<f8`) is read",
            descr.split(',').next().unwrap_or(descr)
        ));
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("the array is in Fortran order: save it with np.ascontiguousarray".into());
    }
    let shape = field("shape").ok_or("the .npy header has no `shape`")?;
    let inside = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("the .npy shape is not a tuple")?;
    let dims: Vec<usize> = inside
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad .npy shape `({inside})`"))?;
    let [n, dim] = dims[..] else {
        return Err(format!(
            "the array has shape ({inside}); a 2-D array (vectors x dimensions) is needed"
        ));
    };
    let body = &b[start + header_len..];
    let need = n * dim * width;
    if body.len() < need {
        return Err(format!(
            "the array data is cut short: {} bytes for {n} x {dim} values of {width} bytes",
            body.len()
        ));
    }
    let data = if width == 4 {
        body[..need]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body[..need]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect()
    };
    Ok(Vectors { dim, data })
}

/// An `.fvecs` file (the format of the SIFT/GIST benchmark sets): each vector is its dimension
/// as a little-endian int32, then that many little-endian float32.
pub fn parse_fvecs(b: &[u8]) -> Result<Vectors, String> {
    let mut at = 0usize;
    let mut dim = None;
    let mut data = Vec::new();
    while at < b.len() {
        let head = b
            .get(at..at + 4)
            .ok_or_else(|| format!("cut short at byte {at}"))?;
        let d = i32::from_le_bytes(head.try_into().expect("4 bytes"));
        if d <= 0 {
            return Err(format!("bad dimension {d} at byte {at}"));
        }
        let d = d as usize;
        if *dim.get_or_insert(d) != d {
            return Err(format!(
                "vector {} has {d} dimensions, the first has {}",
                data.len() / dim.unwrap_or(1),
                dim.unwrap_or(0)
            ));
        }
        let row = b
            .get(at + 4..at + 4 + 4 * d)
            .ok_or_else(|| format!("cut short at byte {at}"))?;
        data.extend(
            row.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        at += 4 + 4 * d;
    }
    Ok(Vectors {
        dim: dim.unwrap_or(0),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn npy_float32_and_float64_are_read() {
        let vals = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let body: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let v = parse_npy(&npy("<f4", "(2, 3)", &body)).unwrap();
        assert_eq!((v.dim, v.len()), (3, 2));
        assert_eq!(v.get(1), &[4.0, 5.0, 6.0]);
        let body: Vec<u8> = vals
            .iter()
            .flat_map(|v| f64::from(*v).to_le_bytes())
            .collect();
        let w = parse_npy(&npy("<f8", "(3, 2)", &body)).unwrap();
        assert_eq!((w.dim, w.len()), (2, 3));
        assert_eq!(w.get(2), &[5.0, 6.0]);
        assert!(parse_npy(&npy("<i4", "(2, 3)", &body)).is_err());
        assert!(parse_npy(&npy("<f4", "(6,)", &body)).is_err());
        assert!(parse_npy(&npy("<f4", "(20, 3)", &body)).is_err());
        assert!(parse_npy(b"not numpy").is_err());
    }

    #[test]
    fn fvecs_are_read_and_checked() {
        let mut b = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            b.extend_from_slice(&2i32.to_le_bytes());
            for x in row {
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
        let v = parse_fvecs(&b).unwrap();
        assert_eq!((v.dim, v.len()), (2, 2));
        assert_eq!(v.get(1), &[3.0, 4.0]);
        b.extend_from_slice(&3i32.to_le_bytes());
        assert!(parse_fvecs(&b).is_err());
    }

    #[test]
    fn generated_vectors_repeat_and_streams_differ() {
        let a = generate(8, 100, 10, 7, STREAM_BASE);
        let b = generate(8, 100, 10, 7, STREAM_BASE);
        let q = generate(8, 100, 10, 7, STREAM_QUERIES);
        let other = generate(8, 100, 10, 8, STREAM_BASE);
        assert_eq!(a, b);
        assert_ne!(a.data, q.data);
        assert_ne!(a.data, other.data);
        // The first vectors do not depend on how many are drawn.
        let short = generate(8, 10, 10, 7, STREAM_BASE);
        assert_eq!(short.data[..], a.data[..80]);
        assert!(a.data.iter().all(|x| x.is_finite()));
    }
}
