//! Vigil's store: everything the server must not lose.
//!
//! One [`Store`] trait with two implementations, SQLite (the embedded default) and PostgreSQL,
//! held to the same behaviour by one conformance suite (`tests/conformance.rs`). The trait is
//! synchronous: the server calls it from blocking threads. Every method that changes something
//! does it in one transaction, so a crash (even `kill -9`) leaves either all of it or none.
//!
//! [`open`] picks the implementation from a URL and brings the schema up to date.
#![forbid(unsafe_code)]

mod changes;
mod codec;
mod executions;
mod leases;
mod models;
pub mod postgres_store;
mod schema;
mod sql;
pub mod sqlite_store;
pub mod testing;
pub mod timed;

use std::path::Path;
use std::sync::Arc;

pub use crate::postgres_store::PostgresStore;
pub use crate::sqlite_store::{SqliteStore, Synchronous};
pub use crate::timed::TimedStore;

use vigil_core::agent::{
    AgentHello, AgentPoll, AgentRecord, ArtifactProgress, ExecutorSpec, HostTask, PlanStep,
    TaskKind,
};
use vigil_core::learned::{LearnedModel, ModelRecord, ModelScores, TrainingSet};
use vigil_core::release::{
    ApiToken, Feedback, NewNotification, OutboxItem, Release, ReleaseState, Role, Transition,
    VerdictRecord,
};
use vigil_core::{Batch, LogTemplate};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("release {id} already exists")]
    ReleaseExists { id: String },
    #[error("no release {id}")]
    UnknownRelease { id: String },
    /// The release was not in the state the change expected (another change came first).
    #[error("release {id} is {actual}, not {expected}")]
    StateConflict {
        id: String,
        expected: ReleaseState,
        actual: ReleaseState,
    },
    #[error("no outbox item {id}")]
    UnknownNotification { id: i64 },
    #[error("no token {id}")]
    UnknownToken { id: i64 },
    #[error("no model version {version}")]
    UnknownModel { version: i64 },
    /// Promoting the model that is promoted already.
    #[error("model version {version} is promoted already")]
    ModelPromoted { version: i64 },
    /// A rollback while no model is promoted.
    #[error("no model is promoted: there is nothing to roll back")]
    NothingToRollBack,
    #[error("no signature {id}")]
    UnknownSignature { id: i64 },
    /// A fenced write of the guard: the writer no longer holds the release's lease (another
    /// replica took it, or it expired), so nothing was written.
    #[error("the lease of release {release_id} is no longer held by this replica")]
    LeaseLost { release_id: String },
    /// `source` is the database's own error, when there was one (not for a bad URL).
    #[error("cannot open store {url}: {reason}")]
    Open {
        url: String,
        reason: String,
        #[source]
        source: Option<BackendError>,
    },
    /// The schema cannot be brought up to date by this build (a newer version).
    #[error("store migration failed: {0}")]
    Migration(String),
    /// The database failed while migrating.
    #[error("store migration failed: {reason}")]
    MigrationFailed {
        reason: String,
        #[source]
        source: BackendError,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A stored JSON document could not be read, or a value not written as JSON.
    #[error("stored data is corrupt: {reason}")]
    CorruptJson {
        reason: String,
        #[source]
        source: serde_json::Error,
    },
    /// A failure of the store's own making (no database error underneath).
    #[error("database error: {0}")]
    Database(String),
    /// The database's error, kept as the source.
    #[error("database error: {reason}")]
    Backend {
        reason: String,
        #[source]
        source: BackendError,
    },
}

/// A database driver's error (SQLite or PostgreSQL), kept whole as the source of a
/// [`StoreError`]. The error's message also names its causes (`reason`), because API answers
/// and logs print only the top error.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which releases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseFilter {
    pub app: Option<String>,
    /// Any of these states; empty means every state.
    pub states: Vec<ReleaseState>,
    /// At most this many, newest first; 0 means no limit.
    pub limit: usize,
}

