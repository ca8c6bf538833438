//! What both backends share: how values become columns and columns become values.
//!
//! Enums are stored as their snake_case names (the same text as their JSON form), nested values
//! (the release spec, deployed batches, findings) as JSON text. Each backend reads its rows into
//! the plain `*Row` structs below, in the column order of the `*_COLUMNS` lists, and converts
//! them here, so both read and write exactly the same representation.

use serde::de::DeserializeOwned;
use serde::Serialize;
use vigil_core::release::{
    Action, ApiToken, Feedback, NewNotification, OutboxItem, Release, Transition, VerdictRecord,
};
use vigil_core::{Batch, LogTemplate};

use crate::{ChunkHead, DataChunk, DataKind, PageSession, StoreError, StoredChunk};

/// Columns of `releases`, in the order [`ReleaseRow`] reads them.
macro_rules! release_columns {
    () => {
        "id, spec, state, created_by, created_at, updated_at, deployed, verdict, reason"
    };
}

/// Columns of `transitions`, in the order [`TransitionRow`] reads them.
macro_rules! transition_columns {
    () => {
        "release_id, seq, from_state, to_state, action, actor, at, reason"
    };
}

/// Columns of `verdicts`, in the order [`VerdictRow`] reads them.
macro_rules! verdict_columns {
    () => {
        "release_id, at, verdict, findings, explanation"
    };
}

/// Columns of `feedback`, in the order [`FeedbackRow`] reads them.
macro_rules! feedback_columns {
    () => {
        "release_id, kind, note, actor, at, signal, onset"
    };
}

/// Columns of `outbox`, in the order [`OutboxRow`] reads them.
macro_rules! outbox_columns {
    () => {
        "id, release_id, event, channel, title, text, link, created_at, state, attempts, \
         next_attempt_at, last_error"
    };
}

/// Columns of `tokens`, in the order [`TokenRow`] reads them.
macro_rules! token_columns {
    () => {
        "id, name, role, hash, created_at, revoked_at"
    };
}

/// Columns of `data_chunks`, in the order [`ChunkRow`] reads them.
macro_rules! chunk_columns {
    () => {
        "kind, key, min_ms, max_ms, received_at, body, origin"
    };
}

/// Columns of `alerts`, in the order [`read_alert`] reads them.
macro_rules! alert_columns {
    () => {
        "fingerprint, starts_at, ends_at, app, name, severity, labels, summary, source, \
         received_at"
    };
}

/// Columns of `signatures`, in the order [`read_signature`] reads them.
macro_rules! signature_columns {
    () => {
        "id, app, signal, direction, baseline, state, body, created_at, updated_at"
    };
}

/// The session of a hash joined with its token, as [`read_session`] reads it; the hash's
/// placeholder follows.
macro_rules! session_select {
    () => {
        "SELECT t.id, t.name, t.role, t.hash, t.created_at, t.revoked_at, s.hash, s.created_at, \
         s.expires_at FROM sessions s JOIN tokens t ON t.id = s.token_id WHERE s.hash = "
    };
}

pub(crate) use {
    alert_columns, chunk_columns, feedback_columns, outbox_columns, release_columns,
    session_select, signature_columns, token_columns, transition_columns, verdict_columns,
};

/// The stored name of a unit enum variant (`ReleaseState::RollingBack` is `rolling_back`).
pub(crate) fn enum_name<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        Ok(other) => Err(StoreError::Corrupt(format!(
            "expected a name for an enum value, got {other}"
        ))),
        Err(error) => Err(StoreError::CorruptJson {
            reason: format!("cannot encode a value: {error}"),
            source: error,
        }),
    }
}

/// Reads back what [`enum_name`] wrote; `what` names the column in the error.
pub(crate) fn parse_enum<T: DeserializeOwned>(name: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("unknown {what} {name:?}")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::CorruptJson {
        reason: format!("cannot encode a value as json: {error}"),
        source: error,
    })
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::CorruptJson {
        reason: format!("invalid {what} json: {error}"),
        source: error,
    })
}

pub(crate) fn kind_name(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Metrics => "metrics",
        DataKind::Logs => "logs",
    }
}

fn parse_kind(name: &str) -> Result<DataKind, StoreError> {
    match name {
        "metrics" => Ok(DataKind::Metrics),
        "logs" => Ok(DataKind::Logs),
        _ => Err(StoreError::Corrupt(format!("unknown data kind {name:?}"))),
    }
}

/// Keep ranges as a JSON array of `[from_ms, to_ms]` pairs, for SQL that unpacks it.
pub(crate) fn keep_ranges_json(keep: &[(i64, i64)]) -> Result<String, StoreError> {
    let pairs: Vec<[i64; 2]> = keep.iter().map(|&(from, to)| [from, to]).collect();
    to_json(&pairs)
}

