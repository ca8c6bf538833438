//! The shared store: PostgreSQL, for several Vigil replicas.
//!
//! A pool of connections (at most [`MAX_CONNECTIONS`], opened as calls need them), each with its
//! prepared statements cached: a call takes a connection for its whole length, so a
//! transaction stays on one connection, and calls from several threads run at once. A
//! connection found broken is closed and the next call opens another (the call that met the
//! break fails: a write is never silently retried, since its commit may have happened). Every
//! change of more than one statement runs in a transaction; `apply` locks the release row (`FOR UPDATE`), so replicas
//! racing on the same release see a clean `StateConflict`. Migrations hold an advisory lock, so
//! replicas starting together migrate once.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};
use vigil_core::release::{
    ApiToken, Feedback, NewNotification, OutboxItem, Release, Role, Transition, VerdictRecord,
};
use vigil_core::LogTemplate;

use crate::changes::{self, Executor, Value};
use crate::codec::{
    backend_error, enum_name, kind_name, migration_error, open_error, read_alert, read_app,
    read_chunk_head, read_feedback, read_outbox_item, read_release, read_session, read_signature,
    read_stored_chunk, read_template, read_token, read_transition, read_verdict, release_columns,
    signature_state_and_body, to_json, Columns, FeedbackRow,
};
use crate::executions;
use crate::leases;
use crate::models;
use crate::schema;
use crate::sql;
use crate::{
    redact_password, Appended, Change, ChunkHead, DataChunk, DataKind, ImportedRelease, Lease,
    LeaseFence, ModelPromotion, ModelRollback, NewModel, PageSession, ReleaseFilter, ReplicaRecord,
    Store, StoreError, StoredChunk,
};
use crate::{Execution, NewTask, PollAnswer, StoredAgent};
use vigil_core::agent::{AgentHello, AgentPoll, HostTask};
use vigil_core::learned::{ModelRecord, ModelScores};

/// How long to wait for the server when the URL does not say (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections one store opens to the server: the API's blocking threads, the guard, the
/// puller and the notifier share them.
pub const MAX_CONNECTIONS: usize = 8;

/// How long a call waits for a free connection when all of them are busy.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// The advisory lock key that serialises migrations ("vigil" in ASCII).
const MIGRATION_LOCK: i64 = 0x76_69_67_69_6c;

/// The connection and the statements prepared on it.
struct Session {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresStore")
            .field("target", &self.pool.target)
            .finish_non_exhaustive()
    }
}

/// The connections of a store: the idle ones, and how many are open in all (idle or taken).
struct Pool {
    /// The URL with its password hidden, for messages.
    target: String,
    config: postgres::Config,
    state: Mutex<PoolState>,
    /// Signalled whenever a connection is given back or closed.
    given_back: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

/// A connection taken from the pool for one call; given back when dropped.
struct PooledSession<'pool> {
    pool: &'pool Pool,
    session: Option<Session>,
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        // Only `Drop` takes the session out.
        self.session.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session);
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> Result<Session, StoreError> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|error| open_error(&self.target, error))?;
        Ok(Session {
            client,
            statements: HashMap::new(),
        })
    }

    /// An idle connection that is still open, or a new one while fewer than
    /// [`MAX_CONNECTIONS`] are open, or else the first one given back.
    fn take(&self) -> Result<PooledSession<'_>, StoreError> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                if session.client.is_closed() {
                    state.open -= 1;
                    tracing::warn!(database = %self.target, "postgres connection lost, closing it");
                    continue;
                }
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(session) => Ok(PooledSession {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(error) => {
                        self.lock().open -= 1;
                        self.given_back.notify_one();
                        Err(error)
                    }
                };
            }
            let (next_state, waited) = self
                .given_back
                .wait_timeout(state, CHECKOUT_TIMEOUT)
                .unwrap_or_else(PoisonError::into_inner);
            state = next_state;
            if waited.timed_out() && state.idle.is_empty() && state.open >= MAX_CONNECTIONS {
                return Err(StoreError::Database(format!(
                    "all {MAX_CONNECTIONS} connections to {} stayed busy for {} s",
                    self.target,
                    CHECKOUT_TIMEOUT.as_secs()
                )));
            }
        }
    }

    /// Keeps a connection for the next call, or closes it when it broke.
    fn give_back(&self, session: Session) {
        let mut state = self.lock();
        if session.client.is_closed() {
            state.open -= 1;
            drop(state);
            drop(session);
        } else {
            state.idle.push(session);
            drop(state);
        }
        self.given_back.notify_one();
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        backend_error(error)
    }
}

