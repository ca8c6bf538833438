//! The statements both stores run, each written once.
//!
//! Placeholders are numbered `$1`, `$2`... which PostgreSQL reads as positions. SQLite reads
//! `$1` as a parameter named "$1" and numbers named parameters in the order they first appear,
//! so in every statement here `$1` appears first, then `$2`, and so on: both backends then bind
//! the same arguments in the same order (checked by a test below). What only one backend can
//! say (PostgreSQL's arrays and row locks, SQLite's `json_each`) stays in its own file.

use crate::codec::{
    alert_columns, chunk_columns, feedback_columns, outbox_columns, release_columns,
    session_select, signature_columns, token_columns, transition_columns, verdict_columns,
};

// ---- releases

pub(crate) const INSERT_RELEASE: &str = concat!(
    "INSERT INTO releases (app, ",
    release_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING"
);

pub(crate) const SELECT_RELEASE: &str = concat!(
    "SELECT ",
    release_columns!(),
    " FROM releases WHERE id = $1"
);

/// The release's row, locked until the transaction ends (PostgreSQL; SQLite's write
/// transaction already holds the whole database).
pub(crate) const SELECT_RELEASE_FOR_UPDATE: &str = concat!(
    "SELECT ",
    release_columns!(),
    " FROM releases WHERE id = $1 FOR UPDATE"
);

pub(crate) const UPDATE_RELEASE_STATE: &str =
    "UPDATE releases SET state = $1, reason = $2, updated_at = $3, deployed = $4 WHERE id = $5";

pub(crate) const NEXT_TRANSITION_SEQ: &str =
    "SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE release_id = $1";

pub(crate) const INSERT_TRANSITION: &str = concat!(
    "INSERT INTO transitions (",
    transition_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);

pub(crate) const SELECT_TRANSITIONS: &str = concat!(
    "SELECT ",
    transition_columns!(),
    " FROM transitions WHERE release_id = $1 ORDER BY seq"
);

// ---- verdicts and feedback

pub(crate) const UPDATE_RELEASE_VERDICT: &str = "UPDATE releases SET verdict = $1 WHERE id = $2";

pub(crate) const INSERT_VERDICT: &str = concat!(
    "INSERT INTO verdicts (",
    verdict_columns!(),
    ") VALUES ($1, $2, $3, $4, $5)"
);

pub(crate) const SELECT_VERDICTS: &str = concat!(
    "SELECT ",
    verdict_columns!(),
    " FROM verdicts WHERE release_id = $1 ORDER BY id"
);

/// One statement: inserts only when the release exists.
pub(crate) const INSERT_FEEDBACK: &str = concat!(
    "INSERT INTO feedback (",
    feedback_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM releases WHERE id = $1)"
);

pub(crate) const SELECT_FEEDBACK: &str = concat!(
    "SELECT ",
    feedback_columns!(),
    " FROM feedback WHERE release_id = $1 ORDER BY id"
);

// ---- the feature library

pub(crate) const INSERT_SIGNATURE: &str = concat!(
    "INSERT INTO signatures (app, signal, direction, baseline, state, body, created_at, \
     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
    signature_columns!()
);

pub(crate) const UPDATE_SIGNATURE: &str =
    "UPDATE signatures SET state = $1, body = $2, updated_at = $3 WHERE id = $4";

pub(crate) const SELECT_SIGNATURE: &str = concat!(
    "SELECT ",
    signature_columns!(),
    " FROM signatures WHERE id = $1"
);

pub(crate) const SELECT_APP_SIGNATURES: &str = concat!(
    "SELECT ",
    signature_columns!(),
    " FROM signatures WHERE app = $1 AND state <> 'dropped' ORDER BY id"
);

pub(crate) const SELECT_ALL_APP_SIGNATURES: &str = concat!(
    "SELECT ",
    signature_columns!(),
    " FROM signatures WHERE app = $1 ORDER BY id"
);

// ---- notification outbox

pub(crate) const INSERT_NOTIFICATION: &str =
    "INSERT INTO outbox (release_id, event, channel, title, text, link, created_at, state, \
     next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $7)";

pub(crate) const SELECT_DUE_NOTIFICATIONS: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
);

