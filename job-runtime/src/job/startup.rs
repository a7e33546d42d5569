//! The start-up's phases and how long each took, logged once when the process
//! is ready: a slow start names its slow step (a broker that answers late, a
//! large restore, a slow disk under RocksDB's first syncs).

use std::time::Instant;

pub struct StartupPhases {
    started: Instant,
    last: Instant,
    phases: Vec<(&'static str, f64)>,
}

impl StartupPhases {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            phases: Vec::new(),
        }
    }

    /// Ends the phase `name`, which ran since the previous mark.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases
            .push((name, now.duration_since(self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    /// "prepare 2.1 ms, consumer 10.3 ms, ..." in the order the phases ran.
    pub fn summary(&self) -> String {
        self.phases
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn total_seconds(&self) -> f64 {
        self.last.duration_since(self.started).as_secs_f64()
    }
}

impl Default for StartupPhases {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_each_phase_in_order_and_the_total_spans_them() {
        let mut p = StartupPhases::new();
        p.mark("prepare");
        p.mark("consumer");
        let s = p.summary();
        assert!(s.starts_with("prepare "), "{s}");
        assert!(s.contains(", consumer "), "{s}");
        assert!(p.total_seconds() >= 0.0);
    }
}
