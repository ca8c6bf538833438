#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use vigil_core::samples::{LogChunk, LogCount};
use vigil_core::ManualClock;
use vigil_ingest::remote_write::RemoteWriteOptions;
use vigil_store::{DataChunk, DataKind, SqliteStore};

use super::*;
use crate::DataIndex;

const T0_MS: i64 = 1_700_000_000_000;

/// Chunks a test makes visible when it says, as a database shows rows once they commit.
#[derive(Default)]
struct Visible {
    rows: Mutex<Vec<(StoredChunk, bool)>>,
}

impl Visible {
    fn insert(&self, id: i64, chunk: DataChunk, committed: bool) {
        self.rows
            .lock()
            .unwrap()
            .push((StoredChunk { id, chunk }, committed));
    }

    fn commit(&self, id: i64) {
        for (stored, committed) in self.rows.lock().unwrap().iter_mut() {
            if stored.id == id {
                *committed = true;
            }
        }
    }

    fn committed(&self) -> Vec<StoredChunk> {
        let mut rows: Vec<StoredChunk> = self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, committed)| *committed)
            .map(|(stored, _)| stored.clone())
            .collect();
        rows.sort_by_key(|stored| stored.id);
        rows
    }
}

impl ChunkSource for Visible {
    fn last_chunk_id(&self) -> Result<i64, StoreError> {
        Ok(self.committed().last().map_or(0, |stored| stored.id))
    }

    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError> {
        Ok(self
            .committed()
            .into_iter()
            .filter(|stored| stored.id > after_id)
            .take(limit)
            .map(|stored| ChunkHead {
                id: stored.id,
                origin: stored.chunk.origin.clone(),
                kind: stored.chunk.kind,
                bytes: stored.chunk.body.len() as i64,
            })
            .collect())
    }

    fn chunks_with_ids(
        &self,
        ids: &[i64],
        own_origin: &str,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        Ok(self
            .committed()
            .into_iter()
            .filter(|stored| ids.contains(&stored.id))
            .map(|mut stored| {
                if stored.chunk.origin == own_origin {
                    stored.chunk.body.clear();
                }
                stored
            })
            .collect())
    }
}

/// One log line of template `template` on host `host`, stored by `origin`.
fn log_chunk(origin: &str, host: &str, template: &str) -> DataChunk {
    let logs = LogChunk {
        counts: vec![LogCount {
            app: "shop".to_owned(),
            host: host.to_owned(),
            template: template.to_owned(),
            ms: T0_MS,
            count: 1,
        }],
    };
    DataChunk {
        kind: DataKind::Logs,
        key: None,
        min_ms: T0_MS,
        max_ms: T0_MS,
        received_at: T0_MS / 1000,
        body: logs.encode(),
        origin: origin.to_owned(),
    }
}

struct Replica {
    intake: Arc<Intake>,
    index: Arc<RwLock<DataIndex>>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    wakes: Arc<AtomicUsize>,
}

/// Replica `b`, on an empty store of its own.
fn replica_b() -> Replica {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&wakes);
    let intake = Intake::new(
        Arc::clone(&store),
        Arc::clone(&index),
        Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }),
        RemoteWriteOptions::default(),
    )
    .with_origin("b");
    Replica {
        intake: Arc::new(intake),
        index,
        store,
        clock: Arc::new(ManualClock::new(T0_MS / 1000)),
        wakes,
    }
}

impl Replica {
    fn follow(&self, source: &Arc<Visible>, limits: FollowLimits) -> Follower {
        let shared: Arc<dyn ChunkSource> = Arc::clone(source) as Arc<dyn ChunkSource>;
        let (follower, _) = Follower::load_from(
            shared,
            Arc::clone(&self.intake),
            Arc::clone(&self.clock) as Arc<dyn Clock>,
            limits,
            (0, i64::MAX),
        )
        .unwrap();
        follower
    }

    /// The lines of `template` the index holds for `host`.
    fn lines(&self, host: &str, template: &str) -> u64 {
        let index = self.index.read().unwrap();
        index
            .host(host)
            .and_then(|data| data.logs.get(template))
            .map_or(0, |counts| counts.values().sum())
    }
}

