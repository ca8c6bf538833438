//! What a pipeline reads to decide whether to go on: a release's state and latest verdict
//! turned into `proceed`, `hold`, `stop` or `passed`.

use serde::Serialize;
use vigil_core::release::{Release, ReleaseState, VerdictRecord};
use vigil_core::Verdict;

use crate::guard::last_batch_judged_from;
use crate::window::release_settings;

/// What a pipeline (or Argo Rollouts' Web metric) reads to decide whether to go on.
#[derive(Debug, Serialize)]
pub struct VerdictAnswer {
    pub release: String,
    pub state: ReleaseState,
    pub verdict: Option<Verdict>,
    /// `proceed`: the next batch may start; `hold`: wait (the last batch is not judged yet:
    /// warming up, no verdict since its deploy, or data missing); `stop`: paused, rolled back,
    /// cancelled or failed; `passed`: the release succeeded. A pipeline goes on only on
    /// `proceed` or `passed`.
    pub decision: &'static str,
    /// True once the release failed its guard or was stopped (Argo: `failureCondition`).
    pub failed: bool,
    /// True once the release succeeded.
    pub passed: bool,
    /// True when the outcome is final.
    pub done: bool,
    pub reason: String,
}

pub fn verdict_answer(release: &Release, latest: Option<&VerdictRecord>) -> VerdictAnswer {
    let (decision, failed, passed) = match release.state {
        ReleaseState::Succeeded => ("passed", false, true),
        ReleaseState::Paused
        | ReleaseState::RollingBack
        | ReleaseState::RolledBack
        | ReleaseState::Failed
        | ReleaseState::Cancelled => ("stop", true, false),
        ReleaseState::Pending | ReleaseState::Deploying | ReleaseState::Observing => {
            if last_batch_judged(release, latest) {
                ("proceed", false, false)
            } else {
                ("hold", false, false)
            }
        }
    };
    let reason = latest
        .map(|record| record.explanation.clone())
        .filter(|text| !text.is_empty() && release.state != ReleaseState::Paused)
        .unwrap_or_else(|| release.reason.clone());
    VerdictAnswer {
        release: release.id.clone(),
        state: release.state,
        verdict: release.verdict,
        decision,
        failed,
        passed,
        done: release.state.is_terminal() || release.state == ReleaseState::Paused,
        reason,
    }
}

/// Whether the latest verdict speaks for the last deployed batch, past its warm-up, and lets
/// the next one start: anything but missing data (a fault still observing was resumed past).
/// Before any batch, nothing holds the first.
fn last_batch_judged(release: &Release, latest: Option<&VerdictRecord>) -> bool {
    let settings = release_settings(release).unwrap_or_default();
    let Some(judged_from) = last_batch_judged_from(release, &settings) else {
        return true;
    };
    latest.is_some_and(|record| {
        record.at >= judged_from && record.verdict != Verdict::InsufficientData
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::tests::release;

    fn record(at: i64, verdict: Verdict, explanation: &str) -> VerdictRecord {
        VerdictRecord {
            release_id: "r1".to_string(),
            at,
            verdict,
            findings: Vec::new(),
            explanation: explanation.to_string(),
            suppressed: Vec::new(),
        }
    }

    #[test]
    fn an_observing_release_holds_until_its_last_batch_is_judged_past_the_warm_up() {
        // Deployed at 100 with the default warm-up of 120 s: judged from 220.
        let observing = release();
        assert_eq!(verdict_answer(&observing, None).decision, "hold");
        let warming = record(219, Verdict::Healthy, "");
        assert_eq!(verdict_answer(&observing, Some(&warming)).decision, "hold");
        let missing = record(230, Verdict::InsufficientData, "");
        assert_eq!(verdict_answer(&observing, Some(&missing)).decision, "hold");
        let judged = record(220, Verdict::Healthy, "all quiet");
        let answer = verdict_answer(&observing, Some(&judged));
        assert_eq!(answer.decision, "proceed");
        assert_eq!(answer.reason, "all quiet");
        assert!(!answer.done && !answer.failed && !answer.passed);
    }

    #[test]
    fn before_any_batch_nothing_holds_the_first() {
        let mut pending = release();
        pending.state = ReleaseState::Pending;
        pending.deployed.clear();
        assert_eq!(verdict_answer(&pending, None).decision, "proceed");
    }

    #[test]
    fn a_paused_release_stops_with_its_own_reason_and_a_succeeded_one_passes() {
        let mut paused = release();
        paused.state = ReleaseState::Paused;
        paused.reason = "paused by ana".to_string();
        let fault = record(300, Verdict::Fault, "latency up");
        let answer = verdict_answer(&paused, Some(&fault));
        assert_eq!(answer.decision, "stop");
        assert_eq!(answer.reason, "paused by ana");
        assert!(answer.failed && answer.done);
        let mut succeeded = release();
        succeeded.state = ReleaseState::Succeeded;
        let answer = verdict_answer(&succeeded, None);
        assert_eq!(answer.decision, "passed");
        assert!(answer.passed && answer.done && !answer.failed);
    }
}
