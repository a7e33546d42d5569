//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator
//! replicas can run and only one reconciles. kube-runtime 5 has no elector, so this
//! is a small one with client-go's semantics: the holder renews every
//! `renew_every`; another replica takes the lease once `renewTime +
//! leaseDurationSeconds` has passed. Every write is a `replace` carrying the
//! resourceVersion that was read, so two candidates can never both win (the loser
//! gets 409 Conflict).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
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
    pub renew_every: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
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
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round: acquire the lease if free or expired, renew it if ours.
    /// Returns whether this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, kube::Error> {
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
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renew), Some(secs)) => {
                renew.0 + SignedDuration::from_secs(i64::from(secs)) <= now
            }
            _ => true,
        };
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
    /// lost (and reported) when a renewal has not succeeded within the lease duration.
    pub async fn run(self, tx: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_success: Option<tokio::time::Instant> = None;
        loop {
            let held = match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(h) => {
                    if h {
                        last_success = Some(tokio::time::Instant::now());
                    }
                    h
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader lease round failed");
                    // Keep leading only while the lease we hold cannot have expired.
                    *tx.borrow()
                        && last_success.is_some_and(|t| t.elapsed() < self.cfg.lease_duration)
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
