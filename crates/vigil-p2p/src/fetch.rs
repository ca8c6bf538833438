//! Fetching an artifact: announce to the tracker, fetch the rarest missing pieces from a few
//! peers, verify each, fall back to the origin, and check the whole file at the end.

use std::path::PathBuf;
use std::sync::Arc;

use vigil_core::agent::{Announce, ArtifactProgress, Manifest, Swarm};

use crate::peer::PeerNode;
use crate::P2pError;

/// The server's side of a fetch, as the fetching peer reaches it (over HTTP for an agent,
/// in-process in the benchmark). Blocking calls: [`fetch`] makes them off the async workers.
pub trait Coordinator: Send + Sync + 'static {
    fn announce(&self, artifact: &str, announce: &Announce) -> Result<Swarm, P2pError>;
    /// Piece `index` from the origin; None when the origin is busy.
    fn origin_piece(&self, artifact: &str, index: u32) -> Result<Option<Vec<u8>>, P2pError>;
}

/// What to fetch and whom to ask.
pub struct Fetch {
    /// Already checked against the server's key ([`crate::manifest::verify_manifest`]).
    pub manifest: Manifest,
    /// This peer's host name, as it announces itself.
    pub host: String,
    pub coordinator: Arc<dyn Coordinator>,
    /// Called as pieces arrive.
    pub progress: Option<Arc<dyn Fn(ArtifactProgress) + Send + Sync>>,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("artifact", &self.manifest.sha256)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Fetches the artifact into `node`'s directory and returns the path of the whole, verified
/// file; the pieces are served to other peers as they arrive.
pub async fn fetch(node: &Arc<PeerNode>, request: Fetch) -> Result<PathBuf, P2pError> {
    todo!("{node:?} {request:?}")
}