/// One state change of a release, applied atomically with what it implies.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub release_id: String,
    /// The change applies only if the release is in this state.
    pub expected: ReleaseState,
    pub to: ReleaseState,
    pub action: vigil_core::release::Action,
    pub actor: String,
    pub at: i64,
    pub reason: String,
    /// A batch to append to the release's deployed batches.
    pub deployed: Option<Batch>,
    /// Messages to put in the outbox in the same transaction.
    pub notifications: Vec<NewNotification>,
    /// The guard's lease on the release: the change applies only while it is held (see
    /// [`LeaseFence`]); `None` for a person's action, a batch report or an import.
    pub lease: Option<LeaseFence>,
}

// ---- replicas and leases

/// A replica of the server sharing the store, as it last said it was alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    /// Where it answers (its public URL or listen address).
    pub address: String,
    pub started_at: i64,
    /// Its last heartbeat, Unix seconds.
    pub seen_at: i64,
}

/// The lease of one release: the replica that guards it until `expires_at`. `epoch` grows
/// by one whenever another holder takes it, so a holder's older writes can be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub release_id: String,
    pub holder: String,
    pub epoch: i64,
    /// Unix seconds; the lease is free at and after it.
    pub expires_at: i64,
}

/// What a fenced write of the guard proves: `holder` holds the release's lease at `epoch`,
/// unexpired at `now` (Unix seconds). Checked in the write's own transaction; otherwise the
/// write fails with [`StoreError::LeaseLost`] and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    pub holder: String,
    pub epoch: i64,
    pub now: i64,
}

/// An imported release and everything stored with it, written by [`Store::import_release`]
/// in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRelease {
    /// The release in its initial state, created as [`Store::create_release`] does.
    pub release: Release,
    /// Templates of the release's app, inserted or replaced by id.
    pub templates: Vec<LogTemplate>,
    /// Its data, each chunk stored as [`Store::append_data`] does.
    pub chunks: Vec<DataChunk>,
    /// The verdict of its replay, recorded without notifications.
    pub verdict: VerdictRecord,
    /// The change to the state the replay ended in, applied last.
    pub outcome: Change,
}

/// What kind of data a chunk holds (the body's encoding is `vigil_core::samples`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    Metrics,
    Logs,
}

/// A chunk of ingested data, as acknowledged to its sender.
#[derive(Debug, Clone, PartialEq)]
pub struct DataChunk {
    pub kind: DataKind,
    /// Idempotency key given by the sender: a second chunk with the same key is not stored.
    pub key: Option<String>,
    /// Time range of the samples inside, Unix milliseconds, inclusive.
    pub min_ms: i64,
    pub max_ms: i64,
    pub received_at: i64,
    pub body: Vec<u8>,
    /// The replica that stored it (`ReplicaSettings::resolved_id` of the server), empty when
    /// unknown (chunks stored before replicas had ids).
    pub origin: String,
}

/// Where a stored chunk sits in the store, without its body: what a replica reads to follow
/// the chunks other replicas store ([`Store::chunk_heads_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHead {
    /// The chunk's id: ids grow in the order inserts began (not the order they committed).
    pub id: i64,
    pub origin: String,
    pub kind: DataKind,
    /// The body's length in bytes.
    pub bytes: i64,
}

/// A stored chunk with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    pub id: i64,
    pub chunk: DataChunk,
}

/// A signed-in session of the pages: the hash of its random id (the id itself is only in the
/// person's cookie), the token it was opened with, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSession {
    /// Hex SHA-256 of the session id.
    pub hash: String,
    pub token_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Whether a chunk was stored or was a duplicate of one already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored,
    Duplicate,
}

/// A model to store as a candidate ([`Store::add_model`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub created_at: i64,
    pub created_by: String,
    pub model: LearnedModel,
    pub training: TrainingSet,
    pub scores: Vec<ModelScores>,
    pub note: String,
}

