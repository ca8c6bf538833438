//! Following the chunks other replicas store: with several servers on one database, data
//! ingested at any of them reaches the index of each, so that the replica guarding a release
//! judges it on everything that was accepted.
//!
//! A replica indexes its own chunks at intake; the [`Follower`] reads the chunks of other
//! origins by id from the store and adds them to the same index. Ids are taken when an insert
//! begins and rows are seen when it commits, so a poll may see id 12 before id 11 commits, and
//! an insert that stored nothing (a duplicate key, a rolled back import) leaves its id unused
//! for good. The follower keeps the ids it has not seen below the highest it has seen (its
//! holes) and looks for them again at every poll for [`FollowLimits::hole_seconds`] before it
//! gives up on them. Each chunk reaches the index once: log counts add up, so a chunk indexed
//! twice would count its lines twice.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use vigil_core::Clock;
use vigil_ingest::remote_write::RemoteWriteDecoder;
use vigil_store::{ChunkHead, Store, StoreError, StoredChunk};

use crate::intake::{index_stored_chunk, Intake};

/// How much one poll reads, and how long a missing id is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowLimits {
    /// Chunks one poll reads at most; the rest waits for the next poll.
    pub chunks: usize,
    /// Body bytes one poll reads at most (a poll reads at least one chunk).
    pub bytes: i64,
    /// How long an id below the highest seen is looked for before it is given up.
    pub hole_seconds: i64,
    /// Missing ids kept at most; past it the oldest are given up.
    pub holes: usize,
    /// How far below the highest id at start the ids not yet committed are looked for.
    pub start_lookback: usize,
}

impl Default for FollowLimits {
    fn default() -> FollowLimits {
        FollowLimits {
            chunks: 256,
            bytes: 16 << 20,
            hole_seconds: 30,
            holes: 10_000,
            start_lookback: 1_000,
        }
    }
}

/// The reads a follower makes: the [`Store`]'s, or a test's.
pub(crate) trait ChunkSource: Send + Sync {
    fn last_chunk_id(&self) -> Result<i64, StoreError>;
    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError>;
    fn chunks_with_ids(
        &self,
        ids: &[i64],
        own_origin: &str,
    ) -> Result<Vec<StoredChunk>, StoreError>;
}

/// The store as a [`ChunkSource`].
struct StoreSource(Arc<dyn Store>);

impl ChunkSource for StoreSource {
    fn last_chunk_id(&self) -> Result<i64, StoreError> {
        self.0.last_chunk_id()
    }

    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError> {
        self.0.chunk_heads_after(after_id, limit)
    }

    fn chunks_with_ids(
        &self,
        ids: &[i64],
        own_origin: &str,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        self.0.chunks_with_ids(ids, own_origin)
    }
}

