//! What every reconcile of one watch scope shares: the client and caches, the
//! Event recorder, metrics, the clock, the runtime admin API, and the small
//! per-job memories (built children, admin-token Secrets created, the lifecycle's
//! [`Memory`]).
//! Its own file so that the reconcile pipeline and the steps it calls (the
//! lifecycle, volume expansion) all depend on it, and it on none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::Reporter;

use crate::admin::{HttpAdmin, RuntimeAdmin, dns_resolver};
use crate::admin_key::{AdminKey, AdminKeys};
use crate::build;
use crate::build::networkpolicy::AdminPeers;
use crate::events::EventRecorder;
use crate::lifecycle::machine::Timing;
use crate::lifecycle::memory::Memory;
use crate::metrics::Metrics;
use crate::observe::Stores;

/// How often a job is looked at again without any change (drift, status refresh).
#[derive(Clone, Copy, Debug)]
pub struct Requeue {
    pub settled: Duration,
    pub unsettled: Duration,
}

impl Default for Requeue {
    fn default() -> Self {
        Self {
            settled: Duration::from_secs(300),
            unsettled: Duration::from_secs(30),
        }
    }
}

/// The wall clock, replaceable in tests (a test clock that moves only when told).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Shared by every reconcile of one watch scope.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub recorder: EventRecorder,
    pub metrics: Arc<Metrics>,
    pub requeue: Requeue,
    /// The clock, replaceable in tests.
    pub now: Clock,
    /// Malformed objects already reported, by uid → resourceVersion: reported once each.
    pub(crate) malformed_seen: Mutex<HashMap<String, String>>,
    /// Applied hashes of the children last built for each job (by uid), with the
    /// generation they were built from: when the observed children carry exactly these,
    /// nothing needs building, and a reconcile costs a cache lookup.
    pub(crate) built: Mutex<HashMap<String, Built>>,
    /// The runtime admin API.
    pub admin: Arc<dyn RuntimeAdmin>,
    /// Time limits of the lifecycle flows.
    pub timing: Timing,
    /// The key the jobs' admin tokens are derived from.
    pub admin_keys: AdminKeys,
    /// By job uid: the token and job generation whose Secret was last made sure
    /// of, and when.
    pub(crate) token_secrets: Mutex<HashMap<String, (String, Instant)>>,
    /// Per-job memory that need not survive a restart (autoscaler samples).
    pub(crate) memory: Mutex<HashMap<String, Memory>>,
    /// Who may reach the runtime pods' admin port: each job gets a NetworkPolicy
    /// saying so. `None`: the operator generates no NetworkPolicy.
    pub network_policy: Option<Arc<AdminPeers>>,
}

/// The children last built for a job (see [`Context`]'s memo).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Built {
    /// The generation and the deployment (spec + restore point) the children were built from.
    pub(crate) key: String,
    pub(crate) hashes: [String; 5],
    /// Each child's marker after the operator's last apply (a hand edit moves it).
    pub(crate) markers: crate::apply::Markers,
    pub(crate) not_applied: Option<String>,
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: build::MANAGER.to_owned(),
            instance,
        };
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            client,
            stores,
            metrics,
            requeue: Requeue::default(),
            now: Arc::new(Timestamp::now),
            malformed_seen: Mutex::new(HashMap::new()),
            built: Mutex::new(HashMap::new()),
            admin: Arc::new(HttpAdmin::new(dns_resolver())),
            timing: Timing::default(),
            // Replaced by the controller with the key Secret; a random key serves
            // tests that run no operator process.
            admin_keys: AdminKeys::fixed(AdminKey::random()),
            token_secrets: Mutex::new(HashMap::new()),
            memory: Mutex::new(HashMap::new()),
            network_policy: None,
        }
    }

    /// Whether the job's token Secret should be made sure of again: a new token or
    /// job generation (`seen`), or `every` passed since the last time (a deleted
    /// Secret comes back then, or at once with any edit of the job).
    pub(crate) fn token_secret_due(&self, uid: &str, seen: &str, every: Duration) -> bool {
        self.token_secrets
            .lock()
            .ok()
            .and_then(|m| m.get(uid).cloned())
            .is_none_or(|(s, at)| s != seen || at.elapsed() >= every)
    }

    pub(crate) fn token_secret_made(&self, uid: &str, seen: &str) {
        if let Ok(mut m) = self.token_secrets.lock() {
            m.insert(uid.to_owned(), (seen.to_owned(), Instant::now()));
        }
    }

    pub(crate) fn with_memory<T>(&self, uid: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        match self.memory.lock() {
            Ok(mut m) => f(m.entry(uid.to_owned()).or_default()),
            Err(_) => f(&mut Memory::default()),
        }
    }
}
