//! A limit on the input records one process reads per second
//! (`run --max-input-rate`), shared by its worker threads: a token bucket
//! refilled continuously, holding at most a tenth of a second's records (at
//! least one batch's worth is never promised: a worker takes what there is).
//!
//! Time a worker waits for tokens while records are waiting to be read is not
//! idle: the process runs at the capacity it was given, so its busy ratio says
//! so (an autoscaler then sees a pod that cannot take more).

use std::sync::Mutex;
use std::time::Instant;

pub struct InputRateLimit {
    per_second: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl InputRateLimit {
    /// At most `per_second` records a second (at least 1).
    pub fn new(per_second: u64) -> Self {
        let per_second = per_second.max(1) as f64;
        let burst = (per_second / 10.0).max(1.0);
        Self {
            per_second,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Up to `want` records may be read now; 0 when the bucket is empty.
    pub fn take(&self, want: usize) -> usize {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * self.per_second;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        let n = (b.tokens.floor() as usize).min(want);
        b.tokens -= n as f64;
        n
    }

    /// Returns what was taken and not read (the partition had fewer records).
    pub fn give_back(&self, unused: usize) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.tokens = (b.tokens + unused as f64).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_a_tenth_of_a_second_then_the_rate_holds() {
        let limit = InputRateLimit::new(1000);
        assert_eq!(limit.take(1024), 100, "a tenth of a second");
        assert_eq!(limit.take(1024), 0, "then empty");
        let start = Instant::now();
        let mut read = 0;
        while start.elapsed() < Duration::from_millis(300) {
            read += limit.take(1024);
            std::thread::sleep(Duration::from_millis(5));
        }
        let expected = start.elapsed().as_secs_f64() * 1000.0;
        assert!(
            (read as f64) <= expected + 1.0,
            "{read} records in {:?}",
            start.elapsed()
        );
        assert!(
            read as f64 >= expected * 0.8,
            "{read} records in {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn unread_records_go_back_but_not_beyond_the_burst() {
        let limit = InputRateLimit::new(100);
        assert_eq!(limit.take(50), 10);
        limit.give_back(4);
        assert_eq!(limit.take(50), 4);
        limit.give_back(1000);
        assert_eq!(limit.take(50), 10);
    }
}
