//! What the agent routes answer: a poll's orders, and each agent's presence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

/// Artifacts by host: what each host's agent fetches ahead of its batches.
type Wanted = BTreeMap<String, Vec<String>>;

/// The artifacts of the executor's releases not yet ended, by host. Every poll needs them,
/// and reading them means reading every unfinished release: a replica reads them at most once
/// per second of its clock, however many agents poll in that second, so an order reaches the
/// agents at most a second later (at once on the replica that took it, see
/// [`FetchIndex::forget`]).
#[derive(Debug, Default)]
pub struct FetchIndex {
    read: Mutex<Option<(i64, Arc<Wanted>)>>,
    /// Set by [`FetchIndex::forget`]: the next poll reads again, even within the second.
    stale: AtomicBool,
}

impl FetchIndex {
    /// The index read at `now` (a concurrent poll waits for the read under way rather than
    /// reading too).
    fn wanted(&self, store: &dyn Store, now: i64) -> Result<Arc<Wanted>, StoreError> {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken before the read: an order committed during the read marks it stale again.
        let stale = self.stale.swap(false, Ordering::SeqCst);
        if let (false, Some((read_at, wanted))) = (stale, read.as_ref()) {
            if *read_at == now {
                return Ok(Arc::clone(wanted));
            }
        }
        let wanted = Arc::new(read_wanted(store)?);
        *read = Some((now, Arc::clone(&wanted)));
        Ok(wanted)
    }

    /// Reads the store again at the next poll (a release was just ordered here). Does not
    /// wait for a read under way.
    pub fn forget(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }
}

/// Every host's artifacts to fetch, in the order of the releases.
fn read_wanted(store: &dyn Store) -> Result<Wanted, StoreError> {
    let mut wanted = Wanted::new();
    for release in store.releases(&ReleaseFilter {
        states: FETCHING_STATES.to_vec(),
        ..ReleaseFilter::default()
    })? {
        let Some(execution) = store.execution(&release.id)? else {
            continue;
        };
        for host in release.spec.hosts.names() {
            let artifacts = wanted.entry(host.clone()).or_default();
            if !artifacts.contains(&execution.spec.artifact) {
                artifacts.push(execution.spec.artifact.clone());
            }
        }
    }
    Ok(wanted)
}

/// A poll of `host` at `now` stored ([`Store::agent_poll`]) and answered: the acknowledged
/// reports, the tasks to run, and the artifacts of the host's releases not yet ended that it
/// does not hold verified (from `fetches`). An unknown host gets `registered: false` and
/// nothing else.
pub fn poll(
    store: &dyn Store,
    fetches: &FetchIndex,
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
    let fetch: Vec<String> = fetches
        .wanted(store, now)?
        .get(host)
        .map(|artifacts| {
            artifacts
                .iter()
                .filter(|artifact| !held.contains(artifact))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
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
