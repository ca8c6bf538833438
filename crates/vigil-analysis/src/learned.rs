//! The learned stage, after the funnel: a team's false-alarm signatures set matching findings
//! aside, and a trained model sets aside recommendations it scores below its threshold. It
//! never touches a fault finding through the model, nor a team's rule, an alert or a silence;
//! what it sets aside is kept, with its reason, in [`Judgement::suppressed`].

use std::collections::HashMap;

use vigil_core::learned::{LearnedModel, ModelError};
use vigil_core::{Finding, Judgement, MetricMeta, Signal, Signature, Suppressed, Verdict};

use crate::judge::{Evaluator, GROUP_SHIFT};

/// The features of a finding, in the order of [`features`]' vector. A model names them and is
/// refused when they differ.
pub const FEATURES: &[&str] = &[
    "log_steps_recommended",
    "share_of_steps_recommended",
    "log_abs_effect",
    "score",
    "host_share",
    "is_log",
    "group_shift",
    "critical",
    "history_baseline",
];

/// What a finding's features need besides the finding: the release's metrics and step.
#[derive(Debug, Clone, Copy)]
pub struct FindingContext<'a> {
    pub metrics: &'a [MetricMeta],
    pub step_seconds: i64,
    /// Unix time of the first batch.
    pub first_deploy: i64,
}

impl<'a> FindingContext<'a> {
    /// The context of the findings of `bundle`.
    pub fn of(bundle: &'a vigil_core::Bundle) -> FindingContext<'a> {
        FindingContext {
            metrics: &bundle.metrics,
            step_seconds: bundle.step_seconds,
            first_deploy: bundle
                .batches
                .iter()
                .map(|batch| batch.at)
                .min()
                .unwrap_or(bundle.start),
        }
    }
}

/// How often the funnel recommended each signal so far: the steps judged since the first one
/// and, per signal label, the steps at which it had an anomaly finding. A recommendation that
/// keeps coming back is worth more than one that flickers once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    steps: usize,
    recommended: HashMap<String, usize>,
    /// The next step (index into the evaluator's window) to observe, for [`Tally::catch_up`].
    next_step: Option<usize>,
}

impl Tally {
    /// Counts one more judged step of the funnel (before any stage set anything aside).
    pub fn observe(&mut self, judgement: &Judgement) {
        self.steps += 1;
        let mut seen: Vec<String> = judgement
            .findings
            .iter()
            .filter(|finding| finding.severity == Verdict::Anomaly)
            .map(|finding| finding.signal.label())
            .collect();
        seen.sort();
        seen.dedup();
        for label in seen {
            *self.recommended.entry(label).or_default() += 1;
        }
    }

    /// Observes the evaluator's judgement of every step from where it stopped (or the first
    /// step) up to `now` included, and returns the judgement of `now`: what a guard that judges
    /// only the newest step calls, so that it counts as a replay that judged every step does.
    pub fn catch_up(&mut self, evaluator: &Evaluator, now: usize) -> Judgement {
        let first = self
            .next_step
            .or_else(|| evaluator.first_step())
            .unwrap_or(now);
        for step in first..now {
            self.observe(&evaluator.judge_at(step));
        }
        let judgement = evaluator.judge_at(now);
        if first <= now {
            self.observe(&judgement);
            self.next_step = Some(now + 1);
        }
        judgement
    }

    /// The step [`Tally::catch_up`] observes next, if it observed any.
    pub fn next_step(&self) -> Option<usize> {
        self.next_step
    }

    /// Steps observed.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Steps at which the signal of this label was recommended.
    pub fn recommended(&self, label: &str) -> usize {
        self.recommended.get(label).copied().unwrap_or(0)
    }
}

