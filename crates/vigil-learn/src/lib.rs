//! Vigil's offline learning: what the learned stage is trained on, how its model is fitted and
//! calibrated, and how it is measured.
//!
//! A labelled release is replayed once through the funnel ([`trace`]); the trace keeps, for
//! every step before the first pause, the feature vectors of the step's anomaly findings (the
//! recommendations). The model only ever sets recommendations aside, so a trace is enough to
//! know exactly what a replay with any model would decide ([`decide`]), without judging the
//! release again: fitting, calibrating and cross-validating cost arithmetic, not replays.
//!
//! Synchronous and free of IO, like the analysis: callers read bundles and labels.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use vigil_analysis::learned::{self, FindingContext, StageModel};
use vigil_analysis::score::{self, Decision, Label};
use vigil_analysis::{replay_with, Settings, Stage, Tally};
use vigil_core::learned::{LearnedModel, MODEL_FORMAT};
use vigil_core::{Bundle, ModelScores, TrainingSet, Verdict};

/// Why a model could not be trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    #[error("no labelled release has a recommendation to learn from")]
    NoExamples,
    #[error("the examples hold only one class ({0}); label releases of both kinds")]
    OneClass(&'static str),
    #[error("the fit failed: {0}")]
    Fit(String),
}

/// One labelled release as the funnel saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub label: Label,
    /// Unix time of the funnel's first pause.
    pub paused_at: Option<i64>,
    /// Per step before the first pause that was not a fault: the features of each anomaly
    /// finding of that step.
    pub steps: Vec<Vec<Vec<f64>>>,
}

impl Trace {
    /// True when a recommendation of this release was right: it was an anomaly or a fault.
    pub fn matters(&self) -> bool {
        self.label.label != "healthy"
    }
}

/// Replays `bundle` through the funnel once and keeps what the learned stage would see.
pub fn trace(bundle: &Bundle, label: Label, settings: &Settings) -> Trace {
    let context = FindingContext::of(bundle);
    let mut steps = Vec::new();
    let mut paused = false;
    let mut tally = Tally::default();
    let outcome = replay_with(bundle, settings, |judgement| {
        tally.observe(judgement);
        if paused || judgement.verdict == Verdict::Fault {
            paused = true;
            return;
        }
        let candidates: Vec<Vec<f64>> = judgement
            .findings
            .iter()
            .filter(|finding| finding.severity == Verdict::Anomaly)
            .map(|finding| learned::features(finding, &context, &tally))
            .collect();
        if !candidates.is_empty() {
            steps.push(candidates);
        }
    });
    Trace {
        label,
        paused_at: outcome.paused_at,
        steps,
    }
}

/// What a replay with `model` (none: the funnel alone) decides for the traced release.
pub fn decide(trace: &Trace, model: Option<&LearnedModel>) -> Decision {
    if trace.paused_at.is_some() {
        return Decision {
            verdict: Verdict::Fault,
            paused_at: trace.paused_at,
        };
    }
    let recommended = trace.steps.iter().flatten().any(|features| match model {
        None => true,
        Some(model) => model.probability(features) >= model.threshold,
    });
    Decision {
        verdict: if recommended {
            Verdict::Anomaly
        } else {
            Verdict::Healthy
        },
        paused_at: None,
    }
}

/// The replay figures of `traces` with `model` (none: the funnel alone).
pub fn evaluate(traces: &[Trace], model: Option<&LearnedModel>, on: &str) -> ModelScores {
    let labels: Vec<Label> = traces.iter().map(|trace| trace.label.clone()).collect();
    let decisions: HashMap<String, Decision> = traces
        .iter()
        .map(|trace| (trace.label.id.clone(), decide(trace, model)))
        .collect();
    let figures = score::score(&labels, &decisions).overall;
    vigil_analysis::promotion::scores_of(on, &figures)
}

/// How a model is fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// The recommendation precision the threshold is calibrated to reach on the training
    /// releases (out of fold).
    pub target_precision: f64,
    /// L2 penalty of the logistic regression, on standardised features.
    pub penalty: f64,
    /// Examples kept per release at most, spread over its steps, so that a release
    /// recommended at every step for an hour weighs no more than one recommended twice.
    pub examples_per_release: usize,
    /// Folds of the out-of-fold probabilities the threshold is calibrated on.
    pub calibration_folds: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            target_precision: 0.7,
            penalty: 100.0,
            examples_per_release: 8,
            calibration_folds: 5,
        }
    }
}

