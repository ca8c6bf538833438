//! Vigil's executor in the store, for both backends: the hosts' agents, what the executor keeps
//! beside a release it ships, and the tasks it gives the agents. A host has at most one deploy
//! and one rollback task per release (a unique index), so a task created twice, even by racing
//! callers, is the one stored first.

use vigil_core::agent::{
    AgentHello, AgentPoll, AgentRecord, ArtifactProgress, HostTask, TaskKind, TaskState,
};
use vigil_core::release::ReleaseState;

use crate::changes::{Executor, Value};
use crate::codec::{from_json, to_json, Columns};
use crate::{sql, Execution, NewTask, PollAnswer, StoreError, StoredAgent};

pub(crate) fn read_agent(row: &dyn Columns) -> Result<StoredAgent, StoreError> {
    Ok(StoredAgent {
        record: AgentRecord {
            host: row.text(0)?,
            app: row.text(1)?,
            labels: from_json(&row.text(2)?, "agent labels")?,
            version: row.optional_text(3)?,
            peer_addr: row.optional_text(4)?,
            agent_version: row.text(5)?,
            registered_at: row.integer(6)?,
            last_seen_at: row.integer(7)?,
        },
        artifacts: from_json(&row.text(8)?, "agent artifacts")?,
    })
}

pub(crate) fn read_execution(row: &dyn Columns) -> Result<Execution, StoreError> {
    from_json(&row.text(0)?, "execution body")
}

