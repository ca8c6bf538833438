//! One round of the executor over every release it ships: everything is read from the store
//! and every step is written there (tasks created once per release, host and kind; the
//! release's transitions through `Store::apply`, compare-and-set on its state), so a restarted
//! server, or a second replica racing this one, takes each release up where the store says it
//! is and never deploys a host twice.

use std::collections::BTreeMap;

use vigil_core::agent::{HostTask, TaskKind, TaskState};
use vigil_core::release::{Action, Release, ReleaseState};
use vigil_core::Batch;
use vigil_guard::guard::{transition_change, GuardConfig};
use vigil_guard::requests::action_change;
use vigil_store::{Execution, NewTask, ReleaseFilter, Store, StoreError, StoredAgent};

/// The executor's settings.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// An agent of a deploying or observing release silent for longer pauses it.
    pub agent_timeout_seconds: i64,
    /// The replica this executor runs in: a release whose guard lease another replica holds
    /// is that replica's to execute.
    pub replica: String,
    /// The guard's notification routes and link base: the executor's pauses and rollbacks
    /// notify as a person's do.
    pub guard: GuardConfig,
}

impl Default for ExecutorSettings {
    fn default() -> ExecutorSettings {
        ExecutorSettings {
            agent_timeout_seconds: DEFAULT_AGENT_TIMEOUT_SECONDS,
            replica: String::new(),
            guard: GuardConfig::default(),
        }
    }
}

/// How long an agent may be silent, by default.
pub const DEFAULT_AGENT_TIMEOUT_SECONDS: i64 = 15;

/// Who the executor's transitions are audited as.
pub const ACTOR: &str = "executor";

/// The states in which the executor has something to do for a release.
const ACTIVE_STATES: [ReleaseState; 5] = [
    ReleaseState::Pending,
    ReleaseState::Deploying,
    ReleaseState::Observing,
    ReleaseState::Paused,
    ReleaseState::RollingBack,
];

/// Why a round failed (one release's error is logged and does not stop the others).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Deploy(#[from] vigil_deploy::DeployError),
}

/// What a round did to one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub release: String,
    pub action: Action,
    pub to: ReleaseState,
    pub reason: String,
}

/// One round at `now` over every release Vigil ships that is not ended; returns the
/// transitions it made.
pub fn tick(
    store: &dyn Store,
    settings: &ExecutorSettings,
    now: i64,
) -> Result<Vec<Step>, StoreError> {
    let releases = store.releases(&ReleaseFilter {
        states: ACTIVE_STATES.to_vec(),
        ..ReleaseFilter::default()
    })?;
    if releases.is_empty() {
        return Ok(Vec::new());
    }
    let held_elsewhere: Vec<String> = store
        .leases()?
        .into_iter()
        .filter(|lease| lease.holder != settings.replica && lease.expires_at > now)
        .map(|lease| lease.release_id)
        .collect();
    let agents: BTreeMap<String, StoredAgent> = store
        .agents()?
        .into_iter()
        .map(|agent| (agent.record.host.clone(), agent))
        .collect();
    let mut steps = Vec::new();
    for release in releases {
        if held_elsewhere.contains(&release.id) {
            continue;
        }
        let Some(execution) = store.execution(&release.id)? else {
            continue;
        };
        match step_release(store, settings, &release, &execution, &agents, now) {
            Ok(Some(step)) => {
                tracing::info!(
                    release = %step.release,
                    release_state = %step.to,
                    action = step.action.as_str(),
                    reason = %step.reason,
                    "executor moved release"
                );
                steps.push(step);
            }
            Ok(None) => {}
            Err(ExecutorError::Store(StoreError::StateConflict { .. })) => {
                // Someone else (a person, the guard) moved it first: the next round sees it.
            }
            Err(error) => {
                tracing::warn!(release = %release.id, error = %error, "executor step failed");
            }
        }
    }
    Ok(steps)
}

