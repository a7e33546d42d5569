//! The engine's settings, resolved once from a StreamJoinJob spec (or the
//! contract's defaults) into plain milliseconds and byte counts.

use streamjoin_api::{HumanDuration, StreamJoinJob, StreamJoinJobSpec};

/// Input field names (with the record parser in `streamjoin-formats`).
pub use streamjoin_formats::record::FieldNames;

/// Everything the join engine needs to know, in engine units.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub fields: FieldNames,
    /// W: entry length in event time.
    pub window_ms: i64,
    /// D: how far behind its partition's largest event time a record may be.
    pub max_out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: i64,
    /// None disables the inactivity force-advance.
    pub inactivity_timeout_ms: Option<i64>,
    /// None disables watermark alignment.
    pub alignment_max_drift_ms: Option<i64>,
    /// Open entries kept in memory per shard-set before spilling to RocksDB.
    pub cache_entries: usize,
    /// Heap bytes the entry caches of a process hold at most (split over its
    /// shards), event-id sets included.
    pub cache_bytes: usize,
    /// Pending (not yet due) events kept in memory per shard before spilling.
    pub pending_in_memory: usize,
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    /// Records read from one partition per scheduling turn.
    pub read_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self::from_spec(&StreamJoinJobSpec::local_default())
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("spec.join.keyFields must name exactly two fields, got {0:?}")]
    KeyFields(Vec<String>),
    #[error("spec.join.window must be positive")]
    Window,
    #[error("spec.stateStore.{field}: {reason}")]
    Quantity { field: &'static str, reason: String },
    #[error("cannot read job manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
}

fn ms(d: &HumanDuration) -> i64 {
    d.as_millis_i64()
}

impl EngineConfig {
    pub fn from_spec(spec: &StreamJoinJobSpec) -> Result<Self, ConfigError> {
        let [profile, title] = <[String; 2]>::try_from(spec.join.key_fields.clone())
            .map_err(ConfigError::KeyFields)?;
        if profile == title {
            return Err(ConfigError::KeyFields(spec.join.key_fields.clone()));
        }
        let window_ms = ms(&spec.join.window);
        if window_ms <= 0 {
            return Err(ConfigError::Window);
        }
        let store = &spec.state_store;
        Ok(Self {
            fields: FieldNames {
                profile,
                title,
                ..FieldNames::default()
            },
            window_ms,
            max_out_of_orderness_ms: ms(&spec.watermarks.max_out_of_orderness),
            allowed_lateness_ms: ms(&spec.join.allowed_lateness),
            idle_timeout_ms: ms(&spec.watermarks.idle_timeout),
            inactivity_timeout_ms: spec.watermarks.inactivity_timeout.as_ref().map(ms),
            alignment_max_drift_ms: spec.watermarks.alignment_max_drift.as_ref().map(ms),
            cache_entries: usize::try_from(store.cache_entries).unwrap_or(usize::MAX),
            cache_bytes: parse_quantity(&store.cache_size).map_err(|reason| {
                ConfigError::Quantity {
                    field: "cacheSize",
                    reason,
                }
            })?,
            pending_in_memory: 1_000_000,
            block_cache_bytes: parse_quantity(&store.block_cache_size).map_err(|reason| {
                ConfigError::Quantity {
                    field: "blockCacheSize",
                    reason,
                }
            })?,
            write_buffer_bytes: parse_quantity(&store.write_buffer_size).map_err(|reason| {
                ConfigError::Quantity {
                    field: "writeBufferSize",
                    reason,
                }
            })?,
            read_batch: 1024,
        })
    }

    /// Reads a StreamJoinJob manifest file.
    pub fn from_manifest_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let manifest_err = |reason: String| ConfigError::Manifest {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| manifest_err(e.to_string()))?;
        let job = StreamJoinJob::from_yaml(&text).map_err(|e| manifest_err(e.to_string()))?;
        Self::from_spec(&job.spec)
    }
}

/// A Kubernetes quantity for byte sizes: `512Mi`, `1Gi`, `100M`, `4096`.
pub fn parse_quantity(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte quantity such as 256Mi"))?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let c = EngineConfig::default();
        assert_eq!(c.window_ms, 4 * 3_600_000);
        assert_eq!(c.max_out_of_orderness_ms, 120_000);
        assert_eq!(c.idle_timeout_ms, 60_000);
        assert_eq!(c.inactivity_timeout_ms, Some(15 * 60_000));
        assert_eq!(c.alignment_max_drift_ms, Some(60_000));
        assert_eq!(c.allowed_lateness_ms, 0);
        assert_eq!(c.fields.profile, "profile_id");
    }

    #[test]
    fn quantities_parse_binary_and_decimal_units() {
        assert_eq!(parse_quantity("256Mi"), Ok(256 << 20));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity("4096"), Ok(4096));
        assert!(parse_quantity("lots").is_err());
        assert!(parse_quantity("5Xi").is_err());
    }

    #[test]
    fn manifest_overrides_window_and_disables_inactivity() {
        let job = StreamJoinJob::from_yaml(
            "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata: {name: t}\n\
             spec:\n  join: {window: 1h, keyFields: [member, show]}\n  watermarks: {inactivityTimeout: null}\n",
        )
        .expect("valid manifest");
        let c = EngineConfig::from_spec(&job.spec).expect("valid spec");
        assert_eq!(c.window_ms, 3_600_000);
        assert_eq!(c.inactivity_timeout_ms, None);
        assert_eq!(c.fields.profile, "member");
        assert_eq!(c.fields.title, "show");
    }
}
