//! Seeded randomness for the simulated fleet: a SplitMix64 generator, normal draws and an
//! autocorrelated (AR(1)) noise, so a host's metrics wander as real ones do and a seed gives
//! the same fleet again.

/// SplitMix64: small, fast, and good enough for simulated noise (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A seed from a name, so each host gets its own stream.
    pub fn seed_of(name: &str, salt: u64) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for byte in name.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// True with probability `chance`.
    pub fn chance(&mut self, chance: f64) -> bool {
        self.uniform() < chance
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let first = self.uniform().max(f64::MIN_POSITIVE);
        let second = self.uniform();
        (-2.0 * first.ln()).sqrt() * (std::f64::consts::TAU * second).cos()
    }

    /// A Poisson draw of mean `mean` (Knuth's method below 30, a rounded normal above).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let mut product = self.uniform();
        let mut count = 0;
        while product > limit {
            count += 1;
            product *= self.uniform();
        }
        count
    }

    /// One of `choices`, or None when there are none.
    pub fn pick<'choices, T>(&mut self, choices: &'choices [T]) -> Option<&'choices T> {
        if choices.is_empty() {
            return None;
        }
        let index = (self.next_u64() % choices.len() as u64) as usize;
        choices.get(index)
    }
}

/// Autocorrelated noise: each value keeps `persistence` of the last one, with a stationary
/// standard deviation of `spread`.
#[derive(Debug, Clone)]
pub struct Wander {
    value: f64,
    persistence: f64,
    spread: f64,
}

impl Wander {
    pub fn new(persistence: f64, spread: f64) -> Wander {
        Wander {
            value: 0.0,
            persistence,
            spread,
        }
    }

    pub fn step(&mut self, rng: &mut Rng) -> f64 {
        let innovation = self.spread * (1.0 - self.persistence * self.persistence).sqrt();
        self.value = self.persistence * self.value + innovation * rng.normal();
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_stream_and_another_seed_another() {
        let mut first = Rng::new(7);
        let mut again = Rng::new(7);
        let mut other = Rng::new(8);
        let drawn: Vec<u64> = (0..5).map(|_| first.next_u64()).collect();
        let redrawn: Vec<u64> = (0..5).map(|_| again.next_u64()).collect();
        let others: Vec<u64> = (0..5).map(|_| other.next_u64()).collect();
        assert_eq!(drawn, redrawn);
        assert_ne!(drawn, others);
    }

    #[test]
    fn normal_draws_have_about_zero_mean_and_unit_spread() {
        let mut rng = Rng::new(1);
        let draws: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((variance - 1.0).abs() < 0.05, "{variance}");
    }

    #[test]
    fn poisson_draws_average_their_mean() {
        let mut rng = Rng::new(3);
        for mean in [0.2, 4.0, 80.0] {
            let total: u64 = (0..5_000).map(|_| rng.poisson(mean)).sum();
            let average = total as f64 / 5_000.0;
            assert!(
                (average - mean).abs() < mean * 0.1 + 0.02,
                "{mean}: {average}"
            );
        }
    }

    #[test]
    fn wander_is_autocorrelated_with_its_spread() {
        let mut rng = Rng::new(5);
        let mut wander = Wander::new(0.9, 2.0);
        let values: Vec<f64> = (0..20_000).map(|_| wander.step(&mut rng)).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let variance = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / values.len() as f64;
        let lagged = values
            .windows(2)
            .map(|pair| (pair[0] - mean) * (pair[1] - mean))
            .sum::<f64>()
            / (values.len() - 1) as f64;
        assert!((variance.sqrt() - 2.0).abs() < 0.2, "{variance}");
        assert!(
            (lagged / variance - 0.9).abs() < 0.03,
            "{}",
            lagged / variance
        );
    }
}
