//! Promoting a learned model on its stored scores: what the API's promotion does, and
//! `vigil model promote` without a folder to replay. The candidate must carry held-out
//! replays that pass the promotion gate (`vigil_analysis::promotion`) against the model
//! promoted now, or the funnel alone when none is.

use vigil_analysis::learned::FEATURES;
use vigil_analysis::promotion::{self, Baseline, Comparison};
use vigil_core::learned::{ModelRecord, ModelState};
use vigil_store::{Store, StoreError};

/// Why a promotion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gate, or this build, refused the model; the sentence says why.
    #[error("{0}")]
    Refused(String),
    #[error("tolerance must be a number from 0 to 1, not {0}")]
    Tolerance(f64),
}

/// Checks that a tolerance is a share.
pub fn check_tolerance(tolerance: f64) -> Result<f64, PromotionError> {
    if !(0.0..=1.0).contains(&tolerance) {
        return Err(PromotionError::Tolerance(tolerance));
    }
    Ok(tolerance)
}

/// Refuses a model this build cannot apply (other features, bad vectors).
pub fn check_applicable(record: &ModelRecord) -> Result<(), PromotionError> {
    record.model.check(FEATURES).map_err(|error| {
        PromotionError::Refused(format!(
            "model v{} cannot be applied by this build: {error}",
            record.version
        ))
    })
}

/// The refusal of a gate whose comparisons show a fall, naming both sets of figures.
pub fn refusal(version: i64, baseline: Baseline, comparisons: &[Comparison]) -> Option<String> {
    if comparisons
        .iter()
        .all(|comparison| comparison.falls.is_empty())
    {
        return None;
    }
    let lines: Vec<String> = comparisons
        .iter()
        .map(|comparison| comparison.describe(baseline))
        .collect();
    Some(format!(
        "model v{version} is not promoted: it lowers precision or recall beyond the tolerance \
         against the {}: {}",
        baseline.label(),
        lines.join("; ")
    ))
}

/// Promotes `version` when its stored held-out scores pass the gate against the promoted
/// model (or the funnel): at least one held-out folder compared, and no figure fallen by
/// more than `tolerance` on any.
pub fn promote_on_stored_scores(
    store: &dyn Store,
    version: i64,
    actor: &str,
    at: i64,
    tolerance: f64,
) -> Result<ModelRecord, PromotionError> {
    let tolerance = check_tolerance(tolerance)?;
    let candidate = store
        .model(version)?
        .ok_or(StoreError::UnknownModel { version })?;
    if candidate.state == ModelState::Promoted {
        return Err(StoreError::ModelPromoted { version }.into());
    }
    check_applicable(&candidate)?;
    let promoted = store.promoted_model()?;
    let baseline = Baseline::of(promoted.as_ref());
    let comparisons = promotion::stored_comparisons(&candidate, promoted.as_ref(), tolerance);
    if comparisons.is_empty() {
        return Err(PromotionError::Refused(format!(
            "model v{version} carries no held-out scores against the {}: replay held-out \
             labelled releases with `vigil model promote {version} --corpus DIR`",
            baseline.label()
        )));
    }
    if let Some(refused) = refusal(version, baseline, &comparisons) {
        tracing::warn!(model = version, by = %actor, reason = %refused, "model promotion refused");
        return Err(PromotionError::Refused(refused));
    }
    let record = store.promote_model(version, actor, at)?;
    tracing::info!(model = version, by = %actor, at, "model promoted");
    Ok(record)
}

/// Rolls back the last promotion in force (see `Store::rollback_model`), logged.
pub fn roll_back(
    store: &dyn Store,
    actor: &str,
    at: i64,
) -> Result<vigil_store::ModelRollback, PromotionError> {
    let rollback = store.rollback_model(actor, at)?;
    tracing::info!(
        model = rollback.retired.version,
        restored = rollback.promoted.as_ref().map(|record| record.version),
        by = %actor,
        at,
        "model rolled back"
    );
    Ok(rollback)
}
