//! The executor's rounds on an in-memory SQLite store with a manual clock, agents played by the
//! test through the same poll the agent route answers.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use vigil_core::agent::{
    AgentHello, AgentOrders, AgentPoll, ArtifactProgress, PlanStep, TaskKind, TaskReport, TaskState,
};
use vigil_core::release::{Action, NotificationEvent, ReleaseHosts, ReleaseState, VerdictRecord};
use vigil_core::{Clock, ManualClock, Verdict};
use vigil_store::{SqliteStore, Store};

use crate::agents::{poll, FetchIndex};
use crate::order::{resolve, CreateDeployment};
use crate::tick::{tick, ExecutorSettings};

const ARTIFACT: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

struct Fleet {
    store: SqliteStore,
    clock: ManualClock,
    settings: ExecutorSettings,
    fetches: FetchIndex,
}

impl Fleet {
    fn new() -> Fleet {
        let store = SqliteStore::open_in_memory().unwrap();
        let clock = ManualClock::new(10_000);
        for host in HOSTS {
            store
                .register_agent(
                    &AgentHello {
                        host: host.to_owned(),
                        app: "shop".to_owned(),
                        labels: BTreeMap::new(),
                        version: Some("1.0".to_owned()),
                        peer_addr: None,
                        agent_version: "test".to_owned(),
                    },
                    clock.now(),
                )
                .unwrap();
        }
        // Pauses go to an on-call channel, as a person's do.
        let mut settings = ExecutorSettings::default();
        settings.guard.routes = vec![vigil_guard::Route {
            channel: "oncall".to_owned(),
            events: vec![NotificationEvent::Paused],
        }];
        Fleet {
            store,
            clock,
            settings,
            fetches: FetchIndex::default(),
        }
    }

    /// A two-batch release: one host, then the other two, each observed `observe` seconds,
    /// ordered on this replica.
    fn order(&self, observe: i64) {
        self.order_on_another_replica(observe);
        self.fetches.forget();
    }

    /// The same release, ordered on another replica: this one learns of it from the store.
    fn order_on_another_replica(&self, observe: i64) {
        let order = CreateDeployment {
            id: Some("r1".to_owned()),
            app: "shop".to_owned(),
            version: "2.0".to_owned(),
            artifact: ARTIFACT.to_owned(),
            hosts: ReleaseHosts::Names(HOSTS.iter().map(|host| host.to_string()).collect()),
            plan: vec![
                PlanStep {
                    size: "1".to_owned(),
                    observe_seconds: observe,
                },
                PlanStep {
                    size: "100%".to_owned(),
                    observe_seconds: observe,
                },
            ],
            reference: vigil_core::release::ReferenceHosts::NotYetDeployed,
            step_seconds: 30,
            metrics: Vec::new(),
            settings: serde_json::Map::new(),
            rules: Vec::new(),
        };
        let agents: Vec<_> = self
            .store
            .agents()
            .unwrap()
            .into_iter()
            .map(|agent| agent.record)
            .collect();
        let (id, spec, execution) = resolve(order, &agents).unwrap();
        let release = vigil_deploy::requests::new_release(
            id.unwrap(),
            spec,
            "alice".to_owned(),
            self.clock.now(),
        );
        self.store.create_execution(&release, &execution).unwrap();
    }

    fn poll(&self, host: &str, reports: Vec<TaskReport>, verified: bool) -> AgentOrders {
        let progress = ArtifactProgress {
            artifact: ARTIFACT.to_owned(),
            pieces_held: if verified { 4 } else { 1 },
            pieces: 4,
            verified,
        };
        let request = AgentPoll {
            reports,
            artifacts: vec![progress],
        };
        poll(&self.store, &self.fetches, host, &request, self.clock.now()).unwrap()
    }

    /// Every agent polls; those named in `succeed` report their open tasks started and ended.
    fn everyone_polls(&self, outcome: &[(&str, TaskState)]) {
        for host in HOSTS {
            let orders = self.poll(host, Vec::new(), true);
            let Some((_, state)) = outcome.iter().find(|(named, _)| *named == host) else {
                continue;
            };
            let reports = orders
                .tasks
                .iter()
                .flat_map(|task| {
                    [
                        report(task.id, TaskState::Started, ""),
                        report(task.id, *state, "exit status 1"),
                    ]
                })
                .collect();
            self.poll(host, reports, true);
        }
    }

    fn tick(&self) -> Vec<crate::Step> {
        tick(&self.store, &self.settings, self.clock.now()).unwrap()
    }

    fn state(&self) -> ReleaseState {
        self.store.release("r1").unwrap().unwrap().state
    }

    fn tasks(&self, kind: TaskKind) -> Vec<(String, TaskState)> {
        self.store
            .release_tasks("r1")
            .unwrap()
            .into_iter()
            .filter(|task| task.kind == kind)
            .map(|task| (task.host, task.state))
            .collect()
    }

