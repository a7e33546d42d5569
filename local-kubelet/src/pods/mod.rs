//! Pods bound to the node: the watch that hands each pod to its worker, and the
//! worker that runs the pod's containers and reports its status.

pub mod ctr;
pub mod probing;
pub mod refresh;
pub mod start;
pub mod status;
pub mod stop;
pub mod watch;
pub mod worker;