/// What the executor does next for one release.
fn step_release(
    store: &dyn Store,
    settings: &ExecutorSettings,
    release: &Release,
    execution: &Execution,
    agents: &BTreeMap<String, StoredAgent>,
    now: i64,
) -> Result<Option<Step>, ExecutorError> {
    let tasks = store.release_tasks(&release.id)?;
    match release.state {
        ReleaseState::Pending => {
            // A host whose agent fell silent would keep the release waiting for its artifact
            // with no one told: it pauses, naming the host, as it would mid-batch.
            if let Some(reason) = silent_agent(settings, release, agents, now) {
                let reason = format!("{reason}, before the artifact reached every host");
                return pause(store, settings, release, now, reason);
            }
            if !artifact_everywhere(release, execution, agents) {
                return Ok(None);
            }
            start_batch(store, release, execution, 0, now)
        }
        ReleaseState::Deploying => {
            if let Some(reason) = pause_reason(store, settings, release, &tasks, agents, now)? {
                return pause(store, settings, release, now, reason);
            }
            let index = release.deployed.len() as u32;
            // Tasks of the batch being deployed exist once a round created them; a restart
            // between the transition and the tasks creates the missing ones.
            create_batch_tasks(store, release, execution, index, now)?;
            let batch_tasks = store.release_tasks(&release.id)?;
            finish_batch(store, release, &batch_tasks, index, now)
        }
        ReleaseState::Observing => {
            if let Some(reason) = pause_reason(store, settings, release, &tasks, agents, now)? {
                return pause(store, settings, release, now, reason);
            }
            let index = release.deployed.len();
            if index >= release.spec.batches.len() {
                return Ok(None);
            }
            // Resumed from a pause before its first batch: the artifact still goes to every
            // host before any host deploys.
            if index == 0 && !artifact_everywhere(release, execution, agents) {
                return Ok(None);
            }
            let resumed_mid_batch = tasks
                .iter()
                .any(|task| task.kind == TaskKind::Deploy && task.batch as usize == index);
            if resumed_mid_batch || next_batch_may_start(store, release, execution, now)? {
                return start_batch(store, release, execution, index as u32, now);
            }
            Ok(None)
        }
        ReleaseState::RollingBack => roll_back(store, release, execution, &tasks, now),
        _ => Ok(None),
    }
}

/// Every target host's agent holds the artifact, verified against its manifest.
fn artifact_everywhere(
    release: &Release,
    execution: &Execution,
    agents: &BTreeMap<String, StoredAgent>,
) -> bool {
    release.spec.hosts.names().iter().all(|host| {
        agents.get(host).is_some_and(|agent| {
            agent
                .artifacts
                .iter()
                .any(|progress| progress.artifact == execution.spec.artifact && progress.verified)
        })
    })
}

/// The batch after the last deployed one may start: its observation time passed and the
/// guard's decision on the release is `proceed`.
fn next_batch_may_start(
    store: &dyn Store,
    release: &Release,
    execution: &Execution,
    now: i64,
) -> Result<bool, ExecutorError> {
    let Some(last) = release.deployed.last() else {
        return Ok(true);
    };
    let observe = execution
        .spec
        .observe_seconds
        .get(last.index as usize)
        .copied()
        .unwrap_or(release.spec.observe_seconds);
    if now < last.at + observe {
        return Ok(false);
    }
    let history = store.verdicts(&release.id)?;
    let answer = vigil_guard::decision::verdict_answer(release, history.last());
    Ok(answer.decision == "proceed")
}

/// Creates the tasks of batch `index` and moves the release to `deploying`.
fn start_batch(
    store: &dyn Store,
    release: &Release,
    execution: &Execution,
    index: u32,
    now: i64,
) -> Result<Option<Step>, ExecutorError> {
    let Some(batch) = release.spec.batches.get(index as usize) else {
        return Ok(None);
    };
    create_batch_tasks(store, release, execution, index, now)?;
    let reason = format!(
        "deploying batch {index} ({} of {})",
        batch.hosts.len(),
        host_count(release.spec.hosts.names().len())
    );
    transition(store, release, Action::DeployBatch, now, reason, None)
}

