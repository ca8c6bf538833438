//! Acting on a verdict through the store: the verdict is recorded when it changed, a fault
//! pauses the release, an anomaly recommends a look, and a release watched for its observation
//! after its last batch succeeds. Every state change is the release layer's transition
//! (`vigil_deploy::next_state`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vigil_analysis::Settings;
use vigil_core::release::{
    Action, NewNotification, NotificationEvent, Release, ReleaseState, VerdictRecord,
};
use vigil_core::{Clock, Judgement, Verdict};
use vigil_store::{Change, Store, StoreError};

use super::config::{GuardConfig, Route};
use super::locks::lock;
use crate::error::GuardError;
use crate::window::ReleaseWindow;

/// The notifications an event of a release gives, one per channel that wants it.
pub fn notifications_for(
    routes: &[Route],
    public_url: &str,
    release: &Release,
    event: NotificationEvent,
    title: &str,
    text: &str,
) -> Vec<NewNotification> {
    let link = format!(
        "{}/releases/{}",
        public_url.trim_end_matches('/'),
        release.id
    );
    routes
        .iter()
        .filter(|route| route.events.contains(&event))
        .map(|route| NewNotification {
            release_id: release.id.clone(),
            event,
            channel: route.channel.clone(),
            title: title.to_string(),
            text: text.to_string(),
            link: link.clone(),
        })
        .collect()
}

/// What was last recorded of a release: its verdict, the signals behind it, and the step.
type Recorded = (Verdict, Vec<String>, i64);

/// Unix time from which the last deployed batch of a release is judged (its deploy plus the
/// warm-up): a verdict recorded before it does not speak for that batch.
pub fn last_batch_judged_from(release: &Release, settings: &Settings) -> Option<i64> {
    release
        .deployed
        .last()
        .map(|batch| batch.at.saturating_add(settings.warmup_seconds.max(0)))
}

/// Acts on the guard's verdicts through the store, remembering the last one recorded of each
/// release.
#[derive(Debug)]
pub(super) struct Actor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    pub(super) config: GuardConfig,
    /// Last verdict recorded, per release (read from the store on first sight).
    recorded: Mutex<HashMap<String, Recorded>>,
}

