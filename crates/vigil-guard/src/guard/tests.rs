use super::act::guard_change;
use super::*;
use vigil_analysis::Evaluator;
use vigil_core::release::Action;
use vigil_core::release::{PlannedBatch, ReferenceHosts, ReleaseSpec};
use vigil_core::samples::{LogChunk, LogCount, MetricChunk, Point, SeriesKey};
use vigil_core::{Batch, ManualClock};
use vigil_store::Change;

const STEP: i64 = 30;
const DEPLOY: i64 = 1_700_000_010;
const HOSTS: [&str; 6] = ["h0", "h1", "h2", "h3", "h4", "h5"];

fn release() -> Release {
    let release_hosts: Vec<String> = HOSTS[..3].iter().map(|host| host.to_string()).collect();
    Release {
        id: "r1".into(),
        spec: ReleaseSpec {
            app: "shop".into(),
            version: "2".into(),
            hosts: release_hosts.clone().into(),
            reference: ReferenceHosts::EveryOtherHost,
            batches: vec![PlannedBatch {
                hosts: release_hosts.clone(),
            }],
            step_seconds: STEP,
            observe_seconds: 7200,
            // Listed, so that its changes may pause the release (the counter is not).
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
            hosts: release_hosts,
        }],
        verdict: None,
        reason: String::new(),
    }
}

/// A sample of every host's latency and request counter at `at` (Unix seconds), or of
/// the hosts in `only`.
fn samples(at: i64, only: &[&str], latency_offset: f64) -> MetricChunk {
    let mut chunk = MetricChunk::default();
    for (number, host) in HOSTS.iter().enumerate() {
        if !only.is_empty() && !only.contains(host) {
            continue;
        }
        for (metric, counter) in [("latency", false), ("requests", true)] {
            let series = chunk.series.len() as u32;
            chunk.series.push(
                SeriesKey {
                    app: "shop".into(),
                    host: (*host).into(),
                    metric: metric.into(),
                    counter,
                }
                .into(),
            );
            // Deterministic wobble, different per host, metric and time.
            let wobble = ((at / STEP) as f64 * 0.7 + number as f64 * 1.3).sin();
            let value = if counter {
                (at - DEPLOY + 10_000) as f64 * (5.0 + number as f64) + wobble
            } else {
                100.0 + 5.0 * wobble + latency_offset
            };
            chunk.points.push(Point {
                series,
                ms: (at - 5) * 1000,
                value,
            });
        }
    }
    chunk
}

fn log_lines(at: i64, host: &str, count: u32) -> LogChunk {
    LogChunk {
        counts: vec![LogCount {
            app: "shop".into(),
            host: host.into(),
            template: "t-timeout".into(),
            ms: (at - 3) * 1000,
            count,
        }],
    }
}

struct Setup {
    _dir: vigil_store::testing::TempDir,
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    clock: Arc<ManualClock>,
    guard: Guard,
}

/// A store with the release, and an index with an hour of quiet data before its deploy.
fn setup(name: &str) -> Setup {
    setup_with(name, &release())
}

/// [`setup`] with another release.
fn setup_with(name: &str, release: &Release) -> Setup {
    let dir = vigil_store::testing::TempDir::new(name).unwrap();
    let store: Arc<dyn Store> =
        vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    store.create_release(release).unwrap();
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let mut at = DEPLOY - 3600;
    while at <= DEPLOY {
        index
            .write()
            .unwrap()
            .insert_metrics(&samples(at, &[], 0.0));
        at += STEP;
    }
    let clock = Arc::new(ManualClock::new(DEPLOY));
    let guard = Guard::new(
        Arc::clone(&store),
        Arc::clone(&index),
        clock.clone(),
        GuardConfig::default(),
    );
    Setup {
        _dir: dir,
        store,
        index,
        clock,
        guard,
    }
}

