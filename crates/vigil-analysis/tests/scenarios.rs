//! Hand-built releases: what must pause, and what must not (a global surge, a reference host
//! glitch, a host ill before its deploy, an improvement, a warm-up spike).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;

use support::Noise;
use vigil_analysis::{replay, replay_with, Evaluator, Settings};
use vigil_core::{
    Batch, Bundle, Direction, Host, HostGroup, Judgement, LogTemplate, Logs, MetricKind,
    MetricMeta, Signal, Verdict,
};

const START: i64 = 1_700_000_000;
const STEP: i64 = 60;
const POINTS: usize = 100;
const DEPLOY: usize = 60;
const RELEASE_HOSTS: usize = 4;
const REFERENCE_HOSTS: usize = 8;

fn host_name(index: usize) -> String {
    format!("h{index:02}")
}

/// A fleet with one latency metric (critical, harmful up) around `level`, 2 % noise, the restart
/// transient of every deploy, and `shape(host, step, value) -> value` applied on top.
fn fleet(shape: impl Fn(usize, usize, f64) -> f64) -> Bundle {
    let mut noise = Noise(42);
    let hosts: Vec<Host> = (0..RELEASE_HOSTS + REFERENCE_HOSTS)
        .map(|index| Host {
            name: host_name(index),
            group: if index < RELEASE_HOSTS {
                HostGroup::Release
            } else {
                HostGroup::Reference
            },
        })
        .collect();
    let mut latency = BTreeMap::new();
    for index in 0..hosts.len() {
        let level = 100.0 + 5.0 * index as f64;
        let values: Vec<Option<f64>> = (0..POINTS)
            .map(|step| {
                let mut value = level * (1.0 + 0.02 * noise.next());
                if index < RELEASE_HOSTS {
                    // Restart: out of rotation, then a warm-up peak that fades.
                    match step.checked_sub(DEPLOY) {
                        Some(0) => return None,
                        Some(age @ 1..=5) => value *= 1.0 + 2.0 / age as f64,
                        _ => {}
                    }
                }
                Some(shape(index, step, value))
            })
            .collect();
        latency.insert(host_name(index), values);
    }
    Bundle {
        format: vigil_core::BUNDLE_FORMAT.to_owned(),
        id: "scenario".to_owned(),
        app: "scenario-app".to_owned(),
        step_seconds: STEP,
        start: START,
        points: POINTS,
        hosts,
        batches: vec![Batch {
            index: 0,
            at: START + DEPLOY as i64 * STEP,
            hosts: (0..RELEASE_HOSTS).map(host_name).collect(),
        }],
        metrics: vec![MetricMeta {
            name: "latency".to_owned(),
            kind: MetricKind::Middleware,
            unit: "ms".to_owned(),
            direction: Direction::Increase,
            critical: true,
            judged: true,
        }],
        series: [("latency".to_owned(), latency)].into_iter().collect(),
        logs: Logs::default(),
    }
}

fn is_release(host: usize) -> bool {
    host < RELEASE_HOSTS
}

fn verdict_of(bundle: &Bundle) -> (Verdict, Option<i64>) {
    bundle.validate("scenario").unwrap();
    let outcome = replay(bundle, &Settings::default());
    (outcome.verdict, outcome.paused_at)
}

#[test]
fn a_quiet_release_passes() {
    let (verdict, paused_at) = verdict_of(&fleet(|_, _, value| value));
    assert_eq!(paused_at, None);
    assert_eq!(verdict, Verdict::Healthy);
}

#[test]
fn latency_doubling_on_the_release_hosts_pauses_within_minutes() {
    let bundle = fleet(|host, step, value| {
        if is_release(host) && step > DEPLOY {
            value * 2.0
        } else {
            value
        }
    });
    let (verdict, paused_at) = verdict_of(&bundle);
    assert_eq!(verdict, Verdict::Fault);
    let delay_minutes = (paused_at.unwrap() - (START + DEPLOY as i64 * STEP)) / 60;
    assert!(delay_minutes <= 6, "paused after {delay_minutes} min");
}

#[test]
fn a_fault_on_half_of_the_release_hosts_pauses() {
    let bundle = fleet(|host, step, value| {
        if host < 2 && step > DEPLOY {
            value * 1.8
        } else {
            value
        }
    });
    assert_eq!(verdict_of(&bundle).0, Verdict::Fault);
}

#[test]
fn a_global_surge_does_not_pause() {
    let bundle = fleet(|_, step, value| {
        if step > DEPLOY + 3 {
            value * 1.9
        } else {
            value
        }
    });
    assert_eq!(verdict_of(&bundle).1, None);
}

