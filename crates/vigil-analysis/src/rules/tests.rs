use std::collections::BTreeMap;

use vigil_core::{
    Batch, Bundle, Direction, Host, HostGroup, Judgement, Logs, MetricKind, MetricMeta,
};

use super::*;
use crate::settings::Settings;

const START: i64 = 1_700_000_000;
const STEP: i64 = 60;
const POINTS: usize = 40;
/// The batch's step; the warm-up (120 s by default) ends two steps later.
const DEPLOY: usize = 20;
const RELEASE: [&str; 2] = ["r0", "r1"];
const REFERENCE: [&str; 2] = ["f0", "f1"];

/// A window of one metric on two release and two reference hosts; `value(host, step)` gives
/// each sample (`None` leaves it out).
fn prepared_with(metric: &str, value: impl Fn(&str, usize) -> Option<f64>) -> Prepared {
    let names = RELEASE.iter().chain(&REFERENCE);
    let hosts: Vec<Host> = names
        .clone()
        .map(|name| Host {
            name: (*name).to_owned(),
            group: if RELEASE.contains(name) {
                HostGroup::Release
            } else {
                HostGroup::Reference
            },
        })
        .collect();
    let by_host: BTreeMap<String, Vec<Option<f64>>> = names
        .map(|name| {
            let values = (0..POINTS).map(|step| value(name, step)).collect();
            ((*name).to_owned(), values)
        })
        .collect();
    let bundle = Bundle {
        format: vigil_core::BUNDLE_FORMAT.to_owned(),
        id: "rules".to_owned(),
        app: "shop".to_owned(),
        step_seconds: STEP,
        start: START,
        points: POINTS,
        hosts,
        batches: vec![Batch {
            index: 0,
            at: START + DEPLOY as i64 * STEP,
            hosts: RELEASE.iter().map(|name| (*name).to_owned()).collect(),
        }],
        metrics: vec![MetricMeta {
            name: metric.to_owned(),
            kind: MetricKind::Middleware,
            unit: String::new(),
            direction: Direction::Either,
            critical: false,
            judged: true,
        }],
        series: [(metric.to_owned(), by_host)].into_iter().collect(),
        logs: Logs::default(),
    };
    Prepared::new(&bundle, &Settings::default())
}

fn rule(json: &str) -> Rule {
    serde_json::from_str(json).expect("a rule")
}

fn state_at(prepared: &Prepared, rule_json: &str, now: usize) -> RuleState {
    let outcomes = evaluate_rules(prepared, &[rule(rule_json)], now, &BTreeMap::new());
    outcomes.into_iter().next().expect("one outcome").state
}

/// Success rate 0.999 everywhere, 0.96 on release hosts from `from` on.
fn success_rate_falling_at(from: usize) -> Prepared {
    prepared_with("success_rate", |host, step| {
        let release = RELEASE.contains(&host);
        Some(if release && step >= from { 0.96 } else { 0.999 })
    })
}

const BELOW_099_FOR_120: &str = r#"{"name": "success", "metric": "success_rate", "below": 0.99,
    "duration_seconds": 120, "severity": "fault"}"#;

#[test]
fn an_absolute_below_bound_breaks_after_its_duration_and_says_so_in_words() {
    let prepared = success_rate_falling_at(25);
    // 120 s are two steps of 60 s: broken from the second step below the bound.
    assert!(matches!(
        state_at(&prepared, BELOW_099_FOR_120, 25),
        RuleState::Held(_)
    ));
    let state = state_at(&prepared, BELOW_099_FOR_120, 26);
    let RuleState::Broken { reading, since } = &state else {
        panic!("broken: {state:?}");
    };
    assert!((reading.observed - 0.96).abs() < 1e-9, "{reading:?}");
    assert_eq!(reading.limit, 0.99);
    assert_eq!(reading.hosts, ["r0", "r1"]);
    assert_eq!(*since, START + 25 * STEP);
    let outcome = RuleOutcome {
        rule: rule(BELOW_099_FOR_120),
        state,
    };
    let findings = rule_findings(std::slice::from_ref(&outcome));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].severity, Verdict::Fault);
    assert_eq!(
        findings[0].evidence,
        "rule: success_rate below 0.990 for 120 s (0.960 on 2 hosts)"
    );
    assert_eq!(findings[0].signal.label(), "rule:success");
    assert_eq!(
        findings[0].explanation,
        "rule: success_rate below 0.990 for 120 s (0.960 on 2 hosts): rule success is broken \
         on 2 of 2 release hosts"
    );
    assert_eq!(findings[0].direction, "down");
    let rows = rule_rows(&[outcome]);
    assert_eq!(rows[0].verdict, RowVerdict::Fail);
    assert_eq!(rows[0].compared_with, "bound");
    assert_eq!(rows[0].reference, Some(0.99));
    assert!(
        rows[0].note.contains("below 0.990 for 120 s"),
        "{}",
        rows[0].note
    );
}

