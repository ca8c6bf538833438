//! Ingested data on its way in: stored first (so an acknowledged chunk survives a crash), then
//! added to the in-memory index, then the guard is woken.

use std::sync::{Arc, RwLock};

use vigil_core::samples::{LogChunk, MetricChunk};
use vigil_store::{Appended, DataChunk, DataKind, Store, StoreError};

use crate::index::DataIndex;

/// What happened to an ingested chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Samples (or log counts) in the chunk.
    pub items: usize,
    /// The chunk's key had been stored before: nothing was added.
    pub duplicate: bool,
}

/// Called after data was added, to wake the guard.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The way in for every ingested chunk.
pub struct Intake {
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    wake: Wake,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

impl Intake {
    pub fn new(store: Arc<dyn Store>, index: Arc<RwLock<DataIndex>>, wake: Wake) -> Intake {
        Intake { store, index, wake }
    }

    /// Stores a chunk of samples and adds it to the index.
    pub fn metrics(
        &self,
        chunk: &MetricChunk,
        key: Option<String>,
        received_at: i64,
    ) -> Result<Accepted, StoreError> {
        let Some((min_ms, max_ms)) = chunk.time_range() else {
            return Ok(Accepted {
                items: 0,
                duplicate: false,
            });
        };
        let appended = self.store.append_data(&DataChunk {
            kind: DataKind::Metrics,
            key,
            min_ms,
            max_ms,
            received_at,
            body: chunk.encode(),
        })?;
        if appended == Appended::Duplicate {
            return Ok(Accepted {
                items: chunk.points.len(),
                duplicate: true,
            });
        }
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert_metrics(chunk);
        (self.wake)();
        Ok(Accepted {
            items: chunk.points.len(),
            duplicate: false,
        })
    }

    /// Stores a chunk of log template counts and adds it to the index.
    pub fn logs(
        &self,
        chunk: &LogChunk,
        key: Option<String>,
        received_at: i64,
    ) -> Result<Accepted, StoreError> {
        let Some((min_ms, max_ms)) = chunk.time_range() else {
            return Ok(Accepted {
                items: 0,
                duplicate: false,
            });
        };
        let appended = self.store.append_data(&DataChunk {
            kind: DataKind::Logs,
            key,
            min_ms,
            max_ms,
            received_at,
            body: chunk.encode(),
        })?;
        if appended == Appended::Duplicate {
            return Ok(Accepted {
                items: chunk.counts.len(),
                duplicate: true,
            });
        }
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert_logs(chunk);
        (self.wake)();
        Ok(Accepted {
            items: chunk.counts.len(),
            duplicate: false,
        })
    }

    /// Fills the index from the stored chunks overlapping `[from_ms, to_ms]` (at start).
    /// Returns how many chunks were loaded; corrupt ones are logged and skipped.
    pub fn load(&self, from_ms: i64, to_ms: i64) -> Result<usize, StoreError> {
        let mut loaded = 0;
        let metric_chunks = self.store.data_between(DataKind::Metrics, from_ms, to_ms)?;
        let log_chunks = self.store.data_between(DataKind::Logs, from_ms, to_ms)?;
        let mut index = self
            .index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for stored in metric_chunks {
            match MetricChunk::decode(&stored.body) {
                Ok(chunk) => {
                    index.insert_metrics(&chunk);
                    loaded += 1;
                }
                Err(error) => tracing::warn!(%error, "skipping a corrupt stored metric chunk"),
            }
        }
        for stored in log_chunks {
            match LogChunk::decode(&stored.body) {
                Ok(chunk) => {
                    index.insert_logs(&chunk);
                    loaded += 1;
                }
                Err(error) => tracing::warn!(%error, "skipping a corrupt stored log chunk"),
            }
        }
        Ok(loaded)
    }
}