#[test]
fn a_fault_acknowledged_at_resume_pauses_again_only_once_it_grows() {
    let Setup {
        _dir,
        store,
        index,
        clock,
        guard,
    } = setup("guard-acknowledge");
    let mut step = 0;
    // One more step of data, the release hosts' latency up by `latency_up` (of 100).
    let mut step_with = |latency_up: f64| -> ReleaseState {
        step += 1;
        let at = DEPLOY + step * STEP;
        let mut held = index.write().unwrap();
        held.insert_metrics(&samples(at, &["h0", "h1", "h2"], latency_up));
        held.insert_metrics(&samples(at, &["h3", "h4", "h5"], 0.0));
        drop(held);
        clock.set(at + GuardConfig::default().grace_seconds);
        guard.pass().unwrap();
        store.release("r1").unwrap().unwrap().state
    };
    let paused_after = (0..20).position(|_| step_with(60.0) == ReleaseState::Paused);
    assert!(paused_after.is_some(), "the fault never paused the release");
    store
        .apply(&Change {
            release_id: "r1".into(),
            expected: ReleaseState::Paused,
            to: ReleaseState::Observing,
            action: Action::Resume,
            actor: "ops".into(),
            at: clock.now(),
            reason: "known: a cache warms up".into(),
            deployed: None,
            notifications: Vec::new(),
            lease: None,
        })
        .unwrap();
    guard.forget("r1");
    for _ in 0..8 {
        assert_eq!(
            step_with(60.0),
            ReleaseState::Observing,
            "the acknowledged fault paused the release again"
        );
    }
    let paused_again = (0..10).position(|_| step_with(200.0) == ReleaseState::Paused);
    assert!(
        paused_again.is_some(),
        "a fault three times as large did not pause"
    );
}

/// The test release watched for ten minutes after its batch, with these settings and
/// metric descriptions.
fn short_release(settings: serde_json::Value, metrics: Vec<vigil_core::MetricMeta>) -> Release {
    let mut short = release();
    short.spec.observe_seconds = 600;
    short.spec.metrics = metrics;
    short.spec.settings = settings.as_object().cloned().unwrap_or_default();
    short
}

/// Runs `steps` steps after the deploy, each inserting what `chunk_at(at)` gives and
/// passing the guard; returns the state after each step.
fn run_steps(
    setup: &Setup,
    steps: i64,
    chunk_at: impl Fn(i64) -> MetricChunk,
) -> Vec<ReleaseState> {
    (1..=steps)
        .map(|step| {
            let at = DEPLOY + step * STEP;
            setup.index.write().unwrap().insert_metrics(&chunk_at(at));
            setup.clock.set(at + GuardConfig::default().grace_seconds);
            setup.guard.pass().unwrap();
            setup.store.release("r1").unwrap().unwrap().state
        })
        .collect()
}

/// Asserts that the release stayed observing at every step, held for missing data with
/// an explanation that says `why`.
fn assert_held(setup: &Setup, states: &[ReleaseState], why: &str) {
    assert!(
        states.iter().all(|state| *state == ReleaseState::Observing),
        "the release moved on: {states:?}"
    );
    let record = setup.store.verdicts("r1").unwrap().pop().unwrap();
    assert_eq!(
        record.verdict,
        Verdict::InsufficientData,
        "{}",
        record.explanation
    );
    assert!(record.explanation.contains(why), "{}", record.explanation);
}

#[test]
fn a_silent_second_release_host_holds_the_release_past_its_observation() {
    let quiet = short_release(
        serde_json::json!({"silent_host_fault_seconds": 86_400}),
        Vec::new(),
    );
    let setup = setup_with("guard-silent-host", &quiet);
    // h1 sends nothing after the deploy; everyone else keeps reporting.
    let states = run_steps(&setup, 30, |at| {
        samples(at, &["h0", "h2", "h3", "h4", "h5"], 0.0)
    });
    assert_held(&setup, &states, "h1 sent nothing since");
}

#[test]
fn a_release_host_silent_while_the_reference_reports_pauses_after_the_configured_time() {
    let setup = setup_with(
        "guard-silent-fault",
        &short_release(serde_json::json!({}), Vec::new()),
    );
    let states = run_steps(&setup, 30, |at| {
        samples(at, &["h0", "h2", "h3", "h4", "h5"], 0.0)
    });
    let paused_at = states
        .iter()
        .position(|state| *state == ReleaseState::Paused)
        .expect("the silent host never paused the release");
    // Silent from its deploy; 600 s by default before it is a fault.
    let silent_seconds = (paused_at as i64 + 1) * STEP;
    assert!(
        (600..=600 + 2 * STEP).contains(&silent_seconds),
        "paused after {silent_seconds} s of silence"
    );
    let transitions = setup.store.transitions("r1").unwrap();
    let pause = transitions.last().unwrap();
    assert_eq!(pause.action, Action::Pause);
    assert!(
        pause.reason.contains("h1 sent nothing since")
            && pause.reason.contains("reference hosts kept reporting"),
        "{}",
        pause.reason
    );
}

