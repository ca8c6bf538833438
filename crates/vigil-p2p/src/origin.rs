//! The origin: the server reading pieces of an artifact file for the peers that found no
//! other source, at most a bounded number at once.

use std::path::Path;

use vigil_core::agent::Manifest;

use crate::P2pError;

/// A bounded number of concurrent piece reads.
#[derive(Debug)]
pub struct OriginReaders {
    _private: (),
}

impl OriginReaders {
    pub fn new(max_readers: usize) -> OriginReaders {
        todo!("{max_readers}")
    }

    /// Piece `index` of the file at `path`, or None when every reader is busy (the route
    /// answers 503 and the peer asks elsewhere or later). Blocking: call it off the async
    /// workers.
    pub fn read_piece(
        &self,
        path: &Path,
        manifest: &Manifest,
        index: u32,
    ) -> Result<Option<Vec<u8>>, P2pError> {
        todo!("{} {} {index}", path.display(), manifest.sha256)
    }
}
