#![allow(clippy::unwrap_used)]

use vigil_core::release::{ReferenceHosts, ReleaseSpec};
use vigil_core::{Batch, Suppressed, Verdict};
use vigil_store::{Change, SqliteStore};

use super::*;

fn finding(signal: Signal, direction: &str, effect: f64, severity: Verdict) -> Finding {
    Finding {
        severity,
        signal,
        hosts: vec!["h1".to_owned()],
        hosts_judged: 2,
        direction: direction.to_owned(),
        observed: 1.0 + effect,
        expected: 1.0,
        effect,
        score: 6.0,
        baseline: "reference".to_owned(),
        evidence: String::new(),
        since: 100,
        explanation: String::new(),
    }
}

fn metric(name: &str) -> Signal {
    Signal::Metric {
        name: name.to_owned(),
    }
}

fn record(at: i64, verdict: Verdict, findings: Vec<Finding>) -> VerdictRecord {
    VerdictRecord {
        release_id: "r1".to_owned(),
        at,
        verdict,
        findings,
        explanation: String::new(),
        suppressed: Vec::new(),
    }
}

#[test]
fn a_named_finding_comes_from_the_newest_verdict_holding_it_and_the_whole_release_from_the_deciding_one(
) {
    let cpu_small = finding(metric("cpu"), "up", 0.1, Verdict::Anomaly);
    let cpu_larger = finding(metric("cpu"), "up", 0.2, Verdict::Anomaly);
    let rule = finding(
        Signal::Rule {
            name: "errors".to_owned(),
        },
        "up",
        1.0,
        Verdict::Fault,
    );
    let memory = finding(metric("memory"), "up", 0.3, Verdict::Fault);
    let verdicts = vec![
        record(60, Verdict::Anomaly, vec![cpu_small.clone()]),
        record(
            120,
            Verdict::Fault,
            vec![rule.clone(), memory.clone(), cpu_larger.clone()],
        ),
        record(180, Verdict::Anomaly, vec![cpu_small.clone()]),
    ];
    assert_eq!(
        marked_findings(&verdicts, Some("cpu")),
        vec![(180, &cpu_small)]
    );
    assert_eq!(
        marked_findings(&verdicts, Some("memory")),
        vec![(120, &memory)]
    );
    // A rule is never learned away, named or not.
    assert!(marked_findings(&verdicts, Some("rule:errors")).is_empty());
    assert_eq!(
        marked_findings(&verdicts, None),
        vec![(120, &memory), (120, &cpu_larger)]
    );
    assert!(marked_findings(&[], None).is_empty());
}

#[test]
fn two_releases_marked_make_a_signature_active_and_one_release_counts_once() {
    let cpu = finding(metric("cpu"), "up", 0.1, Verdict::Anomaly);
    let first = mark("shop", &[], &[(60, &cpu)], "r1", "alice", 1_000, "cron");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].state, SignatureState::Learning);
    let stored = Signature {
        id: 7,
        ..first[0].clone()
    };
    let again = mark(
        "shop",
        std::slice::from_ref(&stored),
        &[(120, &cpu)],
        "r1",
        "bob",
        1_100,
        "",
    );
    assert_eq!(again[0].id, 7);
    assert_eq!(again[0].state, SignatureState::Learning);
    assert_eq!(again[0].releases_marked(), 1);
    let wider = finding(metric("cpu"), "up", 0.15, Verdict::Anomaly);
    let second = mark("shop", &again, &[(60, &wider)], "r2", "bob", 2_000, "");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, 7);
    assert_eq!(second[0].state, SignatureState::Active);
    assert!((second[0].shape.max_effect - 0.15).abs() < 1e-12);
    assert!(second[0].reason().contains("marked a false alarm by alice"));

    // Another direction, or a dropped signature of the same pattern, starts a new one.
    let down = finding(metric("cpu"), "down", -0.1, Verdict::Anomaly);
    let dropped = Signature {
        state: SignatureState::Dropped,
        ..second[0].clone()
    };
    let fresh = mark(
        "shop",
        &[dropped],
        &[(60, &down), (60, &cpu)],
        "r3",
        "carol",
        3_000,
        "",
    );
    assert_eq!(fresh.len(), 2);
    assert!(fresh.iter().all(|signature| signature.id == 0));
    assert_eq!(fresh[0].direction, "down");
}

