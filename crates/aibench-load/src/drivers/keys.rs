//! Keys and values shared by the key-value drivers (Redis, S3): which key an operation
//! touches, how big a value is, and where its bytes come from. All of it follows from the seed
//! and the operation's id, so a run repeats exactly.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::error::LoadError;

/// How operations pick keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyAccess {
    /// Every key equally likely.
    Uniform,
    /// Key `k` (0-based) drawn with probability proportional to `1 / (k + 1)^exponent`: a few
    /// hot keys, a long tail (YCSB's default exponent is 0.99).
    Zipfian { exponent: f64 },
}

/// How big each value (or object) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSize {
    Fixed(u64),
    /// Uniform between the two, inclusive.
    Uniform {
        min: u64,
        max: u64,
    },
}

impl ValueSize {
    pub fn max(&self) -> u64 {
        match *self {
            ValueSize::Fixed(n) => n,
            ValueSize::Uniform { max, .. } => max,
        }
    }

    fn sample(&self, rng: &mut SmallRng) -> u64 {
        match *self {
            ValueSize::Fixed(n) => n,
            ValueSize::Uniform { min, max } => rng.random_range(min..=max),
        }
    }
}

/// The key space of a key-value workload.
#[derive(Debug, Clone)]
pub struct KeySpace {
    /// Distinct keys: `0..keys`.
    pub keys: u64,
    /// Prepended to every key's number, e.g. `aibench:`.
    pub prefix: String,
    pub access: KeyAccess,
    pub value_size: ValueSize,
    /// Share of reads (0..=1); the rest are writes.
    pub read_share: f64,
    pub seed: u64,
}

/// What one operation (or one pipelined batch) does, drawn from its id.
pub(crate) struct Draw {
    rng: SmallRng,
    zipf: Option<Zipf<f64>>,
}

/// Bytes that values are cut from: random, so that compression cannot flatter a server, and
/// long enough for the largest value at any of [`PAD_OFFSETS`] offsets.
pub(crate) struct ValueBytes {
    bytes: Vec<u8>,
}

/// Values start at one of this many offsets into [`ValueBytes`] (so consecutive values differ).
const PAD_OFFSETS: u64 = 251;

impl ValueBytes {
    pub fn new(max: u64, seed: u64) -> ValueBytes {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_da7a);
        let mut bytes = vec![0u8; (max + PAD_OFFSETS) as usize];
        rng.fill(&mut bytes[..]);
        ValueBytes { bytes }
    }

    /// The value stored under key `key` in version `version` (0: the preloaded one).
    pub fn value(&self, key: u64, version: u64, len: u64) -> &[u8] {
        let (off, n) = self.span(key, version, len);
        &self.bytes[off..off + n]
    }

    /// Where [`ValueBytes::value`] is in [`ValueBytes::all`]: offset and length.
    pub fn span(&self, key: u64, version: u64, len: u64) -> (usize, usize) {
        let off = (key.wrapping_mul(31).wrapping_add(version)) % PAD_OFFSETS;
        (off as usize, len as usize)
    }

    /// Every byte values are cut from.
    pub fn all(&self) -> &[u8] {
        &self.bytes
    }
}

impl KeySpace {
    pub fn check(&self) -> Result<(), LoadError> {
        let mut e = Vec::new();
        if self.keys == 0 {
            e.push("the key space needs at least one key".to_string());
        }
        if !(0.0..=1.0).contains(&self.read_share) {
            e.push(format!(
                "read share must be between 0 and 100 % (got {})",
                self.read_share * 100.0
            ));
        }
        if let ValueSize::Uniform { min, max } = self.value_size {
            if min > max {
                e.push(format!("value size: min {min} is above max {max}"));
            }
        }
        if let KeyAccess::Zipfian { exponent } = self.access {
            if !(exponent.is_finite() && exponent >= 0.0) {
                e.push(format!(
                    "the Zipfian exponent must be zero or positive (got {exponent})"
                ));
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(LoadError::InvalidSpec(e))
        }
    }

    /// The random choices of operation `id`.
    pub(crate) fn draw(&self, id: u64) -> Draw {
        Draw {
            rng: SmallRng::seed_from_u64(self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            zipf: match self.access {
                KeyAccess::Uniform => None,
                KeyAccess::Zipfian { exponent } => Zipf::new(self.keys as f64, exponent).ok(),
            },
        }
    }

    /// The size of key `key`'s value as preloaded (the same for the same seed).
    pub fn preload_size(&self, key: u64) -> u64 {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ key.wrapping_mul(0xA24B_AED4_963E_E407));
        self.value_size.sample(&mut rng)
    }

    /// Write key `k`'s name into `out`.
    pub fn key_into(&self, k: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.prefix.as_bytes());
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = k;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
    }

    pub fn key(&self, k: u64) -> String {
        let mut v = Vec::new();
        self.key_into(k, &mut v);
        String::from_utf8(v).expect("ASCII key")
    }
}

impl Draw {
    /// A number in [0, 1), for choices of the driver's own.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Whether the next operation reads.
    pub fn is_read(&mut self, space: &KeySpace) -> bool {
        space.read_share >= 1.0 || self.rng.random::<f64>() < space.read_share
    }

    /// The next key.
    pub fn key(&mut self, space: &KeySpace) -> u64 {
        match &self.zipf {
            Some(z) => (z.sample(&mut self.rng) as u64).clamp(1, space.keys) - 1,
            None => self.rng.random_range(0..space.keys),
        }
    }

    /// The size of the next value written.
    pub fn size(&mut self, space: &KeySpace) -> u64 {
        space.value_size.sample(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(access: KeyAccess) -> KeySpace {
        KeySpace {
            keys: 1000,
            prefix: "k:".into(),
            access,
            value_size: ValueSize::Uniform { min: 10, max: 20 },
            read_share: 0.9,
            seed: 7,
        }
    }

    #[test]
    fn keys_are_named_by_number() {
        let s = space(KeyAccess::Uniform);
        assert_eq!(s.key(0), "k:0");
        assert_eq!(s.key(1234567), "k:1234567");
    }

    #[test]
    fn draws_repeat_for_the_same_id_and_stay_in_range() {
        let s = space(KeyAccess::Zipfian { exponent: 0.99 });
        let a: Vec<u64> = (0..50).map(|i| s.draw(i).key(&s)).collect();
        let b: Vec<u64> = (0..50).map(|i| s.draw(i).key(&s)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|k| *k < 1000));
        for i in 0..100 {
            let n = s.draw(i).size(&s);
            assert!((10..=20).contains(&n));
        }
    }

    #[test]
    fn zipfian_access_is_skewed_and_uniform_is_not() {
        let count_hot =
            |s: &KeySpace| (0..20_000).filter(|i| s.draw(*i).key(s) < 10).count() as f64 / 20_000.0;
        let zipf = count_hot(&space(KeyAccess::Zipfian { exponent: 0.99 }));
        let uniform = count_hot(&space(KeyAccess::Uniform));
        // Ten hottest of 1000 keys: about 1 % uniformly, close to 40 % under Zipf(0.99).
        assert!(uniform < 0.02, "{uniform}");
        assert!(zipf > 0.3, "{zipf}");
    }

    #[test]
    fn read_share_is_respected() {
        let s = space(KeyAccess::Uniform);
        let reads = (0..10_000).filter(|i| s.draw(*i).is_read(&s)).count();
        assert!((8_700..9_300).contains(&reads), "{reads}");
    }
}