/// Clears the item's claim too.
pub(crate) const NOTIFICATION_SENT: &str =
    "UPDATE outbox SET state = 'sent', sent_at = $1, claimed_by = '', claimed_until = 0 \
     WHERE id = $2";

/// `$2`, the time of the next attempt, is NULL when the item is given up. Clears the item's
/// claim too.
pub(crate) const NOTIFICATION_FAILED: &str =
    "UPDATE outbox SET attempts = attempts + 1, last_error = $1, \
     state = CASE WHEN CAST($2 AS BIGINT) IS NULL THEN 'dead' ELSE state END, \
     next_attempt_at = COALESCE($2, next_attempt_at), claimed_by = '', claimed_until = 0 \
     WHERE id = $3";

pub(crate) const SELECT_NOTIFICATIONS: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox WHERE release_id = $1 ORDER BY id"
);

// ---- tokens and page sessions

pub(crate) const INSERT_TOKEN: &str = concat!(
    "INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING ",
    token_columns!()
);

pub(crate) const SELECT_TOKEN_BY_HASH: &str =
    concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1");

pub(crate) const SELECT_TOKENS: &str =
    concat!("SELECT ", token_columns!(), " FROM tokens ORDER BY id");

/// Keeps the first revocation time.
pub(crate) const REVOKE_TOKEN: &str = concat!(
    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING ",
    token_columns!()
);

pub(crate) const DELETE_TOKEN_SESSIONS: &str = "DELETE FROM sessions WHERE token_id = $1";

pub(crate) const DELETE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";

pub(crate) const INSERT_SESSION: &str =
    "INSERT INTO sessions (hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";

pub(crate) const SELECT_SESSION: &str = concat!(session_select!(), "$1");

pub(crate) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE hash = $1";

// ---- ingested data, templates and apps

/// A chunk whose key is already stored for its kind inserts nothing.
pub(crate) const INSERT_CHUNK: &str = concat!(
    "INSERT INTO data_chunks (",
    chunk_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
);

// ---- following the chunks other replicas store

pub(crate) const LAST_CHUNK_ID: &str =
    "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM data_chunks";

/// Heads only: the bodies of the chunks a replica stored itself are never read back.
pub(crate) const SELECT_CHUNK_HEADS_AFTER: &str =
    "SELECT id, origin, kind, CAST(LENGTH(body) AS BIGINT) FROM data_chunks WHERE id > $1 \
     ORDER BY id LIMIT $2";

pub(crate) const SELECT_STORED_CHUNKS_BETWEEN: &str = concat!(
    "SELECT ",
    chunk_columns!(),
    ", id FROM data_chunks WHERE kind = $1 AND max_ms >= $2 AND min_ms <= $3 ORDER BY id"
);

pub(crate) const UPSERT_TEMPLATE: &str =
    "INSERT INTO templates (app, id, text, level) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (app, id) DO UPDATE SET text = excluded.text, level = excluded.level";

pub(crate) const SELECT_TEMPLATES: &str =
    "SELECT id, text, level FROM templates WHERE app = $1 ORDER BY id";

pub(crate) const UPSERT_APP: &str = "INSERT INTO apps (name, config) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET config = excluded.config";

pub(crate) const SELECT_APPS: &str = "SELECT name, config FROM apps ORDER BY name";

// ---- alerts

/// One occurrence of an alert, keyed by its fingerprint and start: a second receipt (a resend,
/// its resolution) replaces what was stored of it.
pub(crate) const UPSERT_ALERT: &str = concat!(
    "INSERT INTO alerts (",
    alert_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (fingerprint, starts_at) DO UPDATE SET ends_at = excluded.ends_at, \
     app = excluded.app, name = excluded.name, severity = excluded.severity, \
     labels = excluded.labels, summary = excluded.summary, source = excluded.source, \
     received_at = excluded.received_at"
);

/// An app's alerts firing at some time in `[$2, $3]`.
pub(crate) const SELECT_ALERTS_OF_APP: &str = concat!(
    "SELECT ",
    alert_columns!(),
    " FROM alerts WHERE app = $1 AND (ends_at IS NULL OR ends_at >= $2) AND starts_at <= $3 \
     ORDER BY starts_at, fingerprint"
);

