//! Vigil's store: everything the server must not lose.
//!
//! One [`Store`] trait with two implementations, SQLite (the embedded default) and PostgreSQL,
//! held to the same behaviour by one conformance suite (`tests/conformance.rs`). The trait is
//! synchronous: the server calls it from blocking threads. Every method that changes something
//! does it in one transaction, so a crash (even `kill -9`) leaves either all of it or none.
#![forbid(unsafe_code)]

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
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("store migration failed: {0}")]
    Migration(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
}

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
}

/// Whether a chunk was stored or was a duplicate of one already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored,
    Duplicate,
}

/// The durable state of the server.
pub trait Store: Send + Sync + std::fmt::Debug {
    // ---- releases
    /// Stores a new release in its initial state, with a `create` transition by its creator.
    fn create_release(&self, release: &Release) -> Result<(), StoreError>;
    fn release(&self, id: &str) -> Result<Option<Release>, StoreError>;
    fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError>;
    /// Applies a state change: checks the expected state, updates the release (state, reason,
    /// `updated_at`, deployed batches), appends the audited transition and queues the
    /// notifications, all in one transaction.
    fn apply(&self, change: &Change) -> Result<(Release, Transition), StoreError>;
    /// Every transition of a release, oldest first.
    fn transitions(&self, release_id: &str) -> Result<Vec<Transition>, StoreError>;

    // ---- verdicts
    /// Appends a verdict to the release's history, sets it as the release's latest verdict and
    /// queues the notifications, in one transaction.
    fn record_verdict(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
    ) -> Result<(), StoreError>;
    /// The verdict history of a release, oldest first.
    fn verdicts(&self, release_id: &str) -> Result<Vec<VerdictRecord>, StoreError>;

    // ---- feedback
    fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError>;
    fn feedback(&self, release_id: &str) -> Result<Vec<Feedback>, StoreError>;

    // ---- notification outbox
    /// Pending items whose `next_attempt_at` is at or before `now`, oldest first.
    fn due_notifications(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    fn notification_sent(&self, id: i64, at: i64) -> Result<(), StoreError>;
    /// Records a failed attempt; `retry_at: None` gives up (the item becomes dead).
    fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError>;
    /// Every outbox item of a release, oldest first.
    fn notifications(&self, release_id: &str) -> Result<Vec<OutboxItem>, StoreError>;

    // ---- tokens
    fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: i64,
    ) -> Result<ApiToken, StoreError>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError>;

    // ---- ingested data
    fn append_data(&self, chunk: &DataChunk) -> Result<Appended, StoreError>;
    /// Chunks of `kind` whose time range overlaps `[from_ms, to_ms]`, in the order stored.
    fn data_between(
        &self,
        kind: DataKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<DataChunk>, StoreError>;
    /// Deletes chunks that end before `before_ms` and overlap none of the `keep` ranges
    /// (the windows of releases still kept). Returns how many were deleted.
    fn prune_data(&self, before_ms: i64, keep: &[(i64, i64)]) -> Result<usize, StoreError>;

    // ---- log templates and app settings
    /// Inserts or replaces templates of an app, by id.
    fn upsert_templates(&self, app: &str, templates: &[LogTemplate]) -> Result<(), StoreError>;
    fn templates(&self, app: &str) -> Result<Vec<LogTemplate>, StoreError>;
    /// An app's settings (pull source, host label, log format), as a JSON document.
    fn put_app(&self, app: &str, config: &serde_json::Value) -> Result<(), StoreError>;
    fn apps(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
}