/// The message of an error and of every error under it, joined by `: `.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// A driver's error as a [`StoreError::Backend`], kept as its source.
pub(crate) fn backend_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        reason: describe(&error),
        source: Box::new(error),
    }
}

/// A driver's error met while migrating, kept as its source.
pub(crate) fn migration_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::MigrationFailed {
        reason: describe(&error),
        source: Box::new(error),
    }
}

/// A driver's error met while opening the store at `url`, kept as its source.
pub(crate) fn open_error(
    url: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Open {
        url: url.to_owned(),
        reason: describe(&error),
        source: Some(Box::new(error)),
    }
}

/// Typed access to the columns of a result row, by position: what both backends' rows offer.
pub(crate) trait Columns {
    fn text(&self, index: usize) -> Result<String, StoreError>;
    fn optional_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    fn integer(&self, index: usize) -> Result<i64, StoreError>;
    fn optional_integer(&self, index: usize) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError>;
}

/// A `releases` row.
#[derive(Debug)]
pub(crate) struct ReleaseRow {
    pub id: String,
    pub spec: String,
    pub state: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deployed: String,
    pub verdict: Option<String>,
    pub reason: String,
}

impl ReleaseRow {
    pub fn read(row: &dyn Columns) -> Result<ReleaseRow, StoreError> {
        Ok(ReleaseRow {
            id: row.text(0)?,
            spec: row.text(1)?,
            state: row.text(2)?,
            created_by: row.text(3)?,
            created_at: row.integer(4)?,
            updated_at: row.integer(5)?,
            deployed: row.text(6)?,
            verdict: row.optional_text(7)?,
            reason: row.text(8)?,
        })
    }

    pub fn from_release(release: &Release) -> Result<ReleaseRow, StoreError> {
        Ok(ReleaseRow {
            id: release.id.clone(),
            spec: to_json(&release.spec)?,
            state: enum_name(&release.state)?,
            created_by: release.created_by.clone(),
            created_at: release.created_at,
            updated_at: release.updated_at,
            deployed: to_json(&release.deployed)?,
            verdict: release.verdict.as_ref().map(enum_name).transpose()?,
            reason: release.reason.clone(),
        })
    }

    pub fn into_release(self) -> Result<Release, StoreError> {
        Ok(Release {
            spec: from_json(&self.spec, "release spec")?,
            state: parse_enum(&self.state, "release state")?,
            deployed: from_json(&self.deployed, "deployed batches")?,
            verdict: self
                .verdict
                .as_deref()
                .map(|name| parse_enum(name, "verdict"))
                .transpose()?,
            id: self.id,
            created_by: self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            reason: self.reason,
        })
    }
}

/// The deployed batches of a release after `batch` is appended, as stored.
pub(crate) fn deployed_with(stored: &str, batch: Option<&Batch>) -> Result<String, StoreError> {
    let Some(batch) = batch else {
        return Ok(stored.to_owned());
    };
    let mut batches: Vec<Batch> = from_json(stored, "deployed batches")?;
    batches.push(batch.clone());
    to_json(&batches)
}

/// A `transitions` row.
#[derive(Debug)]
pub(crate) struct TransitionRow {
    pub release_id: String,
    pub seq: i64,
    pub from_state: String,
    pub to_state: String,
    pub action: String,
    pub actor: String,
    pub at: i64,
    pub reason: String,
}

impl TransitionRow {
    pub fn read(row: &dyn Columns) -> Result<TransitionRow, StoreError> {
        Ok(TransitionRow {
            release_id: row.text(0)?,
            seq: row.integer(1)?,
            from_state: row.text(2)?,
            to_state: row.text(3)?,
            action: row.text(4)?,
            actor: row.text(5)?,
            at: row.integer(6)?,
            reason: row.text(7)?,
        })
    }

    pub fn from_transition(transition: &Transition) -> Result<TransitionRow, StoreError> {
        Ok(TransitionRow {
            release_id: transition.release_id.clone(),
            seq: transition.seq,
            from_state: enum_name(&transition.from)?,
            to_state: enum_name(&transition.to)?,
            action: enum_name(&transition.action)?,
            actor: transition.actor.clone(),
            at: transition.at,
            reason: transition.reason.clone(),
        })
    }

    pub fn into_transition(self) -> Result<Transition, StoreError> {
        Ok(Transition {
            from: parse_enum(&self.from_state, "release state")?,
            to: parse_enum(&self.to_state, "release state")?,
            action: parse_enum(&self.action, "action")?,
            release_id: self.release_id,
            seq: self.seq,
            actor: self.actor,
            at: self.at,
            reason: self.reason,
        })
    }
}

