//! Vigil's guard layer: keeps the recent data of every host in memory, assembles each observing
//! release's window into a `release-bundle/1`, judges it with the analysis engine at every step
//! and acts on the verdict through the store (pause, recommendation, success).
#![forbid(unsafe_code)]

pub mod admission;
pub mod alerts;
pub mod apps;
pub mod assemble;
pub mod decision;
pub mod error;
pub mod follow;
pub mod groups;
pub mod guard;
pub mod history;
pub mod import;
pub mod index;
pub mod intake;
pub mod library;
pub mod models;
pub mod pull;
pub mod requests;
pub mod retention;
pub mod rules;
pub mod scorecard;
pub mod window;

pub use assemble::{assemble, assemble_steps, assemble_with, AssembleError, Window};
pub use error::GuardError;
pub use guard::{Guard, GuardConfig, Judged, ReplicaIdentity, ReplicaStatus, Route};
pub use index::DataIndex;
pub use window::ReleaseWindow;
