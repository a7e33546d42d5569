//! Checks the workspace's layout, so that it stays readable as it grows:
//!
//! - no import cycle between the files of one crate (`use crate::…`, `use super::…`,
//!   grouped uses and qualified paths in code, `#[cfg(test)]` items left out);
//! - no function over [`MAX_FUNCTION_LINES`] lines outside tests.
//!
//! `streamjoin-architecture [WORKSPACE_DIR]` prints the report and exits 1 on a
//! violation; `tests/workspace.rs` runs the same check on this repository.

pub mod functions;
pub mod graph;
pub mod imports;
pub mod items;
pub mod lex;
pub mod modules;
pub mod package;
pub mod report;
pub mod workspace;

pub use report::{MAX_FUNCTION_LINES, Report};
pub use workspace::check;