#[test]
fn release_hosts_that_stop_sending_the_critical_metric_hold_the_release() {
    let latency = vigil_core::MetricMeta {
        name: "latency".into(),
        kind: vigil_core::MetricKind::Middleware,
        unit: "ms".into(),
        direction: vigil_core::Direction::Increase,
        critical: true,
        judged: true,
    };
    let setup = setup_with(
        "guard-silent-metric",
        &short_release(serde_json::json!({}), vec![latency]),
    );
    // From the tenth step on, the release hosts send their request counters only.
    let states = run_steps(&setup, 30, |at| {
        let mut chunk = samples(at, &[], 0.0);
        if at >= DEPLOY + 10 * STEP {
            let series = chunk.series.clone();
            chunk.points.retain(|point| {
                let key = &series[point.series as usize];
                key.metric != "latency" || !["h0", "h1", "h2"].contains(&key.host.as_str())
            });
        }
        chunk
    });
    assert_held(&setup, &states, "h0, h1, h2 sent no latency since");
}

#[test]
fn a_release_whose_hosts_all_report_still_succeeds_after_its_observation() {
    let setup = setup_with(
        "guard-covered",
        &short_release(serde_json::json!({}), Vec::new()),
    );
    let states = run_steps(&setup, 30, |at| samples(at, &[], 0.0));
    assert_eq!(states.last(), Some(&ReleaseState::Succeeded), "{states:?}");
}

/// The test release without a reference group: judged against its hosts' own history,
/// with a window that reaches `history_days` (7) before the deploy.
fn history_release() -> Release {
    let mut history = release();
    history.spec.reference = ReferenceHosts::None;
    history
}

/// The guard's pause and success are the release layer's transitions: from observing they
/// lead where they always did, and a release no longer in a state that allows them is
/// refused instead of being moved.
#[test]
fn the_guard_moves_a_release_only_as_the_release_layer_allows() {
    let observing = release();
    let pause = guard_change(&observing, Action::Pause, DEPLOY, "why".into(), Vec::new());
    let pause = pause.unwrap();
    assert_eq!(
        (pause.expected, pause.to),
        (ReleaseState::Observing, ReleaseState::Paused)
    );
    let succeed = guard_change(
        &observing,
        Action::Succeed,
        DEPLOY,
        "done".into(),
        Vec::new(),
    );
    let succeed = succeed.unwrap();
    assert_eq!(
        (succeed.expected, succeed.to),
        (ReleaseState::Observing, ReleaseState::Succeeded)
    );
    let mut paused = release();
    paused.state = ReleaseState::Paused;
    let refused = guard_change(&paused, Action::Succeed, DEPLOY, "done".into(), Vec::new());
    assert!(
        matches!(refused, Err(GuardError::Transition(_))),
        "{refused:?}"
    );
}

/// A page's window of a release without a reference group starts where its hosts' data
/// does (an hour before the deploy, of the seven days it reaches back) and ends with the
/// observation after its last batch, however late it is asked for.
#[test]
fn a_page_window_starts_with_the_data_and_ends_with_the_observation() {
    let setup = setup_with("guard-page-window", &history_release());
    let intake = crate::intake::Intake::new(
        Arc::clone(&setup.store),
        Arc::clone(&setup.index),
        Arc::new(|| {}),
        vigil_ingest::remote_write::RemoteWriteOptions::default(),
    );
    setup.clock.set(DEPLOY + 7200 + 3600);
    let release = setup.store.release("r1").unwrap().unwrap();
    let bundle = setup.guard.window(&release, &intake).unwrap();
    assert_eq!(bundle.start, DEPLOY - 3600);
    assert_eq!(
        bundle.points,
        usize::try_from((3600 + 7200) / STEP + 1).unwrap()
    );
}

/// The evaluator a fresh build on the full window of a release (its whole lookback) gives,
/// up to `until`.
fn on_the_full_window(index: &RwLock<DataIndex>, release: &Release, until: i64) -> Evaluator {
    let (window, settings) = ReleaseWindow::read(release).unwrap();
    let lookback = window.lookback_seconds;
    let held = index.read().unwrap();
    let bundle =
        crate::assemble_with(release, &held, &[], &HashMap::new(), lookback, until).unwrap();
    Evaluator::new(&bundle, &settings)
}

