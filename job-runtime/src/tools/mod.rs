//! Local tools: bounded replay of a directory, the demo, the built-in data
//! generator and the HTML report of a local run.

pub mod demo;
pub mod generator;
pub mod replay;
pub mod report;
pub mod summary;