impl Columns for Row {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn optional_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn integer(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn optional_integer(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(index)?)
    }
}

impl PostgresStore {
    /// Connects to the server a `postgres://` URL names (also a `host=... dbname=...`
    /// connection string) and brings the schema up to date.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let target = redact_password(url);
        let mut config: postgres::Config =
            url.parse().map_err(|error| open_error(&target, error))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("vigil");
        }
        let pool = Pool {
            target,
            config,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 1,
            }),
            given_back: Condvar::new(),
        };
        let mut first = pool.connect()?;
        let version = migrate(&mut first.client)?;
        tracing::info!(
            database = %pool.target,
            schema_version = version,
            max_connections = MAX_CONNECTIONS,
            "postgres store open"
        );
        pool.give_back(first);
        Ok(PostgresStore { pool })
    }

    /// A connection of the pool for one call.
    fn connection(&self) -> Result<PooledSession<'_>, StoreError> {
        self.pool.take()
    }
}

/// The statement for `sql`, prepared on this connection once and then taken from `statements`.
fn prepared(
    statements: &mut HashMap<&'static str, Statement>,
    client: &mut impl GenericClient,
    sql: &'static str,
) -> Result<Statement, StoreError> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    statements.insert(sql, statement.clone());
    Ok(statement)
}

/// Applies the migrations the database lacks, each in its own transaction under an advisory
/// lock; returns the schema version.
fn migrate(client: &mut Client) -> Result<i64, StoreError> {
    loop {
        let mut transaction = client.transaction().map_err(migration_error)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(migration_error)?;
        transaction
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")
            .map_err(migration_error)?;
        let current: i64 = transaction
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .map_err(migration_error)?
            .get(0);
        schema::check_version(current)?;
        let Some(script) = schema::migration_from(&schema::POSTGRES, current) else {
            return Ok(current);
        };
        transaction
            .batch_execute(&script)
            .map_err(migration_error)?;
        transaction
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(current + 1)],
            )
            .map_err(migration_error)?;
        transaction.commit().map_err(migration_error)?;
        tracing::info!(
            from_version = current,
            to_version = current + 1,
            "postgres store migrated"
        );
    }
}

/// Runs a cached statement and reads every row with `read`.
fn collect<Read>(
    session: &mut Session,
    sql: &'static str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    read: fn(&dyn Columns) -> Result<Read, StoreError>,
) -> Result<Vec<Read>, StoreError> {
    let statement = prepared(&mut session.statements, &mut session.client, sql)?;
    session
        .client
        .query(&statement, params)?
        .iter()
        .map(|row| read(row))
        .collect()
}

/// Runs a cached statement and returns how many rows it changed.
fn execute(
    session: &mut Session,
    sql: &'static str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = prepared(&mut session.statements, &mut session.client, sql)?;
    Ok(session.client.execute(&statement, params)?)
}

/// The statements of a change, run on a connection or a transaction of it, each prepared once
/// per connection.
struct PostgresExecutor<'session, Client: GenericClient> {
    statements: &'session mut HashMap<&'static str, Statement>,
    client: &'session mut Client,
}

