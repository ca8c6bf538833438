//! The origin: the server reading pieces of an artifact file for the peers that found no
//! other source, at most a bounded number at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use vigil_core::agent::Manifest;

use crate::limit::Slots;
use crate::manifest::verify_piece;
use crate::P2pError;

/// How long after serving a piece the origin refuses it as busy by default: by then the peer
/// that took it has announced it, and the others fetch it from that peer.
pub const DEFAULT_REPEAT_WINDOW: Duration = Duration::from_secs(2);
/// Pieces remembered as served before the old ones are forgotten.
const MAX_REMEMBERED: usize = 65_536;

/// A bounded number of concurrent piece reads. A piece served moments ago is answered as busy
/// (the peer asks its peers, or again later), so that peers whose view of the swarm lags do
/// not take the origin's bandwidth for copies of one piece.
#[derive(Debug)]
pub struct OriginReaders {
    readers: Slots,
    repeat_window: Duration,
    served: Mutex<HashMap<(String, u32), Instant>>,
}

impl OriginReaders {
    pub fn new(max_readers: usize) -> OriginReaders {
        OriginReaders {
            readers: Slots::new(max_readers),
            repeat_window: DEFAULT_REPEAT_WINDOW,
            served: Mutex::new(HashMap::new()),
        }
    }

    /// Readers that serve a piece again only `window` after they last served it (zero: at
    /// once).
    pub fn with_repeat_window(mut self, window: Duration) -> OriginReaders {
        self.repeat_window = window;
        self
    }

    /// Whether piece `index` of `artifact` may be served now; if so, it counts as served.
    fn take_unless_recent(&self, artifact: &str, index: u32) -> bool {
        if self.repeat_window.is_zero() {
            return true;
        }
        let now = Instant::now();
        let mut served = crate::lock(&self.served);
        let key = (artifact.to_string(), index);
        if let Some(at) = served.get(&key) {
            if now.saturating_duration_since(*at) < self.repeat_window {
                return false;
            }
        }
        if served.len() >= MAX_REMEMBERED {
            let window = self.repeat_window;
            served.retain(|_, at| now.saturating_duration_since(*at) < window);
            if served.len() >= MAX_REMEMBERED {
                served.clear();
            }
        }
        served.insert(key, now);
        true
    }

    pub fn max_readers(&self) -> usize {
        self.readers.max()
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
        let Some(_slot) = self.readers.try_take() else {
            return Ok(None);
        };
        if !self.take_unless_recent(&manifest.sha256, index) {
            return Ok(None);
        }
        let bytes = read_at(
            path,
            u64::from(index) * u64::from(manifest.piece_size),
            length,
        )?;
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
        let readers = OriginReaders::new(2).with_repeat_window(Duration::ZERO);
        let piece = readers.read_piece(&path, &manifest, 2).unwrap().unwrap();
        assert_eq!(piece, bytes[2 * 262_144..]);
        assert!(readers.read_piece(&path, &manifest, 2).unwrap().is_some());
        assert!(readers.read_piece(&path, &manifest, 3).is_err());

        let first = readers.readers.try_take().unwrap();
        let second = readers.readers.try_take().unwrap();
        assert!(readers.read_piece(&path, &manifest, 0).unwrap().is_none());
        drop(first);
        assert!(readers.read_piece(&path, &manifest, 0).unwrap().is_some());
        drop(second);

        // A piece served moments ago is busy; others are not.
        let remembering = OriginReaders::new(2).with_repeat_window(Duration::from_secs(60));
        assert!(remembering
            .read_piece(&path, &manifest, 1)
            .unwrap()
            .is_some());
        assert!(remembering
            .read_piece(&path, &manifest, 1)
            .unwrap()
            .is_none());
        assert!(remembering
            .read_piece(&path, &manifest, 0)
            .unwrap()
            .is_some());
        let forgetful = OriginReaders::new(2).with_repeat_window(Duration::from_millis(30));
        assert!(forgetful.read_piece(&path, &manifest, 1).unwrap().is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(forgetful.read_piece(&path, &manifest, 1).unwrap().is_some());

        let mut damaged = bytes.clone();
        damaged[10] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            readers.read_piece(&path, &manifest, 0),
            Err(P2pError::BadPiece { index: 0 })
        ));
    }
}
