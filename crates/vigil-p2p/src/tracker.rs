//! The tracker, pure: per artifact, the peers that announced and what they hold; an announce
//! is answered with a few peers to fetch from. The server holds one behind a mutex.

use std::collections::{BTreeMap, BTreeSet};

use vigil_core::agent::{Announce, PeerInfo, Swarm};

use crate::bitfield::Bitfield;

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
            // Fetching peers learn of each other's new pieces only through the tracker and
            // the answers of the parents they ask. Against announcing every second, 250 ms
            // brought the 64 MiB swarm of the tier-1 benchmark from 1.28 to 1.09 times its
            // bound and the 256 MiB one of tier 2 from 1.24 to 1.21: the shorter the
            // distribution, the more a stale view costs. An announce is in memory only.
            announce_interval_ms: 250,
        }
    }
}

/// At most this many hosts are kept per artifact, and this many artifacts: a tracker's memory
/// is bounded whatever is announced.
pub const MAX_HOSTS_PER_ARTIFACT: usize = 100_000;
pub const MAX_ARTIFACTS: usize = 1_000;

#[derive(Debug, Default)]
pub struct Tracker {
    settings: TrackerSettings,
    artifacts: BTreeMap<String, ArtifactSwarm>,
}

#[derive(Debug, Default)]
struct ArtifactSwarm {
    pieces: u32,
    /// Peers heard from within the timeout.
    peers: BTreeMap<String, PeerEntry>,
    /// Hosts some peer reported sending a bad piece: never handed out again for this artifact.
    blocked: BTreeSet<String>,
    /// Every host that announced, and what it held at its last announce (for the pages).
    progress: BTreeMap<String, u32>,
    last_announce_ms: i64,
}

#[derive(Debug)]
struct PeerEntry {
    addr: String,
    have: Bitfield,
    last_ms: i64,
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
        Tracker {
            settings,
            artifacts: BTreeMap::new(),
        }
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
        self.forget_oldest_artifact_beyond_bound(artifact);
        let swarm = self
            .artifacts
            .entry(artifact.to_string())
            .or_insert_with(|| ArtifactSwarm {
                pieces,
                ..ArtifactSwarm::default()
            });
        swarm.last_announce_ms = now_ms;
        let timeout_ms = self.settings.peer_timeout_ms;
        swarm
            .peers
            .retain(|_, peer| now_ms.saturating_sub(peer.last_ms) <= timeout_ms);
        for bad in &announce.bad_peers {
            if *bad == announce.host {
                continue;
            }
            if swarm.blocked.insert(bad.clone()) {
                tracing::warn!(
                    artifact,
                    host = %bad,
                    by = %announce.host,
                    "peer blocked for a bad piece"
                );
            }
            swarm.peers.remove(bad);
        }
        let have =
            Bitfield::from_hex(&announce.have, swarm.pieces).unwrap_or(Bitfield::new(swarm.pieces));
        let held = have.count();
        let known = swarm.progress.contains_key(&announce.host);
        if known || swarm.progress.len() < MAX_HOSTS_PER_ARTIFACT {
            swarm.progress.insert(announce.host.clone(), held);
        }
        let blocked = swarm.blocked.contains(&announce.host);
        if !blocked
            && (swarm.peers.contains_key(&announce.host)
                || swarm.peers.len() < MAX_HOSTS_PER_ARTIFACT)
        {
            swarm.peers.insert(
                announce.host.clone(),
                PeerEntry {
                    addr: announce.addr.clone(),
                    have: have.clone(),
                    last_ms: now_ms,
                },
            );
        }
        let peers = if have.is_complete() {
            Vec::new()
        } else {
            choose_peers(
                swarm,
                &announce.host,
                &have,
                self.settings.peers_per_announce,
                now_ms,
            )
        };
        Swarm {
            peers,
            interval_ms: self.settings.announce_interval_ms,
        }
    }

    /// Every host that announced `artifact`, with how much it holds.
    pub fn progress(&self, artifact: &str) -> Vec<HostProgress> {
        let Some(swarm) = self.artifacts.get(artifact) else {
            return Vec::new();
        };
        swarm
            .progress
            .iter()
            .map(|(host, held)| HostProgress {
                host: host.clone(),
                pieces_held: *held,
                pieces: swarm.pieces,
            })
            .collect()
    }

    /// Whether `host` was reported for a bad piece of `artifact`.
    pub fn is_blocked(&self, artifact: &str, host: &str) -> bool {
        self.artifacts
            .get(artifact)
            .is_some_and(|swarm| swarm.blocked.contains(host))
    }

    fn forget_oldest_artifact_beyond_bound(&mut self, artifact: &str) {
        if self.artifacts.len() < MAX_ARTIFACTS || self.artifacts.contains_key(artifact) {
            return;
        }
        let oldest = self
            .artifacts
            .iter()
            .min_by_key(|(_, swarm)| swarm.last_announce_ms)
            .map(|(id, _)| id.clone());
        if let Some(oldest) = oldest {
            self.artifacts.remove(&oldest);
        }
    }
}

