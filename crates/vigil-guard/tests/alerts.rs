//! Alerts weighed by the live guard: a critical alert on release hosts only pauses the release
//! at the next step; the same alert on a reference host too does not; a warning recommends.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use vigil_core::release::{PlannedBatch, ReferenceHosts, Release, ReleaseSpec, ReleaseState};
use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_core::{Alert, Batch, Clock, ManualClock, Verdict};
use vigil_guard::{DataIndex, Guard, GuardConfig};
use vigil_store::Store;

const STEP: i64 = 30;
const DEPLOY: i64 = 1_700_000_010;
const RELEASE_HOSTS: [&str; 2] = ["h0", "h1"];
const REFERENCE_HOSTS: [&str; 2] = ["h2", "h3"];

fn names(hosts: &[&str]) -> Vec<String> {
    hosts.iter().map(|host| (*host).to_owned()).collect()
}

fn release() -> Release {
    Release {
        id: "r1".into(),
        spec: ReleaseSpec {
            app: "shop".into(),
            version: "2".into(),
            hosts: vigil_core::release::ReleaseHosts::Names(names(&RELEASE_HOSTS)),
            reference: ReferenceHosts::Hosts {
                hosts: names(&REFERENCE_HOSTS),
            },
            batches: vec![PlannedBatch {
                hosts: names(&RELEASE_HOSTS),
            }],
            step_seconds: STEP,
            observe_seconds: 7200,
            metrics: Vec::new(),
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
            hosts: names(&RELEASE_HOSTS),
        }],
        verdict: None,
        reason: String::new(),
    }
}

/// Every host's latency at `at`, the same before and after the deploy.
fn samples(at: i64) -> MetricChunk {
    let mut chunk = MetricChunk::default();
    for (number, host) in RELEASE_HOSTS.iter().chain(&REFERENCE_HOSTS).enumerate() {
        chunk.series.push(
            SeriesKey {
                app: "shop".into(),
                host: (*host).into(),
                metric: "latency".into(),
                counter: false,
            }
            .into(),
        );
        let wobble = ((at / STEP) as f64 * 0.7 + number as f64 * 1.3).sin();
        chunk.points.push(Point {
            series: number as u32,
            ms: (at - 5) * 1000,
            value: 100.0 + 3.0 * wobble,
        });
    }
    chunk
}

fn alert(severity: &str, instance: &str, starts_at: i64) -> Alert {
    let labels: BTreeMap<String, String> = [
        ("alertname", "HighErrorRate"),
        ("app", "shop"),
        ("instance", instance),
        ("severity", severity),
    ]
    .into_iter()
    .map(|(label, value)| (label.to_owned(), value.to_owned()))
    .collect();
    Alert {
        fingerprint: vigil_core::alert::label_fingerprint("HighErrorRate", &labels),
        starts_at,
        ends_at: None,
        name: "HighErrorRate".into(),
        app: "shop".into(),
        severity: severity.into(),
        labels,
        summary: "5xx above 5 %".into(),
        source: "api".into(),
        received_at: starts_at,
    }
}

struct Live {
    _dir: vigil_store::testing::TempDir,
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    clock: Arc<ManualClock>,
    guard: Guard,
}

impl Live {
    /// The release with an hour of data before its deploy.
    fn new(name: &str) -> Live {
        let dir = vigil_store::testing::TempDir::new(name).unwrap();
        let store: Arc<dyn Store> =
            vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
        store.create_release(&release()).unwrap();
        let index = Arc::new(RwLock::new(DataIndex::new()));
        let mut at = DEPLOY - 3600;
        while at <= DEPLOY {
            index.write().unwrap().insert_metrics(&samples(at));
            at += STEP;
        }
        let clock = Arc::new(ManualClock::new(DEPLOY));
        let guard = Guard::new(
            Arc::clone(&store),
            Arc::clone(&index),
            clock.clone(),
            GuardConfig::default(),
        );
        Live {
            _dir: dir,
            store,
            index,
            clock,
            guard,
        }
    }

