//! The learned stage's model: a logistic regression over features of a finding, trained by
//! `vigil train` from labelled history and kept, versioned, in the store. Scoring is plain
//! arithmetic here; training lives in `vigil-learn`, features in `vigil_analysis::learned`.

use serde::{Deserialize, Serialize};

/// The `format` of a model this build reads and writes.
pub const MODEL_FORMAT: &str = "vigil-model/1";

/// A trained model: standardise each feature, weigh, add the intercept, take the logistic.
/// A finding it scores below `threshold` is not recommended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedModel {
    pub format: String,
    /// The feature names, in the order of every vector below. A model whose names differ from
    /// the features this build computes is refused, never applied to the wrong columns.
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// Probability at or above which a finding is kept, calibrated on the training set.
    pub threshold: f64,
    /// The recommendation precision the threshold was calibrated to reach.
    pub target_precision: f64,
}

/// Why a model cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("model format {found:?} is not {MODEL_FORMAT:?}")]
    Format { found: String },
    #[error("model features {found:?} differ from this build's {expected:?}; train a new model")]
    Features {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("model vectors have {found} entries for {expected} features")]
    Length { found: usize, expected: usize },
    #[error("model holds a value that is not finite")]
    NotFinite,
}

impl LearnedModel {
    /// Checks the model can score vectors of `expected` features.
    pub fn check(&self, expected: &[&str]) -> Result<(), ModelError> {
        if self.format != MODEL_FORMAT {
            return Err(ModelError::Format {
                found: self.format.clone(),
            });
        }
        if self
            .features
            .iter()
            .map(String::as_str)
            .ne(expected.iter().copied())
        {
            return Err(ModelError::Features {
                found: self.features.clone(),
                expected: expected.iter().map(|name| (*name).to_owned()).collect(),
            });
        }
        for vector in [&self.mean, &self.scale, &self.weights] {
            if vector.len() != expected.len() {
                return Err(ModelError::Length {
                    found: vector.len(),
                    expected: expected.len(),
                });
            }
        }
        let values = self.mean.iter().chain(&self.scale).chain(&self.weights);
        let scalars = [self.intercept, self.threshold, self.target_precision];
        if values.chain(scalars.iter()).any(|value| !value.is_finite()) {
            return Err(ModelError::NotFinite);
        }
        Ok(())
    }

    /// The probability that a finding with these features matters. `features` has the
    /// model's length (see [`LearnedModel::check`]); a zero scale counts as one.
    pub fn probability(&self, features: &[f64]) -> f64 {
        let mut logit = self.intercept;
        for (index, value) in features.iter().enumerate() {
            let mean = self.mean.get(index).copied().unwrap_or(0.0);
            let scale = self.scale.get(index).copied().unwrap_or(1.0);
            let scale = if scale > 0.0 { scale } else { 1.0 };
            let weight = self.weights.get(index).copied().unwrap_or(0.0);
            logit += weight * (value - mean) / scale;
        }
        1.0 / (1.0 + (-logit).exp())
    }
}

/// Where a stored model stands. At most one model is `promoted`: the one the guard applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// Trained, not applied.
    Candidate,
    /// Applied by the guard.
    Promoted,
    /// Was promoted once; a rollback may promote it again.
    Retired,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Candidate => "candidate",
            ModelState::Promoted => "promoted",
            ModelState::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<ModelState> {
        match text {
            "candidate" => Some(ModelState::Candidate),
            "promoted" => Some(ModelState::Promoted),
            "retired" => Some(ModelState::Retired),
            _ => None,
        }
    }
}

/// What a model was trained on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSet {
    /// Corpus folders and `store` for stored releases with feedback.
    pub sources: Vec<String>,
    pub releases: usize,
    /// Labelled findings (examples) and how many of them mattered.
    pub examples: usize,
    pub positives: usize,
}

/// A replay's figures for a model (or for the funnel without one), on labelled releases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    /// What was replayed: a corpus folder, `store`, `held-out` and so on.
    pub on: String,
    pub releases: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Share of anomaly releases recommended without being paused.
    pub anomaly_recommended: Option<f64>,
    /// Share of healthy releases recommended without being paused (false recommendations).
    pub healthy_recommended: Option<f64>,
    /// Share of recommended releases that were anomalies or faults.
    pub recommendation_precision: Option<f64>,
    pub delay_min_median: Option<f64>,
}

/// One model in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// 1, 2, 3… in the order models were added.
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub state: ModelState,
    pub model: LearnedModel,
    pub training: TrainingSet,
    /// Replays of this model, and of the funnel alone on the same releases for comparison.
    pub scores: Vec<ModelScores>,
    #[serde(default)]
    pub note: String,
    /// When it was last promoted.
    #[serde(default)]
    pub promoted_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> LearnedModel {
        LearnedModel {
            format: MODEL_FORMAT.to_owned(),
            features: vec!["a".to_owned(), "b".to_owned()],
            mean: vec![1.0, 0.0],
            scale: vec![2.0, 0.0],
            weights: vec![1.0, -1.0],
            intercept: 0.5,
            threshold: 0.5,
            target_precision: 0.8,
        }
    }

    #[test]
    fn probability_standardises_weighs_and_takes_the_logistic() {
        let model = model();
        // (3 - 1) / 2 * 1 + (2 - 0) / 1 * -1 + 0.5 = -0.5
        let expected = 1.0 / (1.0 + 0.5_f64.exp());
        assert!((model.probability(&[3.0, 2.0]) - expected).abs() < 1e-12);
    }

    #[test]
    fn a_model_of_other_features_or_lengths_is_refused() {
        let model = model();
        assert_eq!(model.check(&["a", "b"]), Ok(()));
        assert!(matches!(
            model.check(&["a", "c"]),
            Err(ModelError::Features { .. })
        ));
        let mut short = model.clone();
        short.weights.pop();
        assert!(matches!(
            short.check(&["a", "b"]),
            Err(ModelError::Length { .. })
        ));
        let mut infinite = model;
        infinite.intercept = f64::NAN;
        assert_eq!(infinite.check(&["a", "b"]), Err(ModelError::NotFinite));
    }
}