impl<Client: GenericClient> Executor for PostgresExecutor<'_, Client> {
    const SELECT_RELEASE_TO_CHANGE: &'static str = sql::SELECT_RELEASE_FOR_UPDATE;
    const SELECT_LEASE_TO_FENCE: &'static str = sql::SELECT_FENCE_FOR_UPDATE;
    const SELECT_MODELS_TO_CHANGE: &'static str = sql::SELECT_MODELS_FOR_UPDATE;

    fn execute(&mut self, sql: &'static str, arguments: &[Value<'_>]) -> Result<u64, StoreError> {
        let statement = prepared(self.statements, self.client, sql)?;
        Ok(self
            .client
            .execute(&statement, &postgres_arguments(arguments))?)
    }

    fn first<Read>(
        &mut self,
        sql: &'static str,
        arguments: &[Value<'_>],
        read: fn(&dyn Columns) -> Result<Read, StoreError>,
    ) -> Result<Option<Read>, StoreError> {
        let statement = prepared(self.statements, self.client, sql)?;
        self.client
            .query_opt(&statement, &postgres_arguments(arguments))?
            .map(|row| read(&row))
            .transpose()
    }
    fn all<Read>(
        &mut self,
        sql: &'static str,
        arguments: &[Value<'_>],
        read: fn(&dyn Columns) -> Result<Read, StoreError>,
    ) -> Result<Vec<Read>, StoreError> {
        let statement = prepared(self.statements, self.client, sql)?;
        self.client
            .query(&statement, &postgres_arguments(arguments))?
            .iter()
            .map(|row| read(row))
            .collect()
    }
}

/// The arguments as the driver takes them.
fn postgres_arguments<'arguments>(
    arguments: &'arguments [Value<'_>],
) -> Vec<&'arguments (dyn ToSql + Sync)> {
    arguments
        .iter()
        .map(|argument| -> &(dyn ToSql + Sync) {
            match argument {
                Value::Text(text) => text,
                Value::OptionalText(text) => text,
                Value::Integer(number) => number,
                Value::OptionalInteger(number) => number,
                Value::Bytes(bytes) => bytes,
            }
        })
        .collect()
}

