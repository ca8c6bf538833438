//! The replay driver: walk a release forward step by step, as a live guard would, and keep the
//! first pause.

use serde::Serialize;
use vigil_core::{Bundle, Finding, Judgement, Verdict};

use crate::judge::Evaluator;
use crate::learned::{FindingContext, Stage, Tally};
use crate::settings::Settings;

/// What one replayed release ended with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayOutcome {
    pub id: String,
    /// `fault` once paused; else `anomaly` once recommended; else the last step's verdict.
    pub verdict: Verdict,
    /// Unix time of the first pause.
    pub paused_at: Option<i64>,
    /// Unix time of the first recommendation.
    pub recommended_at: Option<i64>,
    /// The findings behind the verdict (at the pause, the last recommendation, or the end).
    pub findings: Vec<Finding>,
    /// Steps judged.
    pub steps: usize,
}

/// Judges the release at every step from its first batch on, each time with data up to that
/// step only. Calls `on_step` with every judgement (for live views and tests).
pub fn replay_with(
    bundle: &Bundle,
    settings: &Settings,
    on_step: impl FnMut(&Judgement),
) -> ReplayOutcome {
    replay_staged(bundle, settings, &Stage::default(), on_step)
}

/// [`replay_with`] with the learned stage applied to every step's judgement, as the guard
/// applies it.
pub fn replay_staged(
    bundle: &Bundle,
    settings: &Settings,
    stage: &Stage,
    mut on_step: impl FnMut(&Judgement),
) -> ReplayOutcome {
    let evaluator = Evaluator::new(bundle, settings);
    let context = FindingContext::of(bundle);
    let mut outcome = ReplayOutcome {
        id: bundle.id.clone(),
        verdict: Verdict::InsufficientData,
        paused_at: None,
        recommended_at: None,
        findings: Vec::new(),
        steps: 0,
    };
    let Some(first) = evaluator.first_step() else {
        return outcome;
    };
    let mut last = None;
    let mut tally = Tally::default();
    for now in first..evaluator.points() {
        let funnel = evaluator.judge_at(now);
        tally.observe(&funnel);
        let judgement = stage.apply(funnel, &context, &tally);
        on_step(&judgement);
        outcome.steps += 1;
        // A recommendation stands while missing data holds the release too.
        let recommends = judgement.verdict != Verdict::Fault
            && judgement
                .findings
                .iter()
                .any(|finding| finding.severity == Verdict::Anomaly);
        if outcome.paused_at.is_none() {
            if judgement.verdict == Verdict::Fault {
                outcome.paused_at = Some(judgement.at);
                outcome.findings = judgement.findings.clone();
            } else if recommends {
                outcome.recommended_at.get_or_insert(judgement.at);
                outcome.findings = judgement.findings.clone();
            }
        }
        last = Some(judgement);
    }
    outcome.verdict = if outcome.paused_at.is_some() {
        Verdict::Fault
    } else if outcome.recommended_at.is_some() {
        Verdict::Anomaly
    } else {
        let last = last.unwrap_or(Judgement {
            at: bundle.start,
            verdict: Verdict::InsufficientData,
            findings: Vec::new(),
            reason: None,
            suppressed: Vec::new(),
        });
        outcome.findings = last.findings;
        last.verdict
    };
    outcome
}

/// [`replay_with`] without a per-step callback.
pub fn replay(bundle: &Bundle, settings: &Settings) -> ReplayOutcome {
    replay_with(bundle, settings, |_| {})
}