#[test]
fn a_reference_host_glitch_does_not_pause() {
    let bundle = fleet(|host, step, value| {
        if host == RELEASE_HOSTS + 1 && step > DEPLOY {
            value * 5.0
        } else {
            value
        }
    });
    assert_eq!(verdict_of(&bundle).1, None);
}

#[test]
fn a_host_ill_before_its_deploy_is_not_the_release() {
    let bundle = fleet(|host, step, value| {
        if host == 0 && step > DEPLOY - 15 {
            value * 1.7
        } else {
            value
        }
    });
    assert_eq!(verdict_of(&bundle).1, None);
}

#[test]
fn an_improvement_does_not_pause() {
    let bundle = fleet(|host, step, value| {
        if is_release(host) && step > DEPLOY {
            value * 0.5
        } else {
            value
        }
    });
    let (verdict, paused_at) = verdict_of(&bundle);
    assert_eq!(paused_at, None);
    assert_ne!(verdict, Verdict::Fault);
}

#[test]
fn a_warm_up_spike_alone_does_not_pause() {
    let bundle = fleet(|host, step, value| {
        if is_release(host) && (DEPLOY + 1..DEPLOY + 4).contains(&step) {
            value * 3.0
        } else {
            value
        }
    });
    assert_eq!(verdict_of(&bundle).1, None);
}

/// The bundle with the samples of `metric` removed where `silent(host, step)` holds.
fn silenced(mut bundle: Bundle, metric: &str, silent: impl Fn(usize, usize) -> bool) -> Bundle {
    for index in 0..RELEASE_HOSTS + REFERENCE_HOSTS {
        let values = bundle
            .series
            .get_mut(metric)
            .and_then(|by_host| by_host.get_mut(&host_name(index)))
            .unwrap();
        for (step, value) in values.iter_mut().enumerate() {
            if silent(index, step) {
                *value = None;
            }
        }
    }
    bundle
}

/// The fleet with a second, non-critical metric (CPU, harmful up) on every host.
fn fleet_with_cpu() -> Bundle {
    let mut bundle = fleet(|_, _, value| value);
    let latency = bundle.series["latency"].clone();
    let cpu = latency
        .into_iter()
        .map(|(host, values)| {
            let values = values
                .into_iter()
                .map(|value| value.map(|value| value / 200.0))
                .collect();
            (host, values)
        })
        .collect();
    bundle.series.insert("cpu".to_owned(), cpu);
    bundle.metrics.push(MetricMeta {
        name: "cpu".to_owned(),
        kind: MetricKind::System,
        unit: String::new(),
        direction: Direction::Increase,
        critical: false,
        judged: true,
    });
    bundle
}

/// The last judgement of a replay.
fn last_judgement(bundle: &Bundle, settings: &Settings) -> Judgement {
    bundle.validate("scenario").unwrap();
    let mut last = None;
    replay_with(bundle, settings, |judgement| last = Some(judgement.clone()));
    last.unwrap()
}

fn settings_with_silence_fault_after(seconds: i64) -> Settings {
    Settings {
        silent_host_fault_seconds: seconds,
        ..Settings::default()
    }
}

#[test]
fn release_hosts_silent_after_the_deploy_hold_the_release_then_pause_it() {
    let bundle = silenced(fleet(|_, _, value| value), "latency", |host, step| {
        is_release(host) && step >= DEPLOY
    });
    bundle.validate("scenario").unwrap();
    // Forty minutes of silence: held while shorter than the fault time, then a fault.
    let held = replay(&bundle, &settings_with_silence_fault_after(3600));
    assert_eq!(held.paused_at, None);
    assert_eq!(held.verdict, Verdict::InsufficientData);
    let paused = replay(&bundle, &settings_with_silence_fault_after(600));
    let deploy_at = START + DEPLOY as i64 * STEP;
    assert_eq!(paused.verdict, Verdict::Fault);
    let silent_for = paused.paused_at.unwrap() - deploy_at;
    assert!(
        (600 - STEP..=600 + STEP).contains(&silent_for),
        "paused after {silent_for} s of silence"
    );
    assert_eq!(paused.findings[0].signal, Signal::Silence);
    assert_eq!(paused.findings[0].hosts, ["h00", "h01", "h02", "h03"]);
}

#[test]
fn a_silent_second_release_host_holds_the_release_and_says_since_when() {
    let bundle = silenced(fleet(|_, _, value| value), "latency", |host, step| {
        host == 1 && step >= DEPLOY - 1
    });
    let judgement = last_judgement(&bundle, &settings_with_silence_fault_after(86_400));
    assert_eq!(judgement.verdict, Verdict::InsufficientData);
    let reason = judgement.reason.unwrap();
    // Its last sample was two steps before its deploy: step 58, at 23:11:20 UTC.
    assert_eq!(reason, "waiting for data: h01 sent nothing since 23:11 UTC");
}

