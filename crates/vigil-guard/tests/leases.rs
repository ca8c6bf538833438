//! Two guards sharing one store, as two replicas do: each with its own data index filled with
//! the same data. The observing releases are split between them, each judged by one; a fault
//! pauses its release once, with one notification; when one guard stops, the other takes its
//! releases over once their leases expire and pauses a fault that appears later; a guard that
//! comes back gets its share again; a stalled guard's write after its lease was taken is
//! refused and stores nothing.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use vigil_core::release::{
    Action, NotificationEvent, PlannedBatch, ReferenceHosts, Release, ReleaseSpec, ReleaseState,
};
use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_core::{Batch, ManualClock};
use vigil_guard::{DataIndex, Guard, GuardConfig, Judged, ReplicaIdentity, Route};
use vigil_store::Store;

const STEP: i64 = 30;
const DEPLOY: i64 = 1_700_000_010;
const LEASE_SECONDS: i64 = 15;
/// The guards' rounds: every few seconds, as the server's loop runs every second.
const TICK: i64 = 5;

fn release_hosts(release: usize) -> Vec<String> {
    vec![format!("r{release}-h0"), format!("r{release}-h1")]
}

fn reference_hosts(release: usize) -> Vec<String> {
    vec![format!("r{release}-k0"), format!("r{release}-k1")]
}

fn release(number: usize) -> Release {
    let hosts = release_hosts(number);
    Release {
        id: format!("r{number}"),
        spec: ReleaseSpec {
            app: format!("app{number}"),
            version: "2".into(),
            hosts: vigil_core::release::ReleaseHosts::Names(hosts.clone()),
            reference: ReferenceHosts::Hosts {
                hosts: reference_hosts(number),
            },
            batches: vec![PlannedBatch {
                hosts: hosts.clone(),
            }],
            step_seconds: STEP,
            observe_seconds: 7200,
            metrics: vec![vigil_core::MetricMeta {
                name: "latency".into(),
                kind: vigil_core::MetricKind::Middleware,
                unit: "ms".into(),
                direction: vigil_core::Direction::Increase,
                critical: true,
                judged: true,
            }],
            settings: Default::default(),
            rules: Vec::new(),
        },
        state: ReleaseState::Observing,
        created_by: "test".into(),
        created_at: DEPLOY,
        updated_at: DEPLOY,
        deployed: vec![Batch {
            index: 0,
            at: DEPLOY,
            hosts,
        }],
        verdict: None,
        reason: String::new(),
    }
}

/// The latency of every host of `releases` at `at`; the release hosts of the `faulty` ones
/// three times as slow. Hosts in `missing` send nothing.
fn samples(at: i64, releases: usize, faulty: &HashSet<usize>, missing: &[String]) -> MetricChunk {
    let mut chunk = MetricChunk::default();
    for number in 0..releases {
        let hosts = release_hosts(number)
            .into_iter()
            .map(|host| (host, faulty.contains(&number)))
            .chain(
                reference_hosts(number)
                    .into_iter()
                    .map(|host| (host, false)),
            );
        for (position, (host, slow)) in hosts.enumerate() {
            if missing.contains(&host) {
                continue;
            }
            let series = chunk.series.len() as u32;
            chunk.series.push(
                SeriesKey {
                    app: format!("app{number}"),
                    host,
                    metric: "latency".into(),
                    counter: false,
                }
                .into(),
            );
            let wobble = ((at / STEP) as f64 * 0.7 + (number * 4 + position) as f64 * 1.3).sin();
            let level = 100.0 + 3.0 * wobble;
            chunk.points.push(Point {
                series,
                ms: (at - 5) * 1000,
                value: if slow { 3.0 * level } else { level },
            });
        }
    }
    chunk
}

/// One replica: its guard, data index and clock.
struct Replica {
    guard: Guard,
    index: Arc<RwLock<DataIndex>>,
    clock: Arc<ManualClock>,
}

impl Replica {
    fn new(store: &Arc<dyn Store>, id: &str, releases: usize, config: GuardConfig) -> Replica {
        let index = Arc::new(RwLock::new(DataIndex::new()));
        let mut at = DEPLOY - 3600;
        while at <= DEPLOY {
            index
                .write()
                .unwrap()
                .insert_metrics(&samples(at, releases, &HashSet::new(), &[]));
            at += STEP;
        }
        let clock = Arc::new(ManualClock::new(DEPLOY));
        let guard = Guard::new(Arc::clone(store), Arc::clone(&index), clock.clone(), config)
            .with_replica(ReplicaIdentity {
                id: id.to_owned(),
                address: format!("http://{id}.test:7070"),
                lease_seconds: LEASE_SECONDS,
            });
        Replica {
            guard,
            index,
            clock,
        }
    }

