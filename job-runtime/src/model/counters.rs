//! The counters of one shard (in `streamjoin-formats`, as checkpoint manifests
//! carry them).

pub use streamjoin_formats::counters::ShardCounters;