/// The feature vector of `finding`, unit-free: sizes are relative, counts are in steps, and no
/// name of a metric or host enters. `tally` has observed the judgement the finding is of.
pub fn features(finding: &Finding, context: &FindingContext, tally: &Tally) -> Vec<f64> {
    let meta = match &finding.signal {
        Signal::Metric { name } => context.metrics.iter().find(|meta| &meta.name == name),
        _ => None,
    };
    let recommended = tally.recommended(&finding.signal.label()).max(1) as f64;
    let steps = tally.steps().max(1) as f64;
    let effect = if finding.effect.is_finite() {
        finding.effect.abs().min(100.0)
    } else {
        100.0
    };
    let score = if finding.score.is_finite() {
        finding.score.clamp(0.0, 50.0)
    } else {
        50.0
    };
    vec![
        recommended.ln_1p(),
        (recommended / steps).min(1.0),
        effect.ln_1p(),
        score / 10.0,
        finding.host_share(),
        flag(matches!(finding.signal, Signal::Log { .. })),
        flag(finding.evidence.starts_with(GROUP_SHIFT)),
        flag(meta.is_some_and(|meta| meta.critical)),
        flag(finding.baseline == "history"),
    ]
}

fn flag(value: bool) -> f64 {
    if value {
        1.0
    } else {
        0.0
    }
}

/// A model with the version the store gave it (0 for one read from a file).
#[derive(Debug, Clone, PartialEq)]
pub struct StageModel {
    pub version: i64,
    pub model: LearnedModel,
}

/// The learned stage of one app: its promoted model, if any, and its signatures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stage {
    model: Option<StageModel>,
    signatures: Vec<Signature>,
}

impl Stage {
    /// The stage with `model` (checked against [`FEATURES`]) and the active ones of
    /// `signatures`.
    pub fn new(model: Option<StageModel>, signatures: Vec<Signature>) -> Result<Stage, ModelError> {
        if let Some(staged) = &model {
            staged.model.check(FEATURES)?;
        }
        let signatures = signatures
            .into_iter()
            .filter(Signature::is_active)
            .collect();
        Ok(Stage { model, signatures })
    }

    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.model.is_none() && self.signatures.is_empty()
    }

    pub fn model(&self) -> Option<&StageModel> {
        self.model.as_ref()
    }

    /// `judgement` with the findings this stage sets aside moved to `suppressed` and the
    /// verdict recomputed from what is left. Insufficient data stays insufficient data.
    pub fn apply(
        &self,
        judgement: Judgement,
        context: &FindingContext,
        tally: &Tally,
    ) -> Judgement {
        if self.is_empty() || judgement.findings.is_empty() {
            return judgement;
        }
        let mut kept = Vec::with_capacity(judgement.findings.len());
        let mut suppressed = judgement.suppressed.clone();
        for finding in &judgement.findings {
            match self.set_aside(finding, context, tally) {
                Some(aside) => suppressed.push(aside),
                None => kept.push(finding.clone()),
            }
        }
        if suppressed.len() == judgement.suppressed.len() {
            return judgement;
        }
        let verdict = match judgement.verdict {
            Verdict::InsufficientData => Verdict::InsufficientData,
            _ if kept
                .iter()
                .any(|finding| finding.severity == Verdict::Fault) =>
            {
                Verdict::Fault
            }
            _ if kept
                .iter()
                .any(|finding| finding.severity == Verdict::Anomaly) =>
            {
                Verdict::Anomaly
            }
            _ => Verdict::Healthy,
        };
        Judgement {
            verdict,
            findings: kept,
            suppressed,
            ..judgement
        }
    }

    fn set_aside(
        &self,
        finding: &Finding,
        context: &FindingContext,
        tally: &Tally,
    ) -> Option<Suppressed> {
        if !matches!(finding.signal, Signal::Metric { .. } | Signal::Log { .. }) {
            return None;
        }
        if let Some(signature) = self
            .signatures
            .iter()
            .find(|signature| signature.matches(finding))
        {
            return Some(Suppressed {
                finding: finding.clone(),
                reason: signature.reason(),
                signature: Some(signature.id),
                probability: None,
            });
        }
        let staged = self.model.as_ref()?;
        if finding.severity != Verdict::Anomaly {
            return None;
        }
        let probability = staged.model.probability(&features(finding, context, tally));
        if probability >= staged.model.threshold {
            return None;
        }
        Some(Suppressed {
            finding: finding.clone(),
            reason: format!(
                "not recommended: model v{} gives it {:.0} % odds of mattering, below its threshold \
                 of {:.0} %",
                staged.version,
                probability * 100.0,
                staged.model.threshold * 100.0
            ),
            signature: None,
            probability: Some(probability),
        })
    }
}
