//! The guard layer's error.

use vigil_store::StoreError;

use crate::assemble::AssembleError;

/// Why a guard pass failed for a release.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error(transparent)]
    Transition(#[from] vigil_deploy::DeployError),
    #[error("release {id} has invalid analysis settings: {reason}")]
    Settings { id: String, reason: String },
}
