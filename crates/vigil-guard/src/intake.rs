//! Ingested data on its way in: stored first (so an acknowledged chunk survives a crash), then
//! added to the in-memory index, then the guard is woken.
//!
//! What the store keeps of a metric chunk is one of two bodies, told apart by their magic:
//! - `VMC1`: the chunk in Vigil's own encoding ([`MetricChunk::encode`]), for JSON samples and
//!   pulled data;
//! - `VRW1`: a remote-write request's body as it was received (snappy-compressed protobuf),
//!   about a quarter of the size of its chunk's encoding and free to produce. It is decoded
//!   again when the index is filled from the store, with the remote-write options the intake
//!   was given, the stored requests read in the order they came so that the metric families'
//!   types declared by metadata are learned as they were.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use vigil_core::release::Release;
use vigil_core::samples::{LogChunk, LogCount, MetricChunk};
use vigil_core::telemetry::event::DataAccepted;
use vigil_core::LogTemplate;
use vigil_ingest::json::LogLine;
use vigil_ingest::logs::{
    group_entries, Change, EventLimits, HeaderFormat, HeaderPattern, Level, Miner, MinerConfig,
    Template, TemplateId,
};
use vigil_ingest::remote_write::{RemoteWriteDecoder, RemoteWriteOptions};
use vigil_store::{Appended, DataChunk, DataKind, ImportedRelease, Store, StoreError, StoredChunk};

use crate::apps::stored_app_config;
use crate::index::DataIndex;

/// What an ingested chunk is, before it is stored.
#[derive(Debug)]
struct Arriving {
    kind: DataKind,
    key: Option<String>,
    /// Time range of its samples, Unix milliseconds; `None` when it holds none.
    range: Option<(i64, i64)>,
    items: usize,
    received_at: i64,
}

/// A kind of data as `vigil_ingested_samples_total` labels it.
fn kind_label(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Metrics => "metrics",
        DataKind::Logs => "logs",
    }
}

/// An app's template miner and the way its lines are split.
#[derive(Debug)]
struct AppMiner {
    miner: Miner,
    format: HeaderFormat,
}

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
    /// One miner per app, rebuilt from the stored templates on first use.
    miners: Mutex<HashMap<String, AppMiner>>,
    /// How stored remote-write bodies are read again.
    remote_write: RemoteWriteOptions,
    /// The replica this intake stores for: every chunk it stores records it.
    origin: String,
}

/// The magic of a stored remote-write body: the request's body follows as received.
const REMOTE_WRITE_MAGIC: &[u8; 4] = b"VRW1";

/// Reads a stored metric body of either kind; `decoder` reads remote-write bodies, and must see
/// them in the order they were stored.
fn decode_stored_metrics(
    body: &[u8],
    decoder: &mut RemoteWriteDecoder,
) -> Result<MetricChunk, String> {
    let Some(received) = body.strip_prefix(REMOTE_WRITE_MAGIC) else {
        return MetricChunk::decode(body).map_err(|error| error.to_string());
    };
    decoder
        .decode(received)
        .map(|batch| batch.chunk)
        .map_err(|error| format!("stored remote-write body: {error}"))
}

/// Adds a stored chunk of either kind to `index`; `decoder` reads remote-write bodies, and must
/// see them in the order they were stored. Returns the log counts added (a follower learns
/// their template ids), or why the chunk could not be read (nothing is added then).
pub(crate) fn index_stored_chunk(
    index: &mut DataIndex,
    chunk: &DataChunk,
    decoder: &mut RemoteWriteDecoder,
) -> Result<Option<LogChunk>, String> {
    match chunk.kind {
        DataKind::Metrics => {
            index.insert_metrics(&decode_stored_metrics(&chunk.body, decoder)?);
            Ok(None)
        }
        DataKind::Logs => {
            let logs = LogChunk::decode(&chunk.body).map_err(|error| error.to_string())?;
            index.insert_logs(&logs);
            Ok(Some(logs))
        }
    }
}

/// The chunk the store keeps of data in `range`; `None` when there are no samples, since
/// nothing is stored then.
fn stored_chunk(
    kind: DataKind,
    key: String,
    range: Option<(i64, i64)>,
    received_at: i64,
    origin: &str,
    body: impl FnOnce() -> Vec<u8>,
) -> Option<DataChunk> {
    let (min_ms, max_ms) = range?;
    Some(DataChunk {
        kind,
        key: Some(key),
        min_ms,
        max_ms,
        received_at,
        body: body(),
        origin: origin.to_owned(),
    })
}

