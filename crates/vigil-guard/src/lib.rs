//! Vigil's guard layer: keeps the recent data of every host in memory, assembles each observing
//! release's window into a `release-bundle/1`, judges it with the analysis engine at every step
//! and acts on the verdict through the store (pause, recommendation, success).
#![forbid(unsafe_code)]

pub mod admission;
pub mod assemble;
pub mod guard;
pub mod import;
pub mod index;
pub mod intake;
pub mod onboarding;
pub mod pull;
pub mod retention;

pub use assemble::{assemble, assemble_steps, assemble_with, AssembleError, Window};
pub use guard::{Guard, GuardConfig, GuardError, Judged, Route};
pub use index::DataIndex;
