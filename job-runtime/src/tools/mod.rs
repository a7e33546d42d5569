//! Local tools: bounded replay of a directory, the demo, the built-in data
//! generator, the data sets it writes (`generate`) and the HTML report of a
//! local run.

pub mod dataset;
pub mod demo;
pub mod generator;
pub mod replay;
pub mod report;
pub mod summary;
