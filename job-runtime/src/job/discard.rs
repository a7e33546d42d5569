//! `streamjoin-runtime savepoints delete`: deletes savepoints with the job's store
//! settings and credentials. The operator runs it in a short-lived pod when no
//! pod of the job runs to take the request through the admin API (a suspended
//! job, or one deleted with `savepoints.onDelete: none`).

use std::path::Path;

use crate::durability::savepoint::{SavepointStore, StoreSettings};
use crate::job::error::RunError;
use crate::job::run::load_job;

/// What happened to one location.
#[derive(Debug)]
pub struct Discarded {
    pub location: String,
    /// Objects deleted, or why the location could not be deleted.
    pub outcome: Result<usize, String>,
}

/// Deletes each savepoint of `locations` (each a whole savepoint, as status lists
/// them), going on after a failure so that one bad location holds up no other.
pub fn delete(job: &Path, locations: &[String]) -> Result<Vec<Discarded>, RunError> {
    let job = load_job(job)?;
    let settings = StoreSettings::from_spec(&job.spec.savepoints);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    Ok(locations
        .iter()
        .map(|location| Discarded {
            location: location.clone(),
            outcome: runtime.block_on(delete_one(location, &settings)),
        })
        .collect())
}

async fn delete_one(location: &str, settings: &StoreSettings) -> Result<usize, String> {
    let store = SavepointStore::open(location, settings).map_err(|e| e.to_string())?;
    store.delete().await.map_err(|e| e.to_string())
}