/// Reads the chunks other replicas store into this replica's index. See the module
/// documentation.
pub struct Follower {
    intake: Arc<Intake>,
    source: Arc<dyn ChunkSource>,
    clock: Arc<dyn Clock>,
    limits: FollowLimits,
    /// The highest chunk id seen.
    cursor: i64,
    /// Ids below the cursor not seen yet, with the time (Unix seconds) they were first missed.
    holes: BTreeMap<i64, i64>,
    /// Ids above the start's highest id, or among its holes, that the start's load indexed
    /// already: skipped when met.
    loaded: HashSet<i64>,
    /// Reads other replicas' remote-write bodies, in the order of their ids.
    decoder: RemoteWriteDecoder,
    /// The last poll read everything there was.
    caught_up: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("cursor", &self.cursor)
            .field("holes", &self.holes.len())
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Fills the index from the stored chunks overlapping `[from_ms, to_ms]` (as
    /// [`Intake::load`]) and returns the follower that goes on from there, with how many chunks
    /// were loaded. The highest id is taken before the load, with the ids not yet committed
    /// below it, so that nothing committed during the load is missed; what the load indexed
    /// of those is not added again.
    pub fn load(
        intake: Arc<Intake>,
        clock: Arc<dyn Clock>,
        limits: FollowLimits,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(Follower, usize), StoreError> {
        Follower::load_from(
            Arc::new(StoreSource(Arc::clone(intake.store()))),
            intake,
            clock,
            limits,
            (from_ms, to_ms),
        )
    }

    /// [`Follower::load`] reading ids and heads from `source`.
    pub(crate) fn load_from(
        source: Arc<dyn ChunkSource>,
        intake: Arc<Intake>,
        clock: Arc<dyn Clock>,
        limits: FollowLimits,
        (from_ms, to_ms): (i64, i64),
    ) -> Result<(Follower, usize), StoreError> {
        let store = Arc::clone(&source);
        let start = store.last_chunk_id()?;
        let lookback = i64::try_from(limits.start_lookback).unwrap_or(i64::MAX);
        let lowest = start.saturating_sub(lookback).max(0);
        let committed: BTreeSet<i64> = store
            .chunk_heads_after(lowest, limits.start_lookback)?
            .into_iter()
            .map(|head| head.id)
            .filter(|id| *id <= start)
            .collect();
        let now = clock.now();
        let holes: BTreeMap<i64, i64> = (lowest + 1..start)
            .filter(|id| !committed.contains(id))
            .map(|id| (id, now))
            .collect();
        let loaded = intake.load_stored(from_ms, to_ms)?;
        let count = loaded.ids.len();
        let skipped = loaded
            .ids
            .into_iter()
            .filter(|id| *id > start || holes.contains_key(id))
            .collect();
        let follower = Follower {
            intake,
            source,
            clock,
            limits,
            cursor: start,
            holes,
            loaded: skipped,
            decoder: loaded.decoder,
            caught_up: false,
        };
        Ok((follower, count))
    }

    /// Reads the chunks of other replicas stored since the last poll (within the limits) and
    /// those of the missing ids that committed since, adds them to the index and wakes the
    /// guard when any was added. Returns how many were added.
    pub fn poll(&mut self) -> Result<usize, StoreError> {
        let store = Arc::clone(&self.source);
        let own = self.intake.origin().to_owned();
        let heads = store.chunk_heads_after(self.cursor, self.limits.chunks)?;
        let now = self.clock.now();
        let mut wanted: Vec<i64> = self.holes.keys().copied().collect();
        let mut bytes = 0i64;
        let mut stopped_early = heads.len() >= self.limits.chunks.max(1);
        let most_holes = i64::try_from(self.limits.holes).unwrap_or(i64::MAX);
        for head in &heads {
            let skipped = head.origin == own || self.loaded.remove(&head.id);
            if !skipped {
                if bytes > 0 && bytes.saturating_add(head.bytes) > self.limits.bytes {
                    stopped_early = true;
                    break;
                }
                bytes = bytes.saturating_add(head.bytes);
                wanted.push(head.id);
            }
            let first_missing = self
                .cursor
                .saturating_add(1)
                .max(head.id.saturating_sub(most_holes));
            for missing in first_missing..head.id {
                self.holes.insert(missing, now);
            }
            self.cursor = head.id;
        }
        self.caught_up = !stopped_early;
        let found = store.chunks_with_ids(&wanted, &own)?;
        let mut fresh = Vec::with_capacity(found.len());
        for stored in found {
            self.holes.remove(&stored.id);
            if self.loaded.remove(&stored.id) || stored.chunk.origin == own {
                continue;
            }
            fresh.push(stored);
        }
        self.give_up_holes(now);
        let added = self.index(&fresh);
        if added > 0 {
            self.intake.wake();
        }
        Ok(added)
    }

    /// Whether the last poll read everything there was (else poll again at once).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// How many ids below the highest seen are still looked for.
    pub fn missing(&self) -> usize {
        self.holes.len()
    }

    /// Gives up the missing ids looked for longer than the bound, and the oldest past the
    /// most kept.
    fn give_up_holes(&mut self, now: i64) {
        let before = self.holes.len();
        let deadline = now.saturating_sub(self.limits.hole_seconds);
        self.holes.retain(|_, missed_at| *missed_at > deadline);
        while self.holes.len() > self.limits.holes {
            self.holes.pop_first();
        }
        let given_up = before - self.holes.len();
        if given_up > 0 {
            tracing::debug!(
                ids = given_up,
                missing = self.holes.len(),
                "chunk ids given up"
            );
        }
    }

    /// Adds the chunks to the index in id order; returns how many were added.
    fn index(&mut self, chunks: &[StoredChunk]) -> usize {
        if chunks.is_empty() {
            return 0;
        }
        let mut added = 0;
        let mut template_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        {
            let mut index = self
                .intake
                .index()
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for stored in chunks {
                match index_stored_chunk(&mut index, &stored.chunk, &mut self.decoder) {
                    Ok(logs) => {
                        added += 1;
                        for count in logs.iter().flat_map(|logs| &logs.counts) {
                            template_ids
                                .entry(count.app.clone())
                                .or_default()
                                .insert(count.template.clone());
                        }
                    }
                    Err(error) => tracing::warn!(
                        chunk = stored.id,
                        %error,
                        "skipping a corrupt followed chunk"
                    ),
                }
            }
        }
        for (app, ids) in &template_ids {
            if self
                .intake
                .learn_templates(app, ids.iter().map(String::as_str))
            {
                tracing::debug!(app = %app, "log templates of another replica learned");
            }
        }
        tracing::debug!(chunks = added, "followed chunks indexed");
        added
    }
}

#[cfg(test)]
mod tests;
