//! Token buckets (a peer's upload and download limits, and the benchmark's origin) and slots
//! (the origin's concurrent readers, a peer's concurrent uploads).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes per second, with a burst of a twentieth of a second. A take larger than what the
/// bucket holds is granted at once and paid back by waiting, so a large piece and many small
/// chunks pass at the same average rate, and concurrent takers queue in the order they came.
#[derive(Debug)]
pub struct TokenBucket {
    bytes_per_second: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(bytes_per_second: u64) -> TokenBucket {
        let rate = (bytes_per_second as f64).max(1.0);
        let burst = (rate / 20.0).max(16.0 * 1024.0);
        TokenBucket {
            bytes_per_second: rate,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second as u64
    }

    /// Takes `bytes` and says how long to wait before using them.
    fn reserve(&self, bytes: usize) -> Duration {
        let now = Instant::now();
        let mut state = crate::lock(&self.state);
        let elapsed = now
            .saturating_duration_since(state.refilled_at)
            .as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.bytes_per_second).min(self.burst);
        state.refilled_at = now;
        state.tokens -= bytes as f64;
        if state.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-state.tokens / self.bytes_per_second)
    }

    pub async fn take(&self, bytes: usize) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// As [`TokenBucket::take`], for a blocking thread.
    pub fn take_blocking(&self, bytes: usize) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// At most `max` holders at once; one more is refused rather than queued.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    taken: AtomicUsize,
}

/// A slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub(crate) fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            taken: AtomicUsize::new(0),
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A slot, or None when every one is taken.
    pub(crate) fn try_take(&self) -> Option<Slot<'_>> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.max).then_some(taken + 1)
            })
            .ok()
            .map(|_| Slot(&self.taken))
    }
}

/// Takes from `bucket` when there is one.
pub(crate) async fn take(bucket: Option<&TokenBucket>, bytes: usize) {
    if let Some(bucket) = bucket {
        bucket.take(bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_bucket_holds_its_rate() {
        let bucket = TokenBucket::new(4 * 1024 * 1024);
        let started = Instant::now();
        for _ in 0..64 {
            bucket.take(32 * 1024).await;
        }
        // 2 MiB at 4 MiB/s, less the burst (16 KiB... 205 KiB): about half a second.
        let elapsed = started.elapsed().as_secs_f64();
        assert!((0.4..0.8).contains(&elapsed), "{elapsed}");
    }
}
