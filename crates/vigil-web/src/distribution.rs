//! The server's side of artifact distribution: the artifact directory, the key that signs the
//! manifests, the tracker and the origin's readers, which `AppState` holds for the artifact
//! routes (`artifacts.rs`) and the pages.

use std::collections::HashMap;
use std::path::{Path as FilePath, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use vigil_core::agent::Manifest;
use vigil_p2p::manifest::ManifestKey;
use vigil_p2p::origin::OriginReaders;
use vigil_p2p::tracker::{HostProgress, Tracker, TrackerSettings};
use vigil_p2p::P2pError;

/// The largest artifact an upload may carry by default: 2 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Pieces read for the peers at once by default.
pub const DEFAULT_ORIGIN_READERS: usize = 4;
/// The signing key's file in the artifact directory.
pub const KEY_FILE: &str = "manifest-key.pk8";

/// The server's side of artifact distribution.
#[derive(Debug)]
pub struct Artifacts {
    pub(crate) dir: PathBuf,
    pub(crate) key: ManifestKey,
    pub(crate) tracker: Mutex<Tracker>,
    pub(crate) readers: OriginReaders,
    pub(crate) max_upload_bytes: u64,
    pub(crate) manifests: Mutex<HashMap<String, Arc<Manifest>>>,
    pub(crate) uploads: AtomicU64,
}

impl Artifacts {
    /// The artifacts kept in `dir` (made if missing), signed with the key kept there (made on
    /// first use, mode 0600). Blocking.
    pub fn open(
        dir: PathBuf,
        max_upload_bytes: u64,
        origin_readers: usize,
        tracker: TrackerSettings,
    ) -> Result<Artifacts, P2pError> {
        std::fs::create_dir_all(&dir)?;
        let key = ManifestKey::load_or_create(&dir.join(KEY_FILE))?;
        Ok(Artifacts {
            dir,
            key,
            tracker: Mutex::new(Tracker::new(tracker)),
            readers: OriginReaders::new(origin_readers),
            max_upload_bytes,
            manifests: Mutex::new(HashMap::new()),
            uploads: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &FilePath {
        &self.dir
    }

    pub fn public_key_hex(&self) -> String {
        self.key.public_key_hex()
    }

    /// Every host that announced `artifact` to this server's tracker, with the pieces it
    /// held at its last announce.
    pub fn progress(&self, artifact: &str) -> Vec<HostProgress> {
        lock(&self.tracker).progress(artifact)
    }

    pub(crate) fn artifact_path(&self, artifact: &str) -> PathBuf {
        self.dir.join(artifact)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
