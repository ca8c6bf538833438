//! The promotion gate of a learned model: a candidate is promoted only when a replay of
//! held-out labelled releases with it lowers neither precision nor recall beyond a tolerance,
//! against the model in force (or the funnel alone when none is). Both the pauses' figures and
//! the recommendations' are held: precision and recall of pauses, and the recommendations'
//! precision and F1 (with the share of anomalies recommended as their recall), since a model
//! only sets recommendations aside.
//!
//! Replays are named in a model's scores: `held-out: DIR` for the candidate on the labelled
//! releases of `DIR`, `funnel on held-out: DIR` and `current vN on held-out: DIR` for what it
//! was compared with.

use vigil_core::learned::{ModelRecord, ModelScores};

use crate::score::Figures;

/// The tolerance of `vigil model promote` and of the API's promotion when none is given.
pub const DEFAULT_TOLERANCE: f64 = 0.01;

const HELD_OUT: &str = "held-out: ";

/// What a candidate is compared with: the funnel alone, or the model promoted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    Funnel,
    Model(i64),
}

impl Baseline {
    /// The baseline of a store whose promoted model is `promoted`.
    pub fn of(promoted: Option<&ModelRecord>) -> Baseline {
        promoted.map_or(Baseline::Funnel, |record| Baseline::Model(record.version))
    }

    pub fn label(self) -> String {
        match self {
            Baseline::Funnel => "funnel".to_owned(),
            Baseline::Model(version) => format!("current v{version}"),
        }
    }
}

/// The name of the candidate's replay of `dir`.
pub fn held_out(dir: &str) -> String {
    format!("{HELD_OUT}{dir}")
}

/// The name of the baseline's replay of `dir`.
pub fn baseline_on(baseline: Baseline, dir: &str) -> String {
    format!("{} on {}", baseline.label(), held_out(dir))
}

/// A replay's figures as a model keeps them.
pub fn scores_of(on: &str, figures: &Figures) -> ModelScores {
    ModelScores {
        on: on.to_owned(),
        releases: figures.releases,
        precision: figures.precision,
        recall: figures.recall,
        f1: figures.f1,
        anomaly_recommended: figures.anomaly_recommended,
        healthy_recommended: figures.healthy_recommended,
        recommendation_precision: figures.recommendation_precision,
        delay_min_median: figures.delay_min_median,
    }
}

/// A figure that fell by more than the tolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct Fall {
    pub figure: &'static str,
    pub baseline: f64,
    pub candidate: f64,
}

/// The candidate's and the baseline's figures on one held-out folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub dir: String,
    pub baseline: ModelScores,
    pub candidate: ModelScores,
    pub falls: Vec<Fall>,
}

impl Comparison {
    pub fn new(dir: &str, baseline: ModelScores, candidate: ModelScores, tolerance: f64) -> Self {
        let falls = falls(&baseline, &candidate, tolerance);
        Comparison {
            dir: dir.to_owned(),
            baseline,
            candidate,
            falls,
        }
    }

    /// One line with both sets of figures, the falls marked.
    pub fn describe(&self, baseline: Baseline) -> String {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.3}"))
        };
        let pairs = [
            (
                "precision",
                Some(self.baseline.precision),
                Some(self.candidate.precision),
            ),
            (
                "recall",
                Some(self.baseline.recall),
                Some(self.candidate.recall),
            ),
            (
                "recommendation precision",
                self.baseline.recommendation_precision,
                self.candidate.recommendation_precision,
            ),
            (
                "anomalies recommended",
                self.baseline.anomaly_recommended,
                self.candidate.anomaly_recommended,
            ),
            (
                "recommendation f1",
                recommendation_f1(&self.baseline),
                recommendation_f1(&self.candidate),
            ),
            (
                "false recommendations",
                self.baseline.healthy_recommended,
                self.candidate.healthy_recommended,
            ),
        ];
        let parts: Vec<String> = pairs
            .iter()
            .map(|(name, before, after)| {
                let fell = if self.falls.iter().any(|fall| fall.figure == *name) {
                    " (fell)"
                } else {
                    ""
                };
                format!("{name} {} -> {}{fell}", figure(*before), figure(*after))
            })
            .collect();
        format!(
            "{} ({} releases), {} -> candidate: {}",
            held_out(&self.dir),
            self.candidate.releases,
            baseline.label(),
            parts.join(", ")
        )
    }
}

/// The recommendations' F1: the harmonic mean of their precision and the share of anomalies
/// recommended. A model trades some anomalies recommended for far fewer false
/// recommendations; F1 weighs both, and a model that recommends nothing scores 0. None when
/// no anomaly is labelled.
pub fn recommendation_f1(scores: &ModelScores) -> Option<f64> {
    let recall = scores.anomaly_recommended?;
    let precision = scores.recommendation_precision.unwrap_or(0.0);
    if precision + recall <= 0.0 {
        return Some(0.0);
    }
    Some(2.0 * precision * recall / (precision + recall))
}

/// The figures of `candidate` that fell below `baseline`'s by more than `tolerance`: the
/// pauses' precision and recall, the recommendations' precision and their F1. A
/// recommendation figure counts only when both replays have it (none: nothing recommended, or
/// no anomaly labelled).
pub fn falls(baseline: &ModelScores, candidate: &ModelScores, tolerance: f64) -> Vec<Fall> {
    let pairs = [
        (
            "precision",
            Some(baseline.precision),
            Some(candidate.precision),
        ),
        ("recall", Some(baseline.recall), Some(candidate.recall)),
        (
            "recommendation precision",
            baseline.recommendation_precision,
            candidate.recommendation_precision,
        ),
        (
            "recommendation f1",
            recommendation_f1(baseline),
            recommendation_f1(candidate),
        ),
    ];
    pairs
        .into_iter()
        .filter_map(|(figure, before, after)| {
            let (before, after) = (before?, after?);
            // Figures are rounded to four places: a hair below the bound is not a fall.
            (after < before - tolerance - 1e-9).then_some(Fall {
                figure,
                baseline: before,
                candidate: after,
            })
        })
        .collect()
}

