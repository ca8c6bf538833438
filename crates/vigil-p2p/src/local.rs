//! The server's side of a fetch in the fetching process itself: a tracker and an origin over a
//! local file. The swarm tests and the benchmark run whole swarms in one process with it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;
use vigil_core::agent::{Announce, Manifest, Swarm};

use crate::fetch::Coordinator;
use crate::limit::TokenBucket;
use crate::origin::OriginReaders;
use crate::tracker::{Tracker, TrackerSettings};
use crate::{lock, P2pError};

/// A tracker and an origin for one artifact.
#[derive(Debug)]
pub struct LocalCoordinator {
    manifest: Manifest,
    path: PathBuf,
    tracker: Mutex<Tracker>,
    readers: OriginReaders,
    /// The origin's upload limit, if any.
    origin_limit: Option<TokenBucket>,
    origin_bytes: AtomicU64,
    started: Instant,
    reports: Mutex<Vec<(String, String)>>,
}

impl LocalCoordinator {
    pub fn new(
        manifest: Manifest,
        path: PathBuf,
        settings: TrackerSettings,
        max_readers: usize,
        origin_bytes_per_second: Option<u64>,
    ) -> LocalCoordinator {
        LocalCoordinator {
            manifest,
            path,
            tracker: Mutex::new(Tracker::new(settings)),
            readers: OriginReaders::new(max_readers),
            origin_limit: origin_bytes_per_second.map(TokenBucket::new),
            origin_bytes: AtomicU64::new(0),
            started: Instant::now(),
            reports: Mutex::new(Vec::new()),
        }
    }

    /// Bytes the origin sent.
    pub fn origin_bytes(&self) -> u64 {
        self.origin_bytes.load(Ordering::Relaxed)
    }

    /// Every (reporter, reported) pair of bad-peer reports, in the order the tracker got them.
    pub fn bad_reports(&self) -> Vec<(String, String)> {
        lock(&self.reports).clone()
    }

    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }
}

impl Coordinator for LocalCoordinator {
    fn announce(&self, artifact: &str, announce: &Announce) -> Result<Swarm, P2pError> {
        if artifact != self.manifest.sha256 {
            return Err(P2pError::Coordinator("unknown artifact".to_string()));
        }
        {
            let mut reports = lock(&self.reports);
            for bad in &announce.bad_peers {
                let pair = (announce.host.clone(), bad.clone());
                if !reports.contains(&pair) {
                    reports.push(pair);
                }
            }
        }
        let now_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let pieces = self.manifest.piece_count();
        Ok(lock(&self.tracker).announce(artifact, pieces, announce, now_ms))
    }

    fn origin_piece(&self, artifact: &str, index: u32) -> Result<Option<Vec<u8>>, P2pError> {
        if artifact != self.manifest.sha256 {
            return Err(P2pError::Coordinator("unknown artifact".to_string()));
        }
        let Some(bytes) = self.readers.read_piece(&self.path, &self.manifest, index)? else {
            return Ok(None);
        };
        if let Some(limit) = &self.origin_limit {
            limit.take_blocking(bytes.len());
        }
        self.origin_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(Some(bytes))
    }
}