/// Alerts that ended before `$2`, and alerts still firing that were last received more than
/// `$1` seconds before `$2` (their resolution was never heard of).
pub(crate) const DELETE_ALERTS_BEFORE: &str =
    "DELETE FROM alerts WHERE COALESCE(ends_at, received_at + $1) < $2";

// ---- replicas and leases

pub(crate) const UPSERT_REPLICA: &str =
    "INSERT INTO replicas (id, address, started_at, seen_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET address = excluded.address, \
     started_at = excluded.started_at, seen_at = excluded.seen_at";

pub(crate) const DELETE_REPLICA: &str = "DELETE FROM replicas WHERE id = $1";

pub(crate) const SELECT_REPLICAS: &str =
    "SELECT id, address, started_at, seen_at FROM replicas ORDER BY id";

/// Takes a release's lease when it is free at `$4` (never taken, expired or dropped). The
/// conflicting row is locked and the condition read again on its latest version, so of
/// replicas claiming at once only one takes it. The epoch grows only when the holder changes.
pub(crate) const CLAIM_LEASE: &str =
    "INSERT INTO leases (release_id, holder, epoch, expires_at) VALUES ($1, $2, 1, $3) \
     ON CONFLICT (release_id) DO UPDATE SET \
     epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch \
     ELSE leases.epoch + 1 END, \
     holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.expires_at <= $4";

pub(crate) const RENEW_LEASES: &str =
    "UPDATE leases SET expires_at = $1 WHERE holder = $2 AND expires_at > $3";

/// A dropped lease is free at once: it expired at 0.
pub(crate) const DROP_LEASE: &str =
    "UPDATE leases SET expires_at = 0 WHERE holder = $1 AND release_id = $2";

pub(crate) const SELECT_HELD_LEASES: &str =
    "SELECT release_id, holder, epoch, expires_at FROM leases \
     WHERE holder = $1 AND expires_at > $2 ORDER BY release_id";

pub(crate) const SELECT_LEASES: &str =
    "SELECT release_id, holder, epoch, expires_at FROM leases ORDER BY release_id";

/// The lease a fenced write needs, when it is still held.
pub(crate) const SELECT_FENCE: &str = "SELECT epoch FROM leases \
     WHERE release_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > $4";

/// The same, its row locked until the transaction ends (PostgreSQL), so that no replica takes
/// the lease while the write commits.
pub(crate) const SELECT_FENCE_FOR_UPDATE: &str = "SELECT epoch FROM leases \
     WHERE release_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > $4 FOR UPDATE";

// ---- outbox claims (several replicas)

/// Claims due items for one replica: pending, due at `$1` and not claimed (or claimed until
/// `$1` or before), the oldest first, at most `$2`; each is claimed by `$3` until `$4`. The
/// items are chosen once (a materialized query: PostgreSQL would otherwise run a subquery again
/// for each row it updates and, skipping the rows it just claimed, take more), and the update
/// checks the claim again on the row it changes, so of two replicas racing for one item only
/// one claims it (PostgreSQL rechecks it on the newest row version after waiting for the
/// other's update; SQLite runs one writer at a time). The rows come back in no order.
macro_rules! claim_notifications {
    ($lock:literal) => {
        concat!(
            "WITH claimable AS MATERIALIZED (SELECT id FROM outbox WHERE state = 'pending' \
             AND next_attempt_at <= $1 AND claimed_until <= $1 ORDER BY id LIMIT $2",
            $lock,
            ") UPDATE outbox SET claimed_by = $3, claimed_until = $4 \
             WHERE id IN (SELECT id FROM claimable) AND state = 'pending' \
             AND next_attempt_at <= $1 AND claimed_until <= $1 RETURNING ",
            outbox_columns!()
        )
    };
}

/// SQLite's claim (its write transaction holds the whole database).
pub(crate) const CLAIM_NOTIFICATIONS: &str = claim_notifications!("");

/// PostgreSQL's claim: replicas claiming at once skip the rows another one is claiming
/// instead of waiting for it, so each takes different items.
pub(crate) const CLAIM_NOTIFICATIONS_SKIP_LOCKED: &str =
    claim_notifications!(" FOR UPDATE SKIP LOCKED");

