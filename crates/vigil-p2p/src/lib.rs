//! Vigil's artifact distribution. The server cuts an uploaded artifact into pieces and signs
//! its manifest ([`manifest`]); it is the tracker ([`tracker`], pure) and the origin
//! ([`origin`], a bounded number of readers). Each agent runs a [`peer::PeerNode`] that serves
//! the pieces it holds, and [`fetch::fetch`]es an artifact from a few peers, rarest pieces
//! first, verifying every piece before it keeps or serves it, blocking a peer that sent a bad
//! one, and falling back to the origin when no peer holds a piece.
#![forbid(unsafe_code)]

pub mod bitfield;
pub mod fetch;
pub mod limit;
pub mod local;
pub mod manifest;
pub mod origin;
pub mod peer;
#[doc(hidden)]
pub mod testing;
pub mod tracker;

/// Locks `mutex`, going on with its data when a holder panicked: every value kept behind
/// one here stays whole between two statements.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a distribution step failed.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("piece {index} failed its digest")]
    BadPiece { index: u32 },
    #[error("the fetched file's length differs from the manifest's")]
    BadFile,
    #[error("coordinator: {0}")]
    Coordinator(String),
}
