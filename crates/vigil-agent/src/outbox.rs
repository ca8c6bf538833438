//! What the agent sends and the server has not yet acknowledged: metric and log batches, each
//! with the idempotency key it keeps when it is sent again (the server drops a batch whose key
//! it stored before). The queue is bounded by memory: past [`Outbox::capacity_bytes`] the
//! oldest batches are dropped and counted, and the first drop of a run of drops is logged.
//! [`Backoff`] spaces the attempts after a failure: doubling from half a second up to 30 s, with
//! jitter, so a fleet does not come back to a restarted server all at once.

use std::collections::VecDeque;
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
}

/// One batch, its JSON body ready (its key inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: BatchKind,
    pub key: String,
    pub body: Vec<u8>,
}

/// Batches waiting for the server, oldest first.
#[derive(Debug)]
pub struct Outbox {
    batches: VecDeque<Batch>,
    bytes: usize,
    /// Most bytes held (default 32 MiB).
    pub capacity_bytes: usize,
    /// Batches dropped since the agent started.
    pub dropped: u64,
    /// Whether drops happened since the queue last had room: the first one is logged.
    dropping: bool,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::with_capacity(32 << 20)
    }
}

impl Outbox {
    pub fn with_capacity(capacity_bytes: usize) -> Outbox {
        Outbox {
            batches: VecDeque::new(),
            bytes: 0,
            capacity_bytes,
            dropped: 0,
            dropping: false,
        }
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

    /// Adds a batch at the end, dropping the oldest ones while the queue holds too much.
    /// Returns how many were dropped.
    pub fn push(&mut self, batch: Batch) -> usize {
        self.bytes += batch.body.len();
        self.batches.push_back(batch);
        let mut dropped = 0;
        while self.bytes > self.capacity_bytes {
            let Some(oldest) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= oldest.body.len();
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
        self.batches.front()
    }

    /// Removes the oldest batch if it is still the one with `key` (it was sent and taken, or
    /// refused for good).
    pub fn remove_front(&mut self, key: &str) -> bool {
        if self.batches.front().is_some_and(|batch| batch.key == key) {
            if let Some(batch) = self.batches.pop_front() {
                self.bytes -= batch.body.len();
            }
            return true;
        }
        false
    }
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