/// What a rollback did: the model it retired and the one it promoted again, if any (none: the
/// guard runs the funnel alone).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRollback {
    pub retired: ModelRecord,
    pub promoted: Option<ModelRecord>,
}

/// What happened to a model in a promotion or a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionAction {
    /// Promoted by a person (`vigil model promote`, the API).
    Promoted,
    /// Retired by a rollback.
    RolledBack,
    /// Promoted again by a rollback of the model that had replaced it.
    Restored,
}

/// One entry of the models' audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelPromotion {
    /// Order of the entries across all models, from 1.
    pub seq: i64,
    pub version: i64,
    pub action: PromotionAction,
    pub by: String,
    pub at: i64,
}

// ---- Vigil's executor

/// How many artifacts' progress the store keeps per agent (the latest reported).
pub const MAX_AGENT_ARTIFACTS: usize = 16;

/// A registered agent and what it holds of each artifact it was asked to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAgent {
    pub record: AgentRecord,
    pub artifacts: Vec<ArtifactProgress>,
}

/// What Vigil's executor keeps beside a release it ships: the artifact and each batch's
/// observation time, the plan as ordered, and the version each target host ran before it (for
/// its rollback task), as its agent last said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Execution {
    pub spec: ExecutorSpec,
    pub plan: Vec<PlanStep>,
    #[serde(default)]
    pub previous_versions: std::collections::BTreeMap<String, Option<String>>,
}

/// A task to create ([`Store::create_task`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub release: String,
    pub host: String,
    pub batch: u32,
    pub kind: TaskKind,
    pub version: String,
    pub artifact: Option<String>,
    pub created_at: i64,
}

/// What a poll did ([`Store::agent_poll`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollAnswer {
    /// The task ids of the poll's reports, each once, ascending.
    pub acknowledged: Vec<i64>,
    /// The host's tasks to run, oldest first.
    pub tasks: Vec<HostTask>,
}

/// The durable state of the server.
pub trait Store: Send + Sync + std::fmt::Debug {
    // ---- releases
    /// Stores a new release in its initial state, with a `create` transition by its creator.
    ///
    /// The release is stored as given (spec, state, deployed batches, verdict, reason). The
    /// transition has `seq` 1, `from` = `to` = the release's state, `actor` = `created_by`,
    /// `at` = `created_at` and the release's reason. A release with the same id already stored
    /// gives [`StoreError::ReleaseExists`] and changes nothing.
    fn create_release(&self, release: &Release) -> Result<(), StoreError>;
    /// Stores an imported release with its templates, data chunks and verdict, then applies
    /// its outcome, all in one transaction: on any failure (its id taken, the outcome's
    /// expected state not the release's...) nothing of it is stored.
    ///
    /// Returns the release as stored after the outcome, and what became of each chunk, in
    /// order ([`Appended::Duplicate`] for a key already stored).
    fn import_release(
        &self,
        imported: &ImportedRelease,
    ) -> Result<(Release, Vec<Appended>), StoreError>;
    /// The release with this id, `None` when there is none.
    fn release(&self, id: &str) -> Result<Option<Release>, StoreError>;
    /// Releases of the filter's app (all apps when `None`) in any of its states (all when
    /// empty), newest first: by `created_at` descending, then by id ascending; at most `limit`
    /// (0: no limit).
    fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError>;
    /// Applies a state change: checks the expected state, updates the release (state, reason,
    /// `updated_at`, deployed batches), appends the audited transition and queues the
    /// notifications, all in one transaction.
    ///
    /// Compare-and-set: [`StoreError::UnknownRelease`] when there is no such release,
    /// [`StoreError::StateConflict`] (with the actual state) when it is not in `expected`; in
    /// both cases, as on any other failure, nothing is changed. On success the release has
    /// state `to`, the change's reason, `updated_at` = `at` and `deployed` extended by the
    /// change's batch if any; the transition gets the release's next `seq`; each notification
    /// is queued pending and due at once (`created_at` = `next_attempt_at` = `at`). Returns
    /// the release as stored and the transition. A change with a `lease` applies only while
    /// that lease is held ([`StoreError::LeaseLost`] otherwise, checked first, in the same
    /// transaction).
    fn apply(&self, change: &Change) -> Result<(Release, Transition), StoreError>;
    /// Every transition of a release, oldest first.
    fn transitions(&self, release_id: &str) -> Result<Vec<Transition>, StoreError>;

