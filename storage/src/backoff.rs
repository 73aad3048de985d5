//! Exponential backoff with full jitter: the n-th retry waits a uniformly random time
//! in [0, min(cap, base · 2^n)], and never less than a server's Retry-After.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = first retry); `unit` in [0, 1) is the
    /// random draw (injected so tests are deterministic).
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exp = self.base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(30))
                .unwrap_or(u32::MAX),
        );
        let ceiling = exp.min(self.cap);
        let d = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            Some(r) => d.max(r),
            None => d,
        }
    }
}

/// A small PRNG (splitmix64) for jitter draws.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(seed)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
