//! The simulator's only source of randomness: SplitMix64 with a seed, and
//! the few distributions the model draws from. Written out here (no
//! dependency) so that a seed gives the same sessions on every platform and
//! with every version of the dependencies.

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast, and good enough
/// for arrivals, lifetimes and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A stream of its own for `label` under `seed`, so that draws in one
    /// part of the model do not shift those of another.
    pub fn stream(seed: u64, label: u64) -> Self {
        let mut rng = Self(seed ^ label.wrapping_mul(GOLDEN).rotate_left(17));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`; the bias of the multiply-shift is below 2^-60 here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Exponential with mean 1.
    pub fn exponential(&mut self) -> f64 {
        -(1.0 - self.unit()).ln()
    }

    /// Poisson with this mean: the arrivals of a rate-1 process before
    /// `mean` (exact, and linear in the mean, which stays in the hundreds).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        let mut count = 0;
        let mut at = self.exponential();
        while at < mean {
            count += 1;
            at += self.exponential();
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_roughly_right() {
        let draws = |seed| {
            let mut rng = Rng::new(seed);
            (0..5).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        assert_ne!(Rng::stream(1, 0).next_u64(), Rng::stream(1, 1).next_u64());

        let mut rng = Rng::new(7);
        let n = 20_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!((mean(&mut || rng.unit()) - 0.5).abs() < 0.01);
        assert!(mean(&mut || rng.normal()).abs() < 0.03);
        assert!((mean(&mut || rng.exponential()) - 1.0).abs() < 0.03);
        assert!((mean(&mut || rng.poisson(40.0) as f64) - 40.0).abs() < 0.3);
        assert_eq!(rng.poisson(0.0), 0);
        assert!((0..1000).all(|_| (3..=5).contains(&rng.between(3, 5))));
        assert!((0..1000).any(|_| rng.between(3, 5) == 5));
    }
}