fn create_batch_tasks(
    store: &dyn Store,
    release: &Release,
    execution: &Execution,
    index: u32,
    now: i64,
) -> Result<(), ExecutorError> {
    let Some(batch) = release.spec.batches.get(index as usize) else {
        return Ok(());
    };
    for host in &batch.hosts {
        store.create_task(&NewTask {
            release: release.id.clone(),
            host: host.clone(),
            batch: index,
            kind: TaskKind::Deploy,
            version: release.spec.version.clone(),
            artifact: Some(execution.spec.artifact.clone()),
            created_at: now,
        })?;
    }
    Ok(())
}

/// Batch `index` is deployed once each of its tasks ended (a failure a person resumed past
/// counts as ended): the release observes it, with the time its last task ended.
fn finish_batch(
    store: &dyn Store,
    release: &Release,
    tasks: &[HostTask],
    index: u32,
    now: i64,
) -> Result<Option<Step>, ExecutorError> {
    let batch_tasks: Vec<&HostTask> = tasks
        .iter()
        .filter(|task| task.kind == TaskKind::Deploy && task.batch == index)
        .collect();
    if batch_tasks.is_empty() || !batch_tasks.iter().all(|task| task.state.is_ended()) {
        return Ok(None);
    }
    let succeeded: Vec<String> = batch_tasks
        .iter()
        .filter(|task| task.state == TaskState::Succeeded)
        .map(|task| task.host.clone())
        .collect();
    let hosts = if succeeded.is_empty() {
        batch_tasks.iter().map(|task| task.host.clone()).collect()
    } else {
        succeeded
    };
    let previous_at = release.deployed.last().map_or(i64::MIN, |batch| batch.at);
    let at = batch_tasks
        .iter()
        .filter_map(|task| task.ended_at)
        .max()
        .unwrap_or(now)
        .min(now)
        .max(previous_at);
    let reason = format!("batch {index} deployed to {}", host_count(hosts.len()));
    let deployed = Batch { index, at, hosts };
    transition(
        store,
        release,
        Action::BatchDeployed,
        now,
        reason,
        Some(deployed),
    )
}

/// Why a deploying or observing release must pause: a deploy task that failed (after the
/// release's last resume: a person resumed past earlier failures), or an agent of its hosts
/// silent for longer than the timeout.
fn pause_reason(
    store: &dyn Store,
    settings: &ExecutorSettings,
    release: &Release,
    tasks: &[HostTask],
    agents: &BTreeMap<String, StoredAgent>,
    now: i64,
) -> Result<Option<String>, ExecutorError> {
    let failed: Vec<&HostTask> = tasks
        .iter()
        .filter(|task| task.kind == TaskKind::Deploy && task.state == TaskState::Failed)
        .collect();
    if !failed.is_empty() {
        let resumed_at = store
            .transitions(&release.id)?
            .iter()
            .filter(|transition| transition.action == Action::Resume)
            .map(|transition| transition.at)
            .max()
            .unwrap_or(i64::MIN);
        if let Some(task) = failed
            .iter()
            .find(|task| task.ended_at.unwrap_or(i64::MAX) > resumed_at)
        {
            return Ok(Some(format!(
                "deploy of {} failed on host {}: {}",
                task.version,
                task.host,
                if task.message.is_empty() {
                    "no message"
                } else {
                    task.message.as_str()
                }
            )));
        }
    }
    Ok(silent_agent(settings, release, agents, now))
}

