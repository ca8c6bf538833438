//! Vigil's ingestion: Prometheus remote write and queries, JSON samples, log template mining.

pub mod alerts;
pub mod json;
pub mod logs;
pub mod prometheus;
pub mod remote_write;
