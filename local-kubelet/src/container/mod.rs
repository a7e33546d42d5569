//! One container: its environment, command line, and the process that runs it.

pub mod command;
pub mod env;
pub mod namespace;
pub mod spawn;