// ---- models of the learned stage

/// Columns of `models`, in the order `models::read_model` reads them.
macro_rules! model_columns {
    () => {
        "version, state, created_at, created_by, promoted_at, body"
    };
}

pub(crate) const INSERT_MODEL: &str =
    "INSERT INTO models (state, created_at, created_by, promoted_at, body) \
     VALUES ('candidate', $1, $2, NULL, $3) RETURNING version";

pub(crate) const SELECT_MODELS: &str = concat!(
    "SELECT ",
    model_columns!(),
    " FROM models ORDER BY version DESC"
);

pub(crate) const SELECT_MODEL: &str = concat!(
    "SELECT ",
    model_columns!(),
    " FROM models WHERE version = $1"
);

pub(crate) const SELECT_PROMOTED_MODEL: &str = concat!(
    "SELECT ",
    model_columns!(),
    " FROM models WHERE state = 'promoted' ORDER BY version DESC LIMIT 1"
);

/// Every model, their rows locked until the transaction ends (PostgreSQL; SQLite's write
/// transaction already holds the whole database), so that promotions and rollbacks run one at
/// a time.
pub(crate) const SELECT_MODELS_FOR_UPDATE: &str = concat!(
    "SELECT ",
    model_columns!(),
    " FROM models ORDER BY version DESC FOR UPDATE"
);

pub(crate) const UPDATE_MODEL: &str =
    "UPDATE models SET state = $1, promoted_at = $2, body = $3 WHERE version = $4";

// ---- Vigil's executor: agents, executions and tasks

macro_rules! agent_columns {
    () => {
        "host, app, labels, version, peer_addr, agent_version, registered_at, last_seen_at, \
         artifacts"
    };
}

/// Registers an agent, or updates it keeping its first registration and its downloads.
pub(crate) const UPSERT_AGENT: &str = "INSERT INTO agents (host, app, labels, version, \
     peer_addr, agent_version, registered_at, last_seen_at, artifacts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, '[]') \
     ON CONFLICT (host) DO UPDATE SET app = excluded.app, labels = excluded.labels, \
     version = excluded.version, peer_addr = excluded.peer_addr, \
     agent_version = excluded.agent_version, last_seen_at = excluded.last_seen_at";

pub(crate) const SELECT_AGENT: &str =
    concat!("SELECT ", agent_columns!(), " FROM agents WHERE host = $1");

pub(crate) const SELECT_AGENTS: &str =
    concat!("SELECT ", agent_columns!(), " FROM agents ORDER BY host");

pub(crate) const UPDATE_AGENT_SEEN: &str =
    "UPDATE agents SET last_seen_at = $1, artifacts = $2 WHERE host = $3";

pub(crate) const INSERT_EXECUTION: &str =
    "INSERT INTO executions (release_id, body) VALUES ($1, $2)";

pub(crate) const SELECT_EXECUTION: &str = "SELECT body FROM executions WHERE release_id = $1";

macro_rules! task_columns {
    () => {
        "tasks.id, tasks.release_id, tasks.host, tasks.batch, tasks.kind, tasks.version, \
         tasks.artifact, tasks.state, tasks.created_at, tasks.started_at, tasks.ended_at, \
         tasks.message"
    };
}

/// A new task; nothing when the release already has one of this kind for the host.
pub(crate) const INSERT_TASK: &str = "INSERT INTO tasks (release_id, host, batch, kind, \
     version, artifact, state, created_at, message) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, '') \
     ON CONFLICT (release_id, host, kind) DO NOTHING";

pub(crate) const SELECT_TASK_OF: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE release_id = $1 AND host = $2 AND kind = $3"
);

pub(crate) const SELECT_TASK: &str =
    concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1");

pub(crate) const SELECT_RELEASE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE release_id = $1 ORDER BY id"
);

/// A host's tasks not yet ended, with their release's state, oldest first.
pub(crate) const SELECT_OPEN_HOST_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    ", releases.state FROM tasks JOIN releases ON releases.id = tasks.release_id \
     WHERE tasks.host = $1 AND tasks.state IN ('pending', 'sent', 'started') ORDER BY tasks.id"
);