#[test]
fn a_value_within_its_bound_holds_and_passes() {
    let prepared = success_rate_falling_at(POINTS);
    let state = state_at(&prepared, BELOW_099_FOR_120, POINTS - 1);
    assert!(matches!(state, RuleState::Held(_)), "{state:?}");
    let outcome = RuleOutcome {
        rule: rule(BELOW_099_FOR_120),
        state,
    };
    assert!(rule_findings(std::slice::from_ref(&outcome)).is_empty());
    assert_eq!(rule_rows(&[outcome])[0].verdict, RowVerdict::Pass);
}

#[test]
fn an_absolute_above_bound_breaks_on_the_mean_of_the_release_hosts() {
    // One release host at 300 ms and one at 100: the mean, 200, is above 150.
    let prepared = prepared_with("latency", |host, step| {
        Some(if host == "r0" && step >= DEPLOY {
            300.0
        } else {
            100.0
        })
    });
    let above_150 = r#"{"name": "slow", "metric": "latency", "above": 150, "severity": "anomaly"}"#;
    let state = state_at(&prepared, above_150, 30);
    let RuleState::Broken { reading, .. } = &state else {
        panic!("broken: {state:?}");
    };
    assert!((reading.observed - 200.0).abs() < 1e-6, "{reading:?}");
    let above_250 = r#"{"name": "slow", "metric": "latency", "above": 250, "severity": "anomaly"}"#;
    assert!(matches!(
        state_at(&prepared, above_250, 30),
        RuleState::Held(_)
    ));
    let findings = rule_findings(&[RuleOutcome {
        rule: rule(above_150),
        state,
    }]);
    assert_eq!(findings[0].severity, Verdict::Anomaly);
}

#[test]
fn a_bound_relative_to_the_reference_follows_the_reference_at_the_same_step() {
    // Everyone doubles from step 30 on: the release hosts stay 10 % above the reference.
    let level = |step: usize| if step >= 30 { 200.0 } else { 100.0 };
    let prepared = prepared_with("latency", |host, step| {
        let factor = if RELEASE.contains(&host) { 1.1 } else { 1.0 };
        Some(level(step) * factor)
    });
    let by_20 = r#"{"name": "vs-reference", "metric": "latency", "relative_to": "reference",
        "above_by": 0.2, "severity": "fault"}"#;
    let state = state_at(&prepared, by_20, 35);
    let RuleState::Held(reading) = &state else {
        panic!("held: {state:?}");
    };
    assert!((reading.compared_with.expect("reference") - 200.0).abs() < 1e-6);
    assert!((reading.limit - 240.0).abs() < 1e-6);
    let by_5 = r#"{"name": "vs-reference", "metric": "latency", "relative_to": "reference",
        "above_by": 0.05, "severity": "fault"}"#;
    assert!(matches!(
        state_at(&prepared, by_5, 35),
        RuleState::Broken { .. }
    ));
    let outcome = RuleOutcome {
        rule: rule(by_5),
        state: state_at(&prepared, by_5, 35),
    };
    assert_eq!(
        rule_findings(&[outcome])[0].evidence,
        "rule: latency above the reference by 5.00 % for 0 s (220 against 200 on 2 hosts)"
    );
}