    fn insert(&self, chunk: &MetricChunk) {
        self.index.write().unwrap().insert_metrics(chunk);
    }

    fn pass_at(&self, now: i64) -> Vec<Judged> {
        self.clock.set(now);
        self.guard.pass().unwrap()
    }
}

fn store_with(releases: usize, dir: &vigil_store::testing::TempDir) -> Arc<dyn Store> {
    let store: Arc<dyn Store> =
        vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    for number in 0..releases {
        store.create_release(&release(number)).unwrap();
    }
    store
}

fn paused_config() -> GuardConfig {
    GuardConfig {
        routes: vec![Route {
            channel: "ops".into(),
            events: vec![NotificationEvent::Paused],
        }],
        ..GuardConfig::default()
    }
}

fn state(store: &dyn Store, id: &str) -> ReleaseState {
    store.release(id).unwrap().unwrap().state
}

/// The pauses of a release and its Paused notifications.
fn pauses(store: &dyn Store, id: &str) -> (usize, usize) {
    let transitions = store
        .transitions(id)
        .unwrap()
        .iter()
        .filter(|transition| transition.action == Action::Pause)
        .count();
    let notified = store
        .notifications(id)
        .unwrap()
        .iter()
        .filter(|item| item.notification.event == NotificationEvent::Paused)
        .count();
    (transitions, notified)
}

fn held_by(store: &dyn Store, holder: &str, now: i64) -> Vec<String> {
    store
        .leases()
        .unwrap()
        .into_iter()
        .filter(|lease| lease.holder == holder && lease.expires_at > now)
        .map(|lease| lease.release_id)
        .collect()
}

/// What the guards did: who judged each release at each step (never both), and the state
/// changes they made.
#[derive(Default)]
struct Outcomes {
    judges: HashMap<(String, i64), Vec<&'static str>>,
    moved: Vec<(String, ReleaseState)>,
}

impl Outcomes {
    fn record(&mut self, who: &'static str, judged: Vec<Judged>) {
        for outcome in judged {
            self.judges
                .entry((outcome.release_id.clone(), outcome.at))
                .or_default()
                .push(who);
            if let Some(to) = outcome.moved_to {
                self.moved.push((outcome.release_id, to));
            }
        }
    }
}