/// The comparisons a candidate's stored scores allow against `promoted` (or the funnel): for
/// each folder it was replayed on (`held-out: DIR`, the latest such row), the baseline's latest
/// figures on the same folder: the candidate's own `funnel on` / `current vN on` row, or else,
/// against a promoted model, that model's own `held-out: DIR` row.
pub fn stored_comparisons(
    candidate: &ModelRecord,
    promoted: Option<&ModelRecord>,
    tolerance: f64,
) -> Vec<Comparison> {
    let baseline = Baseline::of(promoted);
    let latest = |scores: &[ModelScores], on: &str| -> Option<ModelScores> {
        scores.iter().rev().find(|row| row.on == on).cloned()
    };
    let mut dirs: Vec<&str> = Vec::new();
    for row in &candidate.scores {
        if let Some(dir) = row.on.strip_prefix(HELD_OUT) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let mut comparisons = Vec::new();
    for dir in dirs {
        let Some(candidate_scores) = latest(&candidate.scores, &held_out(dir)) else {
            continue;
        };
        let baseline_scores = latest(&candidate.scores, &baseline_on(baseline, dir))
            .or_else(|| promoted.and_then(|record| latest(&record.scores, &held_out(dir))));
        let Some(baseline_scores) = baseline_scores else {
            continue;
        };
        comparisons.push(Comparison::new(
            dir,
            baseline_scores,
            candidate_scores,
            tolerance,
        ));
    }
    comparisons
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::learned::{LearnedModel, ModelState, TrainingSet, MODEL_FORMAT};

    fn scores(on: &str, precision: f64, recall: f64, recommended: Option<f64>) -> ModelScores {
        ModelScores {
            on: on.to_owned(),
            releases: 10,
            precision,
            recall,
            f1: 0.0,
            anomaly_recommended: recommended,
            healthy_recommended: Some(0.2),
            recommendation_precision: Some(0.5),
            delay_min_median: None,
        }
    }

    fn record(version: i64, rows: Vec<ModelScores>) -> ModelRecord {
        ModelRecord {
            version,
            created_at: 0,
            created_by: "trainer".to_owned(),
            state: ModelState::Candidate,
            model: LearnedModel {
                format: MODEL_FORMAT.to_owned(),
                features: Vec::new(),
                mean: Vec::new(),
                scale: Vec::new(),
                weights: Vec::new(),
                intercept: 0.0,
                threshold: 0.5,
                target_precision: 0.9,
            },
            training: TrainingSet::default(),
            scores: rows,
            note: String::new(),
            promoted_at: None,
        }
    }

    #[test]
    fn a_fall_beyond_the_tolerance_is_named_and_a_small_one_is_not() {
        let base = scores("b", 0.96, 1.0, Some(0.6));
        assert!(falls(&base, &scores("c", 0.955, 1.0, Some(0.6)), 0.01).is_empty());
        let fell = falls(&base, &scores("c", 0.96, 0.9, Some(0.3)), 0.01);
        let names: Vec<&str> = fell.iter().map(|fall| fall.figure).collect();
        assert_eq!(names, ["recall", "recommendation f1"]);
        // No anomaly labelled: nothing to compare there.
        assert!(falls(
            &scores("b", 1.0, 1.0, None),
            &scores("c", 1.0, 1.0, None),
            0.0
        )
        .is_empty());
    }

    #[test]
    fn stored_scores_pair_each_held_out_folder_with_the_baseline_in_force() {
        let candidate = record(
            3,
            vec![
                scores("train", 1.0, 1.0, Some(1.0)),
                scores(&held_out("a"), 0.9, 1.0, Some(0.6)),
                scores(&baseline_on(Baseline::Funnel, "a"), 0.9, 1.0, Some(0.7)),
                scores(&held_out("a"), 0.9, 1.0, Some(0.65)),
            ],
        );
        let against_funnel = stored_comparisons(&candidate, None, 0.01);
        assert_eq!(against_funnel.len(), 1);
        assert_eq!(against_funnel[0].candidate.anomaly_recommended, Some(0.65));
        let names: Vec<&str> = against_funnel[0]
            .falls
            .iter()
            .map(|fall| fall.figure)
            .collect();
        assert_eq!(names, ["recommendation f1"]);
        // Against a promoted model the funnel's rows do not count; its own held-out row does.
        let mut promoted = record(2, vec![scores(&held_out("b"), 1.0, 1.0, Some(0.6))]);
        promoted.state = ModelState::Promoted;
        assert!(stored_comparisons(&candidate, Some(&promoted), 0.01).is_empty());
        promoted
            .scores
            .push(scores(&held_out("a"), 0.9, 1.0, Some(0.6)));
        let against_model = stored_comparisons(&candidate, Some(&promoted), 0.01);
        assert_eq!(against_model.len(), 1);
        assert!(against_model[0].falls.is_empty());
        assert!(against_model[0]
            .describe(Baseline::Model(2))
            .starts_with("held-out: a (10 releases), current v2 -> candidate: precision 0.900"));
    }
}
