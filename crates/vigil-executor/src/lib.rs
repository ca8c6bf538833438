//! Vigil's batch executor.
#![forbid(unsafe_code)]