/// Why the release cannot go on for want of an agent: the first of its hosts whose agent has
/// been silent for longer than the timeout, or that has none.
fn silent_agent(
    settings: &ExecutorSettings,
    release: &Release,
    agents: &BTreeMap<String, StoredAgent>,
    now: i64,
) -> Option<String> {
    release.spec.hosts.names().iter().find_map(|host| {
        let Some(agent) = agents.get(host) else {
            return Some(format!("host {host} has no registered agent"));
        };
        let silent_seconds = now - agent.record.last_seen_at;
        (silent_seconds > settings.agent_timeout_seconds).then(|| {
            format!(
                "the agent of host {host} has been silent for {silent_seconds} s (more than {} s)",
                settings.agent_timeout_seconds
            )
        })
    })
}

/// A rolling back release: one rollback task per host whose deploy started or succeeded; once
/// they all ended, `rolled_back`, or `failed` with the first failure.
fn roll_back(
    store: &dyn Store,
    release: &Release,
    execution: &Execution,
    tasks: &[HostTask],
    now: i64,
) -> Result<Option<Step>, ExecutorError> {
    let deployed_hosts: Vec<&HostTask> = tasks
        .iter()
        .filter(|task| {
            task.kind == TaskKind::Deploy
                && matches!(task.state, TaskState::Started | TaskState::Succeeded)
        })
        .collect();
    let mut rollbacks = Vec::new();
    for deploy in &deployed_hosts {
        let previous = execution
            .previous_versions
            .get(&deploy.host)
            .cloned()
            .flatten();
        rollbacks.push(store.create_task(&NewTask {
            release: release.id.clone(),
            host: deploy.host.clone(),
            batch: deploy.batch,
            kind: TaskKind::Rollback,
            version: previous.unwrap_or_default(),
            artifact: None,
            created_at: now,
        })?);
    }
    // Rollback tasks made in an earlier round for hosts whose deploy failed since count too.
    for task in tasks.iter().filter(|task| task.kind == TaskKind::Rollback) {
        if !rollbacks.iter().any(|made| made.id == task.id) {
            rollbacks.push(task.clone());
        }
    }
    if !rollbacks.iter().all(|task| task.state.is_ended()) {
        return Ok(None);
    }
    if let Some(failed) = rollbacks
        .iter()
        .find(|task| task.state == TaskState::Failed)
    {
        let reason = format!(
            "rollback failed on host {}: {}",
            failed.host,
            if failed.message.is_empty() {
                "no message"
            } else {
                failed.message.as_str()
            }
        );
        return transition(store, release, Action::Fail, now, reason, None);
    }
    let reason = format!("rolled back on {}", host_count(rollbacks.len()));
    transition(store, release, Action::RollbackDone, now, reason, None)
}

/// "1 host", "3 hosts".
fn host_count(count: usize) -> String {
    if count == 1 {
        return "1 host".to_owned();
    }
    format!("{count} hosts")
}

/// A pause by the executor (a failed deploy, a silent agent): the transition with the
/// notifications a person's pause gives, on the guard's routes.
fn pause(
    store: &dyn Store,
    settings: &ExecutorSettings,
    release: &Release,
    now: i64,
    reason: String,
) -> Result<Option<Step>, ExecutorError> {
    let change = action_change(
        &settings.guard,
        release,
        Action::Pause,
        ACTOR,
        Some(reason.clone()),
        now,
    )?;
    let (moved, _) = store.apply(&change)?;
    Ok(Some(Step {
        release: moved.id,
        action: Action::Pause,
        to: moved.state,
        reason,
    }))
}

/// A transition by the executor, through the release layer's rule and `Store::apply`.
fn transition(
    store: &dyn Store,
    release: &Release,
    action: Action,
    now: i64,
    reason: String,
    deployed: Option<Batch>,
) -> Result<Option<Step>, ExecutorError> {
    let mut change = transition_change(release, action, ACTOR.to_owned(), now, reason.clone())?;
    change.deployed = deployed;
    let (moved, _) = store.apply(&change)?;
    Ok(Some(Step {
        release: moved.id,
        action,
        to: moved.state,
        reason,
    }))
}
