//! What a person's request on a release means to the release layer: the states a list names,
//! the reason and notification of an action, a feedback entry, and which verdict decided.

use vigil_core::release::{
    Action, Feedback, FeedbackKind, NotificationEvent, Release, ReleaseSpec, ReleaseState,
    VerdictRecord,
};
use vigil_core::validate;
use vigil_core::{Batch, Verdict};

use crate::DeployError;

/// Longest feedback note or action reason, in bytes.
pub const MAX_NOTE_BYTES: usize = validate::MAX_TEXT_BYTES;

/// A release as created: pending, waiting for its first batch.
pub fn new_release(id: String, spec: ReleaseSpec, created_by: String, at: i64) -> Release {
    Release {
        id,
        spec,
        state: ReleaseState::Pending,
        created_by,
        created_at: at,
        updated_at: at,
        deployed: Vec::new(),
        verdict: None,
        reason: "waiting for the first batch".to_string(),
    }
}

/// Whether a pipeline's report of batch `index` repeats one already made: `true` for a retry
/// of the same report (it changes nothing), `false` for a batch not reported yet, an error
/// for a different report of a reported batch ([`crate::repeats_report`] says what repeats).
pub fn is_repeated_report(
    release: &Release,
    index: u32,
    hosts: Option<&[String]>,
    at: Option<i64>,
) -> Result<bool, DeployError> {
    let Some(reported) = release.deployed.iter().find(|batch| batch.index == index) else {
        return Ok(false);
    };
    if crate::repeats_report(release, reported, hosts, at) {
        return Ok(true);
    }
    Err(DeployError::ReportDiffers {
        index,
        hosts: reported.hosts.clone(),
        at: reported.at,
    })
}

/// The batch a pipeline reports deployed: the hosts it names, by default the batch's planned
/// ones (an unplanned index has none, and [`crate::check_deployed_batch`] refuses it), at the
/// time it gives, by default `now`.
pub fn reported_batch(
    release: &Release,
    index: u32,
    hosts: Option<Vec<String>>,
    at: Option<i64>,
    now: i64,
) -> Batch {
    let planned = release.spec.batches.get(index as usize);
    let hosts =
        hosts.unwrap_or_else(|| planned.map(|batch| batch.hosts.clone()).unwrap_or_default());
    Batch {
        index,
        at: at.unwrap_or(now),
        hosts,
    }
}

/// The states named by comma-separated text (none: every state); blank names are skipped.
pub fn parse_states(states_text: Option<&str>) -> Result<Vec<ReleaseState>, DeployError> {
    let mut states = Vec::new();
    for name in states_text.iter().flat_map(|text| text.split(',')) {
        let trimmed = name.trim();
        if trimmed.is_empty() {
            continue;
        }
        let parsed = ReleaseState::parse(trimmed).ok_or_else(|| DeployError::UnknownState {
            name: name.to_string(),
        })?;
        states.push(parsed);
    }
    Ok(states)
}

/// Checks the reason a person gives for an action, if any.
pub fn check_reason(reason: Option<&str>) -> Result<(), DeployError> {
    if let Some(text) = reason {
        validate::free_text(text, MAX_NOTE_BYTES).map_err(|problem| problem.at("reason"))?;
    }
    Ok(())
}

/// The reason recorded for a person's action: the one given, or when blank the action and
/// its actor.
pub fn action_reason(action: Action, actor: &str, reason: Option<String>) -> String {
    reason
        .filter(|text| !text.trim().is_empty())
        .unwrap_or_else(|| format!("{} by {actor}", action.as_str()))
}

/// The event a person's action notifies, if any. Reporting a rollback done notifies nothing:
/// the rollback itself was announced.
pub fn action_event(action: Action) -> Option<NotificationEvent> {
    match action {
        Action::Pause => Some(NotificationEvent::Paused),
        Action::Resume => Some(NotificationEvent::Resumed),
        Action::Rollback => Some(NotificationEvent::RolledBack),
        _ => None,
    }
}

/// A person's feedback on a release, its note checked.
pub fn new_feedback(
    release_id: String,
    kind: FeedbackKind,
    note: String,
    actor: String,
    at: i64,
) -> Result<Feedback, DeployError> {
    validate::free_text(&note, MAX_NOTE_BYTES).map_err(|problem| problem.at("note"))?;
    Ok(Feedback {
        release_id,
        kind,
        note,
        actor,
        at,
        signal: None,
        onset: None,
    })
}

/// Longest signal label a feedback may name, in bytes (a log template's text is one).
pub const MAX_SIGNAL_BYTES: usize = validate::MAX_TEXT_BYTES;