    // ---- verdicts
    /// Appends a verdict to the release's history, sets it as the release's latest verdict and
    /// queues the notifications, in one transaction.
    ///
    /// The notifications are due at once (`created_at` = `next_attempt_at` = the record's
    /// `at`). The release's state and `updated_at` are left alone. No such release:
    /// [`StoreError::UnknownRelease`], and nothing is stored.
    fn record_verdict(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
    ) -> Result<(), StoreError>;
    /// The verdict history of a release, oldest first.
    fn verdicts(&self, release_id: &str) -> Result<Vec<VerdictRecord>, StoreError>;

    // ---- feedback
    /// Stores feedback on a release; [`StoreError::UnknownRelease`] when there is none.
    fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError>;
    /// The feedback on a release, in the order it was added.
    fn feedback(&self, release_id: &str) -> Result<Vec<Feedback>, StoreError>;

    // ---- the learned stage (schema version 5)
    /// The signatures of an app's feature library that are not dropped, oldest first.
    fn app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError>;
    /// Every signature of an app, dropped ones too, oldest first.
    fn all_app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError>;
    /// A signature by its id.
    fn signature(&self, id: i64) -> Result<Option<vigil_core::Signature>, StoreError>;
    /// Stores a signature and returns it as stored: a new one (id 0) is inserted and given its
    /// id; another has its state, shape, marks, drop and `updated_at` replaced (its app,
    /// signal, direction and baseline never change), [`StoreError::UnknownSignature`] when
    /// there is no such signature.
    fn save_signature(
        &self,
        signature: &vigil_core::Signature,
    ) -> Result<vigil_core::Signature, StoreError>;

    // ---- models of the learned stage
    /// The model the guard applies, if one is promoted.
    fn promoted_model(&self) -> Result<Option<ModelRecord>, StoreError>;
    /// Stores a new model as a candidate and returns its version (1, 2, 3... in the order
    /// added).
    fn add_model(&self, model: &NewModel) -> Result<i64, StoreError>;
    /// Every model, newest first.
    fn models(&self) -> Result<Vec<ModelRecord>, StoreError>;
    /// The model of this version, `None` when there is none.
    fn model(&self, version: i64) -> Result<Option<ModelRecord>, StoreError>;
    /// Promotes a model, in one transaction: the promoted one (if any) becomes retired, this
    /// one promoted with `promoted_at` = `at`, and the promotion joins the audit
    /// ([`Store::model_promotions`]). [`StoreError::UnknownModel`] when there is no such
    /// version, [`StoreError::ModelPromoted`] when it is the promoted one; nothing changes
    /// then.
    fn promote_model(&self, version: i64, actor: &str, at: i64) -> Result<ModelRecord, StoreError>;
    /// Undoes the last promotion still in force, in one transaction: the promoted model becomes
    /// retired and the model promoted before it (the one it replaced, itself not rolled back)
    /// is promoted again, with `promoted_at` = `at`. Promotions form a stack: rollbacks walk it
    /// back one promotion at a time. When the promoted model replaced none, it is retired and
    /// no model is promoted: the guard runs the funnel alone. [`StoreError::NothingToRollBack`]
    /// when no model is promoted.
    fn rollback_model(&self, actor: &str, at: i64) -> Result<ModelRollback, StoreError>;
    /// Appends replay figures to a model's scores and returns the model as stored;
    /// [`StoreError::UnknownModel`] when there is no such version.
    fn set_model_scores(
        &self,
        version: i64,
        scores: &[ModelScores],
    ) -> Result<ModelRecord, StoreError>;
    /// Every promotion and rollback of every model, oldest first: the audit of which model the
    /// guard applied when, and who decided it.
    fn model_promotions(&self) -> Result<Vec<ModelPromotion>, StoreError>;