/// Peers holding something `have` lacks, the ones holding most of it first, spread over the
/// swarm by a hash of the asker and the time so that askers do not all crowd the same few.
fn choose_peers(
    swarm: &ArtifactSwarm,
    asker: &str,
    have: &Bitfield,
    wanted: usize,
    now_ms: i64,
) -> Vec<PeerInfo> {
    let mut candidates: Vec<(u32, u64, &String, &PeerEntry)> = swarm
        .peers
        .iter()
        .filter(|(host, _)| host.as_str() != asker && !swarm.blocked.contains(*host))
        .filter_map(|(host, peer)| {
            let useful = peer.have.count_lacking_in(have);
            (useful > 0).then(|| (useful, spread(asker, host, now_ms), host, peer))
        })
        .collect();
    // Seeds (and near seeds) are a bucket of their own; among the rest, the spread decides, so
    // that no peer is every asker's first choice.
    let pieces = swarm.pieces.max(1);
    candidates
        .sort_by_key(|(useful, spread, _, _)| (std::cmp::Reverse(*useful * 4 / pieces), *spread));
    candidates
        .into_iter()
        .take(wanted)
        .map(|(_, _, host, peer)| PeerInfo {
            host: host.clone(),
            addr: peer.addr.clone(),
            have: peer.have.to_hex(),
        })
        .collect()
}

/// A well-mixed hash (FNV-1a then a finalizer) of the asker, the peer and the second.
fn spread(asker: &str, peer: &str, now_ms: i64) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let second = now_ms.div_euclid(1_000).to_le_bytes();
    for byte in asker.bytes().chain([0]).chain(peer.bytes()).chain(second) {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    state ^= state >> 33;
    state = state.wrapping_mul(0xff51_afd7_ed55_8ccd);
    state ^ (state >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(host: &str, have: &Bitfield) -> Announce {
        Announce {
            host: host.to_string(),
            addr: format!("127.0.0.1:{}", 7000 + host.len()),
            have: have.to_hex(),
            bad_peers: Vec::new(),
        }
    }

    fn hosts(swarm: &Swarm) -> Vec<String> {
        swarm.peers.iter().map(|peer| peer.host.clone()).collect()
    }

    #[test]
    fn never_itself_nor_a_blocked_peer_and_only_peers_with_something_to_give() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let empty = Bitfield::new(8);
        let full = Bitfield::full(8);
        tracker.announce("a1", 8, &announce("seed", &full), 0);
        tracker.announce("a1", 8, &announce("bad", &full), 0);
        tracker.announce("a1", 8, &announce("idle", &empty), 0);
        let swarm = tracker.announce("a1", 8, &announce("me", &empty), 10);
        let mut handed = hosts(&swarm);
        handed.sort();
        assert_eq!(handed, vec!["bad", "seed"]);

        let mut reporting = announce("me", &empty);
        reporting.bad_peers = vec!["bad".to_string()];
        let swarm = tracker.announce("a1", 8, &reporting, 20);
        assert_eq!(hosts(&swarm), vec!["seed"]);
        assert!(tracker.is_blocked("a1", "bad"));
        // The blocked peer announcing again is not handed out either.
        tracker.announce("a1", 8, &announce("bad", &full), 30);
        let swarm = tracker.announce("a1", 8, &announce("other", &empty), 40);
        assert_eq!(hosts(&swarm), vec!["seed"]);
        // Blocked for this artifact only.
        tracker.announce("a2", 8, &announce("bad", &full), 40);
        let swarm = tracker.announce("a2", 8, &announce("me", &empty), 40);
        assert_eq!(hosts(&swarm), vec!["bad"]);
    }

    #[test]
    fn silent_peers_are_forgotten_but_progress_is_kept() {
        let settings = TrackerSettings {
            peer_timeout_ms: 1_000,
            ..TrackerSettings::default()
        };
        let mut tracker = Tracker::new(settings);
        let mut half = Bitfield::new(4);
        half.set(0);
        half.set(1);
        tracker.announce("a", 4, &announce("quiet", &half), 0);
        let swarm = tracker.announce("a", 4, &announce("me", &Bitfield::new(4)), 900);
        assert_eq!(hosts(&swarm), vec!["quiet"]);
        let swarm = tracker.announce("a", 4, &announce("me", &Bitfield::new(4)), 2_500);
        assert!(swarm.peers.is_empty());
        let progress = tracker.progress("a");
        assert_eq!(
            progress,
            vec![
                HostProgress {
                    host: "me".to_string(),
                    pieces_held: 0,
                    pieces: 4
                },
                HostProgress {
                    host: "quiet".to_string(),
                    pieces_held: 2,
                    pieces: 4
                },
            ]
        );
        assert!(tracker.progress("unknown").is_empty());
    }

    #[test]
    fn a_few_peers_per_announce_spread_over_the_swarm() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let full = Bitfield::full(16);
        for index in 0..40 {
            let mut have = Bitfield::new(16);
            have.set(index % 16);
            let host = format!("peer-{index}");
            tracker.announce("a", 16, &announce(&host, &have), 0);
        }
        tracker.announce("a", 16, &announce("seed", &full), 0);
        let mut first_choices = BTreeSet::new();
        for index in 0..40 {
            let asker = format!("peer-{index}");
            let mut have = Bitfield::new(16);
            have.set(index % 16);
            let swarm = tracker.announce("a", 16, &announce(&asker, &have), 100);
            assert_eq!(
                swarm.peers.len(),
                TrackerSettings::default().peers_per_announce
            );
            assert!(!hosts(&swarm).contains(&asker));
            assert_eq!(swarm.peers[0].host, "seed", "the seed holds most");
            first_choices.insert(swarm.peers[1].host.clone());
        }
        assert!(first_choices.len() > 10, "{first_choices:?}");
        // A complete peer needs no one.
        assert!(tracker
            .announce("a", 16, &announce("seed", &full), 200)
            .peers
            .is_empty());
    }
}