#[test]
fn a_release_host_silent_with_its_whole_fleet_holds_but_never_pauses() {
    let bundle = silenced(fleet(|_, _, value| value), "latency", |_, step| {
        step >= DEPLOY + 10
    });
    bundle.validate("scenario").unwrap();
    let outcome = replay(&bundle, &Settings::default());
    assert_eq!(outcome.paused_at, None, "{:?}", outcome.findings);
    assert_eq!(outcome.verdict, Verdict::InsufficientData);
}

#[test]
fn release_hosts_that_stop_sending_the_critical_metric_hold_the_release() {
    let bundle = silenced(fleet_with_cpu(), "latency", |host, step| {
        is_release(host) && step >= 80
    });
    let judgement = last_judgement(&bundle, &Settings::default());
    assert_eq!(judgement.verdict, Verdict::InsufficientData);
    assert_eq!(
        judgement.reason.unwrap(),
        "waiting for data: h00, h01, h02, h03 sent no latency since 23:32 UTC"
    );
}

#[test]
fn a_metric_sent_in_fewer_than_half_of_the_steps_holds_the_release() {
    // CPU on h02 only every third step after the deploy; the latency keeps coming.
    let bundle = silenced(fleet_with_cpu(), "cpu", |host, step| {
        host == 2 && step > DEPLOY && step % 3 != 0
    });
    let judgement = last_judgement(&bundle, &Settings::default());
    assert_eq!(judgement.verdict, Verdict::InsufficientData);
    let reason = judgement.reason.unwrap();
    assert!(
        reason.starts_with("waiting for data: h02 sent cpu in only 13 of 38 steps"),
        "{reason}"
    );
}

#[test]
fn short_gaps_hold_only_while_they_last_and_seldom_sent_metrics_are_not_expected() {
    // Five silent minutes on one release host, and CPU on another host as seldom after its
    // deploy as before it.
    let gaps = silenced(fleet_with_cpu(), "latency", |host, step| {
        host == 0 && (70..75).contains(&step)
    });
    let gaps = silenced(gaps, "cpu", |host, step| {
        (host == 0 && (70..75).contains(&step)) || (host == 3 && step % 3 != 0)
    });
    gaps.validate("scenario").unwrap();
    let evaluator = Evaluator::new(&gaps, &Settings::default());
    assert!(!evaluator.coverage_at(73).complete(), "the gap holds");
    assert!(evaluator.coverage_at(80).complete(), "and ends with it");
    let outcome = replay(&gaps, &Settings::default());
    assert_eq!(outcome.paused_at, None);
    assert_eq!(outcome.verdict, Verdict::Healthy);
}

#[test]
fn a_new_exception_on_the_release_hosts_pauses_and_a_global_burst_does_not() {
    let template = LogTemplate {
        id: "t1".to_owned(),
        text: "NullPointerException at Cart.add(<*>)".to_owned(),
        level: "ERROR".to_owned(),
    };
    let with_logs = |release_only: bool| {
        let mut bundle = fleet(|_, _, value| value);
        bundle.logs.templates = vec![template.clone()];
        let mut counts = BTreeMap::new();
        for index in 0..RELEASE_HOSTS + REFERENCE_HOSTS {
            if release_only && !is_release(index) {
                continue;
            }
            let values = (0..POINTS)
                .map(|step| Some(if step > DEPLOY + 2 { 12.0 } else { 0.0 }))
                .collect();
            counts.insert(host_name(index), values);
        }
        bundle.logs.counts.insert("t1".to_owned(), counts);
        bundle
    };
    assert_eq!(verdict_of(&with_logs(true)).0, Verdict::Fault);
    assert_eq!(verdict_of(&with_logs(false)).1, None);
}

#[test]
fn without_a_reference_group_the_history_is_the_baseline() {
    let bundle = fleet(|host, step, value| {
        if is_release(host) && step > DEPLOY {
            value * 2.5
        } else {
            value
        }
    });
    assert_eq!(
        verdict_of(&without_reference_group(bundle)).0,
        Verdict::Fault
    );
    let quiet = fleet(|_, _, value| value);
    assert_eq!(verdict_of(&without_reference_group(quiet)).1, None);
}