impl Store for PostgresStore {
    fn create_release(&self, release: &Release) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        changes::insert_release(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            release,
        )?;
        transaction.commit()?;
        tracing::debug!(release = %release.id, release_state = %release.state, "release created");
        Ok(())
    }

    fn import_release(
        &self,
        imported: &ImportedRelease,
    ) -> Result<(Release, Vec<Appended>), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let (release, appended) = changes::import_release(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            imported,
        )?;
        transaction.commit()?;
        tracing::debug!(release = %release.id, release_state = %release.state, "release imported");
        Ok((release, appended))
    }

    fn release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(&mut session, sql::SELECT_RELEASE, &[&id], read_release)?;
        Ok(found.into_iter().next())
    }

    fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError> {
        let states = filter
            .states
            .iter()
            .map(enum_name)
            .collect::<Result<Vec<_>, _>>()?;
        let limit = match filter.limit {
            0 => None,
            limit => Some(i64::try_from(limit).unwrap_or(i64::MAX)),
        };
        let mut session = self.connection()?;
        collect(
            &mut session,
            concat!(
                "SELECT ",
                release_columns!(),
                " FROM releases WHERE ($1::TEXT IS NULL OR app = $1) \
                 AND (cardinality($2::TEXT[]) = 0 OR state = ANY($2)) \
                 ORDER BY created_at DESC, id LIMIT $3"
            ),
            &[&filter.app, &states, &limit],
            read_release,
        )
    }

    fn apply(&self, change: &Change) -> Result<(Release, Transition), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let (release, transition) = changes::apply_change(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            change,
        )?;
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
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_TRANSITIONS,
            &[&release_id],
            read_transition,
        )
    }

    fn record_verdict(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
    ) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        changes::insert_verdict(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            record,
            notifications,
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn verdicts(&self, release_id: &str) -> Result<Vec<VerdictRecord>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_VERDICTS,
            &[&release_id],
            read_verdict,
        )
    }

    fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
        let row = FeedbackRow::from_feedback(feedback)?;
        let mut session = self.connection()?;
        let inserted = execute(
            &mut session,
            sql::INSERT_FEEDBACK,
            &[
                &row.release_id,
                &row.kind,
                &row.note,
                &row.actor,
                &row.at,
                &row.signal,
                &row.onset,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::UnknownRelease {
                id: feedback.release_id.clone(),
            });
        }
        Ok(())
    }

    fn feedback(&self, release_id: &str) -> Result<Vec<Feedback>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_FEEDBACK,
            &[&release_id],
            read_feedback,
        )
    }

    // ---- models of the learned stage
    fn promoted_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(
            &mut session,
            sql::SELECT_PROMOTED_MODEL,
            &[],
            models::read_model,
        )?;
        Ok(found.into_iter().next())
    }

    fn add_model(&self, model: &NewModel) -> Result<i64, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let version = models::insert_model(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            model,
        )?;
        transaction.commit()?;
        Ok(version)
    }

    fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let mut session = self.connection()?;
        collect(&mut session, sql::SELECT_MODELS, &[], models::read_model)
    }

    fn model(&self, version: i64) -> Result<Option<ModelRecord>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(
            &mut session,
            sql::SELECT_MODEL,
            &[&version],
            models::read_model,
        )?;
        Ok(found.into_iter().next())
    }

    fn promote_model(&self, version: i64, actor: &str, at: i64) -> Result<ModelRecord, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let promoted = models::promote_model(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            version,
            actor,
            at,
        )?;
        transaction.commit()?;
        Ok(promoted)
    }

    fn rollback_model(&self, actor: &str, at: i64) -> Result<ModelRollback, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let rollback = models::rollback_model(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            actor,
            at,
        )?;
        transaction.commit()?;
        Ok(rollback)
    }

    fn set_model_scores(
        &self,
        version: i64,
        scores: &[ModelScores],
    ) -> Result<ModelRecord, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let record = models::add_model_scores(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            version,
            scores,
        )?;
        transaction.commit()?;
        Ok(record)
    }

    fn model_promotions(&self) -> Result<Vec<ModelPromotion>, StoreError> {
        let mut session = self.connection()?;
        let rows = collect(
            &mut session,
            sql::SELECT_MODELS,
            &[],
            models::read_model_row,
        )?;
        Ok(models::promotions_of(&rows))
    }

    fn app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_APP_SIGNATURES,
            &[&app],
            read_signature,
        )
    }

    fn all_app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_ALL_APP_SIGNATURES,
            &[&app],
            read_signature,
        )
    }

    fn signature(&self, id: i64) -> Result<Option<vigil_core::Signature>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(&mut session, sql::SELECT_SIGNATURE, &[&id], read_signature)?;
        Ok(found.into_iter().next())
    }

    fn save_signature(
        &self,
        signature: &vigil_core::Signature,
    ) -> Result<vigil_core::Signature, StoreError> {
        let (state, body) = signature_state_and_body(signature)?;
        let mut session = self.connection()?;
        if signature.id == 0 {
            let inserted = collect(
                &mut session,
                sql::INSERT_SIGNATURE,
                &[
                    &signature.app,
                    &signature.signal,
                    &signature.direction,
                    &signature.baseline,
                    &state,
                    &body,
                    &signature.created_at,
                    &signature.updated_at,
                ],
                read_signature,
            )?;
            return inserted.into_iter().next().ok_or_else(|| {
                StoreError::Database("signature insert returned no row".to_owned())
            });
        }
        let updated = execute(
            &mut session,
            sql::UPDATE_SIGNATURE,
            &[&state, &body, &signature.updated_at, &signature.id],
        )?;
        if updated == 0 {
            return Err(StoreError::UnknownSignature { id: signature.id });
        }
        let found = collect(
            &mut session,
            sql::SELECT_SIGNATURE,
            &[&signature.id],
            read_signature,
        )?;
        found
            .into_iter()
            .next()
            .ok_or(StoreError::UnknownSignature { id: signature.id })
    }

    fn due_notifications(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_DUE_NOTIFICATIONS,
            &[&now, &limit],
            read_outbox_item,
        )
    }

    fn notification_sent(&self, id: i64, at: i64) -> Result<(), StoreError> {
        let mut session = self.connection()?;
        let updated = execute(&mut session, sql::NOTIFICATION_SENT, &[&at, &id])?;
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
        let mut session = self.connection()?;
        let updated = execute(
            &mut session,
            sql::NOTIFICATION_FAILED,
            &[&error, &retry_at, &id],
        )?;
        if updated == 0 {
            return Err(StoreError::UnknownNotification { id });
        }
        if retry_at.is_none() {
            tracing::warn!(notification = id, error, "notification given up");
        }
        Ok(())
    }

    fn notifications(&self, release_id: &str) -> Result<Vec<OutboxItem>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_NOTIFICATIONS,
            &[&release_id],
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
        let mut session = self.connection()?;
        let created = collect(
            &mut session,
            sql::INSERT_TOKEN,
            &[&name, &enum_name(&role)?, &hash, &at],
            read_token,
        )?;
        created
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Database("token insert returned no row".to_owned()))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(
            &mut session,
            sql::SELECT_TOKEN_BY_HASH,
            &[&hash],
            read_token,
        )?;
        Ok(found.into_iter().next())
    }

    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let mut session = self.connection()?;
        collect(&mut session, sql::SELECT_TOKENS, &[], read_token)
    }

    fn revoke_token(&self, id: i64, at: i64) -> Result<ApiToken, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let revoke = prepared(statements, &mut transaction, sql::REVOKE_TOKEN)?;
        let Some(row) = transaction.query_opt(&revoke, &[&at, &id])? else {
            return Err(StoreError::UnknownToken { id });
        };
        let token = read_token(&row)?;
        let end_sessions = prepared(statements, &mut transaction, sql::DELETE_TOKEN_SESSIONS)?;
        let ended = transaction.execute(&end_sessions, &[&id])?;
        transaction.commit()?;
        tracing::info!(token = id, sessions_ended = ended, "token revoked");
        Ok(token)
    }

    fn create_session(&self, page_session: &PageSession) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let expire = prepared(statements, &mut transaction, sql::DELETE_EXPIRED_SESSIONS)?;
        transaction.execute(&expire, &[&page_session.created_at])?;
        let insert = prepared(statements, &mut transaction, sql::INSERT_SESSION)?;
        transaction.execute(
            &insert,
            &[
                &page_session.hash,
                &page_session.token_id,
                &page_session.created_at,
                &page_session.expires_at,
            ],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn session(&self, hash: &str) -> Result<Option<(ApiToken, PageSession)>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(&mut session, sql::SELECT_SESSION, &[&hash], read_session)?;
        Ok(found.into_iter().next())
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        let mut session = self.connection()?;
        let ended = execute(&mut session, sql::DELETE_SESSION, &[&hash])?;
        Ok(ended > 0)
    }

    fn append_data(&self, chunk: &DataChunk) -> Result<Appended, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        // One statement on the connection, no transaction around it: the ingestion hot path.
        changes::insert_chunk(&mut PostgresExecutor { statements, client }, chunk)
    }

    fn prune_data(&self, before_ms: i64, keep: &[(i64, i64)]) -> Result<usize, StoreError> {
        let keep_from: Vec<i64> = keep.iter().map(|&(from, _)| from).collect();
        let keep_to: Vec<i64> = keep.iter().map(|&(_, to)| to).collect();
        let mut session = self.connection()?;
        let deleted = execute(
            &mut session,
            "DELETE FROM data_chunks WHERE kind IN ('metrics', 'logs') AND max_ms < $1 \
             AND NOT EXISTS (SELECT 1 FROM unnest($2::BIGINT[], $3::BIGINT[]) \
             AS keep (from_ms, to_ms) \
             WHERE data_chunks.min_ms <= keep.to_ms AND data_chunks.max_ms >= keep.from_ms)",
            &[&before_ms, &keep_from, &keep_to],
        )?;
        tracing::debug!(before_ms, deleted, "data pruned");
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn last_chunk_id(&self) -> Result<i64, StoreError> {
        let mut session = self.connection()?;
        let last = collect(&mut session, sql::LAST_CHUNK_ID, &[], |row| row.integer(0))?;
        Ok(last.into_iter().next().unwrap_or(0))
    }

    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_CHUNK_HEADS_AFTER,
            &[&after_id, &limit],
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
        let mut session = self.connection()?;
        collect(
            &mut session,
            "SELECT kind, key, min_ms, max_ms, received_at, \
             CASE WHEN origin = $2 THEN ''::BYTEA ELSE body END, origin, id FROM data_chunks \
             WHERE id = ANY($1::BIGINT[]) ORDER BY id",
            &[&ids, &own_origin],
            read_stored_chunk,
        )
    }

    fn stored_chunks_between(
        &self,
        kind: DataKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_STORED_CHUNKS_BETWEEN,
            &[&kind_name(kind), &from_ms, &to_ms],
            read_stored_chunk,
        )
    }

    fn upsert_templates(&self, app: &str, templates: &[LogTemplate]) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        changes::upsert_templates(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            app,
            templates,
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn templates(&self, app: &str) -> Result<Vec<LogTemplate>, StoreError> {
        let mut session = self.connection()?;
        collect(&mut session, sql::SELECT_TEMPLATES, &[&app], read_template)
    }

    fn put_app(&self, app: &str, config: &serde_json::Value) -> Result<(), StoreError> {
        let config_json = to_json(config)?;
        let mut session = self.connection()?;
        execute(&mut session, sql::UPSERT_APP, &[&app, &config_json])?;
        Ok(())
    }

    fn apps(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let mut session = self.connection()?;
        collect(&mut session, sql::SELECT_APPS, &[], read_app)
    }

    fn put_alerts(&self, alerts: &[vigil_core::Alert]) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        changes::upsert_alerts(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            alerts,
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn alerts(&self, app: &str, from: i64, to: i64) -> Result<Vec<vigil_core::Alert>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_ALERTS_OF_APP,
            &[&app, &from, &to],
            read_alert,
        )
    }

    fn prune_alerts(&self, before: i64, stale_seconds: i64) -> Result<usize, StoreError> {
        let mut session = self.connection()?;
        let deleted = execute(
            &mut session,
            sql::DELETE_ALERTS_BEFORE,
            &[&stale_seconds, &before],
        )?;
        tracing::debug!(at = before, deleted, "alerts pruned");
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    // ---- replicas and leases
    fn replica_seen(
        &self,
        id: &str,
        address: &str,
        started_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut session = self.connection()?;
        execute(
            &mut session,
            sql::UPSERT_REPLICA,
            &[&id, &address, &started_at, &now],
        )?;
        Ok(())
    }

    fn replica_gone(&self, id: &str) -> Result<(), StoreError> {
        let mut session = self.connection()?;
        execute(&mut session, sql::DELETE_REPLICA, &[&id])?;
        Ok(())
    }

    fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_REPLICAS,
            &[],
            leases::read_replica,
        )
    }

    fn claim_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
        wanted: &[String],
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut guard = self.connection()?;
        let held: Vec<String> = collect(
            &mut guard,
            sql::SELECT_HELD_LEASES,
            &[&holder, &now],
            leases::read_lease,
        )?
        .into_iter()
        .map(|lease| lease.release_id)
        .collect();
        {
            // Each lease taken in a statement of its own, committed at once: no replica waits
            // on rows another holds while it claims others (which could deadlock).
            let Session { client, statements } = &mut *guard;
            leases::claim_leases(
                &mut PostgresExecutor { statements, client },
                holder,
                now,
                expires_at,
                wanted,
                max,
                &held,
            )?;
        }
        collect(
            &mut guard,
            sql::SELECT_HELD_LEASES,
            &[&holder, &now],
            leases::read_lease,
        )
    }

    fn renew_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut session = self.connection()?;
        execute(
            &mut session,
            sql::RENEW_LEASES,
            &[&expires_at, &holder, &now],
        )?;
        collect(
            &mut session,
            sql::SELECT_HELD_LEASES,
            &[&holder, &now],
            leases::read_lease,
        )
    }

    fn drop_lease(&self, holder: &str, release_id: &str) -> Result<bool, StoreError> {
        let mut session = self.connection()?;
        let dropped = execute(&mut session, sql::DROP_LEASE, &[&holder, &release_id])?;
        Ok(dropped > 0)
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let mut session = self.connection()?;
        collect(&mut session, sql::SELECT_LEASES, &[], leases::read_lease)
    }

    fn record_verdict_fenced(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
        lease: &LeaseFence,
    ) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let mut executor = PostgresExecutor {
            statements,
            client: &mut transaction,
        };
        changes::check_fence(&mut executor, &record.release_id, lease)?;
        changes::insert_verdict(&mut executor, record, notifications)?;
        transaction.commit()?;
        Ok(())
    }

    // ---- Vigil's executor
    fn register_agent(&self, hello: &AgentHello, at: i64) -> Result<StoredAgent, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let agent = executions::register_agent(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            hello,
            at,
        )?;
        transaction.commit()?;
        Ok(agent)
    }

    fn agent(&self, host: &str) -> Result<Option<StoredAgent>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(
            &mut session,
            sql::SELECT_AGENT,
            &[&host],
            executions::read_agent,
        )?;
        Ok(found.into_iter().next())
    }

    fn agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_AGENTS,
            &[],
            executions::read_agent,
        )
    }

    fn create_execution(&self, release: &Release, execution: &Execution) -> Result<(), StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let mut executor = PostgresExecutor {
            statements,
            client: &mut transaction,
        };
        changes::insert_release(&mut executor, release)?;
        executions::insert_execution(&mut executor, &release.id, execution)?;
        transaction.commit()?;
        Ok(())
    }

    fn execution(&self, release_id: &str) -> Result<Option<Execution>, StoreError> {
        let mut session = self.connection()?;
        let found = collect(
            &mut session,
            sql::SELECT_EXECUTION,
            &[&release_id],
            executions::read_execution,
        )?;
        Ok(found.into_iter().next())
    }

    fn create_task(&self, task: &NewTask) -> Result<HostTask, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let stored = executions::create_task(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            task,
        )?;
        transaction.commit()?;
        Ok(stored)
    }

    fn release_tasks(&self, release_id: &str) -> Result<Vec<HostTask>, StoreError> {
        let mut session = self.connection()?;
        collect(
            &mut session,
            sql::SELECT_RELEASE_TASKS,
            &[&release_id],
            executions::read_task,
        )
    }

    fn agent_poll(
        &self,
        host: &str,
        poll: &AgentPoll,
        at: i64,
    ) -> Result<Option<PollAnswer>, StoreError> {
        let mut guard = self.connection()?;
        let Session { client, statements } = &mut *guard;
        let mut transaction = client.transaction()?;
        let answer = executions::agent_poll(
            &mut PostgresExecutor {
                statements,
                client: &mut transaction,
            },
            host,
            poll,
            at,
        )?;
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
        let mut session = self.connection()?;
        let mut claimed = collect(
            &mut session,
            sql::CLAIM_NOTIFICATIONS_SKIP_LOCKED,
            &[&now, &limit, &claimer, &claim_until],
            read_outbox_item,
        )?;
        claimed.sort_by_key(|item| item.id);
        Ok(claimed)
    }
}
