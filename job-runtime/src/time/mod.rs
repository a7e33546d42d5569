//! Event time: per-partition and job watermarks, idleness, alignment,
//! inactivity force-advance, and the injectable processing-time clock.

pub mod watermark;
