//! Waiting for what a test can observe: a condition polled until a deadline, with
//! the last observation in the failure message.

use std::future::Future;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};
use serde::de::DeserializeOwned;

/// Polls `check` every `every` until it gives `Ok(value)`; panics after `limit`
/// with `what` and the last `Err` it gave.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let every = Duration::from_millis(250);
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Watches one object until `cond` holds; panics after `limit`.
pub async fn watch_until<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    limit: Duration,
    cond: impl Condition<K>,
) -> Option<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(limit, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => panic!("{what}: watching {name}: {e}"),
        Err(_) => panic!("{what}: {name} not within {limit:?}"),
    }
}

/// As [`poll`], giving the last `Err` back instead of panicking when `limit` passes
/// (for a failure message with more context).
pub async fn try_poll<T, F, Fut>(limit: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
