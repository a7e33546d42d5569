//! Parsing of input records into typed events: the parser and its types live in
//! `streamjoin-formats` (pure Rust, so `fuzz/` can build it alone).

pub use streamjoin_formats::record::*;