/// A `verdicts` row.
#[derive(Debug)]
pub(crate) struct VerdictRow {
    pub release_id: String,
    pub at: i64,
    pub verdict: String,
    pub findings: String,
    pub explanation: String,
}

impl VerdictRow {
    pub fn read(row: &dyn Columns) -> Result<VerdictRow, StoreError> {
        Ok(VerdictRow {
            release_id: row.text(0)?,
            at: row.integer(1)?,
            verdict: row.text(2)?,
            findings: row.text(3)?,
            explanation: row.text(4)?,
        })
    }

    pub fn from_record(record: &VerdictRecord) -> Result<VerdictRow, StoreError> {
        Ok(VerdictRow {
            release_id: record.release_id.clone(),
            at: record.at,
            verdict: enum_name(&record.verdict)?,
            findings: findings_json(record)?,
            explanation: record.explanation.clone(),
        })
    }

    pub fn into_record(self) -> Result<VerdictRecord, StoreError> {
        let (findings, suppressed) = read_findings_json(&self.findings)?;
        Ok(VerdictRecord {
            verdict: parse_enum(&self.verdict, "verdict")?,
            findings,
            suppressed,
            release_id: self.release_id,
            at: self.at,
            explanation: self.explanation,
        })
    }
}

/// The `findings` column of a verdict that the learned stage set findings aside in: both
/// lists in one object, so that the column keeps its schema.
#[derive(Debug, Serialize, serde::Deserialize)]
struct FindingsWithSuppressed {
    findings: Vec<vigil_core::Finding>,
    suppressed: Vec<vigil_core::Suppressed>,
}

/// A verdict's `findings` column: the findings as a JSON array, as it always was, or, when
/// some were suppressed, an object holding `findings` and `suppressed`.
fn findings_json(record: &VerdictRecord) -> Result<String, StoreError> {
    if record.suppressed.is_empty() {
        return to_json(&record.findings);
    }
    to_json(&FindingsWithSuppressed {
        findings: record.findings.clone(),
        suppressed: record.suppressed.clone(),
    })
}

/// Reads back what [`findings_json`] wrote.
fn read_findings_json(
    text: &str,
) -> Result<(Vec<vigil_core::Finding>, Vec<vigil_core::Suppressed>), StoreError> {
    if text.trim_start().starts_with('{') {
        let both: FindingsWithSuppressed = from_json(text, "findings")?;
        return Ok((both.findings, both.suppressed));
    }
    Ok((from_json(text, "findings")?, Vec::new()))
}

/// A `feedback` row.
#[derive(Debug)]
pub(crate) struct FeedbackRow {
    pub release_id: String,
    pub kind: String,
    pub note: String,
    pub actor: String,
    pub at: i64,
    /// The finding's signal label; empty for the release as a whole.
    pub signal: String,
    pub onset: Option<i64>,
}

impl FeedbackRow {
    pub fn read(row: &dyn Columns) -> Result<FeedbackRow, StoreError> {
        Ok(FeedbackRow {
            release_id: row.text(0)?,
            kind: row.text(1)?,
            note: row.text(2)?,
            actor: row.text(3)?,
            at: row.integer(4)?,
            signal: row.text(5)?,
            onset: row.optional_integer(6)?,
        })
    }

    pub fn from_feedback(feedback: &Feedback) -> Result<FeedbackRow, StoreError> {
        Ok(FeedbackRow {
            release_id: feedback.release_id.clone(),
            kind: enum_name(&feedback.kind)?,
            note: feedback.note.clone(),
            actor: feedback.actor.clone(),
            at: feedback.at,
            signal: feedback.signal.clone().unwrap_or_default(),
            onset: feedback.onset,
        })
    }

    pub fn into_feedback(self) -> Result<Feedback, StoreError> {
        Ok(Feedback {
            kind: parse_enum(&self.kind, "feedback kind")?,
            release_id: self.release_id,
            note: self.note,
            actor: self.actor,
            at: self.at,
            signal: Some(self.signal).filter(|label| !label.is_empty()),
            onset: self.onset,
        })
    }
}

/// An `outbox` row.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub release_id: String,
    pub event: String,
    pub channel: String,
    pub title: String,
    pub text: String,
    pub link: String,
    pub created_at: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: String,
}

