//! The changes of more than one statement, written once for both stores: each runs inside
//! the caller's transaction through an [`Executor`], the little each backend has to offer
//! (run a cached statement, read its first row).

use vigil_core::release::{NewNotification, Release, ReleaseState, Transition, VerdictRecord};
use vigil_core::LogTemplate;

use crate::codec::{
    create_transition, deployed_with, enum_name, kind_name, parse_enum, Columns, ReleaseRow,
    TransitionRow, VerdictRow,
};
use crate::{sql, Appended, Change, DataChunk, ImportedRelease, LeaseFence, StoreError};

/// An argument of a statement, of one of the column types the schema uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    OptionalText(Option<&'a str>),
    Integer(i64),
    OptionalInteger(Option<i64>),
    Bytes(&'a [u8]),
}

/// What a backend runs statements with, inside a transaction it began.
pub(crate) trait Executor {
    /// The statement that reads a release's row before changing it (PostgreSQL locks the
    /// row; SQLite's write transaction already holds the whole database).
    const SELECT_RELEASE_TO_CHANGE: &'static str;
    /// The statement that reads the lease a fenced write needs (PostgreSQL locks its row).
    const SELECT_LEASE_TO_FENCE: &'static str;
    /// The statement that reads every model before a promotion or a rollback (PostgreSQL
    /// locks their rows).
    const SELECT_MODELS_TO_CHANGE: &'static str;

    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &'static str, arguments: &[Value<'_>]) -> Result<u64, StoreError>;

    /// Runs a query and reads its first row, if any, with `read`.
    fn first<Read>(
        &mut self,
        sql: &'static str,
        arguments: &[Value<'_>],
        read: fn(&dyn Columns) -> Result<Read, StoreError>,
    ) -> Result<Option<Read>, StoreError>;

    /// Runs a query and reads every row with `read`.
    fn all<Read>(
        &mut self,
        sql: &'static str,
        arguments: &[Value<'_>],
        read: fn(&dyn Columns) -> Result<Read, StoreError>,
    ) -> Result<Vec<Read>, StoreError>;
}

/// Stores an imported release, its templates, chunks and verdict, then applies its outcome
/// (see [`crate::Store::import_release`]).
pub(crate) fn import_release(
    executor: &mut impl Executor,
    imported: &ImportedRelease,
) -> Result<(Release, Vec<Appended>), StoreError> {
    insert_release(executor, &imported.release)?;
    upsert_templates(executor, &imported.release.spec.app, &imported.templates)?;
    let mut appended = Vec::with_capacity(imported.chunks.len());
    for chunk in &imported.chunks {
        appended.push(insert_chunk(executor, chunk)?);
    }
    insert_verdict(executor, &imported.verdict, &[])?;
    let (release, _) = apply_change(executor, &imported.outcome)?;
    Ok((release, appended))
}

/// Inserts a new release and its `create` transition; [`StoreError::ReleaseExists`] when its
/// id is taken.
pub(crate) fn insert_release(
    executor: &mut impl Executor,
    release: &Release,
) -> Result<(), StoreError> {
    let row = ReleaseRow::from_release(release)?;
    let transition = TransitionRow::from_transition(&create_transition(release))?;
    let inserted = executor.execute(
        sql::INSERT_RELEASE,
        &[
            Value::Text(&release.spec.app),
            Value::Text(&row.id),
            Value::Text(&row.spec),
            Value::Text(&row.state),
            Value::Text(&row.created_by),
            Value::Integer(row.created_at),
            Value::Integer(row.updated_at),
            Value::Text(&row.deployed),
            Value::OptionalText(row.verdict.as_deref()),
            Value::Text(&row.reason),
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::ReleaseExists {
            id: release.id.clone(),
        });
    }
    insert_transition(executor, &transition)
}

/// Applies a state change (see [`crate::Store::apply`]).
pub(crate) fn apply_change<Backend: Executor>(
    executor: &mut Backend,
    change: &Change,
) -> Result<(Release, Transition), StoreError> {
    if let Some(lease) = &change.lease {
        check_fence(executor, &change.release_id, lease)?;
    }
    let found = executor.first(
        Backend::SELECT_RELEASE_TO_CHANGE,
        &[Value::Text(&change.release_id)],
        ReleaseRow::read,
    )?;
    let Some(mut row) = found else {
        return Err(StoreError::UnknownRelease {
            id: change.release_id.clone(),
        });
    };
    let actual: ReleaseState = parse_enum(&row.state, "release state")?;
    if actual != change.expected {
        return Err(StoreError::StateConflict {
            id: change.release_id.clone(),
            expected: change.expected,
            actual,
        });
    }
    let seq = executor
        .first(
            sql::NEXT_TRANSITION_SEQ,
            &[Value::Text(&change.release_id)],
            |result| result.integer(0),
        )?
        .unwrap_or(1);
    row.state = enum_name(&change.to)?;
    row.reason = change.reason.clone();
    row.updated_at = change.at;
    row.deployed = deployed_with(&row.deployed, change.deployed.as_ref())?;
    executor.execute(
        sql::UPDATE_RELEASE_STATE,
        &[
            Value::Text(&row.state),
            Value::Text(&row.reason),
            Value::Integer(row.updated_at),
            Value::Text(&row.deployed),
            Value::Text(&row.id),
        ],
    )?;
    let transition = Transition {
        release_id: change.release_id.clone(),
        seq,
        from: actual,
        to: change.to,
        action: change.action,
        actor: change.actor.clone(),
        at: change.at,
        reason: change.reason.clone(),
    };
    insert_transition(executor, &TransitionRow::from_transition(&transition)?)?;
    queue_notifications(executor, &change.notifications, change.at)?;
    Ok((row.into_release()?, transition))
}

/// Appends a verdict and makes it the release's latest, with its notifications (see
/// [`crate::Store::record_verdict`]).
pub(crate) fn insert_verdict(
    executor: &mut impl Executor,
    record: &VerdictRecord,
    notifications: &[NewNotification],
) -> Result<(), StoreError> {
    let row = VerdictRow::from_record(record)?;
    let updated = executor.execute(
        sql::UPDATE_RELEASE_VERDICT,
        &[Value::Text(&row.verdict), Value::Text(&row.release_id)],
    )?;
    if updated == 0 {
        return Err(StoreError::UnknownRelease {
            id: record.release_id.clone(),
        });
    }
    executor.execute(
        sql::INSERT_VERDICT,
        &[
            Value::Text(&row.release_id),
            Value::Integer(row.at),
            Value::Text(&row.verdict),
            Value::Text(&row.findings),
            Value::Text(&row.explanation),
        ],
    )?;
    queue_notifications(executor, notifications, record.at)
}

/// [`StoreError::LeaseLost`] unless the fence's holder holds the release's lease at its
/// epoch, unexpired at its time.
pub(crate) fn check_fence<Backend: Executor>(
    executor: &mut Backend,
    release_id: &str,
    lease: &LeaseFence,
) -> Result<(), StoreError> {
    let held = executor.first(
        Backend::SELECT_LEASE_TO_FENCE,
        &[
            Value::Text(release_id),
            Value::Text(&lease.holder),
            Value::Integer(lease.epoch),
            Value::Integer(lease.now),
        ],
        |row| row.integer(0),
    )?;
    if held.is_none() {
        return Err(StoreError::LeaseLost {
            release_id: release_id.to_owned(),
        });
    }
    Ok(())
}

/// Stores a chunk unless its key is already stored for its kind.
pub(crate) fn insert_chunk(
    executor: &mut impl Executor,
    chunk: &DataChunk,
) -> Result<Appended, StoreError> {
    let inserted = executor.execute(
        sql::INSERT_CHUNK,
        &[
            Value::Text(kind_name(chunk.kind)),
            Value::OptionalText(chunk.key.as_deref()),
            Value::Integer(chunk.min_ms),
            Value::Integer(chunk.max_ms),
            Value::Integer(chunk.received_at),
            Value::Bytes(&chunk.body),
            Value::Text(&chunk.origin),
        ],
    )?;
    if inserted == 0 {
        return Ok(Appended::Duplicate);
    }
    Ok(Appended::Stored)
}

/// Inserts or replaces an app's templates, by id.
pub(crate) fn upsert_templates(
    executor: &mut impl Executor,
    app: &str,
    templates: &[LogTemplate],
) -> Result<(), StoreError> {
    for template in templates {
        executor.execute(
            sql::UPSERT_TEMPLATE,
            &[
                Value::Text(app),
                Value::Text(&template.id),
                Value::Text(&template.text),
                Value::Text(&template.level),
            ],
        )?;
    }
    Ok(())
}

/// Inserts alerts, or replaces what was stored of the same occurrences.
pub(crate) fn upsert_alerts(
    executor: &mut impl Executor,
    alerts: &[vigil_core::Alert],
) -> Result<(), StoreError> {
    for alert in alerts {
        let labels = crate::codec::to_json(&alert.labels)?;
        executor.execute(
            sql::UPSERT_ALERT,
            &[
                Value::Text(&alert.fingerprint),
                Value::Integer(alert.starts_at),
                Value::OptionalInteger(alert.ends_at),
                Value::Text(&alert.app),
                Value::Text(&alert.name),
                Value::Text(&alert.severity),
                Value::Text(&labels),
                Value::Text(&alert.summary),
                Value::Text(&alert.source),
                Value::Integer(alert.received_at),
            ],
        )?;
    }
    Ok(())
}

/// Puts `notifications` in the outbox, due at once (`at`).
fn queue_notifications(
    executor: &mut impl Executor,
    notifications: &[NewNotification],
    at: i64,
) -> Result<(), StoreError> {
    for notification in notifications {
        let event = enum_name(&notification.event)?;
        executor.execute(
            sql::INSERT_NOTIFICATION,
            &[
                Value::Text(&notification.release_id),
                Value::Text(&event),
                Value::Text(&notification.channel),
                Value::Text(&notification.title),
                Value::Text(&notification.text),
                Value::Text(&notification.link),
                Value::Integer(at),
            ],
        )?;
    }
    Ok(())
}

fn insert_transition(executor: &mut impl Executor, row: &TransitionRow) -> Result<(), StoreError> {
    executor.execute(
        sql::INSERT_TRANSITION,
        &[
            Value::Text(&row.release_id),
            Value::Integer(row.seq),
            Value::Text(&row.from_state),
            Value::Text(&row.to_state),
            Value::Text(&row.action),
            Value::Text(&row.actor),
            Value::Integer(row.at),
            Value::Text(&row.reason),
        ],
    )?;
    Ok(())
}
