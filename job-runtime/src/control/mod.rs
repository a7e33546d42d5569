//! Control and observability: the admin HTTP API, requests from it to the
//! workers, the status document, Prometheus metrics and output audits.

pub mod admin;
pub mod admin_token;
pub mod audit;
pub mod metrics;
pub mod requests;
pub mod status;