    // ---- Vigil's executor: agents, executions and tasks (schema version 6)
    /// Registers an agent, or updates the one of the same host (app, labels, version, peer
    /// address, build), in one statement: `last_seen_at` = `at`; `registered_at` and its
    /// artifacts' progress are kept from before. Returns the agent as stored.
    fn register_agent(&self, hello: &AgentHello, at: i64) -> Result<StoredAgent, StoreError>;
    /// The agent of a host, `None` when none registered.
    fn agent(&self, host: &str) -> Result<Option<StoredAgent>, StoreError>;
    /// Every registered agent, by host.
    fn agents(&self) -> Result<Vec<StoredAgent>, StoreError>;
    /// Stores a release shipped by Vigil's executor and its execution, as
    /// [`Store::create_release`] does, in one transaction.
    fn create_execution(&self, release: &Release, execution: &Execution) -> Result<(), StoreError>;
    /// The execution of a release, `None` for a release Vigil does not ship.
    fn execution(&self, release_id: &str) -> Result<Option<Execution>, StoreError>;
    /// Creates a pending task and returns it; when the release already has a task of this
    /// kind for the host (even one created at the same time by another caller), returns that
    /// one and creates nothing. A database error when the release does not exist.
    fn create_task(&self, task: &NewTask) -> Result<HostTask, StoreError>;
    /// Every task of a release, by id.
    fn release_tasks(&self, release_id: &str) -> Result<Vec<HostTask>, StoreError>;
    /// An agent's poll, in one transaction: `last_seen_at` = `at`, the progress of the
    /// artifacts it names replaced; each report moves its task (`started`, then `succeeded` or
    /// `failed`, with the agent's message; at `at`) unless the task ended already, is in that
    /// state already or is another host's, and every report's task id is acknowledged; the
    /// host's tasks not yet ended are returned oldest first, except pending deploys of a
    /// release not deploying and pending rollbacks of one not rolling back, and the pending
    /// ones returned become sent. `None`, changing nothing, when the host is not registered.
    fn agent_poll(
        &self,
        host: &str,
        poll: &AgentPoll,
        at: i64,
    ) -> Result<Option<PollAnswer>, StoreError>;

    // ---- notification outbox
    /// Pending items whose `next_attempt_at` is at or before `now`, oldest first (in the
    /// order they were queued), at most `limit` of them (0 gives none).
    fn due_notifications(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    /// Marks an item sent: it is never due again. [`StoreError::UnknownNotification`] when
    /// there is no such item.
    fn notification_sent(&self, id: i64, at: i64) -> Result<(), StoreError>;
    /// Records a failed attempt; `retry_at: None` gives up (the item becomes dead).
    ///
    /// Adds one to `attempts` and keeps `error` as `last_error`; with `retry_at` the item stays
    /// pending and is due again from then on, without it the item becomes
    /// [`DeliveryState::Dead`](vigil_core::release::DeliveryState::Dead) and is never due
    /// again. [`StoreError::UnknownNotification`] when there is no such item.
    fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError>;
    /// Every outbox item of a release, oldest first.
    fn notifications(&self, release_id: &str) -> Result<Vec<OutboxItem>, StoreError>;

    // ---- tokens
    /// Stores a token by the hash of its secret (the secret itself is never stored) and
    /// returns it with its new id. Names need not be unique; hashes must be (a second token
    /// with the same hash is a database error).
    fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: i64,
    ) -> Result<ApiToken, StoreError>;
    /// The token with this hash, `None` when there is none.
    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Every token, in the order created (revoked ones too).
    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// Revokes a token and ends its sessions, in one transaction; returns the token as stored.
    ///
    /// The token keeps its first `revoked_at`: revoking it again changes nothing.
    /// [`StoreError::UnknownToken`] when there is no such token.
    fn revoke_token(&self, id: i64, at: i64) -> Result<ApiToken, StoreError>;

