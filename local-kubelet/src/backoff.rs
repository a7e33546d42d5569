//! The restart back-off of crashing containers (kubelet: 10 s doubling up to 300 s,
//! forgotten after a container ran for 10 minutes).

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// A run at least this long resets the count of consecutive failures.
    pub reset_after: Duration,
}

impl BackoffPolicy {
    /// Delay before restarting after the `exits`-th consecutive exit (1-based). The
    /// first exit restarts at once, like the kubelet; later ones wait base, 2×base, …
    pub fn delay(&self, exits: u32) -> Duration {
        if exits <= 1 {
            return Duration::ZERO;
        }
        let shift = (exits - 2).min(31);
        self.base
            .checked_mul(1u32 << shift)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The consecutive-exit count after an exit of a run that lasted `ran`.
    pub fn next_exits(&self, previous: u32, ran: Duration) -> u32 {
        if ran >= self.reset_after {
            1
        } else {
            previous.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubelet() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }

    #[test]
    fn the_delay_doubles_from_the_base_up_to_the_cap() {
        let p = kubelet();
        let secs: Vec<u64> = (1..=9).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_long_run_resets_the_count() {
        let p = kubelet();
        assert_eq!(p.next_exits(4, Duration::from_secs(30)), 5);
        assert_eq!(p.next_exits(4, Duration::from_secs(600)), 1);
    }
}