#[test]
fn a_bound_relative_to_the_baseline_compares_with_the_release_hosts_before_the_deploy() {
    // Requests fall by half on the release hosts after the deploy; the reference is not asked.
    let prepared = prepared_with("requests", |host, step| {
        let release = RELEASE.contains(&host);
        Some(if release && step >= DEPLOY {
            50.0
        } else {
            100.0
        })
    });
    let below_by_30 = r#"{"name": "traffic", "metric": "requests", "relative_to": "baseline",
        "below_by": 0.3, "duration_seconds": 300, "severity": "fault"}"#;
    let state = state_at(&prepared, below_by_30, 30);
    let RuleState::Broken { reading, .. } = &state else {
        panic!("broken: {state:?}");
    };
    assert!((reading.compared_with.expect("baseline") - 100.0).abs() < 1e-6);
    assert!((reading.limit - 70.0).abs() < 1e-6);
    let below_by_60 = r#"{"name": "traffic", "metric": "requests", "relative_to": "baseline",
        "below_by": 0.6, "duration_seconds": 300, "severity": "fault"}"#;
    assert!(matches!(
        state_at(&prepared, below_by_60, 30),
        RuleState::Held(_)
    ));
}

#[test]
fn a_break_inside_the_warm_up_does_not_count() {
    // Below the bound from the deploy on: the span must lie after the warm-up (two steps).
    let prepared = success_rate_falling_at(DEPLOY);
    let at_once = r#"{"name": "success", "metric": "success_rate", "below": 0.99,
        "severity": "fault"}"#;
    assert!(matches!(
        state_at(&prepared, at_once, DEPLOY + 1),
        RuleState::Held(_)
    ));
    assert!(matches!(
        state_at(&prepared, at_once, DEPLOY + 2),
        RuleState::Broken { .. }
    ));
    // 120 s from the end of the warm-up: two steps after it.
    assert!(matches!(
        state_at(&prepared, BELOW_099_FOR_120, DEPLOY + 2),
        RuleState::Held(_)
    ));
    assert!(matches!(
        state_at(&prepared, BELOW_099_FOR_120, DEPLOY + 3),
        RuleState::Broken { .. }
    ));
}

#[test]
fn one_step_back_within_the_bound_holds_the_rule_and_gaps_are_skipped() {
    // Below the bound from step 25, except one good step at 28 and no data at 30 and 31.
    let prepared = prepared_with("success_rate", |host, step| {
        let release = RELEASE.contains(&host);
        match step {
            30 | 31 if release => None,
            28 => Some(0.999),
            _ if release && step >= 25 => Some(0.96),
            _ => Some(0.999),
        }
    });
    let for_240 = r#"{"name": "success", "metric": "success_rate", "below": 0.99,
        "duration_seconds": 240, "severity": "fault"}"#;
    // Steps 26..=29 hold the good step 28.
    assert!(matches!(
        state_at(&prepared, for_240, 29),
        RuleState::Held(_)
    ));
    // Steps 29..=32: 29 and 32 below, 30 and 31 without data: broken.
    let state = state_at(&prepared, for_240, 32);
    assert!(matches!(state, RuleState::Broken { .. }), "{state:?}");
    // Steps 28..=31: the good step 28 holds it, the gap does not break it.
    assert!(matches!(
        state_at(&prepared, for_240, 31),
        RuleState::Held(_)
    ));
    // At step 31 the last reading is the one of step 29, the latest with data.
    let RuleState::Held(reading) = state_at(&prepared, for_240, 31) else {
        panic!("held");
    };
    assert_eq!(reading.at, START + 29 * STEP);
}

#[test]
fn a_span_without_any_data_holds_and_a_metric_without_samples_has_not_enough_data() {
    let prepared = prepared_with("success_rate", |host, step| {
        let release = RELEASE.contains(&host);
        match step {
            _ if release && step >= 30 => None,
            _ if release && step >= 25 => Some(0.96),
            _ => Some(0.999),
        }
    });
    let at_once = r#"{"name": "success", "metric": "success_rate", "below": 0.99,
        "severity": "fault"}"#;
    assert!(matches!(
        state_at(&prepared, at_once, 29),
        RuleState::Broken { .. }
    ));
    assert!(matches!(
        state_at(&prepared, at_once, 35),
        RuleState::Held(_)
    ));
    let other = r#"{"name": "other", "metric": "errors", "above": 1, "severity": "fault"}"#;
    let state = state_at(&prepared, other, 35);
    assert_eq!(
        state,
        RuleState::NotEnoughData("no sample of errors yet".to_owned())
    );
    let outcome = RuleOutcome {
        rule: rule(other),
        state,
    };
    assert!(rule_findings(std::slice::from_ref(&outcome)).is_empty());
    assert_eq!(rule_rows(&[outcome])[0].verdict, RowVerdict::NotEnoughData);
    // Only reference hosts send it: nothing on deployed release hosts.
    let reference_only = prepared_with("errors", |host, _| {
        (!RELEASE.contains(&host)).then_some(5.0)
    });
    assert!(matches!(
        state_at(&reference_only, other, 35),
        RuleState::NotEnoughData(_)
    ));
    // Before the deploy nothing is judged.
    assert!(matches!(
        state_at(&prepared, at_once, DEPLOY - 1),
        RuleState::NotEnoughData(_)
    ));
}

