//! What the agent sends and the server has not yet acknowledged: metric and log batches, each
//! with the idempotency key it keeps when it is sent again (the server drops a batch whose key
//! it stored before). The queue is bounded: past [`Outbox::capacity_bytes`] the oldest batches
//! are dropped and counted, and the first drop of a run of drops is logged.
//!
//! With a spool folder ([`Outbox::open_spool`], the agent's `outbox/`), each batch is also a
//! file, written before it is queued and removed once the server took it: an agent killed and
//! started again sends what it had queued, with the same keys. The files are renamed into
//! place but not synced: they outlive the agent's process, not a power cut of the host.
//!
//! [`Backoff`] spaces the attempts after a failure: doubling from half a second up to 30 s, with
//! jitter, so a fleet does not come back to a restarted server all at once.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which route a batch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// `POST /api/v1/ingest/samples`.
    Samples,
    /// `POST /api/v1/ingest/logs`.
    Logs,
}

impl BatchKind {
    pub fn path(self) -> &'static str {
        match self {
            BatchKind::Samples => "/api/v1/ingest/samples",
            BatchKind::Logs => "/api/v1/ingest/logs",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BatchKind::Samples => "samples",
            BatchKind::Logs => "logs",
        }
    }

    fn parse(text: &str) -> Option<BatchKind> {
        match text {
            "samples" => Some(BatchKind::Samples),
            "logs" => Some(BatchKind::Logs),
            _ => None,
        }
    }
}

/// One batch, its JSON body ready (its key inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: BatchKind,
    pub key: String,
    pub body: Vec<u8>,
}

/// A queued batch and the number of its spool file, if it has one.
#[derive(Debug)]
struct Queued {
    batch: Batch,
    file: Option<u64>,
}

/// Batches waiting for the server, oldest first.
#[derive(Debug)]
pub struct Outbox {
    batches: VecDeque<Queued>,
    bytes: usize,
    /// Most bytes held (default 32 MiB).
    pub capacity_bytes: usize,
    /// Batches dropped since the agent started.
    pub dropped: u64,
    /// Whether drops happened since the queue last had room: the first one is logged.
    dropping: bool,
    /// The folder each batch is also written to, and the number of the next file.
    spool: Option<PathBuf>,
    next_file: u64,
    /// Whether writing the spool failed since it last worked: the first failure is logged.
    spool_failing: bool,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::with_capacity(32 << 20)
    }
}

impl Outbox {
    /// A queue in memory only.
    pub fn with_capacity(capacity_bytes: usize) -> Outbox {
        Outbox {
            batches: VecDeque::new(),
            bytes: 0,
            capacity_bytes,
            dropped: 0,
            dropping: false,
            spool: None,
            next_file: 0,
            spool_failing: false,
        }
    }

