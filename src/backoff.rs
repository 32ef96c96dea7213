//! Retrying politely: exponential backoff with jitter, and saying a repeated error once a minute.
//! Shared by camera pumps and the MQTT connection.

use std::time::Duration;

use tokio::time::Instant;

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A repeated message is logged again after this long.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

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

/// Tells whether a message deserves a loud log line: it is new, or was last said a minute ago.
#[derive(Default)]
pub struct Repeats {
    last: Option<(String, Instant)>,
    quiet: u64,
}

impl Repeats {
    /// `Some(n)`: log it now; it was repeated `n` times quietly since last said. `None`: say it
    /// quietly (debug).
    pub fn check(&mut self, msg: &str) -> Option<u64> {
        match &self.last {
            Some((last, at)) if last == msg && at.elapsed() < REPEAT_EVERY => {
                self.quiet += 1;
                None
            }
            _ => {
                self.last = Some((msg.to_string(), Instant::now()));
                Some(std::mem::take(&mut self.quiet))
            }
        }
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

    #[tokio::test(start_paused = true)]
    async fn repeats_are_said_once_a_minute() {
        let mut r = Repeats::default();
        assert_eq!(r.check("refused"), Some(0));
        assert_eq!(r.check("refused"), None);
        assert_eq!(r.check("refused"), None);
        tokio::time::advance(REPEAT_EVERY).await;
        assert_eq!(r.check("refused"), Some(2));
        assert_eq!(r.check("timeout"), Some(0), "a different message is said at once");
    }
}
