//! The admin API's client side, as the operator calls it.

use std::time::{Duration, Instant};

use streamjoin_runtime::control::admin::AdminServer;

/// The bearer token the benchmark's admin server accepts.
pub const TOKEN: &str = "savepoint-bench-token";

/// The admin API's client side: the savepoint request and its status.
pub struct Admin {
    base: String,
    agent: ureq::Agent,
}

impl Admin {
    pub fn new(server: &AdminServer) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            base: format!("http://{}/v1/savepoints", server.addr),
            agent,
        }
    }

    pub fn request(&self, id: &str) {
        let mut r = self
            .agent
            .post(&self.base)
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(format!(r#"{{"id":"{id}"}}"#))
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.base));
        let body = r.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(r.status(), 202, "POST {} for {id}: {body}", self.base);
    }

    /// Polls savepoint `id` until it is no longer pending; its status document.
    pub fn wait(&self, id: &str) -> serde_json::Value {
        let url = format!("{}/{id}", self.base);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let mut r = self
                .agent
                .get(&url)
                .call()
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let info: serde_json::Value = r
                .body_mut()
                .read_json()
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            if info["state"] != "pending" {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "savepoint {id} still pending after 600 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