#[test]
fn two_guards_split_the_releases_and_one_takes_over_when_the_other_stops() {
    const RELEASES: usize = 10;
    let dir = vigil_store::testing::TempDir::new("guard-leases").unwrap();
    let store = store_with(RELEASES, &dir);
    let a = Replica::new(&store, "a", RELEASES, paused_config());
    let b = Replica::new(&store, "b", RELEASES, paused_config());
    let mut faulty: HashSet<usize> = HashSet::new();
    let mut log = Outcomes::default();
    let mut now = DEPLOY;
    // The data of a step reaches both replicas at its time.
    let step_data = |now: i64, faulty: &HashSet<usize>, replicas: &[&Replica]| {
        if (now - DEPLOY) % STEP == 0 && now > DEPLOY {
            let chunk = samples(now, RELEASES, faulty, &[]);
            for replica in replicas {
                replica.insert(&chunk);
            }
        }
    };

    // Both alive: after a round or two, each guards about half.
    for tick in 0..(12 * STEP / TICK) {
        if tick == 3 * STEP / TICK {
            faulty.insert(3);
        }
        step_data(now, &faulty, &[&a, &b]);
        // Leases are counted as of the rounds, which begin the passes.
        let observing = (0..RELEASES)
            .filter(|number| {
                state(store.as_ref(), &format!("r{number}")) == ReleaseState::Observing
            })
            .count();
        log.record("a", a.pass_at(now));
        log.record("b", b.pass_at(now));
        if tick >= 2 {
            let (held_a, held_b) = (a.guard.leases_held(), b.guard.leases_held());
            assert_eq!(held_a + held_b, observing, "at tick {tick}");
            assert!(
                held_a.abs_diff(held_b) <= 1,
                "{held_a} and {held_b} at tick {tick}"
            );
            assert_eq!(
                a.guard.releases_guarded() + b.guard.releases_guarded(),
                observing
            );
        }
        now += TICK;
    }
    assert_eq!(state(store.as_ref(), "r3"), ReleaseState::Paused);
    assert_eq!(pauses(store.as_ref(), "r3"), (1, 1));
    let judged_by = |who: &str| {
        log.judges
            .values()
            .filter(|judges| judges.contains(&who))
            .count()
    };
    assert!(
        judged_by("a") > 20 && judged_by("b") > 20,
        "{:?}",
        log.judges
    );

    // A stops (killed): its leases expire and B takes its releases over.
    let dead_at = now;
    let left_by_a = held_by(store.as_ref(), "a", now);
    assert!(left_by_a.len() >= 4, "{left_by_a:?}");
    let later_fault: usize = left_by_a
        .iter()
        .find_map(|id| id.strip_prefix('r')?.parse().ok())
        .unwrap();
    for tick in 0..(12 * STEP / TICK) {
        if tick == 2 * STEP / TICK {
            faulty.insert(later_fault);
        }
        step_data(now, &faulty, &[&a, &b]);
        log.record("b", b.pass_at(now));
        if now >= dead_at + LEASE_SECONDS {
            assert!(held_by(store.as_ref(), "a", now).is_empty());
        }
        now += TICK;
    }
    assert_eq!(b.guard.leases_held(), RELEASES - 2);
    let later_id = format!("r{later_fault}");
    assert_eq!(state(store.as_ref(), &later_id), ReleaseState::Paused);
    assert_eq!(pauses(store.as_ref(), &later_id), (1, 1));
    for id in &left_by_a {
        assert!(
            log.judges
                .iter()
                .any(|((release, at), who)| release == id && *at > dead_at && who == &["b"]),
            "{id} was not taken over"
        );
    }

    // A comes back: it gets its share again from B, without a release judged twice.
    for _ in 0..4 {
        step_data(now, &faulty, &[&a, &b]);
        log.record("a", a.pass_at(now));
        log.record("b", b.pass_at(now));
        now += TICK;
    }
    let (held_a, held_b) = (a.guard.leases_held(), b.guard.leases_held());
    assert_eq!(held_a + held_b, RELEASES - 2);
    assert!(held_a.abs_diff(held_b) <= 1, "{held_a} and {held_b}");

    // Once the first round settled, until A stopped, no step of a release was judged by
    // both. (A step may be judged again by the guard a release is handed to, recording
    // nothing new: checked below.)
    for ((release, at), who) in &log.judges {
        if *at > DEPLOY && *at < dead_at {
            assert_eq!(who.len(), 1, "{release} at {at} judged by {who:?}");
        }
    }
    assert_eq!(
        log.moved,
        [
            ("r3".to_owned(), ReleaseState::Paused),
            (later_id, ReleaseState::Paused)
        ]
    );
    // No verdict recorded twice for one step.
    for number in 0..RELEASES {
        let verdicts = store.verdicts(&format!("r{number}")).unwrap();
        let steps: HashSet<i64> = verdicts.iter().map(|record| record.at).collect();
        assert_eq!(steps.len(), verdicts.len(), "r{number}: {verdicts:?}");
    }
}

#[test]
fn a_stalled_guard_whose_lease_was_taken_writes_nothing() {
    let dir = vigil_store::testing::TempDir::new("guard-stale-lease").unwrap();
    let store = store_with(1, &dir);
    // Steps are judged only once complete, however late.
    let config = GuardConfig {
        grace_seconds: 3600,
        ..paused_config()
    };
    let a = Replica::new(&store, "a", 1, config.clone());
    let b = Replica::new(&store, "b", 1, config);
    let step = DEPLOY + STEP;
    // The step arrives without one reference host: neither can judge it yet.
    let late_host = reference_hosts(0)[1].clone();
    let partial = samples(step, 1, &HashSet::new(), std::slice::from_ref(&late_host));
    a.insert(&partial);
    b.insert(&partial);
    assert!(a.pass_at(step).is_empty());
    assert_eq!(a.guard.leases_held(), 1);
    // A stalls; B, past A's lease, takes the release.
    assert!(b.pass_at(step + LEASE_SECONDS + 5).is_empty());
    assert_eq!(b.guard.leases_held(), 1);
    assert_eq!(
        held_by(store.as_ref(), "b", step + LEASE_SECONDS + 5),
        ["r0"]
    );
    // A's stalled pass goes on at the time it began: the late host reaches it, and its
    // write is refused.
    let whole = samples(step, 1, &HashSet::new(), &[]);
    a.insert(&whole);
    assert!(a.pass_at(step).is_empty());
    assert_eq!(a.guard.leases_held(), 0);
    assert!(store.verdicts("r0").unwrap().is_empty());
    // B judges it once it has the step too: one verdict.
    b.insert(&whole);
    let judged = b.pass_at(step + LEASE_SECONDS + 6);
    assert_eq!(judged.len(), 1);
    assert_eq!(store.verdicts("r0").unwrap().len(), 1);
}
