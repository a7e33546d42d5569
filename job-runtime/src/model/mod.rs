//! What the join is about, used by every other module: input records and
//! their parsing into events and keys, the summarised entry of one key with
//! its update rules, and the counters a shard keeps.

pub mod counters;
pub mod entry;
pub mod output;
pub mod record;
