//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator
//! replicas can run and only one reconciles. kube-runtime has no elector, so this
//! is a small one with client-go's semantics:
//! - the holder renews every `renew_every`, and stops leading when no renewal
//!   succeeded within `renew_deadline` (shorter than the lease);
//! - another replica takes the lease only when the lease record has not changed
//!   for `lease_duration` *as its own monotonic clock measures it*, from when it
//!   first saw that record: the holder's `renewTime` is never compared with the
//!   local wall clock, so skewed clocks cannot make two leaders;
//! - every write is a `replace` carrying the resourceVersion that was read, so a
//!   stale writer loses with 409 Conflict (fencing).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    /// Leadership ends when no renewal succeeded for this long (< `lease_duration`).
    pub renew_deadline: Duration,
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// client-go's proportions: renew every third of the lease, give up at two thirds.
    pub fn with_lease_duration(
        namespace: String,
        name: String,
        identity: String,
        lease: Duration,
    ) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: lease,
            renew_deadline: lease * 2 / 3,
            renew_every: (lease / 3).max(Duration::from_secs(1)),
        }
    }
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The lease record last seen and when (local monotonic time).
    observed: Mutex<Option<(String, Instant)>>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: Mutex::new(None),
        }
    }

    /// Whether the lease record `record` has stayed the same for a whole lease
    /// duration of the local clock; a new record restarts the count.
    fn expired_locally(&self, record: String, local: Instant) -> bool {
        let Ok(mut observed) = self.observed.lock() else {
            return false;
        };
        match observed.as_ref() {
            Some((seen, at)) if *seen == record => {
                local.duration_since(*at) >= self.cfg.lease_duration
            }
            _ => {
                *observed = Some((record, local));
                false
            }
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round: acquire the lease if free or expired, renew it if ours.
    /// `now` is written into the lease; `local` (monotonic) judges expiry.
    /// Returns whether this replica holds it afterwards.
    pub async fn try_acquire_or_renew(
        &self,
        now: Timestamp,
        local: Instant,
    ) -> Result<bool, kube::Error> {
        let me = self.cfg.identity.as_str();
        let lease = match self.api.get(&self.cfg.name).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.to_owned()),
                        lease_duration_seconds: Some(self.duration_secs()),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_conflict(&e) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(me);
        let record = format!(
            "{holder:?}|{:?}|{:?}",
            spec.renew_time.as_ref().map(|t| t.0),
            spec.lease_transitions
        );
        let expired = self.expired_locally(record, local);
        if holder.is_some() && !ours && !expired {
            return Ok(false);
        }
        let mut next = lease.clone();
        let mut s = spec.clone();
        if !ours {
            s.holder_identity = Some(me.to_owned());
            s.acquire_time = Some(MicroTime(now));
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        s.renew_time = Some(MicroTime(now));
        s.lease_duration_seconds = Some(self.duration_secs());
        next.spec = Some(s);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on graceful shutdown) so a standby takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let lease = self.api.get(&self.cfg.name).await?;
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        let mut next = lease;
        next.spec = Some(spec);
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await?;
        Ok(())
    }

    /// Campaigns until `shutdown` fires, publishing leadership on `tx`. Leadership is
    /// lost (and reported) when no renewal succeeded within the renew deadline, even
    /// while a renewal hangs: before any other replica may take the lease.
    pub async fn run(self, tx: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_success: Option<Instant> = None;
        loop {
            let deadline = last_success
                .filter(|_| *tx.borrow())
                .map_or(self.cfg.renew_deadline, |t| {
                    self.cfg.renew_deadline.saturating_sub(t.elapsed())
                });
            let round = tokio::time::timeout(
                deadline,
                self.try_acquire_or_renew(Timestamp::now(), Instant::now()),
            );
            let held = match round.await {
                Ok(Ok(h)) => {
                    if h {
                        last_success = Some(Instant::now());
                    }
                    h
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader lease round failed");
                    still_leading(
                        *tx.borrow(),
                        last_success,
                        Instant::now(),
                        self.cfg.renew_deadline,
                    )
                }
                Err(_) => {
                    tracing::warn!("leader lease renewal did not finish within the renew deadline");
                    false
                }
            };
            if *tx.borrow() != held {
                tracing::info!(identity = %self.cfg.identity, leader = held, "leadership changed");
                let _ = tx.send(held);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.renew_every) => {}
                _ = shutdown.changed() => break,
            }
        }
        if *tx.borrow() {
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "could not release the leader lease");
            }
            let _ = tx.send(false);
        }
    }
}

/// After a failed round: whether a leader still leads, i.e. its last successful
/// renewal is within the renew deadline.
pub fn still_leading(
    leading: bool,
    last_success: Option<Instant>,
    now: Instant,
    renew_deadline: Duration,
) -> bool {
    leading && last_success.is_some_and(|t| now.duration_since(t) < renew_deadline)
}
