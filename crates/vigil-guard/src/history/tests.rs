use super::*;

use vigil_core::Finding;

fn release(state: ReleaseState) -> Release {
    let mut release = crate::assemble::tests::release();
    release.state = state;
    release
}

fn transition(seq: i64, from: ReleaseState, to: ReleaseState, action: Action) -> Transition {
    Transition {
        release_id: "r1".into(),
        seq,
        from,
        to,
        action,
        actor: "guard".into(),
        at: 100 + seq * 60,
        reason: String::new(),
    }
}

fn feedback(kind: FeedbackKind, signal: Option<&str>, onset: Option<i64>) -> Feedback {
    Feedback {
        release_id: "r1".into(),
        kind,
        note: String::new(),
        actor: "alice".into(),
        at: 900,
        signal: signal.map(str::to_owned),
        onset,
    }
}

fn finding(signal: Signal) -> Finding {
    Finding {
        severity: Verdict::Fault,
        signal,
        hosts: vec!["a".into()],
        hosts_judged: 1,
        direction: "up".into(),
        observed: 2.0,
        expected: 1.0,
        effect: 1.0,
        score: 9.0,
        baseline: "reference".into(),
        evidence: String::new(),
        since: 160,
        explanation: String::new(),
    }
}

fn verdict(at: i64, verdict: Verdict, findings: Vec<Finding>) -> VerdictRecord {
    VerdictRecord {
        release_id: "r1".into(),
        at,
        verdict,
        findings,
        explanation: String::new(),
        suppressed: Vec::new(),
    }
}

/// Paused by the guard on `errors`, then rolled back by a person.
fn paused_then_rolled_back() -> (Vec<Transition>, Vec<VerdictRecord>) {
    let transitions = vec![
        transition(
            1,
            ReleaseState::Pending,
            ReleaseState::Pending,
            Action::Create,
        ),
        transition(
            2,
            ReleaseState::Pending,
            ReleaseState::Observing,
            Action::BatchDeployed,
        ),
        transition(
            3,
            ReleaseState::Observing,
            ReleaseState::Paused,
            Action::Pause,
        ),
        transition(
            4,
            ReleaseState::Paused,
            ReleaseState::RollingBack,
            Action::Rollback,
        ),
        transition(
            5,
            ReleaseState::RollingBack,
            ReleaseState::RolledBack,
            Action::RollbackDone,
        ),
    ];
    let verdicts = vec![
        verdict(
            200,
            Verdict::Anomaly,
            vec![finding(Signal::Metric {
                name: "latency".into(),
            })],
        ),
        verdict(
            260,
            Verdict::Fault,
            vec![finding(Signal::Metric {
                name: "errors".into(),
            })],
        ),
        verdict(320, Verdict::Healthy, Vec::new()),
    ];
    (transitions, verdicts)
}

fn label(labelled: Labelled) -> HistoryLabel {
    match labelled {
        Labelled::Labelled(label) => label,
        other => panic!("expected a label, got {other:?}"),
    }
}

#[test]
fn a_rollback_after_a_pause_confirms_a_fault_blamed_on_the_pausing_finding() {
    let (transitions, verdicts) = paused_then_rolled_back();
    let labelled = label(label_release(
        &release(ReleaseState::RolledBack),
        &transitions,
        &[],
        &verdicts,
    ));
    assert_eq!(
        labelled,
        HistoryLabel {
            kind: HistoryKind::Fault,
            reviewed: true,
            cause: "errors".into(),
            onset: Some(100),
        }
    );
    // A rollback without a pause before it confirms nothing.
    let rolled_back_only = [
        transitions[0].clone(),
        transitions[1].clone(),
        transition(
            3,
            ReleaseState::Observing,
            ReleaseState::RollingBack,
            Action::Rollback,
        ),
    ];
    assert_eq!(
        label_release(
            &release(ReleaseState::RollingBack),
            &rolled_back_only,
            &[],
            &[]
        ),
        Labelled::Unlabelled
    );
}

#[test]
fn a_false_alarm_makes_a_paused_release_healthy_and_reviewed() {
    let (transitions, verdicts) = paused_then_rolled_back();
    let marked = [feedback(FeedbackKind::FalseAlarm, None, None)];
    let labelled = label(label_release(
        &release(ReleaseState::RolledBack),
        &transitions,
        &marked,
        &verdicts,
    ));
    assert_eq!(labelled.kind, HistoryKind::Healthy);
    assert!(labelled.reviewed);
    assert_eq!(labelled.cause, HEALTHY_CAUSE);
    assert_eq!(labelled.onset, None);
    // False alarms on findings alone say the same.
    let on_finding = [feedback(FeedbackKind::FalseAlarm, Some("errors"), None)];
    assert_eq!(
        label(label_release(
            &release(ReleaseState::Paused),
            &transitions[..3],
            &on_finding,
            &verdicts
        ))
        .kind,
        HistoryKind::Healthy
    );
}

#[test]
fn a_success_without_feedback_is_healthy_unreviewed() {
    let labelled = label(label_release(
        &release(ReleaseState::Succeeded),
        &[],
        &[],
        &[],
    ));
    assert_eq!(labelled.kind, HistoryKind::Healthy);
    assert!(!labelled.reviewed);
}

