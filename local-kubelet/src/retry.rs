//! Retrying API calls: one warning per failure episode, one line when it recovers.

use std::future::Future;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Episode {
    failing: bool,
}

impl Episode {
    pub fn failed(&mut self, what: &str, err: &dyn std::fmt::Display) {
        if !self.failing {
            tracing::warn!("{what} failed: {err}; retrying");
        }
        self.failing = true;
    }

    pub fn succeeded(&mut self, what: &str) {
        if self.failing {
            tracing::info!("{what} succeeded again");
        }
        self.failing = false;
    }
}

/// Runs `f` until it succeeds, backing off from 0.5 s to 10 s.
pub async fn forever<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let mut ep = Episode::default();
    let mut delay = Duration::from_millis(500);
    loop {
        match f().await {
            Ok(v) => {
                ep.succeeded(what);
                return v;
            }
            Err(e) => ep.failed(what, &e),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