#[test]
fn a_full_library_starts_no_signature_but_still_marks_the_known_ones() {
    let cpu = finding(metric("cpu"), "up", 0.1, Verdict::Anomaly);
    let known = Signature {
        id: 1,
        ..Signature::from_finding(
            "shop",
            &cpu,
            SignatureMark {
                release_id: "r0".to_owned(),
                finding_at: 0,
                actor: "alice".to_owned(),
                at: 0,
                note: String::new(),
            },
        )
    };
    let full = vec![known; MAX_SIGNATURES_PER_APP];
    let memory = finding(metric("memory"), "up", 0.1, Verdict::Anomaly);
    let changed = mark(
        "shop",
        &full,
        &[(60, &memory), (60, &cpu)],
        "r1",
        "bob",
        10,
        "",
    );
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].signal, "cpu");
    assert_eq!(changed[0].state, SignatureState::Active);
}

#[test]
fn a_confirmed_fault_drops_the_signatures_matching_its_deciding_verdict_and_those_that_set_its_findings_aside(
) {
    let cpu = finding(metric("cpu"), "up", 0.1, Verdict::Anomaly);
    let mark_of = |release: &str| SignatureMark {
        release_id: release.to_owned(),
        finding_at: 0,
        actor: "alice".to_owned(),
        at: 0,
        note: String::new(),
    };
    let mut cpu_signature = Signature::from_finding("shop", &cpu, mark_of("r1"));
    cpu_signature.add_mark(&cpu, mark_of("r2"));
    let cpu_signature = Signature {
        id: 1,
        ..cpu_signature
    };
    let latency = finding(metric("latency"), "up", 0.2, Verdict::Anomaly);
    let latency_signature = Signature {
        id: 2,
        ..Signature::from_finding("shop", &latency, mark_of("r1"))
    };
    let existing = vec![cpu_signature.clone(), latency_signature.clone()];

    // A fault three times the CPU is not the benign pattern: nothing matches it.
    let tripled = finding(metric("cpu"), "up", 2.0, Verdict::Fault);
    let verdicts = vec![record(120, Verdict::Fault, vec![tripled.clone()])];
    assert!(drops(&existing, &verdicts, "r9", "dan", 500).is_empty());

    // The benign CPU change set aside beside the fault: its signature goes.
    let mut with_aside = record(120, Verdict::Fault, vec![tripled]);
    with_aside.suppressed.push(Suppressed {
        finding: cpu.clone(),
        reason: cpu_signature.reason(),
        signature: Some(1),
        probability: None,
    });
    let dropped = drops(&existing, &[with_aside], "r9", "dan", 500);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].id, 1);
    assert_eq!(dropped[0].state, SignatureState::Dropped);
    let why = dropped[0].dropped.as_ref().unwrap();
    assert_eq!(why.release_id.as_deref(), Some("r9"));
    assert_eq!(why.reason, "release r9 was confirmed a fault");
    assert_eq!((why.actor.as_str(), why.at), ("dan", 500));

    // A kept finding that matches drops a learning signature too.
    let verdicts = vec![record(120, Verdict::Anomaly, vec![latency])];
    let dropped = drops(&existing, &verdicts, "r9", "dan", 500);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].id, 2);
}

fn release(id: &str) -> Release {
    let spec = ReleaseSpec {
        app: "shop".to_owned(),
        version: "2".to_owned(),
        hosts: vec!["h1".to_owned()].into(),
        reference: ReferenceHosts::EveryOtherHost,
        batches: vec![vigil_core::release::PlannedBatch {
            hosts: vec!["h1".to_owned()],
        }],
        step_seconds: 60,
        observe_seconds: 600,
        metrics: Vec::new(),
        settings: Default::default(),
        rules: Vec::new(),
    };
    let mut created = vigil_deploy::requests::new_release(id.to_owned(), spec, "ci".to_owned(), 0);
    created.state = ReleaseState::Observing;
    created.deployed = vec![Batch {
        index: 0,
        at: 10,
        hosts: vec!["h1".to_owned()],
    }];
    created
}

fn feedback(release_id: &str, kind: FeedbackKind, signal: Option<&str>, at: i64) -> Feedback {
    Feedback {
        release_id: release_id.to_owned(),
        kind,
        note: String::new(),
        actor: "alice".to_owned(),
        at,
        signal: signal.map(str::to_owned),
        onset: None,
    }
}

fn change_to(release: &Release, action: Action, to: ReleaseState, at: i64) -> Change {
    Change {
        release_id: release.id.clone(),
        expected: release.state,
        to,
        action,
        actor: "alice".to_owned(),
        at,
        reason: String::new(),
        deployed: None,
        notifications: Vec::new(),
        lease: None,
    }
}