#[test]
fn a_missed_fault_takes_its_onset_and_the_latest_release_feedback_decides() {
    let missed = [
        feedback(FeedbackKind::FalseAlarm, None, None),
        feedback(FeedbackKind::MissedFault, None, Some(450)),
    ];
    let labelled = label(label_release(
        &release(ReleaseState::Succeeded),
        &[],
        &missed,
        &[verdict(700, Verdict::Healthy, Vec::new())],
    ));
    assert_eq!(labelled.kind, HistoryKind::Fault);
    assert_eq!(labelled.onset, Some(450));
    assert_eq!(labelled.cause, "unknown");
    // A missed fault on a log template is blamed on the logs.
    let on_log = [feedback(
        FeedbackKind::MissedFault,
        Some("log:Timeout after <*> ms"),
        Some(300),
    )];
    let labelled = label(label_release(
        &release(ReleaseState::Succeeded),
        &[],
        &on_log,
        &[],
    ));
    assert_eq!(
        (labelled.cause.as_str(), labelled.onset),
        ("log", Some(300))
    );
}

#[test]
fn running_releases_are_left_out_and_unexplained_ends_unlabelled() {
    for state in [
        ReleaseState::Pending,
        ReleaseState::Deploying,
        ReleaseState::Observing,
    ] {
        let confirmed = [feedback(FeedbackKind::ConfirmFault, None, None)];
        assert_eq!(
            label_release(&release(state), &[], &confirmed, &[]),
            Labelled::Running
        );
    }
    for state in [
        ReleaseState::Cancelled,
        ReleaseState::Failed,
        ReleaseState::Paused,
    ] {
        assert_eq!(
            label_release(&release(state), &[], &[], &[]),
            Labelled::Unlabelled
        );
    }
}

fn row(
    id: &str,
    created_at: i64,
    kind: HistoryKind,
    cause: &str,
    paused_at: Option<i64>,
) -> HistoryRow {
    let fault = kind == HistoryKind::Fault;
    HistoryRow {
        id: id.into(),
        app: "shop".into(),
        created_at,
        label: HistoryLabel {
            kind,
            reviewed: fault,
            cause: cause.into(),
            onset: fault.then_some(created_at),
        },
        verdict: Some(if paused_at.is_some() {
            Verdict::Fault
        } else {
            Verdict::Healthy
        }),
        paused_at,
        recommended_at: None,
        error: None,
    }
}

#[test]
fn history_is_scored_per_cause_and_per_day() {
    let day = DAY_SECONDS;
    let rows = vec![
        // Day 0: a fault paused after 5 minutes, a healthy release paused (a false pause).
        row("a", 0, HistoryKind::Fault, "errors", Some(300)),
        row("b", 100, HistoryKind::Healthy, HEALTHY_CAUSE, Some(400)),
        // Day 2: a fault missed, one paused after 10 minutes, a healthy release passed.
        row("c", 2 * day, HistoryKind::Fault, "errors", None),
        row(
            "d",
            2 * day + 10,
            HistoryKind::Fault,
            "log",
            Some(2 * day + 610),
        ),
        row("e", 2 * day + 20, HistoryKind::Healthy, HEALTHY_CAUSE, None),
    ];
    let report = score_history(rows, HistoryCounts::default(), None);
    assert_eq!(
        (
            report.overall.tp,
            report.overall.fp,
            report.overall.fn_,
            report.overall.tn
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(report.overall.delay_min_median, Some(7.5));
    assert_eq!(report.period, "day");
    let starts: Vec<i64> = report.over_time.iter().map(|point| point.start).collect();
    assert_eq!(starts, vec![0, 2 * day]);
    assert_eq!(report.over_time[0].figures.precision, 0.5);
    assert_eq!(report.over_time[1].figures.recall, 0.5);
    assert_eq!(report.over_time[1].figures.delay_min_median, Some(10.0));
    let causes: Vec<(&str, usize, usize)> = report
        .per_cause
        .iter()
        .map(|row| (row.cause.as_str(), row.figures.tp, row.figures.fn_))
        .collect();
    assert_eq!(
        causes,
        vec![("errors", 1, 1), (HEALTHY_CAUSE, 0, 0), ("log", 1, 0)]
    );
}

#[test]
fn a_long_history_is_scored_per_week_from_monday() {
    // 1970-01-05 was a Monday; 60 days later is past the daily span.
    let monday = 4 * DAY_SECONDS;
    let rows = vec![
        row(
            "a",
            monday + DAY_SECONDS,
            HistoryKind::Fault,
            "errors",
            Some(monday + DAY_SECONDS + 60),
        ),
        row(
            "b",
            monday + 60 * DAY_SECONDS,
            HistoryKind::Healthy,
            HEALTHY_CAUSE,
            None,
        ),
    ];
    let report = score_history(rows, HistoryCounts::default(), Some(3));
    assert_eq!(report.period, "week");
    assert_eq!(report.model_version, Some(3));
    let starts: Vec<i64> = report.over_time.iter().map(|point| point.start).collect();
    assert_eq!(starts, vec![monday, monday + 56 * DAY_SECONDS]);
}

#[test]
fn a_release_that_could_not_be_replayed_counts_as_missing() {
    let mut failed = row("a", 0, HistoryKind::Fault, "errors", None);
    failed.verdict = None;
    failed.error = Some("no data".into());
    let report = score_history(vec![failed], HistoryCounts::default(), None);
    assert_eq!((report.overall.missing, report.overall.fn_), (1, 0));
}