#[test]
fn a_failing_query_is_an_anomaly_finding_and_a_failing_row_never_a_pause() {
    let prepared = success_rate_falling_at(25);
    let query_rule = rule(
        r#"{"name": "errors", "query": "sum by (host) (rate(x[1m]", "above": 1, "severity": "fault"}"#,
    );
    let failures: BTreeMap<String, String> =
        [("errors".to_owned(), "bad_data: parse error".to_owned())].into();
    let outcomes = evaluate_rules(&prepared, &[query_rule], 30, &failures);
    let findings = rule_findings(&outcomes);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].severity, Verdict::Anomaly);
    assert_eq!(
        findings[0].evidence,
        "rule: errors could not be evaluated: bad_data: parse error"
    );
    let rows = rule_rows(&outcomes);
    assert_eq!(rows[0].verdict, RowVerdict::Fail);
    assert!(rows[0]
        .note
        .ends_with("could not be evaluated: bad_data: parse error"));
    let healthy = Judgement {
        at: 0,
        verdict: Verdict::Healthy,
        findings: Vec::new(),
        reason: None,
        suppressed: Vec::new(),
    };
    assert_eq!(
        Judgement::with_findings(healthy, findings).verdict,
        Verdict::Anomaly
    );
}

#[test]
fn a_query_rule_reads_the_series_its_query_is_pulled_into() {
    let prepared = prepared_with("rule:errors", |host, step| {
        Some(if RELEASE.contains(&host) && step >= 25 {
            9.0
        } else {
            0.5
        })
    });
    let query_rule = r#"{"name": "errors", "query": "sum by (host) (rate(errors[1m]))",
        "above": 1, "severity": "fault"}"#;
    assert!(matches!(
        state_at(&prepared, query_rule, 30),
        RuleState::Broken { .. }
    ));
}

#[test]
fn a_fault_finding_makes_any_verdict_a_fault_and_an_anomaly_only_a_healthy_one() {
    let prepared = success_rate_falling_at(25);
    let outcomes = evaluate_rules(&prepared, &[rule(BELOW_099_FOR_120)], 30, &BTreeMap::new());
    let fault = rule_findings(&outcomes);
    let held = Judgement {
        at: 0,
        verdict: Verdict::InsufficientData,
        findings: Vec::new(),
        reason: Some("a host is silent".to_owned()),
        suppressed: Vec::new(),
    };
    let judged = Judgement::with_findings(held.clone(), fault.clone());
    assert_eq!(judged.verdict, Verdict::Fault);
    assert_eq!(judged.findings, fault);
    let anomaly: Vec<Finding> = fault
        .iter()
        .map(|finding| Finding {
            severity: Verdict::Anomaly,
            ..finding.clone()
        })
        .collect();
    assert_eq!(
        Judgement::with_findings(held.clone(), anomaly.clone()).verdict,
        Verdict::InsufficientData
    );
    assert_eq!(Judgement::with_findings(held.clone(), Vec::new()), held);
    let with_funnel_anomaly = Judgement {
        verdict: Verdict::Anomaly,
        findings: anomaly.clone(),
        ..held
    };
    let merged = Judgement::with_findings(with_funnel_anomaly, fault);
    assert_eq!(merged.verdict, Verdict::Fault);
    assert_eq!(merged.findings[0].severity, Verdict::Fault);
    assert_eq!(merged.findings[1].severity, Verdict::Anomaly);
}