/// The index holds an hour of the hosts' data before the deploy, of the seven days a
/// history-mode window reaches back: the guard builds the steps from that hour on, and
/// judges at every step as on the full window, through a fault that pauses the release.
#[test]
fn a_history_release_is_judged_on_the_steps_its_data_covers_as_on_the_full_window() {
    let setup = setup_with("guard-history-trimmed", &history_release());
    let full_points = {
        let release = history_release();
        let (window, _) = ReleaseWindow::read(&release).unwrap();
        usize::try_from((DEPLOY - window.start) / STEP).unwrap()
    };
    let mut verdicts = Vec::new();
    for step in 1..=30 {
        let at = DEPLOY + step * STEP;
        let latency_up = if step > 12 { 80.0 } else { 0.0 };
        setup
            .index
            .write()
            .unwrap()
            .insert_metrics(&samples(at, &["h0", "h1", "h2"], latency_up));
        setup.clock.set(at + GuardConfig::default().grace_seconds);
        let judged = setup.guard.pass().unwrap();
        let release = setup.store.release("r1").unwrap().unwrap();
        let full = on_the_full_window(&setup.index, &release, at);
        let expected = full.judge_at(full.points() - 1);
        assert_eq!(judged.len(), 1, "at step {step}");
        assert_eq!(judged[0].verdict, expected.verdict, "at step {step}");
        if let Some(kept) = lock(&setup.guard.evaluators.kept).get("r1") {
            let points = kept.evaluator.points();
            assert!(
                points <= 3600 / STEP as usize + step as usize + 1,
                "{points} steps built of the {full_points} before the deploy"
            );
            assert_eq!(
                format!("{:?}", kept.evaluator.judge_at(points - 1)),
                format!("{expected:?}"),
                "at step {step}"
            );
        }
        verdicts.push(expected.verdict);
        if release.state != ReleaseState::Observing {
            break;
        }
    }
    assert!(full_points > 20_000, "{full_points}");
    assert!(verdicts.contains(&Verdict::Fault), "{verdicts:?}");
}

/// Data older than the window's start arrives (a late resend): the window reaches back to
/// it, built anew, then extended as before; the judgement is the full window's throughout.
#[test]
fn a_history_window_moves_back_when_older_data_arrives() {
    let setup = setup_with("guard-history-moves", &history_release());
    let pass_at = |step: i64| {
        let at = DEPLOY + step * STEP;
        setup
            .index
            .write()
            .unwrap()
            .insert_metrics(&samples(at, &["h0", "h1", "h2"], 0.0));
        setup.clock.set(at + GuardConfig::default().grace_seconds);
        setup.guard.pass().unwrap();
        let release = setup.store.release("r1").unwrap().unwrap();
        let full = on_the_full_window(&setup.index, &release, at);
        let kept = lock(&setup.guard.evaluators.kept);
        let evaluator = &kept["r1"].evaluator;
        assert_eq!(
            format!("{:?}", evaluator.judge_at(evaluator.points() - 1)),
            format!("{:?}", full.judge_at(full.points() - 1)),
            "at step {step}"
        );
        evaluator.points()
    };
    let first = pass_at(1);
    let two_days_ago = DEPLOY - 2 * 86_400;
    setup
        .index
        .write()
        .unwrap()
        .insert_metrics(&samples(two_days_ago, &["h0"], 0.0));
    let after_older_data = pass_at(2);
    assert_eq!(
        after_older_data,
        first + 1 + usize::try_from((DEPLOY - 3600 - two_days_ago) / STEP).unwrap()
    );
    assert_eq!(
        setup.guard.evaluator_counts(),
        (0, 2),
        "the older data builds anew"
    );
    assert_eq!(pass_at(3), after_older_data + 1);
    assert_eq!(
        setup.guard.evaluator_counts(),
        (1, 2),
        "then it is extended"
    );
}