    /// One more step of data, judged; the release's state after it.
    fn step(&self, step: i64) -> ReleaseState {
        let at = DEPLOY + step * STEP;
        self.index.write().unwrap().insert_metrics(&samples(at));
        self.clock.set(at + GuardConfig::default().grace_seconds);
        self.guard.pass().unwrap();
        self.store.release("r1").unwrap().unwrap().state
    }

    fn latest(&self) -> vigil_core::release::VerdictRecord {
        self.store.verdicts("r1").unwrap().pop().unwrap()
    }
}

#[test]
fn a_critical_alert_on_a_release_host_only_pauses_at_the_next_step() {
    let live = Live::new("alerts-pause");
    for step in 1..=4 {
        assert_eq!(live.step(step), ReleaseState::Observing);
    }
    assert_ne!(live.latest().verdict, Verdict::Fault);
    live.store
        .put_alerts(&[alert("critical", "h1:9100", live.clock.now())])
        .unwrap();
    assert_eq!(live.step(5), ReleaseState::Paused);
    let record = live.latest();
    assert_eq!(record.verdict, Verdict::Fault);
    let finding = &record.findings[0];
    assert_eq!(finding.signal.label(), "alert:HighErrorRate");
    assert_eq!(finding.hosts, ["h1"]);
    assert!(
        finding
            .evidence
            .starts_with("alert: HighErrorRate firing on h1 since "),
        "{}",
        finding.evidence
    );
    let release = live.store.release("r1").unwrap().unwrap();
    assert!(
        release.reason.starts_with("alert HighErrorRate (critical)"),
        "{}",
        release.reason
    );
}

#[test]
fn the_same_alert_on_a_reference_host_too_does_not_pause() {
    let live = Live::new("alerts-reference");
    for step in 1..=4 {
        live.step(step);
    }
    let now = live.clock.now();
    live.store
        .put_alerts(&[
            alert("critical", "h1:9100", now),
            alert("critical", "h3:9100", now),
        ])
        .unwrap();
    for step in 5..=10 {
        assert_eq!(live.step(step), ReleaseState::Observing);
    }
    let record = live.latest();
    assert!(
        record
            .findings
            .iter()
            .all(|finding| finding.signal.label() != "alert:HighErrorRate"),
        "{:?}",
        record.findings
    );
}

#[test]
fn a_warning_on_a_release_host_recommends_without_pausing() {
    let live = Live::new("alerts-warning");
    for step in 1..=4 {
        live.step(step);
    }
    live.store
        .put_alerts(&[alert("warning", "h0", live.clock.now())])
        .unwrap();
    assert_eq!(live.step(5), ReleaseState::Observing);
    let record = live.latest();
    assert_eq!(record.verdict, Verdict::Anomaly, "{}", record.explanation);
    assert_eq!(record.findings[0].signal.label(), "alert:HighErrorRate");
}

#[test]
fn a_critical_alert_told_to_the_guard_pauses_in_the_next_pass_without_a_new_step() {
    let live = Live::new("alerts-news");
    for step in 1..=4 {
        live.step(step);
    }
    let (extended, built) = live.guard.evaluator_counts();
    live.store
        .put_alerts(&[alert("critical", "h0:9100", live.clock.now() - 10)])
        .unwrap();
    // Not told: the step judged already stands.
    live.guard.pass().unwrap();
    assert_eq!(
        live.store.release("r1").unwrap().unwrap().state,
        ReleaseState::Observing
    );
    // Told, as the alert routes do: the same step is judged again, with the alert.
    live.guard.alerts_arrived(["shop"]);
    live.guard.pass().unwrap();
    assert_eq!(
        live.store.release("r1").unwrap().unwrap().state,
        ReleaseState::Paused
    );
    assert_eq!(live.latest().findings[0].hosts, ["h0"]);
    // The kept evaluator judged the step again as it was: neither extended nor built anew.
    assert_eq!(live.guard.evaluator_counts(), (extended, built));
}