#[test]
fn feedback_through_the_store_marks_then_a_rollback_after_a_pause_drops() {
    let store = SqliteStore::open_in_memory().unwrap();
    let cpu = finding(metric("cpu"), "up", 0.1, Verdict::Anomaly);
    for (id, at) in [("r1", 1_000), ("r2", 2_000)] {
        let observing = release(id);
        store.create_release(&observing).unwrap();
        store
            .record_verdict(
                &VerdictRecord {
                    release_id: id.to_owned(),
                    ..record(at, Verdict::Anomaly, vec![cpu.clone()])
                },
                &[],
            )
            .unwrap();
        let said = feedback(id, FeedbackKind::FalseAlarm, Some("cpu"), at + 10);
        let change = learn_from_feedback(&store, &observing, &said).unwrap();
        assert_eq!(change.marked.len(), 1);
    }
    let library = store.app_signatures("shop").unwrap();
    assert_eq!(library.len(), 1);
    assert!(library[0].is_active());

    // Release r3 pauses on a latency fault with the CPU change set aside; a rollback after
    // the pause confirms it and drops the signature.
    let paused = release("r3");
    store.create_release(&paused).unwrap();
    let mut fault = VerdictRecord {
        release_id: "r3".to_owned(),
        ..record(
            3_000,
            Verdict::Fault,
            vec![finding(metric("latency"), "up", 2.0, Verdict::Fault)],
        )
    };
    fault.suppressed.push(Suppressed {
        finding: cpu.clone(),
        reason: library[0].reason(),
        signature: Some(library[0].id),
        probability: None,
    });
    store.record_verdict(&fault, &[]).unwrap();
    // A rollback without a pause first confirms nothing.
    let unpaused = release("r4");
    store.create_release(&unpaused).unwrap();
    store
        .record_verdict(
            &VerdictRecord {
                release_id: "r4".to_owned(),
                ..fault.clone()
            },
            &[],
        )
        .unwrap();
    let (rolling, _) = store
        .apply(&change_to(
            &unpaused,
            Action::Rollback,
            ReleaseState::RollingBack,
            3_050,
        ))
        .unwrap();
    assert!(
        learn_from_rollback(&store, &rolling, Action::Rollback, "alice", 3_050)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.app_signatures("shop").unwrap(), library);

    let (now_paused, _) = store
        .apply(&change_to(
            &paused,
            Action::Pause,
            ReleaseState::Paused,
            3_010,
        ))
        .unwrap();
    let (rolled, _) = store
        .apply(&change_to(
            &now_paused,
            Action::Rollback,
            ReleaseState::RollingBack,
            3_100,
        ))
        .unwrap();
    let dropped = learn_from_rollback(&store, &rolled, Action::Rollback, "bob", 3_100).unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(store.app_signatures("shop").unwrap().is_empty());
    let history = store.all_app_signatures("shop").unwrap();
    assert_eq!(history[0].state, SignatureState::Dropped);
    assert_eq!(
        history[0].dropped.as_ref().unwrap().release_id.as_deref(),
        Some("r3")
    );
}

#[test]
fn a_false_alarm_on_the_whole_release_marks_its_deciding_findings_and_an_admin_removes_one() {
    let store = SqliteStore::open_in_memory().unwrap();
    let observing = release("r1");
    store.create_release(&observing).unwrap();
    let findings = vec![
        finding(metric("cpu"), "up", 0.1, Verdict::Anomaly),
        finding(metric("memory"), "down", -0.1, Verdict::Anomaly),
        finding(Signal::Silence, "down", -1.0, Verdict::Fault),
    ];
    store
        .record_verdict(&record(60, Verdict::Fault, findings), &[])
        .unwrap();
    let said = feedback("r1", FeedbackKind::FalseAlarm, None, 100);
    let change = learn_from_feedback(&store, &observing, &said).unwrap();
    assert_eq!(change.marked.len(), 2);
    let library = store.app_signatures("shop").unwrap();
    assert_eq!(library.len(), 2);
    assert_eq!(library[0].signal, "cpu");

    assert_eq!(
        remove_signature(&store, "cart", library[0].id, "root", 200).unwrap(),
        None
    );
    let removed = remove_signature(&store, "shop", library[0].id, "root", 200)
        .unwrap()
        .unwrap();
    assert_eq!(removed.state, SignatureState::Dropped);
    assert_eq!(removed.dropped.unwrap().reason, "removed by root");
    assert_eq!(
        store.app_signatures("shop").unwrap(),
        vec![library[1].clone()]
    );
    assert_eq!(
        remove_signature(&store, "shop", 999, "root", 200).unwrap(),
        None
    );
}
