//! Checkpoint volume auto-expansion (`spec.checkpoints.volume.autoExpand`):
//! [`quantity`] (sizes as bytes), [`decide`] (pure: usage, claim, class → what to
//! do) and [`expand`] (reads the claim and its StorageClass, patches the claim,
//! says so in Events).

pub mod decide;
pub mod expand;
pub mod quantity;
