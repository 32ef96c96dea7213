//! Retrying politely: exponential backoff with jitter. Shared by camera pumps, the MQTT
//! connection and light ports.

use std::time::Duration;

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// 1 s doubling to 30 s, each delay jittered by ±20 %.
#[derive(Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let base = BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(5))
            .min(BACKOFF_MAX);
        self.failures += 1;
        base.mul_f64(0.8 + fastrand::f64() * 0.4).min(BACKOFF_MAX)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter() {
        let mut b = Backoff::default();
        let d: Vec<f64> = (0..8).map(|_| b.next_delay().as_secs_f64()).collect();
        for (i, base) in [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0].iter().enumerate() {
            assert!(
                d[i] >= base * 0.8 - 1e-9 && d[i] <= (base * 1.2f64).min(30.0) + 1e-9,
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }
}
