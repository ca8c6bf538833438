//! The embedded store: one SQLite file in WAL mode.
//!
//! One writer connection behind a mutex serves every thread's changes (SQLite has a single
//! writer anyway); a second connection, read-only, serves the reads, so that reading a
//! release's data window does not hold up ingestion (WAL lets a reader and the writer work at
//! once, and a read sees every change committed before it started). Statements are prepared
//! once and cached, so the ingestion hot path (`append_data`) is one cached `INSERT` and one
//! commit. An in-memory database has the one connection only.
//!
//! Durability: with the default `synchronous = NORMAL` in WAL mode, a committed transaction
//! survives the process being killed (`kill -9`, a panic, an abort), because the commit is in
//! the WAL file as soon as the write returns. A power loss or an operating-system crash can lose
//! the last transactions committed before it (never corrupt the database). Open with
//! `sqlite://path?synchronous=full` to fsync the WAL at every commit and survive those too, at
//! the price of one fsync per change.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, Row, ToSql, TransactionBehavior};
use vigil_core::release::{
    ApiToken, Feedback, NewNotification, OutboxItem, Release, Role, Transition, VerdictRecord,
};
use vigil_core::LogTemplate;

use crate::changes::{self, Executor, Value};
use crate::codec::{
    backend_error, enum_name, keep_ranges_json, kind_name, migration_error, open_error, read_alert,
    read_app, read_chunk_head, read_feedback, read_outbox_item, read_release, read_session,
    read_signature, read_stored_chunk, read_template, read_token, read_transition, read_verdict,
    release_columns, signature_state_and_body, to_json, Columns, FeedbackRow, ReleaseRow,
};
use crate::executions;
use crate::leases;
use crate::models;
use crate::schema;
use crate::sql;
use crate::{
    Appended, Change, ChunkHead, DataChunk, DataKind, ImportedRelease, Lease, LeaseFence,
    ModelPromotion, ModelRollback, NewModel, PageSession, ReleaseFilter, ReplicaRecord, Store,
    StoreError, StoredChunk,
};
use crate::{Execution, NewTask, PollAnswer, StoredAgent};
use vigil_core::agent::{AgentHello, AgentPoll, HostTask};
use vigil_core::learned::{ModelRecord, ModelScores};

/// How long a statement waits for another process holding the database's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many prepared statements the connection keeps: every statement of this file fits.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// How hard SQLite works to keep a commit through a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a killed process; a power loss may drop the last commits.
    Normal,
    /// Survives a power loss too: one fsync per commit.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    File(PathBuf),
    /// A private database that lives as long as the store (tests).
    Memory,
}

