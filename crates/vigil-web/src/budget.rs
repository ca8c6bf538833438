//! How much heavy work the server does at once, whoever asks: the bytes being decompressed and
//! parsed across every ingestion request, the decoders running (one core is left to the async
//! workers, which answer `/healthz` and every other request), and the imports being replayed.
//! A caller over budget waits a little, then gets a 503 with `Retry-After`, so that a burst of
//! large requests slows its senders down instead of taking the server's memory and answers
//! with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The budget is counted in KiB, so that a budget of gigabytes fits the semaphore's permits.
const UNIT_BYTES: usize = 1024;

/// Shared limits on work in progress.
#[derive(Debug)]
pub struct Budget {
    decoding: Arc<Semaphore>,
    decoding_units: u32,
    /// Decoders running at once: every core but one.
    decoders: Arc<Semaphore>,
    imports: Arc<Semaphore>,
    wait: Duration,
}

/// Work being done under the budget; dropping it gives the budget back.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
    decoder: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Decoding is over (storing goes on): the decoder's core is free for the next request.
    pub fn decoded(&mut self) {
        self.decoder = None;
    }
}

impl Budget {
    /// `decoding_bytes` across requests at once, `imports` imports at once; a caller waits at
    /// most `wait` for its share.
    pub fn new(decoding_bytes: usize, imports: usize, wait: Duration) -> Budget {
        let decoding_units = u32::try_from(decoding_bytes.div_ceil(UNIT_BYTES))
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Budget {
            decoding: Arc::new(Semaphore::new(decoding_units as usize)),
            decoding_units,
            decoders: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
            imports: Arc::new(Semaphore::new(imports.max(1))),
            wait,
        }
    }

    /// Room to hold `bytes` of decoded data. A request that alone needs more than the whole
    /// budget is refused at once (413): waiting would not help it.
    pub async fn decode(&self, bytes: usize) -> Result<Held, ApiError> {
        let units = u32::try_from(bytes.div_ceil(UNIT_BYTES).max(1)).unwrap_or(u32::MAX);
        if units > self.decoding_units {
            return Err(ApiError::too_large(format!(
                "body decodes to {bytes} bytes, more than the server decodes at once ({} bytes)",
                self.decoding_units as usize * UNIT_BYTES
            )));
        }
        let bytes_and_decoder = async {
            let permit = Arc::clone(&self.decoding).acquire_many_owned(units).await?;
            let decoder = Arc::clone(&self.decoders).acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((permit, decoder))
        };
        match tokio::time::timeout(self.wait, bytes_and_decoder).await {
            Ok(Ok((permit, decoder))) => Ok(Held {
                _permit: permit,
                decoder: Some(decoder),
            }),
            _ => {
                tracing::warn!(bytes, "decoding budget exhausted; request refused for now");
                Err(ApiError::busy(
                    "the server is decoding as much as it takes at once; retry shortly",
                    1,
                ))
            }
        }
    }

    /// One of the cores heavy work without bytes to count may take (assembling a window,
    /// drawing a release's page, writing an export): the decoders' cores, so that the last
    /// core stays with the async workers however many pages are asked at once.
    pub async fn heavy_work(&self) -> Result<Held, ApiError> {
        self.one_of(
            &self.decoders,
            "the server is doing as much heavy work as it takes at once; retry shortly",
            1,
        )
        .await
    }

    /// One of the imports that may run at once.
    pub async fn import(&self) -> Result<Held, ApiError> {
        self.one_of(
            &self.imports,
            "the server is importing as many bundles as it takes at once; retry shortly",
            5,
        )
        .await
    }

    /// A permit of `slots`, waited for at most the budget's wait; else a 503 saying `busy`.
    async fn one_of(
        &self,
        slots: &Arc<Semaphore>,
        busy: &str,
        retry_after_seconds: u32,
    ) -> Result<Held, ApiError> {
        let waiting = Arc::clone(slots).acquire_owned();
        match tokio::time::timeout(self.wait, waiting).await {
            Ok(Ok(permit)) => Ok(Held {
                _permit: permit,
                decoder: None,
            }),
            _ => Err(ApiError::busy(busy, retry_after_seconds)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_over_budget_wait_then_are_told_to_retry() {
        let budget = Budget::new(4 << 20, 1, Duration::from_millis(50));
        let first = budget.decode(3 << 20).await.expect("room");
        let refused = budget.decode(2 << 20).await.expect_err("no room");
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after_seconds, Some(1));
        drop(first);
        assert!(budget.decode(2 << 20).await.is_ok());
        let huge = budget.decode(5 << 20).await.expect_err("never fits");
        assert_eq!(huge.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut heavy = Vec::new();
        for _ in 0..cores.saturating_sub(1).max(1) {
            heavy.push(budget.heavy_work().await.expect("a core for heavy work"));
        }
        let refused = budget
            .heavy_work()
            .await
            .expect_err("every heavy core taken");
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        drop(heavy);
        assert!(budget.heavy_work().await.is_ok());
        let import = budget.import().await.expect("one import");
        assert!(budget.import().await.is_err());
        drop(import);
        assert!(budget.import().await.is_ok());
    }
}