/// The same fleet with its reference hosts and their series removed.
fn without_reference_group(mut bundle: Bundle) -> Bundle {
    bundle.hosts.retain(|host| host.group == HostGroup::Release);
    let release: Vec<String> = bundle.hosts.iter().map(|host| host.name.clone()).collect();
    for by_host in bundle.series.values_mut() {
        by_host.retain(|host, _| release.contains(host));
    }
    bundle
}

/// The scorecard of every step of `bundle` holds the judgement's findings (see
/// `support::scorecard_holding_the_findings`); the last step's scorecard.
fn checked_scorecards(bundle: &Bundle, settings: &Settings) -> vigil_core::scorecard::Scorecard {
    bundle.validate("scenario").unwrap();
    let evaluator = Evaluator::new(bundle, settings);
    let first = evaluator.first_step().unwrap();
    let mut last = None;
    for now in first..evaluator.points() {
        last = Some(support::scorecard_holding_the_findings(&evaluator, now));
    }
    last.unwrap()
}

#[test]
fn the_scorecard_holds_every_finding_and_passes_what_did_not_move() {
    use vigil_core::scorecard::RowVerdict;

    let row_of = |scorecard: &vigil_core::scorecard::Scorecard, label: &str| {
        scorecard
            .rows
            .iter()
            .find(|row| row.signal.label() == label)
            .cloned()
            .unwrap()
    };
    let settings = Settings::default();

    let quiet = checked_scorecards(&fleet_with_cpu(), &settings);
    assert_eq!(quiet.verdict, Verdict::Healthy);
    for label in ["latency", "cpu", "silence"] {
        let row = row_of(&quiet, label);
        assert_eq!(row.verdict, RowVerdict::Pass, "{row:?}");
        assert_eq!(row.hosts_judged, RELEASE_HOSTS);
    }
    let latency = row_of(&quiet, "latency");
    assert_eq!(latency.compared_with, "reference");
    assert!(latency.effect.unwrap().abs() < 0.1, "{latency:?}");
    assert!(latency.observed.unwrap() > 90.0 && latency.reference.unwrap() > 90.0);

    let doubled = fleet(|host, step, value| {
        if is_release(host) && step > DEPLOY {
            value * 2.0
        } else {
            value
        }
    });
    let faulty = checked_scorecards(&doubled, &settings);
    let latency = row_of(&faulty, "latency");
    assert_eq!(latency.verdict, RowVerdict::Fail);
    assert_eq!(faulty.rows[0].signal.label(), "latency");
    assert!(latency.effect.unwrap() > 0.8, "{latency:?}");

    let history = checked_scorecards(
        &without_reference_group(fleet(|_, _, value| value)),
        &settings,
    );
    assert_eq!(row_of(&history, "latency").compared_with, "history");
    assert_eq!(row_of(&history, "latency").verdict, RowVerdict::Pass);

    let silent = silenced(fleet(|_, _, value| value), "latency", |host, step| {
        host == 0 && step >= DEPLOY + 20
    });
    let silent_card = checked_scorecards(&silent, &settings_with_silence_fault_after(600));
    assert_eq!(row_of(&silent_card, "silence").verdict, RowVerdict::Fail);
}

/// The fleet with the release hosts sending nothing before their deploy: new pods.
fn new_pods(shape: impl Fn(usize, usize, f64) -> f64) -> Bundle {
    let mut bundle = fleet(shape);
    for index in 0..RELEASE_HOSTS {
        if let Some(values) = bundle
            .series
            .get_mut("latency")
            .and_then(|by_host| by_host.get_mut(&host_name(index)))
        {
            values[..=DEPLOY].fill(None);
        }
    }
    bundle
}

fn with_new_hosts_compared() -> Settings {
    Settings {
        compare_new_hosts_with_reference: true,
        ..Settings::default()
    }
}

#[test]
fn new_pods_slower_than_the_reference_pause_when_compared_with_its_level() {
    let bundle = new_pods(|host, step, value| {
        if is_release(host) && step > DEPLOY {
            value * 2.0
        } else {
            value
        }
    });
    bundle.validate("scenario").unwrap();
    let compared = replay(&bundle, &with_new_hosts_compared());
    assert_eq!(compared.verdict, Verdict::Fault);
    // Without the setting, hosts without a baseline are not scored, as before.
    let unscored = replay(&bundle, &Settings::default());
    assert_eq!(unscored.paused_at, None);
}

#[test]
fn new_pods_like_the_reference_do_not_pause() {
    let bundle = new_pods(|_, _, value| value);
    let outcome = replay(&bundle, &with_new_hosts_compared());
    assert_eq!(outcome.paused_at, None);
    assert_ne!(outcome.verdict, Verdict::Fault);
}
