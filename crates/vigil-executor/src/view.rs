//! A shipped release's progress as the API and the pages show it: its batches, its tasks and
//! how far each target host holds the artifact.

use serde::Serialize;
use vigil_core::agent::{HostTask, TaskKind, TaskState};
use vigil_core::release::Release;
use vigil_store::{Execution, Store, StoreError};

/// `GET /api/v1/releases/{id}/execution`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionView {
    pub artifact: String,
    pub batches: Vec<BatchView>,
    pub tasks: Vec<HostTask>,
    pub distribution: Vec<HostDistribution>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchView {
    pub index: u32,
    pub hosts: Vec<String>,
    pub observe_seconds: i64,
    /// `waiting`, `deploying`, `deployed` or `failed` (a task of it failed).
    pub state: &'static str,
    /// When its tasks were created.
    pub started_at: Option<i64>,
    pub deployed_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostDistribution {
    pub host: String,
    pub pieces_held: u32,
    pub pieces: u32,
    pub verified: bool,
}

impl ExecutionView {
    /// Hosts whose deploy task succeeded, out of the release's hosts.
    pub fn deployed_share(&self) -> (usize, usize) {
        let done = self
            .tasks
            .iter()
            .filter(|task| task.kind == TaskKind::Deploy && task.state == TaskState::Succeeded)
            .count();
        let total = self.batches.iter().map(|batch| batch.hosts.len()).sum();
        (done, total)
    }
}

/// The progress of `release`, `None` when Vigil does not ship it.
pub fn execution_view(
    store: &dyn Store,
    release: &Release,
) -> Result<Option<ExecutionView>, StoreError> {
    let Some(execution) = store.execution(&release.id)? else {
        return Ok(None);
    };
    let tasks = store.release_tasks(&release.id)?;
    let agents = store.agents()?;
    Ok(Some(build(release, &execution, tasks, &agents)))
}

fn build(
    release: &Release,
    execution: &Execution,
    tasks: Vec<HostTask>,
    agents: &[vigil_store::StoredAgent],
) -> ExecutionView {
    let batches = release
        .spec
        .batches
        .iter()
        .enumerate()
        .map(|(position, planned)| {
            let index = position as u32;
            let batch_tasks: Vec<&HostTask> = tasks
                .iter()
                .filter(|task| task.kind == TaskKind::Deploy && task.batch == index)
                .collect();
            let deployed_at = release
                .deployed
                .iter()
                .find(|batch| batch.index == index)
                .map(|batch| batch.at);
            let state = if batch_tasks
                .iter()
                .any(|task| task.state == TaskState::Failed)
            {
                "failed"
            } else if deployed_at.is_some() {
                "deployed"
            } else if batch_tasks.is_empty() {
                "waiting"
            } else {
                "deploying"
            };
            BatchView {
                index,
                hosts: planned.hosts.clone(),
                observe_seconds: execution
                    .spec
                    .observe_seconds
                    .get(position)
                    .copied()
                    .unwrap_or(release.spec.observe_seconds),
                state,
                started_at: batch_tasks.iter().map(|task| task.created_at).min(),
                deployed_at,
            }
        })
        .collect();
    let distribution = release
        .spec
        .hosts
        .names()
        .iter()
        .map(|host| {
            let progress = agents
                .iter()
                .find(|agent| &agent.record.host == host)
                .and_then(|agent| {
                    agent
                        .artifacts
                        .iter()
                        .find(|progress| progress.artifact == execution.spec.artifact)
                });
            HostDistribution {
                host: host.clone(),
                pieces_held: progress.map_or(0, |progress| progress.pieces_held),
                pieces: progress.map_or(0, |progress| progress.pieces),
                verified: progress.is_some_and(|progress| progress.verified),
            }
        })
        .collect();
    ExecutionView {
        artifact: execution.spec.artifact.clone(),
        batches,
        tasks,
        distribution,
    }
}