#[test]
fn a_lower_id_committed_late_is_added_once_and_own_chunks_never() {
    let replica = replica_b();
    let source = Arc::new(Visible::default());
    let mut follower = replica.follow(&source, FollowLimits::default());
    source.insert(1, log_chunk("a", "h1", "7"), true);
    source.insert(2, log_chunk("a", "h2", "7"), false);
    source.insert(3, log_chunk("a", "h3", "7"), true);
    source.insert(4, log_chunk("b", "h4", "7"), true);
    assert_eq!(follower.poll().unwrap(), 2);
    assert_eq!(replica.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(follower.missing(), 1, "id 2 is looked for");
    assert_eq!(replica.lines("h1", "7"), 1);
    assert_eq!(replica.lines("h2", "7"), 0);
    assert_eq!(
        replica.lines("h4", "7"),
        0,
        "its own chunk is indexed at intake"
    );
    assert_eq!(follower.poll().unwrap(), 0);
    assert_eq!(
        replica.wakes.load(Ordering::SeqCst),
        1,
        "nothing added, no wake"
    );

    replica.clock.advance(10);
    source.commit(2);
    assert_eq!(follower.poll().unwrap(), 1);
    assert_eq!(follower.missing(), 0);
    for _ in 0..3 {
        assert_eq!(follower.poll().unwrap(), 0);
    }
    for host in ["h1", "h2", "h3"] {
        assert_eq!(replica.lines(host, "7"), 1, "{host} counted once");
    }
    assert_eq!(replica.lines("h4", "7"), 0);
}

#[test]
fn an_id_never_committed_is_given_up_after_the_bound() {
    let replica = replica_b();
    let source = Arc::new(Visible::default());
    let limits = FollowLimits::default();
    let mut follower = replica.follow(&source, limits);
    source.insert(1, log_chunk("a", "h1", "7"), true);
    source.insert(3, log_chunk("a", "h3", "7"), true);
    assert_eq!(follower.poll().unwrap(), 2);
    assert_eq!(follower.missing(), 1);
    replica.clock.advance(limits.hole_seconds - 1);
    assert_eq!(follower.poll().unwrap(), 0);
    assert_eq!(follower.missing(), 1, "still looked for within the bound");
    replica.clock.advance(2);
    assert_eq!(follower.poll().unwrap(), 0);
    assert_eq!(follower.missing(), 0, "given up");
    // Committed after it was given up: it is not looked for any more.
    source.insert(2, log_chunk("a", "h2", "7"), false);
    source.commit(2);
    assert_eq!(follower.poll().unwrap(), 0);
    assert_eq!(replica.lines("h2", "7"), 0);
}

#[test]
fn what_the_start_loaded_is_not_added_again() {
    let replica = replica_b();
    let source = Arc::new(Visible::default());
    // Stored before the start: ids 1, 2, 3 in the store the load reads. At the start, the
    // highest id committed is 1 and 2 is not committed yet (it is a hole); by the load all
    // three are committed, so the load indexes them.
    for (id, host) in [(1, "h1"), (2, "h2"), (3, "h3")] {
        let chunk = log_chunk("a", host, "7");
        replica.store.append_data(&chunk).unwrap();
        source.insert(id, chunk, id == 1);
    }
    let mut follower = replica.follow(&source, FollowLimits::default());
    assert_eq!(follower.missing(), 0, "nothing below id 1");
    source.commit(2);
    source.commit(3);
    source.insert(4, log_chunk("a", "h4", "7"), true);
    assert_eq!(follower.poll().unwrap(), 1, "only id 4 is new");
    for host in ["h1", "h2", "h3", "h4"] {
        assert_eq!(replica.lines(host, "7"), 1, "{host} counted once");
    }
}

#[test]
fn a_hole_at_the_start_loaded_meanwhile_is_not_added_again() {
    let replica = replica_b();
    let source = Arc::new(Visible::default());
    for (id, host) in [(1, "h1"), (2, "h2"), (3, "h3")] {
        let chunk = log_chunk("a", host, "7");
        if id != 3 {
            replica.store.append_data(&chunk).unwrap();
        }
        source.insert(id, chunk, id != 2);
    }
    // Id 2 is missing at the start but the load finds it: it is looked for and skipped.
    let mut follower = replica.follow(&source, FollowLimits::default());
    assert_eq!(follower.missing(), 1);
    source.commit(2);
    assert_eq!(follower.poll().unwrap(), 0);
    assert_eq!(follower.missing(), 0);
    assert_eq!(replica.lines("h2", "7"), 1);
}

#[test]
fn a_poll_reads_within_its_bytes_and_goes_on_next_time() {
    let replica = replica_b();
    let source = Arc::new(Visible::default());
    let one_chunk = log_chunk("a", "h1", "7").body.len() as i64;
    let limits = FollowLimits {
        bytes: one_chunk * 2,
        ..FollowLimits::default()
    };
    let mut follower = replica.follow(&source, limits);
    for id in 1..=5 {
        source.insert(id, log_chunk("a", &format!("h{id}"), "7"), true);
    }
    assert_eq!(follower.poll().unwrap(), 2);
    assert!(!follower.caught_up());
    assert_eq!(follower.poll().unwrap(), 2);
    assert_eq!(follower.poll().unwrap(), 1);
    assert!(follower.caught_up());
    assert_eq!(follower.missing(), 0);
    for id in 1..=5 {
        assert_eq!(replica.lines(&format!("h{id}"), "7"), 1);
    }
}