    /// A queue whose batches are also files in `dir` (created when missing), holding the
    /// batches a previous run left there, oldest first. A file that is not a batch (a
    /// half-written temporary, a body without its key) is removed and logged.
    pub fn open_spool(dir: &Path, capacity_bytes: usize) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, Batch)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            match read_spooled(&path) {
                Some(spooled) => found.push(spooled),
                None => {
                    tracing::warn!(path = %path.display(), "not a queued batch, removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|(number, _)| *number);
        let mut outbox = Outbox::with_capacity(capacity_bytes);
        outbox.next_file = found.last().map_or(0, |(number, _)| number + 1);
        outbox.spool = Some(dir.to_path_buf());
        if !found.is_empty() {
            tracing::info!(
                batches = found.len(),
                spool = %dir.display(),
                "batches of the previous run queued again"
            );
        }
        for (number, batch) in found {
            outbox.queue(Queued {
                batch,
                file: Some(number),
            });
        }
        Ok(outbox)
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a batch at the end (its file first, with a spool), dropping the oldest ones while
    /// the queue holds too much. Returns how many were dropped.
    pub fn push(&mut self, batch: Batch) -> usize {
        let file = self.write_file(&batch);
        self.queue(Queued { batch, file })
    }

    fn queue(&mut self, queued: Queued) -> usize {
        self.bytes += queued.batch.body.len();
        self.batches.push_back(queued);
        let mut dropped = 0;
        while self.bytes > self.capacity_bytes {
            let Some(oldest) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= oldest.batch.body.len();
            self.remove_file(&oldest);
            dropped += 1;
        }
        if dropped == 0 {
            if self.bytes * 2 < self.capacity_bytes {
                self.dropping = false;
            }
            return 0;
        }
        self.dropped += dropped as u64;
        if !self.dropping {
            self.dropping = true;
            tracing::warn!(
                dropped = self.dropped,
                capacity_bytes = self.capacity_bytes,
                "agent queue full, oldest batches dropped"
            );
        }
        dropped
    }

    /// The oldest batch, to send.
    pub fn front(&self) -> Option<&Batch> {
        self.batches.front().map(|queued| &queued.batch)
    }

    /// Removes the oldest batch if it is still the one with `key` (it was sent and taken, or
    /// refused for good).
    pub fn remove_front(&mut self, key: &str) -> bool {
        let is_front = |queued: &Queued| queued.batch.key == key;
        if !self.batches.front().is_some_and(is_front) {
            return false;
        }
        if let Some(queued) = self.batches.pop_front() {
            self.bytes -= queued.batch.body.len();
            self.remove_file(&queued);
        }
        true
    }

    /// Writes `batch` as the spool's next file; None without a spool or when writing failed
    /// (the batch is then kept in memory only, and the first failure of a run is logged).
    fn write_file(&mut self, batch: &Batch) -> Option<u64> {
        let dir = self.spool.as_ref()?;
        let number = self.next_file;
        let written =
            crate::state::write_unsynced(&dir.join(spool_name(number, batch.kind)), &batch.body);
        match written {
            Ok(()) => {
                self.next_file += 1;
                self.spool_failing = false;
                Some(number)
            }
            Err(error) => {
                if !self.spool_failing {
                    self.spool_failing = true;
                    tracing::warn!(
                        spool = %dir.display(),
                        error = %error,
                        "cannot write the queued batch to disk, kept in memory only"
                    );
                }
                None
            }
        }
    }

    fn remove_file(&self, queued: &Queued) {
        let (Some(dir), Some(number)) = (&self.spool, queued.file) else {
            return;
        };
        let _ = std::fs::remove_file(dir.join(spool_name(number, queued.batch.kind)));
    }
}

/// `<number, 16 hex digits>.<kind>`: names sort in the order the batches were queued.
fn spool_name(number: u64, kind: BatchKind) -> String {
    format!("{number:016x}.{}", kind.as_str())
}

/// The number and batch of a spool file, or None when it is not one.
fn read_spooled(path: &Path) -> Option<(u64, Batch)> {
    let name = path.file_name()?.to_str()?;
    let (number, kind) = name.split_once('.')?;
    if number.len() != 16 {
        return None;
    }
    let number = u64::from_str_radix(number, 16).ok()?;
    let kind = BatchKind::parse(kind)?;
    let body = std::fs::read(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let key = value.get("key")?.as_str()?.to_owned();
    Some((number, Batch { kind, key, body }))
}

/// Waits between attempts after failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    /// A xorshift state for the jitter.
    seed: u64,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MOST: Duration = Duration::from_secs(30);

    /// `seed` spreads the jitter of different agents (their host name's hash, say).
    pub fn new(seed: u64) -> Backoff {
        Backoff {
            failures: 0,
            seed: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait before the next attempt after one more failure: the doubled base, then a
    /// random point between half of it and all of it.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(16);
        let base = Self::FIRST
            .saturating_mul(1u32 << doublings)
            .min(Self::MOST);
        let base_ms = base.as_millis() as u64;
        let half = base_ms / 2;
        Duration::from_millis(half + self.random() % (half + 1))
    }

    fn random(&mut self) -> u64 {
        let mut value = self.seed;
        value ^= value << 13;
        value ^= value >> 7;
        value ^= value << 17;
        self.seed = value;
        value
    }
}

/// A stable 64-bit hash (FNV-1a) of a text: keys and jitter seeds.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(key: &str, bytes: usize) -> Batch {
        Batch {
            kind: BatchKind::Samples,
            key: key.to_owned(),
            body: vec![b'x'; bytes],
        }
    }

    #[test]
    fn the_queue_drops_its_oldest_batches_past_its_capacity_and_counts_them() {
        let mut outbox = Outbox::with_capacity(100);
        assert_eq!(outbox.push(batch("a", 40)), 0);
        assert_eq!(outbox.push(batch("b", 40)), 0);
        assert_eq!(outbox.push(batch("c", 40)), 1);
        assert_eq!(outbox.front().map(|b| b.key.as_str()), Some("b"));
        assert_eq!(outbox.bytes(), 80);
        assert_eq!(outbox.push(batch("d", 90)), 2);
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.dropped, 3);
        assert!(outbox.bytes() <= outbox.capacity_bytes);
        // A batch larger than the whole queue is dropped too.
        assert_eq!(outbox.push(batch("huge", 101)), 2);
        assert!(outbox.is_empty());
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn a_batch_leaves_only_when_it_is_still_the_oldest() {
        let mut outbox = Outbox::with_capacity(1000);
        outbox.push(batch("a", 1));
        outbox.push(batch("b", 1));
        assert!(!outbox.remove_front("b"));
        assert!(outbox.remove_front("a"));
        assert!(outbox.remove_front("b"));
        assert!(!outbox.remove_front("b"));
        assert_eq!(outbox.bytes(), 0);
    }

    fn json_batch(kind: BatchKind, key: &str) -> Batch {
        Batch {
            kind,
            key: key.to_owned(),
            body: serde_json::json!({"key": key, "samples": []})
                .to_string()
                .into_bytes(),
        }
    }

    fn spool_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-outbox-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn a_spooled_queue_opened_again_holds_what_was_not_taken_in_order_with_its_keys() {
        let dir = spool_dir("reopen");
        let mut outbox = Outbox::open_spool(&dir, 1 << 20).unwrap();
        outbox.push(json_batch(BatchKind::Samples, "k0"));
        outbox.push(json_batch(BatchKind::Logs, "k1"));
        outbox.push(json_batch(BatchKind::Samples, "k2"));
        assert!(outbox.remove_front("k0"));
        assert_eq!(files_in(&dir), 2);
        drop(outbox);

        let mut again = Outbox::open_spool(&dir, 1 << 20).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.front(), Some(&json_batch(BatchKind::Logs, "k1")));
        // New batches go after the old ones, also after a restart.
        again.push(json_batch(BatchKind::Samples, "k3"));
        drop(again);
        let mut third = Outbox::open_spool(&dir, 1 << 20).unwrap();
        let mut keys = Vec::new();
        while let Some(batch) = third.front().cloned() {
            keys.push(batch.key.clone());
            assert_eq!(batch, json_batch(batch.kind, &batch.key));
            assert!(third.remove_front(&batch.key));
        }
        assert_eq!(keys, ["k1", "k2", "k3"]);
        assert_eq!(files_in(&dir), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_spool_keeps_its_bound_drops_files_with_their_batches_and_removes_what_is_not_a_batch() {
        let dir = spool_dir("bound");
        let one = json_batch(BatchKind::Samples, "k0").body.len();
        let mut outbox = Outbox::open_spool(&dir, one * 2).unwrap();
        for key in ["k0", "k1", "k2"] {
            outbox.push(json_batch(BatchKind::Samples, key));
        }
        assert_eq!(outbox.dropped, 1);
        assert_eq!(files_in(&dir), 2);
        drop(outbox);
        std::fs::write(
            dir.join(".0000000000000009.samples.tmp"),
            b"{\"key\": \"half",
        )
        .unwrap();
        std::fs::write(dir.join("000000000000000a.logs"), b"{}").unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        // Opened with a smaller bound, the oldest are dropped, files and all.
        let outbox = Outbox::open_spool(&dir, one).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.front().map(|batch| batch.key.as_str()), Some("k2"));
        assert_eq!(files_in(&dir), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_spool_that_cannot_be_written_still_queues_in_memory() {
        let dir = spool_dir("unwritable");
        let mut outbox = Outbox::open_spool(&dir, 1 << 20).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        outbox.push(json_batch(BatchKind::Samples, "k0"));
        assert_eq!(outbox.len(), 1);
        assert!(outbox.remove_front("k0"));
    }

    #[test]
    fn the_backoff_doubles_with_jitter_up_to_its_most() {
        let mut backoff = Backoff::new(fnv1a("web-1"));
        let mut previous_base = 0u128;
        for failure in 1..=12u32 {
            let delay = backoff.next_delay().as_millis();
            let base = (500u128 << (failure - 1).min(16)).min(30_000);
            assert!(
                delay >= base / 2 && delay <= base,
                "{failure}: {delay} of {base}"
            );
            assert!(base >= previous_base);
            previous_base = base;
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Backoff::FIRST);
        // Two hosts do not wait the same.
        let mut other = Backoff::new(fnv1a("web-2"));
        let mine: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let theirs: Vec<Duration> = (0..5).map(|_| other.next_delay()).collect();
        assert_ne!(mine, theirs);
    }
}
