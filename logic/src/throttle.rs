//! Logging a storage failure once per cause: a full disk must not write an
//! `error` line for every request. The first failure of each kind (the
//! operation and OS error) in a window is logged at `error`, the rest at a
//! quieter level.

use std::time::{Duration, Instant};

/// How long a cause stays quiet after it was logged at `error`.
pub const QUIET_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct ErrorThrottle {
    logged: Vec<(&'static str, i32, Instant)>,
}

impl ErrorThrottle {
    /// True when a failure of `op` with `errno` should be logged at `error`.
    pub fn loud(&mut self, op: &'static str, errno: i32, now: Instant) -> bool {
        match self
            .logged
            .iter_mut()
            .find(|(o, e, _)| *o == op && *e == errno)
        {
            Some((_, _, at)) if now.duration_since(*at) < QUIET_FOR => false,
            Some((_, _, at)) => {
                *at = now;
                true
            }
            None => {
                self.logged.push((op, errno, now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_cause_and_window() {
        let mut throttle = ErrorThrottle::default();
        let t0 = Instant::now();
        assert!(throttle.loud("write", 28, t0));
        assert!(!throttle.loud("write", 28, t0 + Duration::from_secs(1)));
        assert!(
            throttle.loud("write", 24, t0),
            "another errno is another cause"
        );
        assert!(throttle.loud("rename to", 28, t0), "another operation too");
        assert!(throttle.loud("write", 28, t0 + QUIET_FOR + Duration::from_secs(1)));
    }
}