    fn healthy_verdict(&self) {
        let record = VerdictRecord {
            release_id: "r1".to_owned(),
            at: self.clock.now(),
            verdict: Verdict::Healthy,
            findings: Vec::new(),
            explanation: "healthy".to_owned(),
            suppressed: Vec::new(),
        };
        self.store.record_verdict(&record, &[]).unwrap();
    }

    fn act(&self, action: Action) {
        let release = self.store.release("r1").unwrap().unwrap();
        let change = vigil_guard::guard::transition_change(
            &release,
            action,
            "alice".to_owned(),
            self.clock.now(),
            "by hand".to_owned(),
        )
        .unwrap();
        self.store.apply(&change).unwrap();
    }
}

fn report(task: i64, state: TaskState, message: &str) -> TaskReport {
    TaskReport {
        task,
        state,
        at: 0,
        message: message.to_owned(),
    }
}

/// Batch 0 deployed to h1: the release observes it.
fn first_batch_deployed(fleet: &Fleet) {
    fleet.everyone_polls(&[]);
    fleet.tick();
    assert_eq!(fleet.state(), ReleaseState::Deploying);
    fleet.clock.advance(5);
    fleet.everyone_polls(&[("h1", TaskState::Succeeded)]);
    fleet.tick();
    assert_eq!(fleet.state(), ReleaseState::Observing);
}

#[test]
fn the_artifacts_to_fetch_are_read_once_a_second_for_all_polls_and_at_once_after_an_order_here() {
    let fleet = Fleet::new();
    assert!(fleet.poll("h3", Vec::new(), false).fetch.is_empty());
    // Ordered on another replica: this one's polls in the same second answer from its read...
    fleet.order_on_another_replica(300);
    assert!(fleet.poll("h3", Vec::new(), false).fetch.is_empty());
    // ...and the next second's read has it, for every host of the release.
    fleet.clock.advance(1);
    assert_eq!(fleet.poll("h3", Vec::new(), false).fetch, [ARTIFACT]);
    assert_eq!(fleet.poll("h2", Vec::new(), false).fetch, [ARTIFACT]);
    // A host that holds it verified is not told again.
    assert!(fleet.poll("h1", Vec::new(), true).fetch.is_empty());

    // Ordered on this replica: the very next poll has it.
    let here = Fleet::new();
    assert!(here.poll("h3", Vec::new(), false).fetch.is_empty());
    here.order(300);
    assert_eq!(here.poll("h3", Vec::new(), false).fetch, [ARTIFACT]);
}

#[test]
fn a_release_waits_for_its_artifact_then_goes_batch_by_batch_on_the_verdict() {
    let fleet = Fleet::new();
    fleet.order(300);
    // h3 holds a piece only: nothing starts, and its orders say what to fetch.
    for host in ["h1", "h2"] {
        fleet.poll(host, Vec::new(), true);
    }
    let orders = fleet.poll("h3", Vec::new(), false);
    assert_eq!(orders.fetch, [ARTIFACT]);
    assert!(orders.registered);
    assert!(fleet.tick().is_empty());
    assert_eq!(fleet.state(), ReleaseState::Pending);
    assert!(fleet.tasks(TaskKind::Deploy).is_empty());

    first_batch_deployed(&fleet);
    assert_eq!(
        fleet.tasks(TaskKind::Deploy),
        [("h1".to_owned(), TaskState::Succeeded)]
    );
    let release = fleet.store.release("r1").unwrap().unwrap();
    assert_eq!(release.deployed.len(), 1);
    assert_eq!(release.deployed[0].hosts, ["h1"]);

    // Observed for less than its time: the next batch waits.
    fleet.clock.advance(200);
    fleet.everyone_polls(&[]);
    assert!(fleet.tick().is_empty());
    // Past its time without a verdict past the warm-up: hold.
    fleet.clock.advance(200);
    fleet.everyone_polls(&[]);
    assert!(fleet.tick().is_empty());
    assert_eq!(fleet.state(), ReleaseState::Observing);
    // The guard's verdict lets it proceed.
    fleet.healthy_verdict();
    let steps = fleet.tick();
    assert_eq!(steps[0].action, Action::DeployBatch);
    assert_eq!(fleet.tasks(TaskKind::Deploy).len(), 3);
    fleet.clock.advance(5);
    fleet.everyone_polls(&[("h2", TaskState::Succeeded), ("h3", TaskState::Succeeded)]);
    fleet.tick();
    let release = fleet.store.release("r1").unwrap().unwrap();
    assert_eq!(release.state, ReleaseState::Observing);
    assert_eq!(release.deployed.len(), 2);
    // Nothing more for the executor: the guard succeeds it after its observation.
    fleet.clock.advance(1_000);
    fleet.everyone_polls(&[]);
    assert!(fleet.tick().is_empty());
}

