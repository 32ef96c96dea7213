//! Saying a repeated problem once: the one rate limiter for log lines that can repeat (a camera
//! that stays down, a broker that refuses, a failing serial port, ffmpeg's chatter).
//!
//! The same message is said loudly at most once per [`REPEAT_EVERY`]; an optional cap bounds
//! all loud lines per window. What is held back is counted and the count is said with the next
//! loud line ("… (3 more times before)"), at debug level in between.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A repeated message is said loudly again after this long.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);
/// Distinct recent messages remembered (bounded memory whatever a peer prints).
const REMEMBERED: usize = 256;

#[derive(Default)]
pub struct LogLimit {
    /// Loud lines allowed per window (None: no cap besides repeats).
    cap: Option<u32>,
    window: Option<Instant>,
    loud: u32,
    quiet: u64,
    recent: HashMap<String, Instant>,
}

impl LogLimit {
    /// The same message at most once a minute.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also at most `per_window` loud lines per [`REPEAT_EVERY`].
    pub fn with_cap(per_window: u32) -> Self {
        LogLimit {
            cap: Some(per_window),
            ..Self::default()
        }
    }

    /// `Some(n)`: say `msg` loudly now; `n` lines were held back since the last loud one.
    /// `None`: say it quietly (debug).
    pub fn check(&mut self, msg: &str) -> Option<u64> {
        self.check_at(msg, Instant::now())
    }

    pub fn check_at(&mut self, msg: &str, now: Instant) -> Option<u64> {
        if self.window.is_none_or(|w| now.duration_since(w) >= REPEAT_EVERY) {
            self.window = Some(now);
            self.loud = 0;
            self.recent.retain(|_, at| now.duration_since(*at) < REPEAT_EVERY);
        }
        let repeated = self
            .recent
            .get(msg)
            .is_some_and(|at| now.duration_since(*at) < REPEAT_EVERY);
        if repeated || self.cap.is_some_and(|cap| self.loud >= cap) {
            self.quiet += 1;
            return None;
        }
        if self.recent.len() < REMEMBERED {
            self.recent.insert(msg.to_string(), now);
        }
        self.loud += 1;
        Some(std::mem::take(&mut self.quiet))
    }
}

/// The tail of a loud line: `""`, or ` (N more times before)`.
pub fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more times before)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn repeats_are_said_once_a_minute() {
        let mut r = LogLimit::new();
        assert_eq!(r.check("refused"), Some(0));
        assert_eq!(r.check("refused"), None);
        assert_eq!(r.check("refused"), None);
        tokio::time::advance(REPEAT_EVERY).await;
        assert_eq!(r.check("refused"), Some(2));
        assert_eq!(r.check("timeout"), Some(0), "a different message is said at once");
        assert_eq!(held_back(0), "");
        assert_eq!(held_back(2), " (2 more times before)");
    }

    #[test]
    fn a_cap_bounds_loud_lines_per_minute() {
        let mut l = LogLimit::with_cap(20);
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(l.check_at(&format!("m{i}"), t0), Some(0));
        }
        assert_eq!(l.check_at("m20", t0), None);
        assert_eq!(l.check_at("m21", t0), None);
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(l.check_at("m22", t1), Some(2));
        assert_eq!(
            l.check_at("m22", t1),
            None,
            "a repeat within a minute is not said"
        );
        assert_eq!(l.check_at("m0", t1), Some(1), "a minute later it is again");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut l = LogLimit::new();
        let t0 = Instant::now();
        for i in 0..10_000 {
            l.check_at(&format!("line {i}"), t0);
        }
        assert!(l.recent.len() <= REMEMBERED);
    }
}