pub(crate) const UPDATE_TASK: &str = "UPDATE tasks SET state = $1, started_at = $2, \
     ended_at = $3, message = $4 WHERE id = $5";

/// Every statement of this file, for the test.
#[cfg(test)]
const ALL: &[&str] = &[
    INSERT_RELEASE,
    SELECT_RELEASE,
    SELECT_RELEASE_FOR_UPDATE,
    UPDATE_RELEASE_STATE,
    NEXT_TRANSITION_SEQ,
    INSERT_TRANSITION,
    SELECT_TRANSITIONS,
    UPDATE_RELEASE_VERDICT,
    INSERT_VERDICT,
    SELECT_VERDICTS,
    INSERT_FEEDBACK,
    SELECT_FEEDBACK,
    INSERT_NOTIFICATION,
    SELECT_DUE_NOTIFICATIONS,
    NOTIFICATION_SENT,
    NOTIFICATION_FAILED,
    SELECT_NOTIFICATIONS,
    INSERT_TOKEN,
    SELECT_TOKEN_BY_HASH,
    SELECT_TOKENS,
    REVOKE_TOKEN,
    DELETE_TOKEN_SESSIONS,
    DELETE_EXPIRED_SESSIONS,
    INSERT_SESSION,
    SELECT_SESSION,
    DELETE_SESSION,
    INSERT_CHUNK,
    LAST_CHUNK_ID,
    SELECT_CHUNK_HEADS_AFTER,
    SELECT_STORED_CHUNKS_BETWEEN,
    UPSERT_TEMPLATE,
    SELECT_TEMPLATES,
    UPSERT_APP,
    SELECT_APPS,
    UPSERT_ALERT,
    SELECT_ALERTS_OF_APP,
    DELETE_ALERTS_BEFORE,
    UPSERT_REPLICA,
    DELETE_REPLICA,
    SELECT_REPLICAS,
    CLAIM_LEASE,
    RENEW_LEASES,
    DROP_LEASE,
    SELECT_HELD_LEASES,
    SELECT_LEASES,
    SELECT_FENCE,
    SELECT_FENCE_FOR_UPDATE,
    CLAIM_NOTIFICATIONS,
    CLAIM_NOTIFICATIONS_SKIP_LOCKED,
    INSERT_MODEL,
    SELECT_MODELS,
    SELECT_MODEL,
    SELECT_PROMOTED_MODEL,
    SELECT_MODELS_FOR_UPDATE,
    UPDATE_MODEL,
    UPSERT_AGENT,
    SELECT_AGENT,
    SELECT_AGENTS,
    UPDATE_AGENT_SEEN,
    INSERT_EXECUTION,
    SELECT_EXECUTION,
    INSERT_TASK,
    SELECT_TASK_OF,
    SELECT_TASK,
    SELECT_RELEASE_TASKS,
    SELECT_OPEN_HOST_TASKS,
    UPDATE_TASK,
];

/// The placeholders' numbers in the order they first appear.
#[cfg(test)]
fn first_appearances(statement: &str) -> Vec<u32> {
    let mut numbers = Vec::new();
    for piece in statement.split('$').skip(1) {
        let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
        let Ok(number) = digits.parse::<u32>() else {
            continue;
        };
        if !numbers.contains(&number) {
            numbers.push(number);
        }
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_first_appear_in_their_numbered_order() {
        for statement in ALL {
            let numbers = first_appearances(statement);
            let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
            assert_eq!(numbers, expected, "{statement}");
        }
    }

    #[test]
    fn sqlite_binds_each_placeholder_at_its_number() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let mut version = 0;
        while let Some(script) = crate::schema::migration_from(&crate::schema::SQLITE, version) {
            connection.execute_batch(&script).unwrap();
            version += 1;
        }
        for statement in ALL.iter().filter(|text| !text.contains("FOR UPDATE")) {
            let prepared = connection.prepare(statement).unwrap();
            for number in first_appearances(statement) {
                let name = format!("${number}");
                assert_eq!(
                    prepared.parameter_index(&name).unwrap(),
                    Some(number as usize),
                    "{name} in {statement}"
                );
            }
        }
    }
}