#[test]
fn a_failed_deploy_pauses_with_its_reason_and_a_resume_goes_on_without_a_second_task() {
    let fleet = Fleet::new();
    fleet.order(300);
    fleet.everyone_polls(&[]);
    fleet.tick();
    fleet.everyone_polls(&[("h1", TaskState::Failed)]);
    let steps = fleet.tick();
    assert_eq!(steps[0].to, ReleaseState::Paused);
    let release = fleet.store.release("r1").unwrap().unwrap();
    assert!(
        release.reason.contains("failed on host h1: exit status 1"),
        "{}",
        release.reason
    );
    let notified = fleet.store.notifications("r1").unwrap();
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0].notification.event, NotificationEvent::Paused);
    assert_eq!(notified[0].notification.channel, "oncall");
    assert!(
        notified[0]
            .notification
            .text
            .contains("failed on host h1: exit status 1"),
        "{}",
        notified[0].notification.text
    );
    // Paused: nothing is sent, nothing moves.
    fleet.clock.advance(5);
    fleet.everyone_polls(&[]);
    assert!(fleet.tick().is_empty());
    fleet.act(Action::Resume);
    fleet.tick();
    fleet.tick();
    assert_eq!(fleet.state(), ReleaseState::Observing);
    assert_eq!(
        fleet.tasks(TaskKind::Deploy),
        [("h1".to_owned(), TaskState::Failed)]
    );
}

#[test]
fn a_silent_agent_pauses_the_release_with_its_host() {
    let fleet = Fleet::new();
    fleet.order(300);
    first_batch_deployed(&fleet);
    fleet.clock.advance(10);
    fleet.poll("h1", Vec::new(), true);
    fleet.poll("h3", Vec::new(), true);
    fleet.clock.advance(10);
    fleet.poll("h1", Vec::new(), true);
    fleet.poll("h3", Vec::new(), true);
    let steps = fleet.tick();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].to, ReleaseState::Paused);
    assert!(steps[0].reason.contains("host h2"), "{}", steps[0].reason);
    assert!(steps[0].reason.contains("silent"), "{}", steps[0].reason);
    let notified = fleet.store.notifications("r1").unwrap();
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert!(
        notified[0].notification.text.contains("host h2"),
        "{}",
        notified[0].notification.text
    );
}

#[test]
fn a_host_silent_before_the_artifact_reached_it_pauses_the_waiting_release_and_a_resume_still_waits_for_it(
) {
    let fleet = Fleet::new();
    fleet.order(300);
    // h3's agent fetched a piece, then fell silent: the release would wait for ever.
    fleet.poll("h1", Vec::new(), true);
    fleet.poll("h2", Vec::new(), true);
    fleet.poll("h3", Vec::new(), false);
    assert!(fleet.tick().is_empty());
    for _ in 0..2 {
        fleet.clock.advance(10);
        fleet.poll("h1", Vec::new(), true);
        fleet.poll("h2", Vec::new(), true);
    }
    let steps = fleet.tick();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].to, ReleaseState::Paused);
    assert!(
        steps[0].reason.contains("host h3") && steps[0].reason.contains("before the artifact"),
        "{}",
        steps[0].reason
    );
    assert_eq!(fleet.store.notifications("r1").unwrap().len(), 1);

    // The agent is back but still fetching; a person resumes: no host deploys before every
    // host holds the artifact.
    fleet.poll("h3", Vec::new(), false);
    fleet.act(Action::Resume);
    assert!(fleet.tick().is_empty());
    assert!(fleet.tasks(TaskKind::Deploy).is_empty());
    fleet.everyone_polls(&[]);
    fleet.tick();
    assert_eq!(fleet.tasks(TaskKind::Deploy).len(), 1);
    assert_eq!(fleet.state(), ReleaseState::Deploying);
}

#[test]
fn a_rollback_runs_on_the_deployed_hosts_and_ends_rolled_back() {
    let fleet = Fleet::new();
    fleet.order(300);
    first_batch_deployed(&fleet);
    fleet.act(Action::Pause);
    fleet.act(Action::Rollback);
    fleet.tick();
    assert_eq!(
        fleet.tasks(TaskKind::Rollback),
        [("h1".to_owned(), TaskState::Pending)]
    );
    let rollback = fleet
        .store
        .release_tasks("r1")
        .unwrap()
        .into_iter()
        .find(|task| task.kind == TaskKind::Rollback)
        .unwrap();
    assert_eq!(rollback.version, "1.0");
    assert_eq!(fleet.state(), ReleaseState::RollingBack);
    fleet.everyone_polls(&[("h1", TaskState::Succeeded)]);
    let steps = fleet.tick();
    assert_eq!(steps[0].to, ReleaseState::RolledBack);
    assert_eq!(
        fleet.tasks(TaskKind::Rollback),
        [("h1".to_owned(), TaskState::Succeeded)]
    );
}

#[test]
fn rounds_repeated_or_restarted_never_make_a_second_task() {
    let fleet = Fleet::new();
    fleet.order(300);
    fleet.everyone_polls(&[]);
    fleet.tick();
    for _ in 0..3 {
        fleet.tick();
    }
    // A second executor (a restarted server) on the same store.
    let other = ExecutorSettings {
        replica: "other".to_owned(),
        ..ExecutorSettings::default()
    };
    tick(&fleet.store, &other, fleet.clock.now()).unwrap();
    assert_eq!(
        fleet.tasks(TaskKind::Deploy),
        [("h1".to_owned(), TaskState::Pending)]
    );
}
