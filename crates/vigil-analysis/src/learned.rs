//! The learned stage, after the funnel: a team's false-alarm signatures set matching findings
//! aside, and a trained model sets aside recommendations it scores below its threshold. It
//! never touches a fault finding through the model, nor a team's rule, an alert or a silence;
//! what it sets aside is kept, with its reason, in [`Judgement::suppressed`].

use vigil_core::learned::{LearnedModel, ModelError};
use vigil_core::{
    Finding, Judgement, MetricKind, MetricMeta, Signal, Signature, Suppressed, Verdict,
};

/// The features of a finding, in the order of [`features`]' vector. A model names them and is
/// refused when they differ.
pub const FEATURES: &[&str] = &[
    "log_abs_effect",
    "score",
    "host_share",
    "hosts",
    "log_steps_held",
    "log_steps_since_deploy",
    "is_log",
    "history_baseline",
    "critical",
    "harmful_direction",
    "findings_at_step",
    "business",
    "system",
    "hosts_judged",
    "group_shift",
];

/// How the evidence of a finding of the funnel's group test begins.
pub const GROUP_SHIFT: &str = "group shift:";

/// What a finding's features need besides the finding: the release's metrics and step.
#[derive(Debug, Clone, Copy)]
pub struct FindingContext<'a> {
    pub metrics: &'a [MetricMeta],
    pub step_seconds: i64,
    /// Unix time of the first batch.
    pub first_deploy: i64,
}

/// The feature vector of `finding` in `judgement`, unit-free: sizes are relative, times are
/// in steps, and no name of a metric or host enters.
pub fn features(finding: &Finding, judgement: &Judgement, context: &FindingContext) -> Vec<f64> {
    let step = context.step_seconds.max(1) as f64;
    let meta = match &finding.signal {
        Signal::Metric { name } => context.metrics.iter().find(|meta| &meta.name == name),
        _ => None,
    };
    let held_steps = ((judgement.at - finding.since) as f64 / step).max(0.0);
    let steps_since_deploy = ((judgement.at - context.first_deploy) as f64 / step).max(0.0);
    let host_share = if finding.hosts_judged == 0 {
        0.0
    } else {
        finding.hosts.len() as f64 / finding.hosts_judged as f64
    };
    let harmful = meta.map_or(1.0, |meta| {
        let harm = match meta.direction {
            vigil_core::Direction::Increase => finding.direction == "up",
            vigil_core::Direction::Decrease => finding.direction == "down",
            vigil_core::Direction::Either => true,
        };
        flag(harm)
    });
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
        effect.ln_1p(),
        score / 10.0,
        host_share,
        finding.hosts.len() as f64,
        held_steps.ln_1p(),
        steps_since_deploy.ln_1p(),
        flag(matches!(finding.signal, Signal::Log { .. })),
        flag(finding.baseline == "history"),
        flag(meta.is_some_and(|meta| meta.critical)),
        harmful,
        judgement.findings.len() as f64,
        flag(meta.is_some_and(|meta| meta.kind == MetricKind::Business)),
        flag(meta.is_some_and(|meta| meta.kind == MetricKind::System)),
        finding.hosts_judged as f64,
        flag(finding.evidence.starts_with(GROUP_SHIFT)),
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
    pub fn apply(&self, judgement: Judgement, context: &FindingContext) -> Judgement {
        if self.is_empty() || judgement.findings.is_empty() {
            return judgement;
        }
        let mut kept = Vec::with_capacity(judgement.findings.len());
        let mut suppressed = judgement.suppressed.clone();
        for finding in &judgement.findings {
            match self.set_aside(finding, &judgement, context) {
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
        judgement: &Judgement,
        context: &FindingContext,
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
        let probability = staged
            .model
            .probability(&features(finding, judgement, context));
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