pub(crate) fn read_task(row: &dyn Columns) -> Result<HostTask, StoreError> {
    let kind_name = row.text(4)?;
    let kind = TaskKind::parse(&kind_name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown task kind {kind_name:?}")))?;
    let state_name = row.text(7)?;
    let state = TaskState::parse(&state_name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown task state {state_name:?}")))?;
    let batch = u32::try_from(row.integer(3)?)
        .map_err(|_| StoreError::Corrupt("task batch out of range".to_owned()))?;
    Ok(HostTask {
        id: row.integer(0)?,
        release: row.text(1)?,
        host: row.text(2)?,
        batch,
        kind,
        version: row.text(5)?,
        artifact: row.optional_text(6)?,
        state,
        created_at: row.integer(8)?,
        started_at: row.optional_integer(9)?,
        ended_at: row.optional_integer(10)?,
        message: row.text(11)?,
    })
}

fn read_task_with_release_state(row: &dyn Columns) -> Result<(HostTask, ReleaseState), StoreError> {
    let task = read_task(row)?;
    let state_name = row.text(12)?;
    let state = ReleaseState::parse(&state_name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown release state {state_name:?}")))?;
    Ok((task, state))
}

/// Registers or updates an agent (see [`crate::Store::register_agent`]).
pub(crate) fn register_agent(
    executor: &mut impl Executor,
    hello: &AgentHello,
    at: i64,
) -> Result<StoredAgent, StoreError> {
    let labels = to_json(&hello.labels)?;
    executor.execute(
        sql::UPSERT_AGENT,
        &[
            Value::Text(&hello.host),
            Value::Text(&hello.app),
            Value::Text(&labels),
            Value::OptionalText(hello.version.as_deref()),
            Value::OptionalText(hello.peer_addr.as_deref()),
            Value::Text(&hello.agent_version),
            Value::Integer(at),
        ],
    )?;
    executor
        .first(sql::SELECT_AGENT, &[Value::Text(&hello.host)], read_agent)?
        .ok_or_else(|| StoreError::Database("the agent just registered is gone".to_owned()))
}

/// Stores an execution beside its release, inserted in the same transaction.
pub(crate) fn insert_execution(
    executor: &mut impl Executor,
    release_id: &str,
    execution: &Execution,
) -> Result<(), StoreError> {
    let body = to_json(execution)?;
    executor.execute(
        sql::INSERT_EXECUTION,
        &[Value::Text(release_id), Value::Text(&body)],
    )?;
    Ok(())
}

/// Creates a task, or returns the one of the same release, host and kind stored before.
pub(crate) fn create_task(
    executor: &mut impl Executor,
    task: &NewTask,
) -> Result<HostTask, StoreError> {
    executor.execute(
        sql::INSERT_TASK,
        &[
            Value::Text(&task.release),
            Value::Text(&task.host),
            Value::Integer(i64::from(task.batch)),
            Value::Text(task.kind.as_str()),
            Value::Text(&task.version),
            Value::OptionalText(task.artifact.as_deref()),
            Value::Integer(task.created_at),
        ],
    )?;
    executor
        .first(
            sql::SELECT_TASK_OF,
            &[
                Value::Text(&task.release),
                Value::Text(&task.host),
                Value::Text(task.kind.as_str()),
            ],
            read_task,
        )?
        .ok_or_else(|| StoreError::Database("the task just created is gone".to_owned()))
}

/// Whether a task not yet sent may go to its agent now: a deploy while its release deploys,
/// a rollback while it rolls back. Tasks already sent go again (the agent may have lost the
/// answer), whatever the release's state.
fn dispatchable(task: &HostTask, release_state: ReleaseState) -> bool {
    if task.state != TaskState::Pending {
        return true;
    }
    match task.kind {
        TaskKind::Deploy => release_state == ReleaseState::Deploying,
        TaskKind::Rollback => release_state == ReleaseState::RollingBack,
    }
}

/// A task moved by a report, or `None` when the report changes nothing (a repeat, a task
/// ended already, a state an agent does not report).
fn reported(task: &HostTask, state: TaskState, message: &str, at: i64) -> Option<HostTask> {
    if task.state.is_ended() || task.state == state {
        return None;
    }
    let mut moved = task.clone();
    match state {
        TaskState::Pending | TaskState::Sent => return None,
        TaskState::Started => {
            moved.started_at = Some(at);
        }
        TaskState::Succeeded | TaskState::Failed => {
            moved.started_at = Some(task.started_at.unwrap_or(at));
            moved.ended_at = Some(at);
        }
    }
    moved.state = state;
    moved.message = message.to_owned();
    Some(moved)
}

fn update_task(executor: &mut impl Executor, task: &HostTask) -> Result<(), StoreError> {
    executor.execute(
        sql::UPDATE_TASK,
        &[
            Value::Text(task.state.as_str()),
            Value::OptionalInteger(task.started_at),
            Value::OptionalInteger(task.ended_at),
            Value::Text(&task.message),
            Value::Integer(task.id),
        ],
    )?;
    Ok(())
}

/// An agent's poll (see [`crate::Store::agent_poll`]), in its caller's transaction.
pub(crate) fn agent_poll(
    executor: &mut impl Executor,
    host: &str,
    poll: &AgentPoll,
    at: i64,
) -> Result<Option<PollAnswer>, StoreError> {
    let Some(agent) = executor.first(sql::SELECT_AGENT, &[Value::Text(host)], read_agent)? else {
        return Ok(None);
    };
    let artifacts = merged_progress(&agent.artifacts, &poll.artifacts);
    let artifacts_json = to_json(&artifacts)?;
    executor.execute(
        sql::UPDATE_AGENT_SEEN,
        &[
            Value::Integer(at),
            Value::Text(&artifacts_json),
            Value::Text(host),
        ],
    )?;
    let mut acknowledged = Vec::with_capacity(poll.reports.len());
    for report in &poll.reports {
        acknowledged.push(report.task);
        let Some(task) =
            executor.first(sql::SELECT_TASK, &[Value::Integer(report.task)], read_task)?
        else {
            continue;
        };
        if task.host != host {
            continue;
        }
        if let Some(moved) = reported(&task, report.state, &report.message, at) {
            update_task(executor, &moved)?;
        }
    }
    acknowledged.sort_unstable();
    acknowledged.dedup();
    let open = executor.all(
        sql::SELECT_OPEN_HOST_TASKS,
        &[Value::Text(host)],
        read_task_with_release_state,
    )?;
    let mut tasks = Vec::new();
    for (task, release_state) in open {
        if !dispatchable(&task, release_state) {
            continue;
        }
        let mut given = task;
        if given.state == TaskState::Pending {
            given.state = TaskState::Sent;
            update_task(executor, &given)?;
        }
        tasks.push(given);
    }
    Ok(Some(PollAnswer {
        acknowledged,
        tasks,
    }))
}

/// The host's progress per artifact: what the poll says replaces what was kept of the same
/// artifact; the others are kept. At most [`crate::MAX_AGENT_ARTIFACTS`], the latest.
fn merged_progress(
    kept: &[ArtifactProgress],
    polled: &[ArtifactProgress],
) -> Vec<ArtifactProgress> {
    let mut merged: Vec<ArtifactProgress> = kept
        .iter()
        .filter(|old| !polled.iter().any(|new| new.artifact == old.artifact))
        .cloned()
        .collect();
    merged.extend(polled.iter().cloned());
    let excess = merged.len().saturating_sub(crate::MAX_AGENT_ARTIFACTS);
    merged.drain(..excess);
    merged
}