/// A fitted model and what it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub model: LearnedModel,
    pub training: TrainingSet,
}

/// Fits the learned stage's model on `traces` and calibrates its threshold.
pub fn train(
    traces: &[Trace],
    options: &TrainOptions,
    sources: &[String],
) -> Result<Trained, LearnError> {
    let (rows, classes) = examples(traces, options.examples_per_release);
    let mut model = fit(&rows, &classes, options)?;
    model.threshold = calibrate(traces, options, &model);
    Ok(Trained {
        model,
        training: TrainingSet {
            sources: sources.to_vec(),
            releases: traces.len(),
            examples: rows.len(),
            positives: classes.iter().filter(|class| **class == 1).count(),
        },
    })
}

/// The examples of `traces`: each release's candidate findings, at most `per_release` of
/// them spread evenly over its steps, labelled by whether the release mattered.
fn examples(traces: &[Trace], per_release: usize) -> (Vec<Vec<f64>>, Vec<i32>) {
    let mut rows = Vec::new();
    let mut classes = Vec::new();
    for trace in traces {
        let all: Vec<&Vec<f64>> = trace.steps.iter().flatten().collect();
        let keep = per_release.max(1).min(all.len());
        for index in 0..keep {
            // Evenly spread, first and last included.
            let position = if keep == 1 {
                0
            } else {
                index * (all.len() - 1) / (keep - 1)
            };
            rows.push(all[position].clone());
            classes.push(i32::from(trace.matters()));
        }
    }
    (rows, classes)
}

/// A logistic regression on standardised features; threshold left at one half.
fn fit(
    rows: &[Vec<f64>],
    classes: &[i32],
    options: &TrainOptions,
) -> Result<LearnedModel, LearnError> {
    if rows.is_empty() {
        return Err(LearnError::NoExamples);
    }
    if classes.iter().all(|class| *class == 1) {
        return Err(LearnError::OneClass("only releases that mattered"));
    }
    if classes.iter().all(|class| *class == 0) {
        return Err(LearnError::OneClass("only healthy releases"));
    }
    let width = learned::FEATURES.len();
    let count = rows.len() as f64;
    let mut mean = vec![0.0; width];
    let mut scale = vec![0.0; width];
    for row in rows {
        for (column, value) in row.iter().enumerate() {
            mean[column] += value / count;
        }
    }
    for row in rows {
        for (column, value) in row.iter().enumerate() {
            scale[column] += (value - mean[column]).powi(2) / count;
        }
    }
    for value in &mut scale {
        *value = if *value > 1e-12 { value.sqrt() } else { 1.0 };
    }
    let standardised: Vec<Vec<f64>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(column, value)| (value - mean[column]) / scale[column])
                .collect()
        })
        .collect();
    let matrix = DenseMatrix::from_2d_vec(&standardised)
        .map_err(|error| LearnError::Fit(error.to_string()))?;
    let targets = classes.to_vec();
    let parameters = LogisticRegressionParameters::default().with_alpha(options.penalty);
    let fitted = LogisticRegression::fit(&matrix, &targets, parameters)
        .map_err(|error| LearnError::Fit(error.to_string()))?;
    let coefficients = fitted.coefficients();
    let weights: Vec<f64> = (0..width)
        .map(|column| *coefficients.get((0, column)))
        .collect();
    let intercept = *fitted.intercept().get((0, 0));
    let model = LearnedModel {
        format: MODEL_FORMAT.to_owned(),
        features: learned::FEATURES
            .iter()
            .map(|name| (*name).to_owned())
            .collect(),
        mean,
        scale,
        weights,
        intercept,
        threshold: 0.5,
        target_precision: options.target_precision,
    };
    model
        .check(learned::FEATURES)
        .map_err(|error| LearnError::Fit(error.to_string()))?;
    Ok(model)
}

