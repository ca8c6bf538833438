//! What the agent routes answer: a poll's orders, and each agent's presence.

use vigil_core::agent::{AgentOrders, AgentPoll, AgentRecord};
use vigil_core::release::ReleaseState;
use vigil_store::{ReleaseFilter, Store, StoreError, StoredAgent};

/// How often an agent polls, in seconds: well inside the default agent timeout.
pub const POLL_SECONDS: u32 = 2;

/// The releases whose artifact their hosts fetch ahead of their batches.
const FETCHING_STATES: [ReleaseState; 4] = [
    ReleaseState::Pending,
    ReleaseState::Deploying,
    ReleaseState::Observing,
    ReleaseState::Paused,
];

/// A poll of `host` at `now` stored ([`Store::agent_poll`]) and answered: the acknowledged
/// reports, the tasks to run, and the artifacts of the host's releases not yet ended that it
/// does not hold verified. An unknown host gets `registered: false` and nothing else.
pub fn poll(
    store: &dyn Store,
    host: &str,
    poll: &AgentPoll,
    now: i64,
) -> Result<AgentOrders, StoreError> {
    let Some(answer) = store.agent_poll(host, poll, now)? else {
        return Ok(AgentOrders::default());
    };
    let held: Vec<String> = store
        .agent(host)?
        .map(|agent| {
            agent
                .artifacts
                .into_iter()
                .filter(|progress| progress.verified)
                .map(|progress| progress.artifact)
                .collect()
        })
        .unwrap_or_default();
    let mut fetch: Vec<String> = Vec::new();
    for release in store.releases(&ReleaseFilter {
        states: FETCHING_STATES.to_vec(),
        ..ReleaseFilter::default()
    })? {
        if !release.spec.hosts.names().iter().any(|name| name == host) {
            continue;
        }
        let Some(execution) = store.execution(&release.id)? else {
            continue;
        };
        let artifact = execution.spec.artifact;
        if !held.contains(&artifact) && !fetch.contains(&artifact) {
            fetch.push(artifact);
        }
    }
    Ok(AgentOrders {
        acknowledged: answer.acknowledged,
        tasks: answer.tasks,
        fetch,
        poll_seconds: POLL_SECONDS,
        registered: true,
    })
}

/// An agent as `GET /api/v1/agents` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentStatus {
    #[serde(flatten)]
    pub record: AgentRecord,
    /// Polled within the agent timeout.
    pub online: bool,
    pub artifacts: Vec<vigil_core::agent::ArtifactProgress>,
}

/// Every agent with whether it is online at `now`.
pub fn statuses(agents: Vec<StoredAgent>, now: i64, timeout_seconds: i64) -> Vec<AgentStatus> {
    agents
        .into_iter()
        .map(|agent| AgentStatus {
            online: now - agent.record.last_seen_at <= timeout_seconds,
            record: agent.record,
            artifacts: agent.artifacts,
        })
        .collect()
}