/// Checks what a feedback says beyond its note: `signal` must be the label of a finding in one
/// of the release's verdicts; `onset` belongs to a missed fault only, and lies from the
/// release's first deployed batch up to `now` (a fault the release caused began after it
/// started to roll out, and not in the future).
pub fn check_feedback_target(
    release: &Release,
    verdicts: &[VerdictRecord],
    kind: FeedbackKind,
    signal: Option<&str>,
    onset: Option<i64>,
    now: i64,
) -> Result<(), DeployError> {
    if let Some(label) = signal {
        validate::free_text(label, MAX_SIGNAL_BYTES).map_err(|problem| problem.at("signal"))?;
        let known = verdicts.iter().any(|record| {
            record
                .findings
                .iter()
                .any(|finding| finding.signal.label() == label)
        });
        if !known {
            return Err(DeployError::UnknownFindingSignal {
                signal: label.to_owned(),
                release: release.id.clone(),
            });
        }
    }
    let Some(onset) = onset else {
        return Ok(());
    };
    if kind != FeedbackKind::MissedFault {
        return Err(DeployError::OnsetWithoutMissedFault);
    }
    let Some(from) = release.deployed.iter().map(|batch| batch.at).min() else {
        return Err(DeployError::OnsetBeforeAnyBatch {
            release: release.id.clone(),
        });
    };
    if onset < from || onset > now {
        return Err(DeployError::OnsetOutOfRange { onset, from, now });
    }
    Ok(())
}