/// The threshold: the lowest at which the recommendation precision of out-of-fold models on
/// `traces` reaches the target (the most recommendations that precision allows); the highest
/// precision's threshold when none reaches it. Too few releases for out-of-fold models: the
/// probabilities of `whole`, fitted on all of them.
fn calibrate(traces: &[Trace], options: &TrainOptions, whole: &LearnedModel) -> f64 {
    let folds = options.calibration_folds.max(2);
    // Per release not paused: the highest out-of-fold probability of its candidates.
    let mut best: Vec<(f64, bool)> = Vec::new();
    for fold in 0..folds {
        let (held_out, kept): (Vec<&Trace>, Vec<&Trace>) = traces
            .iter()
            .partition(|trace| fold_of(&trace.label.id, folds) == fold);
        let kept: Vec<Trace> = kept.into_iter().cloned().collect();
        let (rows, classes) = examples(&kept, options.examples_per_release);
        let Ok(model) = fit(&rows, &classes, options) else {
            continue;
        };
        best.extend(highest_probabilities(held_out, &model));
    }
    if best.is_empty() {
        best = highest_probabilities(traces.iter(), whole);
    }
    if best.is_empty() {
        return whole.threshold;
    }
    best.sort_by(|left, right| right.0.total_cmp(&left.0));
    // Walk down the thresholds: at each, the releases at or above it are recommended.
    let mut right = 0usize;
    let mut chosen = None;
    let mut most_precise = (0.0, best[0].0);
    for (index, (probability, matters)) in best.iter().enumerate() {
        right += usize::from(*matters);
        let precision = right as f64 / (index + 1) as f64;
        let ties_follow = best
            .get(index + 1)
            .is_some_and(|next| next.0 == *probability);
        if ties_follow {
            continue;
        }
        if precision > most_precise.0 {
            most_precise = (precision, *probability);
        }
        if precision >= options.target_precision {
            chosen = Some(*probability);
        }
    }
    chosen.unwrap_or(most_precise.1)
}

/// Per release recommended by the funnel and not paused: the highest probability `model`
/// gives its recommendations, and whether the release mattered.
fn highest_probabilities<'t>(
    traces: impl IntoIterator<Item = &'t Trace>,
    model: &LearnedModel,
) -> Vec<(f64, bool)> {
    traces
        .into_iter()
        .filter(|trace| trace.paused_at.is_none() && !trace.steps.is_empty())
        .map(|trace| {
            let highest = trace
                .steps
                .iter()
                .flatten()
                .map(|features| model.probability(features))
                .fold(0.0, f64::max);
            (highest, trace.matters())
        })
        .collect()
}

/// The fold of a release, by a hash of its id: stable across runs, machines and orders.
pub fn fold_of(id: &str, folds: usize) -> usize {
    // FNV-1a, 64 bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % folds.max(1) as u64) as usize
}

/// One fold of a cross-validation: trained on the other folds, replayed on this one.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldReport {
    pub fold: usize,
    pub funnel: ModelScores,
    /// The fold with its model; the funnel's figures again when none could be trained.
    pub learned: ModelScores,
    /// None when the other folds had nothing to learn from, with the reason.
    pub model: Result<LearnedModel, LearnError>,
}

/// Cross-validates on `traces`: for each fold, a model trained on the others, and the fold's
/// figures with it and with the funnel alone.
pub fn cross_validate(traces: &[Trace], options: &TrainOptions, folds: usize) -> Vec<FoldReport> {
    let folds = folds.max(2);
    let mut reports = Vec::with_capacity(folds);
    for fold in 0..folds {
        let (held_out, kept): (Vec<Trace>, Vec<Trace>) = traces
            .iter()
            .cloned()
            .partition(|trace| fold_of(&trace.label.id, folds) == fold);
        let model = train(&kept, options, &[]).map(|trained| trained.model);
        let on = format!("fold {} of {folds}", fold + 1);
        reports.push(FoldReport {
            fold,
            funnel: evaluate(&held_out, None, &on),
            learned: evaluate(&held_out, model.as_ref().ok(), &on),
            model,
        });
    }
    reports
}

/// The learned stage a model makes, for replays.
pub fn stage_of(
    model: &LearnedModel,
    version: i64,
) -> Result<Stage, vigil_core::learned::ModelError> {
    Stage::new(
        Some(StageModel {
            version,
            model: model.clone(),
        }),
        Vec::new(),
    )
}

#[cfg(test)]
mod tests;
