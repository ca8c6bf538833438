//! The feature library of each app: what people's feedback makes of its signatures.
//!
//! A false alarm on a finding marks the app's signature of the same signal, direction and
//! baseline (or starts one); a false alarm on the release as a whole marks every metric and
//! log finding of its deciding verdict. A release confirmed a fault (feedback confirm fault or
//! missed fault, or a rollback after a pause) drops every signature that matches a finding of
//! its deciding verdict, set aside or not. An admin may remove a signature too. What to change
//! is decided by the pure functions below; [`learn_from_feedback`], [`learn_from_rollback`] and
//! [`remove_signature`] read and write through the store.

use vigil_core::release::{
    Action, Feedback, FeedbackKind, Release, ReleaseState, Transition, VerdictRecord,
};
use vigil_core::signature::{SignatureDrop, SignatureMark};
use vigil_core::{Finding, Signal, Signature, SignatureState};
use vigil_store::Store;

use crate::error::GuardError;

/// Most signatures an app keeps (not dropped): a mark that would start one more starts none.
pub const MAX_SIGNATURES_PER_APP: usize = 500;

/// One change of the library at a time in this process: each reads the app's signatures and
/// writes them back, so two marks at once would otherwise start the same signature twice or
/// lose a mark. (Replicas sharing a store may still race; a doubled signature suppresses the
/// same findings.)
static LIBRARY_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn library_writes() -> std::sync::MutexGuard<'static, ()> {
    LIBRARY_WRITES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// True for the findings a signature may stand for: a metric's or a log template's. A team's
/// rule, an alert or a silence is never learned away.
pub fn learnable(finding: &Finding) -> bool {
    matches!(finding.signal, Signal::Metric { .. } | Signal::Log { .. })
}

/// The findings a false alarm marks, each with the time of the verdict it is from: the finding
/// of `signal` in the newest verdict holding it, or, for the release as a whole, every
/// learnable finding of the deciding verdict.
pub fn marked_findings<'a>(
    verdicts: &'a [VerdictRecord],
    signal: Option<&str>,
) -> Vec<(i64, &'a Finding)> {
    let Some(label) = signal else {
        return vigil_deploy::requests::deciding_verdict(verdicts)
            .map(|record| {
                record
                    .findings
                    .iter()
                    .filter(|finding| learnable(finding))
                    .map(|finding| (record.at, finding))
                    .collect()
            })
            .unwrap_or_default();
    };
    verdicts
        .iter()
        .rev()
        .find_map(|record| {
            record
                .findings
                .iter()
                .find(|finding| finding.signal.label() == label)
                .map(|finding| (record.at, finding))
        })
        .filter(|(_, finding)| learnable(finding))
        .into_iter()
        .collect()
}

/// True when `signature` stands for the pattern of `finding`, whatever its size.
fn same_pattern(signature: &Signature, finding: &Finding) -> bool {
    signature.signal == finding.signal.label()
        && signature.direction == finding.direction
        && signature.baseline == finding.baseline
}

/// The signatures of `app` that `findings` (marked a false alarm on `release_id` by `actor` at
/// `at`) change or start, given the app's signatures that are not dropped. A release's marks
/// count once per signature.
pub fn mark(
    app: &str,
    existing: &[Signature],
    findings: &[(i64, &Finding)],
    release_id: &str,
    actor: &str,
    at: i64,
    note: &str,
) -> Vec<Signature> {
    let mut changed: Vec<Signature> = Vec::new();
    let mut room = MAX_SIGNATURES_PER_APP.saturating_sub(existing.len());
    for &(finding_at, finding) in findings {
        let marked = SignatureMark {
            release_id: release_id.to_owned(),
            finding_at,
            actor: actor.to_owned(),
            at,
            note: note.to_owned(),
        };
        if let Some(signature) = changed
            .iter_mut()
            .find(|signature| same_pattern(signature, finding))
        {
            signature.add_mark(finding, marked);
            continue;
        }
        if let Some(signature) = existing.iter().find(|signature| {
            signature.state != SignatureState::Dropped && same_pattern(signature, finding)
        }) {
            let mut widened = signature.clone();
            widened.add_mark(finding, marked);
            changed.push(widened);
            continue;
        }
        if room == 0 {
            tracing::warn!(app, signal = %finding.signal.label(), limit = MAX_SIGNATURES_PER_APP, "feature library is full: no signature started");
            continue;
        }
        room -= 1;
        changed.push(Signature::from_finding(app, finding, marked));
    }
    changed
}