/// A history-mode window that would hold more values (steps x series) than a release may
/// be judged on is not built: the release is held for insufficient data, saying why.
#[test]
fn a_window_too_large_to_judge_holds_the_release_instead_of_being_built() {
    let mut fine_steps = history_release();
    fine_steps.spec.step_seconds = 15;
    let setup = setup_with("guard-too-large", &fine_steps);
    // Six days back, h0 sent 300 more metrics once: 34,560 steps of 306 series.
    let mut old = MetricChunk::default();
    for metric in 0..300 {
        old.series.push(Arc::new(SeriesKey {
            app: "shop".into(),
            host: "h0".into(),
            metric: format!("old{metric}"),
            counter: false,
        }));
        old.points.push(Point {
            series: metric,
            ms: (DEPLOY - 6 * 86_400) * 1000,
            value: 1.0,
        });
    }
    setup.index.write().unwrap().insert_metrics(&old);
    let states = run_steps(&setup, 2, |at| samples(at, &[], 0.0));
    assert!(
        states.iter().all(|state| *state == ReleaseState::Observing),
        "{states:?}"
    );
    let record = setup.store.verdicts("r1").unwrap().pop().unwrap();
    assert_eq!(record.verdict, Verdict::InsufficientData);
    assert!(
        record.explanation.contains("306 series")
            && record.explanation.contains("more than the 10000000"),
        "{}",
        record.explanation
    );
    assert_eq!(setup.guard.evaluator_counts(), (0, 0), "nothing was built");
}

/// The guard, after every pass, holds the evaluator a fresh build on the whole window
/// gives, to the bit: with late samples, a resent sample, log lines starting after the
/// deploy and a changed baseline sample along the way.
#[test]
fn a_kept_evaluator_equals_one_built_on_the_whole_window_after_every_pass() {
    let Setup {
        _dir,
        store,
        index,
        clock,
        guard,
    } = setup("guard-extend");
    let insert = |chunk: MetricChunk| index.write().unwrap().insert_metrics(&chunk);
    for step in 1..=24 {
        let at = DEPLOY + step * STEP;
        match step {
            // h1 is late by two steps.
            5 => insert(samples(at, &["h0", "h2", "h3", "h4", "h5"], 0.0)),
            7 => {
                insert(samples(DEPLOY + 5 * STEP, &["h1"], 0.0));
                insert(samples(at, &[], 0.0));
            }
            // h4 resends the previous step with another value.
            9 => {
                insert(samples(DEPLOY + 8 * STEP, &["h4"], 40.0));
                insert(samples(at, &[], 0.0));
            }
            // A sample before the deploy changes: the evaluator is built anew.
            15 => {
                insert(samples(DEPLOY - 600, &["h3"], 25.0));
                insert(samples(at, &[], 0.0));
            }
            _ => insert(samples(at, &[], if step >= 18 { 3.0 } else { 0.0 })),
        }
        if step >= 12 {
            index
                .write()
                .unwrap()
                .insert_logs(&log_lines(at, "h0", step as u32));
        }
        clock.set(at + GuardConfig::default().grace_seconds);
        guard.pass().unwrap();
        let kept = format!("{:?}", lock(&guard.evaluators.kept)["r1"].evaluator);
        let release = store.release("r1").unwrap().unwrap();
        let (window, settings) = ReleaseWindow::read(&release).unwrap();
        let lookback = window.lookback_seconds;
        let fresh = {
            let held = index.read().unwrap();
            let start_ms = window.start * 1000;
            let reference = reference_hosts_among(&release, &held.hosts_by_app(), start_ms);
            let bundle =
                crate::assemble_with(&release, &held, &reference, &HashMap::new(), lookback, at)
                    .unwrap();
            format!("{:?}", Evaluator::new(&bundle, &settings))
        };
        assert_eq!(kept, fresh, "after the pass at step {step}");
    }
    let (extended, built) = guard.evaluator_counts();
    assert_eq!(built, 2, "the first pass and the changed baseline build");
    assert_eq!(extended, 22);
}