/// The SQLite store.
pub struct SqliteStore {
    location: SqliteLocation,
    connection: Mutex<Connection>,
    /// The read-only connection of a database file.
    reader: Option<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        backend_error(error)
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` and brings its schema up to
    /// date.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<SqliteStore, StoreError> {
        let url = path.display().to_string();
        let open_error = |error: rusqlite::Error| open_error(&url, error);
        let connection = Connection::open(path).map_err(open_error)?;
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", synchronous.pragma_value())
            .map_err(open_error)?;
        let mut store = SqliteStore::prepare(SqliteLocation::File(path.to_owned()), connection)?;
        let reader = Connection::open(path).map_err(open_error)?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.pragma_update(None, "query_only", "ON")?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        store.reader = Some(Mutex::new(reader));
        Ok(store)
    }

    /// A fresh database in memory, gone when the store is dropped.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let connection = Connection::open_in_memory()
            .map_err(|error| open_error(crate::SQLITE_MEMORY, error))?;
        SqliteStore::prepare(SqliteLocation::Memory, connection)
    }

    fn prepare(
        location: SqliteLocation,
        connection: Connection,
    ) -> Result<SqliteStore, StoreError> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        let mut connection = connection;
        let version = migrate(&mut connection)?;
        tracing::info!(database = ?location, schema_version = version, "sqlite store open");
        Ok(SqliteStore {
            location,
            connection: Mutex::new(connection),
            reader: None,
        })
    }

    /// The connection; a thread that panicked while holding it left no transaction open
    /// (dropping a transaction rolls it back), so a poisoned lock is still usable.
    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection for reads: the read-only one when there is one.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(PoisonError::into_inner),
            None => self.connection(),
        }
    }
}

/// Applies the migrations the database lacks, each in its own transaction; returns the schema
/// version.
fn migrate(connection: &mut Connection) -> Result<i64, StoreError> {
    loop {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migration_error)?;
        transaction
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)",
                [],
            )
            .map_err(migration_error)?;
        let current: i64 = transaction
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )
            .map_err(migration_error)?;
        schema::check_version(current)?;
        let Some(script) = schema::migration_from(&schema::SQLITE, current) else {
            return Ok(current);
        };
        transaction
            .execute_batch(&script)
            .map_err(migration_error)?;
        transaction
            .execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [current + 1],
            )
            .map_err(migration_error)?;
        transaction.commit().map_err(migration_error)?;
        tracing::info!(
            from_version = current,
            to_version = current + 1,
            "sqlite store migrated"
        );
    }
}

impl Columns for Row<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.get(index)?)
    }

    fn optional_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(index)?)
    }

    fn integer(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }

    fn optional_integer(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(index)?)
    }

    fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.get(index)?)
    }
}

/// Runs a query with `params` and reads every row with `read`.
fn collect<Read>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: fn(&dyn Columns) -> Result<Read, StoreError>,
) -> Result<Vec<Read>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut values = Vec::new();
    while let Some(row) = rows.next()? {
        values.push(read(row)?);
    }
    Ok(values)
}

/// Runs a query with `params` and reads its first row, if any, with `read`.
fn first<Read>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: fn(&dyn Columns) -> Result<Read, StoreError>,
) -> Result<Option<Read>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    rows.next()?.map(|row| read(row)).transpose()
}

fn select_release(connection: &Connection, id: &str) -> Result<Option<ReleaseRow>, StoreError> {
    first(connection, sql::SELECT_RELEASE, [id], |row| {
        ReleaseRow::read(row)
    })
}

impl Store for SqliteStore {
    fn create_release(&self, release: &Release) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        changes::insert_release(&mut SqliteExecutor(&transaction), release)?;
        transaction.commit()?;
        tracing::debug!(release = %release.id, release_state = %release.state, "release created");
        Ok(())
    }

    fn import_release(
        &self,
        imported: &ImportedRelease,
    ) -> Result<(Release, Vec<Appended>), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (release, appended) =
            changes::import_release(&mut SqliteExecutor(&transaction), imported)?;
        transaction.commit()?;
        tracing::debug!(release = %release.id, release_state = %release.state, "release imported");
        Ok((release, appended))
    }

    fn release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        let connection = self.reader();
        select_release(&connection, id)?
            .map(ReleaseRow::into_release)
            .transpose()
    }

    fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError> {
        let states = filter
            .states
            .iter()
            .map(enum_name)
            .collect::<Result<Vec<_>, _>>()?;
        let limit = if filter.limit == 0 {
            -1
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let connection = self.reader();
        collect(
            &connection,
            concat!(
                "SELECT ",
                release_columns!(),
                " FROM releases WHERE (?1 IS NULL OR app = ?1) AND (?2 = 0 OR state IN \
                 (SELECT value FROM json_each(?3))) ORDER BY created_at DESC, id LIMIT ?4"
            ),
            params![filter.app, states.len(), to_json(&states)?, limit],
            read_release,
        )
    }

    fn apply(&self, change: &Change) -> Result<(Release, Transition), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (release, transition) =
            changes::apply_change(&mut SqliteExecutor(&transaction), change)?;
        transaction.commit()?;
        tracing::debug!(
            release = %change.release_id,
            from = %transition.from,
            to = %change.to,
            seq = transition.seq,
            "release changed"
        );
        Ok((release, transition))
    }

    fn transitions(&self, release_id: &str) -> Result<Vec<Transition>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_TRANSITIONS,
            [release_id],
            read_transition,
        )
    }

    fn record_verdict(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
    ) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        changes::insert_verdict(&mut SqliteExecutor(&transaction), record, notifications)?;
        transaction.commit()?;
        Ok(())
    }

    fn verdicts(&self, release_id: &str) -> Result<Vec<VerdictRecord>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_VERDICTS,
            [release_id],
            read_verdict,
        )
    }

    fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
        let row = FeedbackRow::from_feedback(feedback)?;
        let connection = self.connection();
        let inserted = connection
            .prepare_cached(sql::INSERT_FEEDBACK)?
            .execute(params![
                row.release_id,
                row.kind,
                row.note,
                row.actor,
                row.at,
                row.signal,
                row.onset
            ])?;
        if inserted == 0 {
            return Err(StoreError::UnknownRelease {
                id: feedback.release_id.clone(),
            });
        }
        Ok(())
    }

    fn feedback(&self, release_id: &str) -> Result<Vec<Feedback>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_FEEDBACK,
            [release_id],
            read_feedback,
        )
    }

    // ---- models of the learned stage
    fn promoted_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        let connection = self.reader();
        first(
            &connection,
            sql::SELECT_PROMOTED_MODEL,
            [],
            models::read_model,
        )
    }

    fn add_model(&self, model: &NewModel) -> Result<i64, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = models::insert_model(&mut SqliteExecutor(&transaction), model)?;
        transaction.commit()?;
        Ok(version)
    }

    fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_MODELS, [], models::read_model)
    }

    fn model(&self, version: i64) -> Result<Option<ModelRecord>, StoreError> {
        let connection = self.reader();
        first(
            &connection,
            sql::SELECT_MODEL,
            [version],
            models::read_model,
        )
    }

    fn promote_model(&self, version: i64, actor: &str, at: i64) -> Result<ModelRecord, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let promoted =
            models::promote_model(&mut SqliteExecutor(&transaction), version, actor, at)?;
        transaction.commit()?;
        Ok(promoted)
    }

    fn rollback_model(&self, actor: &str, at: i64) -> Result<ModelRollback, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rollback = models::rollback_model(&mut SqliteExecutor(&transaction), actor, at)?;
        transaction.commit()?;
        Ok(rollback)
    }

    fn set_model_scores(
        &self,
        version: i64,
        scores: &[ModelScores],
    ) -> Result<ModelRecord, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let record = models::add_model_scores(&mut SqliteExecutor(&transaction), version, scores)?;
        transaction.commit()?;
        Ok(record)
    }

    fn model_promotions(&self) -> Result<Vec<ModelPromotion>, StoreError> {
        let connection = self.reader();
        let rows = collect(&connection, sql::SELECT_MODELS, [], models::read_model_row)?;
        Ok(models::promotions_of(&rows))
    }

    fn app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_APP_SIGNATURES,
            [app],
            read_signature,
        )
    }

    fn all_app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_ALL_APP_SIGNATURES,
            [app],
            read_signature,
        )
    }

    fn signature(&self, id: i64) -> Result<Option<vigil_core::Signature>, StoreError> {
        let connection = self.reader();
        first(&connection, sql::SELECT_SIGNATURE, [id], read_signature)
    }

    fn save_signature(
        &self,
        signature: &vigil_core::Signature,
    ) -> Result<vigil_core::Signature, StoreError> {
        let (state, body) = signature_state_and_body(signature)?;
        let connection = self.connection();
        if signature.id == 0 {
            return first(
                &connection,
                sql::INSERT_SIGNATURE,
                params![
                    signature.app,
                    signature.signal,
                    signature.direction,
                    signature.baseline,
                    state,
                    body,
                    signature.created_at,
                    signature.updated_at
                ],
                read_signature,
            )?
            .ok_or_else(|| StoreError::Database("signature insert returned no row".to_owned()));
        }
        let updated = connection
            .prepare_cached(sql::UPDATE_SIGNATURE)?
            .execute(params![state, body, signature.updated_at, signature.id])?;
        if updated == 0 {
            return Err(StoreError::UnknownSignature { id: signature.id });
        }
        first(
            &connection,
            sql::SELECT_SIGNATURE,
            [signature.id],
            read_signature,
        )?
        .ok_or(StoreError::UnknownSignature { id: signature.id })
    }

    fn due_notifications(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_DUE_NOTIFICATIONS,
            params![now, limit],
            read_outbox_item,
        )
    }

    fn notification_sent(&self, id: i64, at: i64) -> Result<(), StoreError> {
        let connection = self.connection();
        let updated = connection
            .prepare_cached(sql::NOTIFICATION_SENT)?
            .execute(params![at, id])?;
        if updated == 0 {
            return Err(StoreError::UnknownNotification { id });
        }
        Ok(())
    }

    fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let connection = self.connection();
        let updated = connection
            .prepare_cached(sql::NOTIFICATION_FAILED)?
            .execute(params![error, retry_at, id])?;
        if updated == 0 {
            return Err(StoreError::UnknownNotification { id });
        }
        if retry_at.is_none() {
            tracing::warn!(notification = id, error, "notification given up");
        }
        Ok(())
    }

    fn notifications(&self, release_id: &str) -> Result<Vec<OutboxItem>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_NOTIFICATIONS,
            [release_id],
            read_outbox_item,
        )
    }

    fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: i64,
    ) -> Result<ApiToken, StoreError> {
        let connection = self.connection();
        first(
            &connection,
            sql::INSERT_TOKEN,
            params![name, enum_name(&role)?, hash, at],
            read_token,
        )?
        .ok_or_else(|| StoreError::Database("token insert returned no row".to_owned()))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let connection = self.reader();
        first(&connection, sql::SELECT_TOKEN_BY_HASH, [hash], read_token)
    }

    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_TOKENS, [], read_token)
    }

    fn revoke_token(&self, id: i64, at: i64) -> Result<ApiToken, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(token) = first(&transaction, sql::REVOKE_TOKEN, params![at, id], read_token)?
        else {
            return Err(StoreError::UnknownToken { id });
        };
        let ended = transaction
            .prepare_cached(sql::DELETE_TOKEN_SESSIONS)?
            .execute([id])?;
        transaction.commit()?;
        tracing::info!(token = id, sessions_ended = ended, "token revoked");
        Ok(token)
    }

    fn create_session(&self, session: &PageSession) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction
            .prepare_cached(sql::DELETE_EXPIRED_SESSIONS)?
            .execute([session.created_at])?;
        transaction
            .prepare_cached(sql::INSERT_SESSION)?
            .execute(params![
                session.hash,
                session.token_id,
                session.created_at,
                session.expires_at
            ])?;
        transaction.commit()?;
        Ok(())
    }

    fn session(&self, hash: &str) -> Result<Option<(ApiToken, PageSession)>, StoreError> {
        let connection = self.reader();
        first(&connection, sql::SELECT_SESSION, [hash], read_session)
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        let connection = self.connection();
        let ended = connection
            .prepare_cached(sql::DELETE_SESSION)?
            .execute([hash])?;
        Ok(ended > 0)
    }

    fn append_data(&self, chunk: &DataChunk) -> Result<Appended, StoreError> {
        changes::insert_chunk(&mut SqliteExecutor(&self.connection()), chunk)
    }

    fn prune_data(&self, before_ms: i64, keep: &[(i64, i64)]) -> Result<usize, StoreError> {
        let keep_json = keep_ranges_json(keep)?;
        let connection = self.connection();
        let deleted = connection
            .prepare_cached(
                "DELETE FROM data_chunks WHERE kind IN ('metrics', 'logs') AND max_ms < ?1 \
                 AND NOT EXISTS (SELECT 1 FROM json_each(?2) AS keep \
                 WHERE data_chunks.min_ms <= json_extract(keep.value, '$[1]') \
                 AND data_chunks.max_ms >= json_extract(keep.value, '$[0]'))",
            )?
            .execute(params![before_ms, keep_json])?;
        tracing::debug!(before_ms, deleted, "data pruned");
        Ok(deleted)
    }

    fn last_chunk_id(&self) -> Result<i64, StoreError> {
        let connection = self.reader();
        let last = first(&connection, sql::LAST_CHUNK_ID, [], |row| row.integer(0))?;
        Ok(last.unwrap_or(0))
    }

    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_CHUNK_HEADS_AFTER,
            params![after_id, limit],
            read_chunk_head,
        )
    }

    fn chunks_with_ids(
        &self,
        ids: &[i64],
        own_origin: &str,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids_json = to_json(&ids)?;
        let connection = self.reader();
        collect(
            &connection,
            "SELECT kind, key, min_ms, max_ms, received_at, \
             CASE WHEN origin = ?2 THEN X'' ELSE body END, origin, id FROM data_chunks \
             WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
            params![ids_json, own_origin],
            read_stored_chunk,
        )
    }

    fn stored_chunks_between(
        &self,
        kind: DataKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_STORED_CHUNKS_BETWEEN,
            params![kind_name(kind), from_ms, to_ms],
            read_stored_chunk,
        )
    }

    fn upsert_templates(&self, app: &str, templates: &[LogTemplate]) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        changes::upsert_templates(&mut SqliteExecutor(&transaction), app, templates)?;
        transaction.commit()?;
        Ok(())
    }

    fn templates(&self, app: &str) -> Result<Vec<LogTemplate>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_TEMPLATES, [app], read_template)
    }

    fn put_app(&self, app: &str, config: &serde_json::Value) -> Result<(), StoreError> {
        let connection = self.connection();
        connection
            .prepare_cached(sql::UPSERT_APP)?
            .execute(params![app, to_json(config)?])?;
        Ok(())
    }

    fn apps(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_APPS, [], read_app)
    }

    fn put_alerts(&self, alerts: &[vigil_core::Alert]) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        changes::upsert_alerts(&mut SqliteExecutor(&transaction), alerts)?;
        transaction.commit()?;
        Ok(())
    }

    fn alerts(&self, app: &str, from: i64, to: i64) -> Result<Vec<vigil_core::Alert>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_ALERTS_OF_APP,
            params![app, from, to],
            read_alert,
        )
    }

    fn prune_alerts(&self, before: i64, stale_seconds: i64) -> Result<usize, StoreError> {
        let connection = self.connection();
        let deleted = connection
            .prepare_cached(sql::DELETE_ALERTS_BEFORE)?
            .execute(params![stale_seconds, before])?;
        tracing::debug!(at = before, deleted, "alerts pruned");
        Ok(deleted)
    }

    // ---- replicas and leases
    fn replica_seen(
        &self,
        id: &str,
        address: &str,
        started_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let connection = self.connection();
        connection
            .prepare_cached(sql::UPSERT_REPLICA)?
            .execute(params![id, address, started_at, now])?;
        Ok(())
    }

    fn replica_gone(&self, id: &str) -> Result<(), StoreError> {
        let connection = self.connection();
        connection
            .prepare_cached(sql::DELETE_REPLICA)?
            .execute([id])?;
        Ok(())
    }

    fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_REPLICAS, [], leases::read_replica)
    }

    fn claim_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
        wanted: &[String],
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Vec<String> = collect(
            &transaction,
            sql::SELECT_HELD_LEASES,
            params![holder, now],
            leases::read_lease,
        )?
        .into_iter()
        .map(|lease| lease.release_id)
        .collect();
        leases::claim_leases(
            &mut SqliteExecutor(&transaction),
            holder,
            now,
            expires_at,
            wanted,
            max,
            &held,
        )?;
        let holding = collect(
            &transaction,
            sql::SELECT_HELD_LEASES,
            params![holder, now],
            leases::read_lease,
        )?;
        transaction.commit()?;
        Ok(holding)
    }

    fn renew_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction
            .prepare_cached(sql::RENEW_LEASES)?
            .execute(params![expires_at, holder, now])?;
        let holding = collect(
            &transaction,
            sql::SELECT_HELD_LEASES,
            params![holder, now],
            leases::read_lease,
        )?;
        transaction.commit()?;
        Ok(holding)
    }

    fn drop_lease(&self, holder: &str, release_id: &str) -> Result<bool, StoreError> {
        let connection = self.connection();
        let dropped = connection
            .prepare_cached(sql::DROP_LEASE)?
            .execute([holder, release_id])?;
        Ok(dropped > 0)
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_LEASES, [], leases::read_lease)
    }

    fn record_verdict_fenced(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
        lease: &LeaseFence,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut executor = SqliteExecutor(&transaction);
        changes::check_fence(&mut executor, &record.release_id, lease)?;
        changes::insert_verdict(&mut executor, record, notifications)?;
        transaction.commit()?;
        Ok(())
    }

    // ---- Vigil's executor
    fn register_agent(&self, hello: &AgentHello, at: i64) -> Result<StoredAgent, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let agent = executions::register_agent(&mut SqliteExecutor(&transaction), hello, at)?;
        transaction.commit()?;
        Ok(agent)
    }

    fn agent(&self, host: &str) -> Result<Option<StoredAgent>, StoreError> {
        let connection = self.reader();
        first(
            &connection,
            sql::SELECT_AGENT,
            [host],
            executions::read_agent,
        )
    }

    fn agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        let connection = self.reader();
        collect(&connection, sql::SELECT_AGENTS, [], executions::read_agent)
    }

    fn create_execution(&self, release: &Release, execution: &Execution) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        changes::insert_release(&mut SqliteExecutor(&transaction), release)?;
        executions::insert_execution(&mut SqliteExecutor(&transaction), &release.id, execution)?;
        transaction.commit()?;
        Ok(())
    }

    fn execution(&self, release_id: &str) -> Result<Option<Execution>, StoreError> {
        let connection = self.reader();
        first(
            &connection,
            sql::SELECT_EXECUTION,
            [release_id],
            executions::read_execution,
        )
    }

    fn create_task(&self, task: &NewTask) -> Result<HostTask, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored = executions::create_task(&mut SqliteExecutor(&transaction), task)?;
        transaction.commit()?;
        Ok(stored)
    }

    fn release_tasks(&self, release_id: &str) -> Result<Vec<HostTask>, StoreError> {
        let connection = self.reader();
        collect(
            &connection,
            sql::SELECT_RELEASE_TASKS,
            [release_id],
            executions::read_task,
        )
    }

    fn agent_poll(
        &self,
        host: &str,
        poll: &AgentPoll,
        at: i64,
    ) -> Result<Option<PollAnswer>, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let answer = executions::agent_poll(&mut SqliteExecutor(&transaction), host, poll, at)?;
        transaction.commit()?;
        Ok(answer)
    }

    fn claim_notifications(
        &self,
        claimer: &str,
        now: i64,
        claim_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let connection = self.connection();
        let mut claimed = collect(
            &connection,
            sql::CLAIM_NOTIFICATIONS,
            params![now, limit, claimer, claim_until],
            read_outbox_item,
        )?;
        claimed.sort_by_key(|item| item.id);
        Ok(claimed)
    }
}

/// The statements of a change, run on a connection inside the transaction its caller began.
struct SqliteExecutor<'connection>(&'connection Connection);

impl Executor for SqliteExecutor<'_> {
    const SELECT_RELEASE_TO_CHANGE: &'static str = sql::SELECT_RELEASE;
    const SELECT_LEASE_TO_FENCE: &'static str = sql::SELECT_FENCE;
    const SELECT_MODELS_TO_CHANGE: &'static str = sql::SELECT_MODELS;

    fn execute(&mut self, sql: &'static str, arguments: &[Value<'_>]) -> Result<u64, StoreError> {
        let changed = self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(arguments))?;
        Ok(changed as u64)
    }

    fn first<Read>(
        &mut self,
        sql: &'static str,
        arguments: &[Value<'_>],
        read: fn(&dyn Columns) -> Result<Read, StoreError>,
    ) -> Result<Option<Read>, StoreError> {
        first(self.0, sql, rusqlite::params_from_iter(arguments), read)
    }

    fn all<Read>(
        &mut self,
        sql: &'static str,
        arguments: &[Value<'_>],
        read: fn(&dyn Columns) -> Result<Read, StoreError>,
    ) -> Result<Vec<Read>, StoreError> {
        collect(self.0, sql, rusqlite::params_from_iter(arguments), read)
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let output = match *self {
            Value::Text(text) | Value::OptionalText(Some(text)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))
            }
            Value::OptionalText(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(number) | Value::OptionalInteger(Some(number)) => {
                ToSqlOutput::Borrowed(ValueRef::Integer(number))
            }
            Value::OptionalInteger(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        };
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_of_the_first_version_keeps_its_tokens_when_migrated() {
        let connection = Connection::open_in_memory().unwrap();
        let first_version = schema::migration_from(&schema::SQLITE, 0).unwrap();
        connection
            .execute_batch(&format!(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY); \
                 INSERT INTO schema_version (version) VALUES (1); {first_version} \
                 INSERT INTO tokens (name, role, hash, created_at) \
                 VALUES ('alice', 'operator', 'aa11', 1000);"
            ))
            .unwrap();
        let store = SqliteStore::prepare(SqliteLocation::Memory, connection).unwrap();
        let token = store.token_by_hash("aa11").unwrap().unwrap();
        assert_eq!(token.name, "alice");
        assert_eq!(token.revoked_at, None);
        let session = PageSession {
            hash: "s1".to_owned(),
            token_id: token.id,
            created_at: 1_100,
            expires_at: 2_000,
        };
        store.create_session(&session).unwrap();
        assert_eq!(
            store.revoke_token(token.id, 1_200).unwrap().revoked_at,
            Some(1_200)
        );
        assert_eq!(store.session("s1").unwrap(), None);
    }
}