/// The signatures among `existing` that a release confirmed a fault drops: those matching a
/// finding of its deciding verdict, kept or set aside, and those that set one of its
/// findings aside at any step.
pub fn drops(
    existing: &[Signature],
    verdicts: &[VerdictRecord],
    release_id: &str,
    actor: &str,
    at: i64,
) -> Vec<Signature> {
    let deciding = vigil_deploy::requests::deciding_verdict(verdicts);
    let deciding_findings: Vec<&Finding> = deciding
        .map(|record| {
            record
                .findings
                .iter()
                .chain(record.suppressed.iter().map(|aside| &aside.finding))
                .collect()
        })
        .unwrap_or_default();
    let suppressing: Vec<i64> = verdicts
        .iter()
        .flat_map(|record| &record.suppressed)
        .filter_map(|aside| aside.signature)
        .collect();
    existing
        .iter()
        .filter(|signature| signature.state != SignatureState::Dropped)
        .filter(|signature| {
            suppressing.contains(&signature.id)
                || deciding_findings
                    .iter()
                    .any(|finding| signature.matches(finding))
        })
        .map(|signature| Signature {
            state: SignatureState::Dropped,
            dropped: Some(SignatureDrop {
                release_id: Some(release_id.to_owned()),
                actor: actor.to_owned(),
                at,
                reason: format!("release {release_id} was confirmed a fault"),
            }),
            updated_at: at,
            ..signature.clone()
        })
        .collect()
}

/// True when `transitions` hold a pause: a rollback after it confirms the fault.
pub fn was_paused(transitions: &[Transition]) -> bool {
    transitions
        .iter()
        .any(|transition| transition.to == ReleaseState::Paused)
}

/// What feedback did to the library.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LibraryChange {
    /// Signatures started or marked again, as stored.
    pub marked: Vec<Signature>,
    /// Signatures dropped, as stored.
    pub dropped: Vec<Signature>,
}

/// Applies stored `feedback` on `release` to its app's library: a false alarm marks, a
/// confirmed or missed fault drops.
pub fn learn_from_feedback(
    store: &dyn Store,
    release: &Release,
    feedback: &Feedback,
) -> Result<LibraryChange, GuardError> {
    let app = release.spec.app.as_str();
    let _one_change_at_a_time = library_writes();
    let verdicts = store.verdicts(&release.id)?;
    let existing = store.app_signatures(app)?;
    let mut change = LibraryChange::default();
    match feedback.kind {
        FeedbackKind::FalseAlarm => {
            let findings = marked_findings(&verdicts, feedback.signal.as_deref());
            for signature in mark(
                app,
                &existing,
                &findings,
                &release.id,
                &feedback.actor,
                feedback.at,
                &feedback.note,
            ) {
                let stored = store.save_signature(&signature)?;
                tracing::info!(release = %release.id, app, signature = stored.id, signal = %stored.signal, signature_state = stored.state.as_str(), by = %feedback.actor, "signature marked a false alarm");
                change.marked.push(stored);
            }
        }
        FeedbackKind::ConfirmFault | FeedbackKind::MissedFault => {
            change.dropped = drop_all(
                store,
                release,
                &existing,
                &verdicts,
                &feedback.actor,
                feedback.at,
            )?;
        }
    }
    Ok(change)
}

/// After a person's rollback of `release` (as stored after it): when it had been paused, the
/// rollback confirms the fault and drops the signatures matching it.
pub fn learn_from_rollback(
    store: &dyn Store,
    release: &Release,
    action: Action,
    actor: &str,
    at: i64,
) -> Result<Vec<Signature>, GuardError> {
    let rolled_back = matches!(action, Action::Rollback | Action::RollbackDone)
        && matches!(
            release.state,
            ReleaseState::RollingBack | ReleaseState::RolledBack
        );
    if !rolled_back || !was_paused(&store.transitions(&release.id)?) {
        return Ok(Vec::new());
    }
    let _one_change_at_a_time = library_writes();
    let verdicts = store.verdicts(&release.id)?;
    let existing = store.app_signatures(&release.spec.app)?;
    drop_all(store, release, &existing, &verdicts, actor, at)
}

fn drop_all(
    store: &dyn Store,
    release: &Release,
    existing: &[Signature],
    verdicts: &[VerdictRecord],
    actor: &str,
    at: i64,
) -> Result<Vec<Signature>, GuardError> {
    let mut dropped = Vec::new();
    for signature in drops(existing, verdicts, &release.id, actor, at) {
        let stored = store.save_signature(&signature)?;
        tracing::info!(release = %release.id, app = %release.spec.app, signature = stored.id, signal = %stored.signal, by = actor, "signature dropped: its release was confirmed a fault");
        dropped.push(stored);
    }
    Ok(dropped)
}

/// An admin removes signature `id` of `app`: it is dropped, kept in the app's history. None
/// when the app has no such signature; an already dropped one is answered as it is.
pub fn remove_signature(
    store: &dyn Store,
    app: &str,
    id: i64,
    actor: &str,
    at: i64,
) -> Result<Option<Signature>, GuardError> {
    let _one_change_at_a_time = library_writes();
    let Some(signature) = store.signature(id)?.filter(|found| found.app == app) else {
        return Ok(None);
    };
    if signature.state == SignatureState::Dropped {
        return Ok(Some(signature));
    }
    let removed = store.save_signature(&Signature {
        state: SignatureState::Dropped,
        dropped: Some(SignatureDrop {
            release_id: None,
            actor: actor.to_owned(),
            at,
            reason: format!("removed by {actor}"),
        }),
        updated_at: at,
        ..signature
    })?;
    tracing::info!(app, signature = id, signal = %removed.signal, by = actor, "signature removed");
    Ok(Some(removed))
}

#[cfg(test)]
mod tests;