/// A healthy release's scorecard at its last judged step: every metric compared and passing,
/// with the verdict the guard stored, and the pulled metric linked to its query.
#[test]
fn a_healthy_release_has_a_passing_row_for_every_metric_on_its_scorecard() {
    let setup = setup("guard-scorecard");
    let states = run_steps(&setup, 12, |at| samples(at, &[], 0.0));
    assert_eq!(states.last(), Some(&ReleaseState::Observing));
    let intake = crate::intake::Intake::new(
        Arc::clone(&setup.store),
        Arc::clone(&setup.index),
        Arc::new(|| {}),
        vigil_ingest::remote_write::RemoteWriteOptions::default(),
    );
    let release = setup.store.release("r1").unwrap().unwrap();
    let window = setup.guard.window(&release, &intake).unwrap();
    let judged_at = setup.guard.last_judged("r1");
    assert_eq!(judged_at, Some(DEPLOY - DEPLOY % STEP + 12 * STEP));
    let app = crate::apps::AppConfig {
        prometheus: Some(crate::apps::PullSource {
            url: "http://127.0.0.1:9090".into(),
            host_label: "host".into(),
            step_seconds: STEP,
            queries: vec![crate::apps::PullQuery {
                metric: "latency".into(),
                query: "latency_ms{job=\"shop\"}".into(),
            }],
            selector: None,
        }),
        log_pattern: None,
        metrics: Vec::new(),
        rules: Vec::new(),
    };
    let scorecard = crate::scorecard::release_scorecard(
        &release,
        &window,
        judged_at,
        Some(&app),
        &crate::pull::PullFailures::default(),
    )
    .unwrap();
    let stored = setup.store.verdicts("r1").unwrap().pop().unwrap();
    assert_eq!(scorecard.verdict, Verdict::Healthy);
    assert_eq!(stored.verdict, Verdict::Healthy);
    assert_eq!(Some(scorecard.at), judged_at);
    let metric_rows: Vec<_> = scorecard
        .rows
        .iter()
        .filter(|row| matches!(row.signal, vigil_core::Signal::Metric { .. }))
        .collect();
    let names: Vec<String> = metric_rows.iter().map(|row| row.signal.label()).collect();
    assert_eq!(names, ["latency", "requests"]);
    for row in &metric_rows {
        assert_eq!(
            row.verdict,
            vigil_core::scorecard::RowVerdict::Pass,
            "{row:?}"
        );
        assert_eq!(row.hosts_judged, 3);
        assert_eq!(row.compared_with, "reference");
        assert!(row.observed.is_some() && row.effect.is_some(), "{row:?}");
    }
    let latency_source = metric_rows[0].source.as_deref().unwrap();
    assert!(
        latency_source
            .starts_with("http://127.0.0.1:9090/graph?g0.expr=latency_ms%7Bjob%3D%22shop%22%7D&g0.tab=0&g0.range_input="),
        "{latency_source}"
    );
    assert_eq!(metric_rows[1].source, None);
}

/// Vigil's executor ships `r1` to all six hosts in two batches; batch 0 (h0..h2) is deployed
/// and batch 1 deploys. The guard judges it all the same, its hosts not yet deployed (h3..h5)
/// the reference, and pauses it on a fault of batch 0's hosts.
#[test]
fn a_release_whose_next_batch_deploys_is_judged_against_its_hosts_not_yet_deployed() {
    let mut shipped = release();
    let every_host: Vec<String> = HOSTS.iter().map(|host| host.to_string()).collect();
    shipped.spec.hosts = every_host.clone().into();
    shipped.spec.batches = vec![
        PlannedBatch {
            hosts: every_host[..3].to_vec(),
        },
        PlannedBatch {
            hosts: every_host[3..].to_vec(),
        },
    ];
    shipped.spec.reference = ReferenceHosts::NotYetDeployed;
    shipped.state = ReleaseState::Deploying;
    let setup = setup_with("guard-deploying", &shipped);
    let mut states = Vec::new();
    for step in 1..=20 {
        let at = DEPLOY + step * STEP;
        let mut held = setup.index.write().unwrap();
        held.insert_metrics(&samples(at, &["h0", "h1", "h2"], 60.0));
        held.insert_metrics(&samples(at, &["h3", "h4", "h5"], 0.0));
        drop(held);
        setup.clock.set(at + GuardConfig::default().grace_seconds);
        setup.guard.pass().unwrap();
        let state = setup.store.release("r1").unwrap().unwrap().state;
        states.push(state);
        if state == ReleaseState::Paused {
            break;
        }
    }
    assert_eq!(states.last(), Some(&ReleaseState::Paused), "{states:?}");
    assert!(states[..states.len() - 1]
        .iter()
        .all(|state| *state == ReleaseState::Deploying));
    let verdicts = setup.store.verdicts("r1").unwrap();
    let fault = verdicts.last().unwrap();
    assert_eq!(fault.verdict, Verdict::Fault);
    assert!(
        fault.explanation.contains("reference"),
        "{}",
        fault.explanation
    );
}