/// What [`Intake::load_stored`] put in the index.
pub(crate) struct Loaded {
    /// Ids of the chunks indexed (corrupt ones are not).
    pub ids: Vec<i64>,
    /// The decoder that read the stored remote-write bodies, to read the next ones.
    pub decoder: RemoteWriteDecoder,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

impl Intake {
    /// `remote_write`: the options remote-write bodies were decoded with when they came, to
    /// read the stored ones again.
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<RwLock<DataIndex>>,
        wake: Wake,
        remote_write: RemoteWriteOptions,
    ) -> Intake {
        Intake {
            store,
            index,
            wake,
            miners: Mutex::new(HashMap::new()),
            remote_write,
            origin: String::new(),
        }
    }

    /// The intake of replica `origin` (see `ReplicaSettings::resolved_id` of the server): the
    /// chunks it stores record it, and the replica follows the chunks of other origins
    /// ([`crate::follow::Follower`]).
    pub fn with_origin(self, origin: &str) -> Intake {
        Intake {
            origin: origin.to_owned(),
            ..self
        }
    }

    /// The replica this intake stores for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn index(&self) -> &Arc<RwLock<DataIndex>> {
        &self.index
    }

    pub(crate) fn wake(&self) {
        (self.wake)();
    }

    /// Stores a chunk of samples and adds it to the index.
    pub fn metrics(
        &self,
        chunk: &MetricChunk,
        key: Option<String>,
        received_at: i64,
    ) -> Result<Accepted, StoreError> {
        self.store_metrics(chunk, key, received_at, MetricChunk::encode)
    }

    /// Stores a remote-write request's body as received and adds `chunk`, what the body decoded
    /// to with this intake's remote-write options, to the index.
    pub fn remote_write(
        &self,
        received: &[u8],
        chunk: &MetricChunk,
        received_at: i64,
    ) -> Result<Accepted, StoreError> {
        self.store_metrics(chunk, None, received_at, |_| {
            let mut body = Vec::with_capacity(REMOTE_WRITE_MAGIC.len() + received.len());
            body.extend_from_slice(REMOTE_WRITE_MAGIC);
            body.extend_from_slice(received);
            body
        })
    }

    /// Stores `stored_body(chunk)`, then adds the chunk to the index.
    fn store_metrics(
        &self,
        chunk: &MetricChunk,
        key: Option<String>,
        received_at: i64,
        stored_body: impl FnOnce(&MetricChunk) -> Vec<u8>,
    ) -> Result<Accepted, StoreError> {
        let arriving = Arriving {
            kind: DataKind::Metrics,
            key,
            range: chunk.time_range(),
            items: chunk.points.len(),
            received_at,
        };
        self.store_then_index(
            arriving,
            || stored_body(chunk),
            |index| index.insert_metrics(chunk),
        )
    }

    /// Stores an imported release with its data, all in one transaction
    /// ([`Store::import_release`]), then adds the data the store kept to the index and wakes
    /// the guard. The chunks are the intake's to encode: `imported.chunks` is replaced by them,
    /// keyed `import:{id}:metrics` and `import:{id}:logs`.
    pub fn import(
        &self,
        imported: ImportedRelease,
        metrics: &MetricChunk,
        logs: &LogChunk,
        received_at: i64,
    ) -> Result<Release, StoreError> {
        let id = &imported.release.id;
        let metrics_chunk = stored_chunk(
            DataKind::Metrics,
            format!("import:{id}:metrics"),
            metrics.time_range(),
            received_at,
            &self.origin,
            || metrics.encode(),
        );
        let logs_chunk = stored_chunk(
            DataKind::Logs,
            format!("import:{id}:logs"),
            logs.time_range(),
            received_at,
            &self.origin,
            || logs.encode(),
        );
        let imported = ImportedRelease {
            chunks: metrics_chunk.into_iter().chain(logs_chunk).collect(),
            ..imported
        };
        let (release, appended) = self.store.import_release(&imported)?;
        let kept = |kind: DataKind| {
            imported
                .chunks
                .iter()
                .zip(&appended)
                .any(|(chunk, result)| chunk.kind == kind && *result == Appended::Stored)
        };
        let metrics_kept = kept(DataKind::Metrics);
        let logs_kept = kept(DataKind::Logs);
        if !metrics_kept && !logs_kept {
            return Ok(release);
        }
        {
            let mut index = self
                .index
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if metrics_kept {
                index.insert_metrics(metrics);
            }
            if logs_kept {
                index.insert_logs(logs);
            }
        }
        (self.wake)();
        Ok(release)
    }

    /// Stores a chunk of log template counts and adds it to the index.
    pub fn logs(
        &self,
        chunk: &LogChunk,
        key: Option<String>,
        received_at: i64,
    ) -> Result<Accepted, StoreError> {
        let arriving = Arriving {
            kind: DataKind::Logs,
            key,
            range: chunk.time_range(),
            items: chunk.counts.len(),
            received_at,
        };
        self.store_then_index(
            arriving,
            || chunk.encode(),
            |index| index.insert_logs(chunk),
        )
    }

    /// Stores the body (unless its key was stored before), then adds the data to the index and
    /// wakes the guard. Nothing reaches the index that the store has not kept.
    fn store_then_index(
        &self,
        arriving: Arriving,
        body: impl FnOnce() -> Vec<u8>,
        add: impl FnOnce(&mut DataIndex),
    ) -> Result<Accepted, StoreError> {
        let Some((min_ms, max_ms)) = arriving.range else {
            return Ok(Accepted {
                items: 0,
                duplicate: false,
            });
        };
        let appended = self.store.append_data(&DataChunk {
            kind: arriving.kind,
            key: arriving.key,
            min_ms,
            max_ms,
            received_at: arriving.received_at,
            body: body(),
            origin: self.origin.clone(),
        })?;
        let duplicate = appended == Appended::Duplicate;
        if !duplicate {
            add(&mut self
                .index
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()));
            (self.wake)();
            DataAccepted {
                kind: kind_label(arriving.kind),
                items: arriving.items,
            }
            .emit();
        }
        Ok(Accepted {
            items: arriving.items,
            duplicate,
        })
    }

    /// Stores received alerts (a resend or a resolution replaces what was stored of the same
    /// occurrence), calls `stored` (to tell the guard, [`crate::Guard::alerts_arrived`]), then
    /// wakes the guard.
    pub fn alerts(
        &self,
        alerts: &[vigil_core::Alert],
        stored: impl FnOnce(&[vigil_core::Alert]),
    ) -> Result<Accepted, StoreError> {
        if alerts.is_empty() {
            return Ok(Accepted {
                items: 0,
                duplicate: false,
            });
        }
        self.store.put_alerts(alerts)?;
        tracing::debug!(alerts = alerts.len(), "alerts received");
        stored(alerts);
        (self.wake)();
        Ok(Accepted {
            items: alerts.len(),
            duplicate: false,
        })
    }

    /// Groups log lines into events (a stack trace is one event, see
    /// [`vigil_ingest::logs::group_entries`]; the lines hold whole events), mines the events
    /// into their apps' templates, stores new and changed templates, then the events' counts
    /// per template, host and second (the end of the second their first line falls in).
    pub fn log_lines(
        &self,
        lines: &[LogLine],
        key: Option<String>,
        received_at: i64,
    ) -> Result<Accepted, StoreError> {
        let mut counts: BTreeMap<(String, String, String, i64), u32> = BTreeMap::new();
        let mut changed: BTreeMap<String, BTreeMap<TemplateId, ()>> = BTreeMap::new();
        let mut templates: Vec<(String, Vec<LogTemplate>)> = Vec::new();
        {
            let mut miners = self
                .miners
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for grouped in group_entries(lines, &EventLimits::default()) {
                let line = &lines[grouped.index];
                if !miners.contains_key(&line.app) {
                    let created = self.app_miner(&line.app)?;
                    miners.insert(line.app.clone(), created);
                }
                let Some(app_miner) = miners.get_mut(&line.app) else {
                    continue;
                };
                let added = app_miner.miner.add_event(
                    grouped.first_line,
                    &app_miner.format,
                    &grouped.event,
                );
                if added.change != Change::None {
                    changed
                        .entry(line.app.clone())
                        .or_default()
                        .insert(added.id, ());
                }
                let second_end_ms = line
                    .ms
                    .div_euclid(1000)
                    .saturating_add(i64::from(line.ms.rem_euclid(1000) > 0))
                    .saturating_mul(1000);
                let slot = counts
                    .entry((
                        line.app.clone(),
                        line.host.clone(),
                        added.id.to_string(),
                        second_end_ms,
                    ))
                    .or_default();
                *slot = slot.saturating_add(1);
            }
            for (app, ids) in &changed {
                let Some(app_miner) = miners.get(app) else {
                    continue;
                };
                let listed: Vec<LogTemplate> = ids
                    .keys()
                    .filter_map(|id| app_miner.miner.template(*id))
                    .map(|template| template.to_log_template())
                    .collect();
                templates.push((app.clone(), listed));
            }
        }
        for (app, listed) in &templates {
            self.store.upsert_templates(app, listed)?;
        }
        let chunk = LogChunk {
            counts: counts
                .into_iter()
                .map(|((app, host, template, ms), count)| LogCount {
                    app,
                    host,
                    template,
                    ms,
                    count,
                })
                .collect(),
        };
        let accepted = self.logs(&chunk, key, received_at)?;
        Ok(Accepted {
            items: lines.len(),
            duplicate: accepted.duplicate,
        })
    }

    /// An app's miner, from its stored templates and its configured log pattern.
    fn app_miner(&self, app: &str) -> Result<AppMiner, StoreError> {
        let stored = self.store.templates(app)?;
        let restored = stored.into_iter().filter_map(|template| {
            let id = template.id.parse::<u64>().ok()?;
            Some(Template {
                id: TemplateId(id),
                text: template.text,
                count: 0,
                level: Level::from_word(&template.level),
            })
        });
        let miner = Miner::from_templates(MinerConfig::default(), restored);
        let pattern =
            stored_app_config(self.store.as_ref(), app)?.and_then(|config| config.log_pattern);
        let format = match pattern.map(|text| HeaderPattern::new(&text)) {
            Some(Ok(compiled)) => HeaderFormat::Pattern(compiled),
            Some(Err(error)) => {
                tracing::warn!(app = %app, %error, "ignoring the app's invalid log pattern");
                HeaderFormat::Auto
            }
            None => HeaderFormat::Auto,
        };
        Ok(AppMiner { miner, format })
    }

    /// Forgets an app's miner so that its settings are read again (after they changed).
    pub fn reload_app(&self, app: &str) {
        self.miners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(app);
    }

    /// A fresh index holding only the stored data overlapping `[from_ms, to_ms]` (for a
    /// finished release, whose data may have left the live index).
    pub fn stored_window(&self, from_ms: i64, to_ms: i64) -> Result<DataIndex, StoreError> {
        let stored = self.read_stored(from_ms, to_ms)?;
        let mut window = DataIndex::new();
        self.index_stored(&mut window, &stored);
        Ok(window)
    }

    /// Fills the index from the stored chunks overlapping `[from_ms, to_ms]` (at start).
    /// Returns how many chunks were loaded; corrupt ones are logged and skipped.
    pub fn load(&self, from_ms: i64, to_ms: i64) -> Result<usize, StoreError> {
        Ok(self.load_stored(from_ms, to_ms)?.ids.len())
    }

    /// [`Intake::load`], telling which chunks it indexed.
    pub(crate) fn load_stored(&self, from_ms: i64, to_ms: i64) -> Result<Loaded, StoreError> {
        let stored = self.read_stored(from_ms, to_ms)?;
        let mut index = self
            .index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(self.index_stored(&mut index, &stored))
    }

    /// The stored chunks overlapping `[from_ms, to_ms]`, metrics first, each kind in the order
    /// stored.
    fn read_stored(&self, from_ms: i64, to_ms: i64) -> Result<Vec<StoredChunk>, StoreError> {
        let mut stored = self
            .store
            .stored_chunks_between(DataKind::Metrics, from_ms, to_ms)?;
        stored.extend(
            self.store
                .stored_chunks_between(DataKind::Logs, from_ms, to_ms)?,
        );
        Ok(stored)
    }

    /// Adds `stored` to `index` in its order with a decoder of its own; corrupt chunks are
    /// logged and skipped.
    fn index_stored(&self, index: &mut DataIndex, stored: &[StoredChunk]) -> Loaded {
        let mut ids = Vec::with_capacity(stored.len());
        let mut decoder = RemoteWriteDecoder::new(self.remote_write.clone());
        for chunk in stored {
            match index_stored_chunk(index, &chunk.chunk, &mut decoder) {
                Ok(_) => ids.push(chunk.id),
                Err(error) => {
                    tracing::warn!(chunk = chunk.id, %error, "skipping a corrupt stored chunk");
                }
            }
        }
        Loaded { ids, decoder }
    }

    /// Forgets the miner of `app` when it does not know one of `template_ids` (named by the
    /// log counts another replica stored), so that it is built again from the stored templates
    /// and the replicas mine with the same ones. Returns whether it was forgotten.
    pub(crate) fn learn_templates<'a>(
        &self,
        app: &str,
        template_ids: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let mut miners = self
            .miners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(app_miner) = miners.get(app) else {
            return false;
        };
        let knows = |text: &str| {
            text.parse::<u64>()
                .is_ok_and(|id| app_miner.miner.resolve(TemplateId(id)).is_some())
        };
        let unknown = template_ids.into_iter().any(|text| !knows(text));
        if unknown {
            miners.remove(app);
        }
        unknown
    }
}