/// The verdict that decided: the newest fault (the pause) if there was one, else the newest.
pub fn deciding_verdict(history: &[VerdictRecord]) -> Option<&VerdictRecord> {
    history
        .iter()
        .rev()
        .find(|record| record.verdict == Verdict::Fault)
        .or(history.last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_release_is_pending_and_takes_its_first_batch() {
        let spec = crate::tests::release(ReleaseState::Observing, 2).spec;
        let created = new_release("r2".to_string(), spec, "ana".to_string(), 70);
        assert_eq!(created.state, ReleaseState::Pending);
        assert_eq!((created.created_at, created.updated_at), (70, 70));
        assert!(created.deployed.is_empty() && created.verdict.is_none());
        assert_eq!(created.reason, "waiting for the first batch");
        assert!(crate::check_batch_report(&created, 0).is_ok());
    }

    #[test]
    fn a_retried_report_repeats_and_a_different_one_conflicts() {
        // Batch 0 of hosts a was reported at 0; batch 1 (host b) not yet.
        let mut release = crate::tests::release(ReleaseState::Observing, 1);
        release.deployed[0].hosts = vec!["a".to_string()];
        assert!(!is_repeated_report(&release, 1, None, None).unwrap());
        assert!(is_repeated_report(&release, 0, None, Some(0)).unwrap());
        assert!(is_repeated_report(&release, 0, None, Some(7)).is_err());
        let other_hosts = ["b".to_string()];
        let error = is_repeated_report(&release, 0, Some(&other_hosts), None).unwrap_err();
        assert!(error.is_conflict());
        assert_eq!(
            error.to_string(),
            "batch 0 was already reported deployed to hosts [\"a\"] at 0: a repeated report \
             must give the same hosts and at"
        );
    }

    #[test]
    fn a_report_defaults_to_the_planned_hosts_and_now() {
        let release = crate::tests::release(ReleaseState::Observing, 1);
        let batch = reported_batch(&release, 1, None, None, 900);
        assert_eq!((batch.index, batch.at), (1, 900));
        assert_eq!(batch.hosts, vec!["b".to_string()]);
        let named = reported_batch(&release, 1, Some(vec!["x".to_string()]), Some(5), 900);
        assert_eq!((named.at, named.hosts), (5, vec!["x".to_string()]));
        assert!(reported_batch(&release, 7, None, None, 900)
            .hosts
            .is_empty());
    }

    #[test]
    fn states_are_parsed_skipping_blanks_and_refusing_unknown_names() {
        assert_eq!(parse_states(None).unwrap(), Vec::new());
        assert_eq!(
            parse_states(Some("paused, ,succeeded")).unwrap(),
            vec![ReleaseState::Paused, ReleaseState::Succeeded]
        );
        let error = parse_states(Some("paused,nope")).unwrap_err();
        assert_eq!(error.to_string(), "unknown state \"nope\"");
        assert!(!error.is_conflict());
    }

    #[test]
    fn a_blank_reason_becomes_the_action_and_its_actor() {
        assert_eq!(
            action_reason(Action::Pause, "ana", Some("  ".to_string())),
            "pause by ana"
        );
        assert_eq!(
            action_reason(Action::Pause, "ana", Some("disk full".to_string())),
            "disk full"
        );
        assert_eq!(action_reason(Action::Cancel, "bo", None), "cancel by bo");
    }

    #[test]
    fn only_pause_resume_and_rollback_notify() {
        assert_eq!(action_event(Action::Pause), Some(NotificationEvent::Paused));
        assert_eq!(
            action_event(Action::Resume),
            Some(NotificationEvent::Resumed)
        );
        assert_eq!(
            action_event(Action::Rollback),
            Some(NotificationEvent::RolledBack)
        );
        assert_eq!(action_event(Action::RollbackDone), None);
        assert_eq!(action_event(Action::Cancel), None);
    }

    #[test]
    fn a_note_or_reason_past_the_limit_names_its_field() {
        let long = "x".repeat(MAX_NOTE_BYTES + 1);
        let error = new_feedback(
            "r".into(),
            FeedbackKind::FalseAlarm,
            long.clone(),
            "ana".into(),
            1,
        )
        .unwrap_err();
        assert_eq!(error.field(), "note");
        assert_eq!(check_reason(Some(&long)).unwrap_err().field(), "reason");
        assert!(check_reason(None).is_ok());
    }

    fn record(at: i64, verdict: Verdict) -> VerdictRecord {
        VerdictRecord {
            release_id: "r".to_string(),
            at,
            verdict,
            findings: Vec::new(),
            explanation: String::new(),
            suppressed: Vec::new(),
        }
    }

    #[test]
    fn the_newest_fault_decides_else_the_newest_verdict() {
        assert!(deciding_verdict(&[]).is_none());
        let with_fault = [
            record(1, Verdict::Fault),
            record(2, Verdict::Fault),
            record(3, Verdict::Healthy),
        ];
        assert_eq!(deciding_verdict(&with_fault).unwrap().at, 2);
        let without_fault = [
            record(1, Verdict::Healthy),
            record(2, Verdict::InsufficientData),
        ];
        assert_eq!(deciding_verdict(&without_fault).unwrap().at, 2);
    }

    #[test]
    fn feedback_names_a_finding_of_the_release_and_a_missed_faults_onset_in_its_rollout() {
        let release = crate::tests::release(ReleaseState::Observing, 2);
        let mut fault = record(150, Verdict::Fault);
        fault.findings.push(vigil_core::Finding {
            severity: Verdict::Fault,
            signal: vigil_core::Signal::Metric {
                name: "cpu".to_string(),
            },
            hosts: vec!["a".to_string()],
            hosts_judged: 1,
            direction: "up".to_string(),
            observed: 2.0,
            expected: 1.0,
            effect: 1.0,
            score: 9.0,
            baseline: "reference".to_string(),
            evidence: String::new(),
            since: 120,
            explanation: String::new(),
        });
        let verdicts = [record(60, Verdict::Healthy), fault];
        let check = |kind, signal, onset| {
            check_feedback_target(&release, &verdicts, kind, signal, onset, 500)
        };
        assert!(check(FeedbackKind::FalseAlarm, Some("cpu"), None).is_ok());
        assert!(check(FeedbackKind::FalseAlarm, None, None).is_ok());
        let unknown = check(FeedbackKind::FalseAlarm, Some("memory"), None).unwrap_err();
        assert!(unknown.to_string().starts_with("signal: "), "{unknown}");
        let bad_text = check(FeedbackKind::FalseAlarm, Some("cpu\u{7}"), None).unwrap_err();
        assert!(bad_text.to_string().starts_with("signal"), "{bad_text}");
        assert!(check(FeedbackKind::MissedFault, None, Some(0)).is_ok());
        assert!(check(FeedbackKind::MissedFault, Some("cpu"), Some(500)).is_ok());
        for refused in [
            check(FeedbackKind::ConfirmFault, None, Some(200)),
            check(FeedbackKind::MissedFault, None, Some(-1)),
            check(FeedbackKind::MissedFault, None, Some(501)),
        ] {
            let error = refused.unwrap_err();
            assert!(error.to_string().starts_with("onset: "), "{error}");
        }
        let pending = crate::tests::release(ReleaseState::Pending, 0);
        let error = check_feedback_target(
            &pending,
            &[],
            FeedbackKind::MissedFault,
            None,
            Some(10),
            500,
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("onset: "), "{error}");
    }
}
