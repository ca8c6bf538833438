//! A peer: serves the verified pieces it holds to other peers over TCP, within its upload
//! limit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Token-bucket limits of a peer, bytes per second; None is unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub up_bytes_per_second: Option<u64>,
    pub down_bytes_per_second: Option<u64>,
}

/// A running peer: its listener and the pieces it holds under `dir`.
#[derive(Debug)]
pub struct PeerNode {
    _private: (),
}

impl PeerNode {
    /// Binds `listen` and serves the pieces held under `dir` (kept across restarts: pieces
    /// found there are verified again before they are served).
    pub async fn start(
        listen: SocketAddr,
        dir: PathBuf,
        limits: Limits,
    ) -> std::io::Result<Arc<PeerNode>> {
        todo!("{listen} {} {limits:?}", dir.display())
    }

    pub fn addr(&self) -> SocketAddr {
        todo!()
    }

    /// Stops serving; pieces stay on disk.
    pub fn shutdown(&self) {
        todo!()
    }
}