impl OutboxRow {
    pub fn read(row: &dyn Columns) -> Result<OutboxRow, StoreError> {
        Ok(OutboxRow {
            id: row.integer(0)?,
            release_id: row.text(1)?,
            event: row.text(2)?,
            channel: row.text(3)?,
            title: row.text(4)?,
            text: row.text(5)?,
            link: row.text(6)?,
            created_at: row.integer(7)?,
            state: row.text(8)?,
            attempts: row.integer(9)?,
            next_attempt_at: row.integer(10)?,
            last_error: row.text(11)?,
        })
    }

    pub fn into_item(self) -> Result<OutboxItem, StoreError> {
        Ok(OutboxItem {
            id: self.id,
            notification: NewNotification {
                release_id: self.release_id,
                event: parse_enum(&self.event, "notification event")?,
                channel: self.channel,
                title: self.title,
                text: self.text,
                link: self.link,
            },
            created_at: self.created_at,
            state: parse_enum(&self.state, "delivery state")?,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error,
        })
    }
}

/// A `tokens` row.
#[derive(Debug)]
pub(crate) struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl TokenRow {
    pub fn read(row: &dyn Columns) -> Result<TokenRow, StoreError> {
        Ok(TokenRow {
            id: row.integer(0)?,
            name: row.text(1)?,
            role: row.text(2)?,
            hash: row.text(3)?,
            created_at: row.integer(4)?,
            revoked_at: row.optional_integer(5)?,
        })
    }

    pub fn into_token(self) -> Result<ApiToken, StoreError> {
        Ok(ApiToken {
            role: parse_enum(&self.role, "role")?,
            id: self.id,
            name: self.name,
            hash: self.hash,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// A `data_chunks` row.
#[derive(Debug)]
pub(crate) struct ChunkRow {
    pub kind: String,
    pub key: Option<String>,
    pub min_ms: i64,
    pub max_ms: i64,
    pub received_at: i64,
    pub body: Vec<u8>,
    pub origin: String,
}

impl ChunkRow {
    pub fn read(row: &dyn Columns) -> Result<ChunkRow, StoreError> {
        Ok(ChunkRow {
            kind: row.text(0)?,
            key: row.optional_text(1)?,
            min_ms: row.integer(2)?,
            max_ms: row.integer(3)?,
            received_at: row.integer(4)?,
            body: row.bytes(5)?,
            origin: row.text(6)?,
        })
    }

    pub fn into_chunk(self) -> Result<DataChunk, StoreError> {
        Ok(DataChunk {
            kind: parse_kind(&self.kind)?,
            key: self.key,
            min_ms: self.min_ms,
            max_ms: self.max_ms,
            received_at: self.received_at,
            body: self.body,
            origin: self.origin,
        })
    }
}

/// Readers of whole values from rows, for queries that select the `*_COLUMNS` lists.
pub(crate) fn read_release(row: &dyn Columns) -> Result<Release, StoreError> {
    ReleaseRow::read(row)?.into_release()
}

pub(crate) fn read_transition(row: &dyn Columns) -> Result<Transition, StoreError> {
    TransitionRow::read(row)?.into_transition()
}

pub(crate) fn read_verdict(row: &dyn Columns) -> Result<VerdictRecord, StoreError> {
    VerdictRow::read(row)?.into_record()
}

pub(crate) fn read_feedback(row: &dyn Columns) -> Result<Feedback, StoreError> {
    FeedbackRow::read(row)?.into_feedback()
}

pub(crate) fn read_outbox_item(row: &dyn Columns) -> Result<OutboxItem, StoreError> {
    OutboxRow::read(row)?.into_item()
}

pub(crate) fn read_token(row: &dyn Columns) -> Result<ApiToken, StoreError> {
    TokenRow::read(row)?.into_token()
}

/// A session joined with its token: the token's columns first (as [`token_columns`]), then the
/// session's `hash`, `created_at` and `expires_at`.
pub(crate) fn read_session(row: &dyn Columns) -> Result<(ApiToken, PageSession), StoreError> {
    let token = read_token(row)?;
    let session = PageSession {
        hash: row.text(6)?,
        token_id: token.id,
        created_at: row.integer(7)?,
        expires_at: row.integer(8)?,
    };
    Ok((token, session))
}

pub(crate) fn read_chunk(row: &dyn Columns) -> Result<DataChunk, StoreError> {
    ChunkRow::read(row)?.into_chunk()
}

/// A chunk's columns ([`chunk_columns`]) followed by its id.
pub(crate) fn read_stored_chunk(row: &dyn Columns) -> Result<StoredChunk, StoreError> {
    Ok(StoredChunk {
        chunk: read_chunk(row)?,
        id: row.integer(7)?,
    })
}

/// `id, origin, kind, bytes`.
pub(crate) fn read_chunk_head(row: &dyn Columns) -> Result<ChunkHead, StoreError> {
    Ok(ChunkHead {
        id: row.integer(0)?,
        origin: row.text(1)?,
        kind: parse_kind(&row.text(2)?)?,
        bytes: row.integer(3)?,
    })
}

pub(crate) fn read_template(row: &dyn Columns) -> Result<LogTemplate, StoreError> {
    Ok(LogTemplate {
        id: row.text(0)?,
        text: row.text(1)?,
        level: row.text(2)?,
    })
}

/// An alert of the `alerts` table, its columns as [`alert_columns`] lists them.
pub(crate) fn read_alert(row: &dyn Columns) -> Result<vigil_core::Alert, StoreError> {
    Ok(vigil_core::Alert {
        fingerprint: row.text(0)?,
        starts_at: row.integer(1)?,
        ends_at: row.optional_integer(2)?,
        app: row.text(3)?,
        name: row.text(4)?,
        severity: row.text(5)?,
        labels: from_json(&row.text(6)?, "alert labels")?,
        summary: row.text(7)?,
        source: row.text(8)?,
        received_at: row.integer(9)?,
    })
}

pub(crate) fn read_app(row: &dyn Columns) -> Result<(String, serde_json::Value), StoreError> {
    let name = row.text(0)?;
    let config = from_json(&row.text(1)?, "app config")?;
    Ok((name, config))
}

/// The `Create` transition that `create_release` records.
pub(crate) fn create_transition(release: &Release) -> Transition {
    Transition {
        release_id: release.id.clone(),
        seq: 1,
        from: release.state,
        to: release.state,
        action: Action::Create,
        actor: release.created_by.clone(),
        at: release.created_at,
        reason: release.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::release::{DeliveryState, ReleaseState};
    use vigil_core::Verdict;

    #[test]
    fn enums_are_stored_by_their_snake_case_names() {
        assert_eq!(
            enum_name(&ReleaseState::RollingBack).unwrap(),
            "rolling_back"
        );
        assert_eq!(
            enum_name(&Verdict::InsufficientData).unwrap(),
            "insufficient_data"
        );
        let state: ReleaseState = parse_enum("rolled_back", "release state").unwrap();
        assert_eq!(state, ReleaseState::RolledBack);
        let error = parse_enum::<ReleaseState>("sideways", "release state").unwrap_err();
        assert_eq!(
            error.to_string(),
            "stored data is corrupt: unknown release state \"sideways\""
        );
    }

    #[test]
    fn delivery_states_match_the_names_the_sql_uses() {
        assert_eq!(enum_name(&DeliveryState::Pending).unwrap(), "pending");
        assert_eq!(enum_name(&DeliveryState::Sent).unwrap(), "sent");
        assert_eq!(enum_name(&DeliveryState::Dead).unwrap(), "dead");
    }

    #[test]
    fn keep_ranges_become_json_pairs() {
        assert_eq!(
            keep_ranges_json(&[(1, 2), (-3, 4)]).unwrap(),
            "[[1,2],[-3,4]]"
        );
        assert_eq!(keep_ranges_json(&[]).unwrap(), "[]");
    }
}

/// What a signature's `body` column holds: everything but the columns of their own.
#[derive(Debug, Serialize, serde::Deserialize)]
struct SignatureBody {
    shape: vigil_core::signature::SignatureShape,
    marks: Vec<vigil_core::signature::SignatureMark>,
    #[serde(default)]
    dropped: Option<vigil_core::signature::SignatureDrop>,
}

/// A signature's `state` and `body` columns.
pub(crate) fn signature_state_and_body(
    signature: &vigil_core::Signature,
) -> Result<(&'static str, String), StoreError> {
    let body = to_json(&SignatureBody {
        shape: signature.shape.clone(),
        marks: signature.marks.clone(),
        dropped: signature.dropped.clone(),
    })?;
    Ok((signature.state.as_str(), body))
}

pub(crate) fn read_signature(row: &dyn Columns) -> Result<vigil_core::Signature, StoreError> {
    let state_text = row.text(5)?;
    let state = vigil_core::signature::SignatureState::parse(&state_text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown signature state {state_text:?}")))?;
    let body: SignatureBody = from_json(&row.text(6)?, "signature body")?;
    Ok(vigil_core::Signature {
        id: row.integer(0)?,
        app: row.text(1)?,
        signal: row.text(2)?,
        direction: row.text(3)?,
        baseline: row.text(4)?,
        shape: body.shape,
        marks: body.marks,
        state,
        dropped: body.dropped,
        created_at: row.integer(7)?,
        updated_at: row.integer(8)?,
    })
}
