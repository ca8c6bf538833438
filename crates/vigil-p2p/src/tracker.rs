//! The tracker, pure: per artifact, the peers that announced and what they hold; an announce
//! is answered with a few peers to fetch from. The server holds one behind a mutex.

use vigil_core::agent::{Announce, Swarm};

/// How the tracker hands out peers.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// Peers handed out per announce.
    pub peers_per_announce: usize,
    /// A peer that has not announced for this long is forgotten.
    pub peer_timeout_ms: i64,
    pub announce_interval_ms: u32,
}

impl Default for TrackerSettings {
    fn default() -> TrackerSettings {
        TrackerSettings {
            peers_per_announce: 5,
            peer_timeout_ms: 30_000,
            announce_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    settings: TrackerSettings,
}

/// One host's hold of an artifact, for the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProgress {
    pub host: String,
    pub pieces_held: u32,
    pub pieces: u32,
}

impl Tracker {
    pub fn new(settings: TrackerSettings) -> Tracker {
        Tracker { settings }
    }

    /// Records what `announce.host` holds of `artifact` (of `pieces` pieces) and answers with
    /// peers to fetch from (never itself, never a peer reported bad).
    pub fn announce(
        &mut self,
        artifact: &str,
        pieces: u32,
        announce: &Announce,
        now_ms: i64,
    ) -> Swarm {
        todo!(
            "{artifact} {pieces} {announce:?} {now_ms} {:?}",
            self.settings
        )
    }

    /// Every host that announced `artifact`, with how much it holds.
    pub fn progress(&self, artifact: &str) -> Vec<HostProgress> {
        todo!("{artifact}")
    }
}