    // ---- page sessions
    /// Stores a new session of a token (a database error when the token does not exist), and
    /// deletes the sessions that expired at or before the new one's `created_at`.
    fn create_session(&self, session: &PageSession) -> Result<(), StoreError>;
    /// The session with this hash and its token (whatever their expiry or revocation, which
    /// the caller checks), `None` when there is none.
    fn session(&self, hash: &str) -> Result<Option<(ApiToken, PageSession)>, StoreError>;
    /// Ends a session (signing out); false when there was none.
    fn end_session(&self, hash: &str) -> Result<bool, StoreError>;

    // ---- ingested data
    /// Stores a chunk, the ingestion hot path (one cached statement, one commit). A chunk
    /// whose `key` is already stored for the same kind is not stored again:
    /// [`Appended::Duplicate`]. Chunks without a key are always stored. A key stays known
    /// until its chunk is pruned.
    fn append_data(&self, chunk: &DataChunk) -> Result<Appended, StoreError>;
    /// Chunks of `kind` whose time range overlaps `[from_ms, to_ms]`, in the order stored
    /// (ranges that only touch at an end overlap): [`Store::stored_chunks_between`] without
    /// the ids.
    fn data_between(
        &self,
        kind: DataKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<DataChunk>, StoreError> {
        Ok(self
            .stored_chunks_between(kind, from_ms, to_ms)?
            .into_iter()
            .map(|stored| stored.chunk)
            .collect())
    }
    /// Deletes chunks that end before `before_ms` and overlap none of the `keep` ranges
    /// (the windows of releases still kept). Returns how many were deleted.
    fn prune_data(&self, before_ms: i64, keep: &[(i64, i64)]) -> Result<usize, StoreError>;

    // ---- following the chunks other replicas store
    /// The highest chunk id stored, 0 when there is none.
    fn last_chunk_id(&self) -> Result<i64, StoreError>;
    /// The heads of the chunks whose id is above `after_id`, by id, at most `limit` of them
    /// (0 gives none). On PostgreSQL an id is taken when an insert begins and the row is seen
    /// once it commits, so a lower id may show up after a higher one, and a duplicate's insert
    /// (or a rolled back one) leaves its id unused for good.
    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError>;
    /// The stored chunks among `ids`, by id; a chunk of `own_origin` comes without its body
    /// (empty), since the replica that stored it has it already.
    fn chunks_with_ids(
        &self,
        ids: &[i64],
        own_origin: &str,
    ) -> Result<Vec<StoredChunk>, StoreError>;
    /// The chunks of `kind` overlapping `[from_ms, to_ms]` as [`Store::data_between`] finds
    /// them, with their ids (to fill a replica's index at start and follow on from there).
    fn stored_chunks_between(
        &self,
        kind: DataKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredChunk>, StoreError>;

    // ---- log templates and app settings
    /// Inserts or replaces templates of an app, by id (in one transaction); templates not
    /// named are kept.
    fn upsert_templates(&self, app: &str, templates: &[LogTemplate]) -> Result<(), StoreError>;
    /// An app's templates, by id.
    fn templates(&self, app: &str) -> Result<Vec<LogTemplate>, StoreError>;
    /// An app's settings (pull source, host label, log format), as a JSON document; replaces
    /// what was stored under that name.
    fn put_app(&self, app: &str, config: &serde_json::Value) -> Result<(), StoreError>;
    /// Every app's settings, by name.
    fn apps(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;

    // ---- alerts
    /// Stores received alerts in one transaction. An occurrence is keyed by its fingerprint and
    /// start: one already stored is replaced (its end, labels, summary and receipt time), so a
    /// resend changes nothing and a resolution ends it.
    fn put_alerts(&self, alerts: &[vigil_core::Alert]) -> Result<(), StoreError>;
    /// The alerts of `app` firing at some time in `[from, to]` (Unix seconds): started at or
    /// before `to`, not ended before `from`; by start, then fingerprint.
    fn alerts(&self, app: &str, from: i64, to: i64) -> Result<Vec<vigil_core::Alert>, StoreError>;
    /// Deletes the alerts that ended before `before`, and those still firing last received
    /// more than `stale_seconds` before it. Returns how many were deleted.
    fn prune_alerts(&self, before: i64, stale_seconds: i64) -> Result<usize, StoreError>;

    // ---- replicas and leases
    /// A replica's heartbeat: inserts it or updates its address, start and `seen_at`.
    fn replica_seen(
        &self,
        id: &str,
        address: &str,
        started_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Forgets a replica that stops (its leases are dropped by [`Store::drop_lease`]).
    fn replica_gone(&self, id: &str) -> Result<(), StoreError>;
    /// Every replica that sent a heartbeat and did not stop, by id.
    fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError>;
    /// Takes for `holder`, in the order of `wanted`, the leases that are free (never taken,
    /// expired at `now`, dropped) until it holds `max` unexpired leases; each one taken
    /// expires at `expires_at`. Taken from another holder, a lease's epoch grows by one;
    /// taken again by the holder it lapsed from, it keeps its epoch (no one held it in
    /// between). Never takes a lease another holder holds unexpired, even when replicas
    /// claim at once. Returns the leases `holder` holds after it, by release id.
    fn claim_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
        wanted: &[String],
        max: usize,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Extends every lease `holder` holds unexpired at `now` to `expires_at`; an expired one
    /// is not renewed. Returns the leases it holds after it, by release id.
    fn renew_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Gives up `holder`'s lease of a release, so that any replica may take it at once; false
    /// when `holder` did not hold it.
    fn drop_lease(&self, holder: &str, release_id: &str) -> Result<bool, StoreError>;
    /// Every lease, expired or not, by release id.
    fn leases(&self) -> Result<Vec<Lease>, StoreError>;
    /// Records a verdict as [`Store::record_verdict`] does, only while `lease` is held (in the
    /// same transaction): otherwise [`StoreError::LeaseLost`] and nothing is stored.
    fn record_verdict_fenced(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
        lease: &LeaseFence,
    ) -> Result<(), StoreError>;

    // ---- outbox claims (several replicas)
    /// Claims up to `limit` items for `claimer` (a replica's id) until `claim_until` and
    /// returns them, oldest first: pending items due at `now` (`next_attempt_at <= now`) that
    /// no one claims (a claim holds while `now < claimed_until`). Atomic: replicas claiming at
    /// once never get the same item, so each notification is sent by one replica; one whose
    /// claimer died is claimed again once its claim ends. [`Store::notification_sent`] and
    /// [`Store::notification_failed`] clear the claim. `limit` 0 claims nothing.
    fn claim_notifications(
        &self,
        claimer: &str,
        now: i64,
        claim_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError>;
}

/// The URL of a private in-memory SQLite database (tests).
pub const SQLITE_MEMORY: &str = "sqlite::memory:";

/// Opens the store a URL names, creating and migrating its schema as needed:
///
/// - `postgres://user:password@host:port/database` or `postgresql://...`, with the `postgres`
///   crate's query parameters (`?connect_timeout=5&sslmode=disable`...): PostgreSQL, without
///   TLS;
/// - `sqlite://path` or `sqlite:path` (`sqlite:///var/lib/vigil.db` for an absolute path), with
///   an optional `?synchronous=full` (see [`sqlite_store`] for the durability trade-off): SQLite;
/// - `sqlite::memory:`: a private SQLite database in memory;
/// - anything else without a `scheme://`: the path of a SQLite file (`./vigil.db`).
///
/// Migrations run here, each in its own transaction; a database whose schema is newer than
/// this build knows is refused with [`StoreError::Migration`].
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match parse_url(url)? {
        StoreUrl::Postgres => Ok(Arc::new(PostgresStore::connect(url)?)),
        StoreUrl::SqliteMemory => Ok(Arc::new(SqliteStore::open_in_memory()?)),
        StoreUrl::SqliteFile { path, synchronous } => {
            Ok(Arc::new(SqliteStore::open(Path::new(&path), synchronous)?))
        }
    }
}

/// What a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreUrl {
    Postgres,
    SqliteMemory,
    SqliteFile {
        path: String,
        synchronous: Synchronous,
    },
}

fn parse_url(url: &str) -> Result<StoreUrl, StoreError> {
    let refuse = |reason: &str| StoreError::Open {
        url: redact_password(url),
        reason: reason.to_owned(),
        source: None,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(StoreUrl::Postgres);
    }
    if url == SQLITE_MEMORY {
        return Ok(StoreUrl::SqliteMemory);
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        if url.contains("://") {
            return Err(refuse(
                "unknown scheme (expected sqlite://, postgres:// or a file path)",
            ));
        }
        if url.is_empty() {
            return Err(refuse("empty store url"));
        }
        return Ok(StoreUrl::SqliteFile {
            path: url.to_owned(),
            synchronous: Synchronous::Normal,
        });
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(refuse("no database file in the url"));
    }
    let mut synchronous = Synchronous::Normal;
    for parameter in query.into_iter().flat_map(|query| query.split('&')) {
        synchronous = match parameter.to_ascii_lowercase().as_str() {
            "synchronous=normal" => Synchronous::Normal,
            "synchronous=full" => Synchronous::Full,
            _ => {
                return Err(refuse(&format!(
                    "unknown parameter {parameter:?} (only synchronous=normal|full)"
                )))
            }
        };
    }
    Ok(StoreUrl::SqliteFile {
        path: path.to_owned(),
        synchronous,
    })
}

/// The URL with the password, if any, replaced by `***`, for messages and logs.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = credentials.split_once(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{user}:***@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            parse_url("postgres://vigil:secret@db:5432/vigil").unwrap(),
            StoreUrl::Postgres
        );
        assert_eq!(
            parse_url("postgresql://db/vigil").unwrap(),
            StoreUrl::Postgres
        );
        assert_eq!(
            parse_url("sqlite::memory:").unwrap(),
            StoreUrl::SqliteMemory
        );
        let file = |path: &str, synchronous| StoreUrl::SqliteFile {
            path: path.to_owned(),
            synchronous,
        };
        assert_eq!(
            parse_url("./vigil.db").unwrap(),
            file("./vigil.db", Synchronous::Normal)
        );
        assert_eq!(
            parse_url("sqlite://vigil.db").unwrap(),
            file("vigil.db", Synchronous::Normal)
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/vigil/vigil.db?synchronous=full").unwrap(),
            file("/var/lib/vigil/vigil.db", Synchronous::Full)
        );
        assert_eq!(
            parse_url("sqlite:data/vigil.db").unwrap(),
            file("data/vigil.db", Synchronous::Normal)
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let unknown = parse_url("mysql://root:hunter2@db/vigil").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "cannot open store mysql://root:***@db/vigil: unknown scheme (expected sqlite://, \
             postgres:// or a file path)"
        );
        assert!(parse_url("").is_err());
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("sqlite://x.db?journal=off").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://vigil:secret@db:5432/vigil?sslmode=disable"),
            "postgres://vigil:***@db:5432/vigil?sslmode=disable"
        );
        assert_eq!(
            redact_password("postgres://vigil@db/vigil"),
            "postgres://vigil@db/vigil"
        );
        assert_eq!(redact_password("./vigil.db"), "./vigil.db");
    }
}
