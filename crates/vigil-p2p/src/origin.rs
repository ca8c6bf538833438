//! The origin: the server reading pieces of an artifact file for the peers that found no
//! other source, at most a bounded number at once.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use vigil_core::agent::Manifest;

use crate::manifest::verify_piece;
use crate::P2pError;

/// A bounded number of concurrent piece reads.
#[derive(Debug)]
pub struct OriginReaders {
    max_readers: usize,
    busy: AtomicUsize,
}

/// A reader's place, given back when dropped.
struct ReaderSlot<'a>(&'a AtomicUsize);

impl Drop for ReaderSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl OriginReaders {
    pub fn new(max_readers: usize) -> OriginReaders {
        OriginReaders {
            max_readers: max_readers.max(1),
            busy: AtomicUsize::new(0),
        }
    }

    pub fn max_readers(&self) -> usize {
        self.max_readers
    }

    /// Takes a reader's place, or None when every one is taken.
    fn try_take(&self) -> Option<ReaderSlot<'_>> {
        self.busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
                (busy < self.max_readers).then_some(busy + 1)
            })
            .ok()
            .map(|_| ReaderSlot(&self.busy))
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
        let Some(length) = manifest.piece_len(index) else {
            return Err(P2pError::Manifest(format!(
                "piece {index} is past the artifact's {} pieces",
                manifest.piece_count()
            )));
        };
        let Some(_slot) = self.try_take() else {
            return Ok(None);
        };
        let bytes = read_at(path, u64::from(index) * u64::from(manifest.piece_size), length)?;
        // The origin's own disk is checked too: a damaged file is never sent on.
        if !verify_piece(manifest, index, &bytes) {
            return Err(P2pError::BadPiece { index });
        }
        Ok(Some(bytes))
    }
}

/// `length` bytes of the file at `path` from `offset`.
pub(crate) fn read_at(path: &Path, offset: u64, length: u32) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; length as usize];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{build_manifest, ManifestKey};

    #[test]
    fn readers_are_bounded_and_pieces_are_checked() {
        let dir = std::env::temp_dir().join(format!("vigil-p2p-origin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("artifact");
        let bytes: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let key = ManifestKey::generate().unwrap();
        let manifest = build_manifest(&path, "a", 0, &key).unwrap();
        let readers = OriginReaders::new(2);
        let piece = readers.read_piece(&path, &manifest, 2).unwrap().unwrap();
        assert_eq!(piece, bytes[2 * 262_144..]);
        assert!(readers.read_piece(&path, &manifest, 3).is_err());

        let first = readers.try_take().unwrap();
        let second = readers.try_take().unwrap();
        assert!(readers.read_piece(&path, &manifest, 0).unwrap().is_none());
        drop(first);
        assert!(readers.read_piece(&path, &manifest, 0).unwrap().is_some());
        drop(second);

        let mut damaged = bytes.clone();
        damaged[10] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            readers.read_piece(&path, &manifest, 0),
            Err(P2pError::BadPiece { index: 0 })
        ));
    }
}