impl Actor {
    pub(super) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: GuardConfig) -> Actor {
        Actor {
            store,
            clock,
            config,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Stores the verdict when it changed, and pauses, recommends or ends the release; it
    /// ends it only when `covered`: every deployed host sent every judged metric.
    pub(super) fn act(
        &self,
        release: &Release,
        judgement: &Judgement,
        covered: bool,
        settings: &Settings,
        lease: vigil_store::LeaseFence,
    ) -> Result<Option<ReleaseState>, GuardError> {
        let explanation = explain(judgement);
        let signals = recorded_labels(&judgement.findings, &judgement.suppressed);
        let previous = self.last_recorded(&release.id)?;
        // A verdict is also recorded once the last batch is judged, unchanged or not, so that
        // the latest record says whether that batch was seen (the verdict route reads it).
        let last_batch_from = last_batch_judged_from(release, settings);
        let first_on_last_batch = |recorded_at: i64| {
            last_batch_from.is_some_and(|from| recorded_at < from && judgement.at >= from)
        };
        let changed = previous.as_ref().is_none_or(|(verdict, labels, at)| {
            *verdict != judgement.verdict || *labels != signals || first_on_last_batch(*at)
        });
        let mut moved_to = None;
        // A fault a person already saw and resumed past does not pause the release again,
        // unless it grew or another signal faults.
        let acknowledged = judgement.verdict == Verdict::Fault
            && self
                .acknowledged_faults(&release.id)?
                .is_some_and(|seen| all_acknowledged(judgement, &seen));
        if acknowledged {
            tracing::info!(release = %release.id, at = judgement.at, reason = %explanation, "guard holds back a fault acknowledged at resume");
        }

        if judgement.verdict == Verdict::Fault && !acknowledged {
            let title = format!(
                "{} {} paused by Vigil",
                release.spec.app, release.spec.version
            );
            let notifications = notifications_for(
                &self.config.routes,
                &self.config.public_url,
                release,
                NotificationEvent::Paused,
                &title,
                &evidence_text(judgement),
            );
            let change = Change {
                lease: Some(lease.clone()),
                ..guard_change(
                    release,
                    Action::Pause,
                    judgement.at.max(self.clock.now()),
                    explanation.clone(),
                    notifications,
                )?
            };
            match self.store.apply(&change) {
                Ok(_) => {
                    tracing::info!(release = %release.id, at = judgement.at, reason = %explanation, "guard paused release");
                    moved_to = Some(ReleaseState::Paused);
                }
                Err(StoreError::StateConflict { .. }) => {
                    // A person acted first; their state stands.
                }
                Err(error) => return Err(error.into()),
            }
        }

        if changed || moved_to.is_some() {
            let recommend = judgement.verdict == Verdict::Anomaly
                && previous
                    .as_ref()
                    .is_none_or(|(verdict, _, _)| *verdict != Verdict::Anomaly);
            let notifications = if recommend {
                notifications_for(
                    &self.config.routes,
                    &self.config.public_url,
                    release,
                    NotificationEvent::Recommendation,
                    &format!(
                        "{} {}: Vigil recommends a look",
                        release.spec.app, release.spec.version
                    ),
                    &evidence_text(judgement),
                )
            } else {
                Vec::new()
            };
            self.store.record_verdict_fenced(
                &VerdictRecord {
                    release_id: release.id.clone(),
                    at: judgement.at,
                    verdict: judgement.verdict,
                    findings: finite_findings(&judgement.findings),
                    explanation: explanation.clone(),
                    suppressed: finite_suppressed(&judgement.suppressed),
                },
                &notifications,
                &lease,
            )?;
            lock(&self.recorded).insert(
                release.id.clone(),
                (judgement.verdict, signals, judgement.at),
            );
        }

        if moved_to.is_none()
            && covered
            && (matches!(judgement.verdict, Verdict::Healthy | Verdict::Anomaly) || acknowledged)
            && ReleaseWindow::observation_end(release).is_some_and(|end| judgement.at >= end)
        {
            let reason = format!(
                "watched for {} s after the last batch: {}",
                release.spec.observe_seconds, explanation
            );
            let change = Change {
                lease: Some(lease),
                ..guard_change(
                    release,
                    Action::Succeed,
                    judgement.at.max(self.clock.now()),
                    reason,
                    Vec::new(),
                )?
            };
            match self.store.apply(&change) {
                Ok(_) => moved_to = Some(ReleaseState::Succeeded),
                Err(StoreError::StateConflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(moved_to)
    }

    /// The fault findings a person resumed the release past: when its last transition is a
    /// resume, those of the last fault verdict at or before the pause it ended.
    fn acknowledged_faults(
        &self,
        release_id: &str,
    ) -> Result<Option<Vec<vigil_core::Finding>>, GuardError> {
        let transitions = self.store.transitions(release_id)?;
        let Some((last, earlier)) = transitions.split_last() else {
            return Ok(None);
        };
        if last.action != Action::Resume {
            return Ok(None);
        }
        let Some(pause) = earlier
            .iter()
            .rev()
            .find(|transition| transition.action == Action::Pause)
        else {
            return Ok(None);
        };
        let seen = self
            .store
            .verdicts(release_id)?
            .into_iter()
            .rev()
            .find(|record| record.verdict == Verdict::Fault && record.at <= pause.at)
            .map(|record| {
                record
                    .findings
                    .into_iter()
                    .filter(|finding| finding.severity == Verdict::Fault)
                    .collect()
            });
        Ok(seen)
    }

    /// Forgets what was last recorded of a release: read again from the store when next
    /// needed (another replica may have recorded since).
    pub(super) fn forget(&self, release_id: &str) {
        lock(&self.recorded).remove(release_id);
    }

    fn last_recorded(&self, release_id: &str) -> Result<Option<Recorded>, GuardError> {
        if let Some(known) = lock(&self.recorded).get(release_id) {
            return Ok(Some(known.clone()));
        }
        let stored = self.store.verdicts(release_id)?.pop().map(|record| {
            let labels = recorded_labels(&record.findings, &record.suppressed);
            (record.verdict, labels, record.at)
        });
        if let Some(known) = &stored {
            lock(&self.recorded).insert(release_id.to_string(), known.clone());
        }
        Ok(stored)
    }
}

/// The change `action` by `actor` makes to `release` in the state it was read in: the state
/// it leads to is the release layer's rule (`vigil_deploy::next_state`), and the store applies
/// it only if the release is still in that state. No batch, no notifications.
pub fn transition_change(
    release: &Release,
    action: Action,
    actor: String,
    at: i64,
    reason: String,
) -> Result<Change, vigil_deploy::DeployError> {
    Ok(Change {
        release_id: release.id.clone(),
        expected: release.state,
        to: vigil_deploy::next_state(release.state, action)?,
        action,
        actor,
        at,
        reason,
        deployed: None,
        notifications: Vec::new(),
        lease: None,
    })
}

/// The change the guard asks of the store for `action` on a release in the state it was
/// judged in ([`transition_change`], acted by `guard`).
pub(super) fn guard_change(
    release: &Release,
    action: Action,
    at: i64,
    reason: String,
    notifications: Vec<NewNotification>,
) -> Result<Change, GuardError> {
    Ok(Change {
        notifications,
        ..transition_change(release, action, "guard".to_string(), at, reason)?
    })
}

/// How much larger than when it was acknowledged a fault must grow to pause the release again.
const ACKNOWLEDGED_GROWTH: f64 = 1.5;

/// Whether every fault finding of `judgement` was among those `seen` at a resume, and has not
/// grown by more than [`ACKNOWLEDGED_GROWTH`] since.
fn all_acknowledged(judgement: &Judgement, seen: &[vigil_core::Finding]) -> bool {
    judgement
        .findings
        .iter()
        .filter(|finding| finding.severity == Verdict::Fault)
        .all(|finding| {
            let label = finding.signal.label();
            seen.iter().any(|earlier| {
                earlier.signal.label() == label
                    && finding.effect.abs() <= ACKNOWLEDGED_GROWTH * earlier.effect.abs()
            })
        })
}

/// Findings with every number finite, so that they can be stored as JSON and read back
/// (a value the analysis could not compute is stored as 0).
pub fn finite_findings(findings: &[vigil_core::Finding]) -> Vec<vigil_core::Finding> {
    let finite = |value: f64| if value.is_finite() { value } else { 0.0 };
    findings
        .iter()
        .map(|finding| vigil_core::Finding {
            observed: finite(finding.observed),
            expected: finite(finding.expected),
            effect: finite(finding.effect),
            score: finite(finding.score),
            ..finding.clone()
        })
        .collect()
}

/// The labels of a verdict's findings, then of those set aside (marked so): a verdict is
/// recorded again when either changes.
fn recorded_labels(
    findings: &[vigil_core::Finding],
    suppressed: &[vigil_core::Suppressed],
) -> Vec<String> {
    findings
        .iter()
        .map(|finding| finding.signal.label())
        .chain(
            suppressed
                .iter()
                .map(|aside| format!("suppressed {}", aside.finding.signal.label())),
        )
        .collect()
}

/// [`finite_findings`] of the findings the learned stage set aside.
pub fn finite_suppressed(suppressed: &[vigil_core::Suppressed]) -> Vec<vigil_core::Suppressed> {
    suppressed
        .iter()
        .map(|aside| vigil_core::Suppressed {
            finding: finite_findings(std::slice::from_ref(&aside.finding))
                .pop()
                .unwrap_or_else(|| aside.finding.clone()),
            probability: aside.probability.filter(|value| value.is_finite()),
            ..aside.clone()
        })
        .collect()
}

/// One line: the most severe finding's explanation, or the judgement's reason.
pub fn explain(judgement: &Judgement) -> String {
    // Held for missing data: the findings (recommendations) are not why.
    if judgement.verdict == Verdict::InsufficientData {
        if let Some(reason) = &judgement.reason {
            return reason.clone();
        }
    }
    if let Some(finding) = judgement.findings.first() {
        return finding.explanation.clone();
    }
    judgement
        .reason
        .clone()
        .unwrap_or_else(|| format!("{}: nothing found", judgement.verdict))
}

/// The findings as a few lines for a notification.
/// The message's evidence: the first findings' explanations, then the first findings the
/// learned stage set aside, apart, each with why.
fn evidence_text(judgement: &Judgement) -> String {
    judgement
        .findings
        .iter()
        .take(5)
        .map(|finding| format!("- {}", finding.explanation))
        .chain(
            judgement
                .suppressed
                .iter()
                .take(3)
                .map(|aside| format!("- set aside: {}", aside.reason)),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod evidence_tests {
    use vigil_core::{Finding, Signal, Suppressed, Verdict};

    use super::*;

    fn finding(name: &str, explanation: &str) -> Finding {
        Finding {
            severity: Verdict::Fault,
            signal: Signal::Metric {
                name: name.to_owned(),
            },
            hosts: Vec::new(),
            hosts_judged: 1,
            direction: "up".to_owned(),
            observed: 2.0,
            expected: 1.0,
            effect: 1.0,
            score: 9.0,
            baseline: "reference".to_owned(),
            evidence: String::new(),
            since: 0,
            explanation: explanation.to_owned(),
        }
    }

    #[test]
    fn the_evidence_lists_what_was_set_aside_apart_with_why() {
        let mut judgement = Judgement {
            at: 60,
            verdict: Verdict::Fault,
            findings: vec![finding("latency_ms", "latency tripled")],
            reason: None,
            suppressed: Vec::new(),
        };
        assert_eq!(evidence_text(&judgement), "- latency tripled");
        judgement.suppressed.push(Suppressed {
            finding: finding("cpu", "cpu +10 %"),
            reason: "suppressed because cpu up matches signature 1".to_owned(),
            signature: Some(1),
            probability: None,
        });
        assert_eq!(
            evidence_text(&judgement),
            "- latency tripled\n- set aside: suppressed because cpu up matches signature 1"
        );
    }
}
