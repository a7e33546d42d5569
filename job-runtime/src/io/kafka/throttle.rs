//! Client errors logged with back-off. librdkafka reports a broker it cannot
//! reach on every reconnect attempt (about 27 a second for one down broker);
//! the first report is logged, then one line per back-off step (1 s, doubling
//! up to a minute) saying how many were held back.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

const FIRST_GAP: Duration = Duration::from_secs(1);
const MAX_GAP: Duration = Duration::from_secs(60);
/// Quiet this long after its last step, an error counts as new again.
const FORGET_AFTER: Duration = Duration::from_secs(300);

struct Seen {
    next: Instant,
    gap: Duration,
    held: u64,
}

/// Back-off per error text.
#[derive(Default)]
pub struct Throttle {
    seen: Mutex<HashMap<String, Seen>>,
}

impl Throttle {
    /// `Some(n)` when `key` is to be logged now, `n` reports held back since the
    /// last line; `None` to hold this one back.
    pub fn admit(&self, key: &str, now: Instant) -> Option<u64> {
        let Ok(mut seen) = self.seen.lock() else {
            return Some(0);
        };
        match seen.get_mut(key) {
            Some(s) if now < s.next => {
                s.held += 1;
                None
            }
            Some(s) if now < s.next + FORGET_AFTER => {
                let held = std::mem::take(&mut s.held);
                s.gap = (s.gap * 2).min(MAX_GAP);
                s.next = now + s.gap;
                Some(held)
            }
            _ => {
                seen.insert(
                    key.to_owned(),
                    Seen {
                        next: now + FIRST_GAP,
                        gap: FIRST_GAP,
                        held: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

static CLIENT_ERRORS: LazyLock<Throttle> = LazyLock::new(Throttle::default);

/// Logs a client error at warn level through the process-wide throttle.
pub fn warn(error: &str, reason: &str) {
    match CLIENT_ERRORS.admit(error, Instant::now()) {
        Some(0) => tracing::warn!("kafka client: {error}: {reason}"),
        Some(held) => {
            tracing::warn!("kafka client: {error}: {reason} (and {held} more like it held back)")
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_logged_once_per_doubling_step() {
        let t = Throttle::default();
        let start = Instant::now();
        let mut lines = 0;
        // 27 reports a second for a minute.
        for i in 0..(27 * 60) {
            let now = start + Duration::from_millis(i * 1000 / 27);
            if t.admit("AllBrokersDown", now).is_some() {
                lines += 1;
            }
        }
        // At 0, 1, 3, 7, 15, 31 s (and 63 s is past the minute).
        assert_eq!(lines, 6);
    }

    #[test]
    fn held_back_reports_are_counted_and_other_errors_are_not_held() {
        let t = Throttle::default();
        let now = Instant::now();
        assert_eq!(t.admit("a", now), Some(0));
        assert_eq!(t.admit("a", now + Duration::from_millis(10)), None);
        assert_eq!(t.admit("b", now + Duration::from_millis(20)), Some(0));
        assert_eq!(t.admit("a", now + Duration::from_millis(500)), None);
        assert_eq!(t.admit("a", now + Duration::from_secs(1)), Some(2));
    }

    #[test]
    fn an_error_quiet_for_long_is_new_again() {
        let t = Throttle::default();
        let now = Instant::now();
        assert_eq!(t.admit("a", now), Some(0));
        assert_eq!(t.admit("a", now + Duration::from_secs(1)), Some(0));
        let later = now + Duration::from_secs(1000);
        assert_eq!(t.admit("a", later), Some(0));
        assert_eq!(t.admit("a", later + Duration::from_millis(100)), None);
    }
}
