//! Models of the learned stage, for both stores: the rows read back, the JSON `body` column
//! (the model, its training set, scores, note and its share of the promotions' audit), and the
//! promotions and rollbacks, each one transaction over every model's row.
//!
//! Promotions form a stack, kept in the audit: a promotion pushes its model, a rollback pops
//! the top and promotes again the model below it, if any.

use serde::{Deserialize, Serialize};
use vigil_core::learned::{LearnedModel, ModelRecord, ModelScores, ModelState, TrainingSet};

use crate::changes::{Executor, Value};
use crate::codec::{from_json, to_json, Columns};
use crate::{sql, ModelPromotion, ModelRollback, NewModel, PromotionAction, StoreError};

/// What the `body` column holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModelBody {
    model: LearnedModel,
    #[serde(default)]
    training: TrainingSet,
    #[serde(default)]
    scores: Vec<ModelScores>,
    #[serde(default)]
    note: String,
    /// This model's entries of the promotions' audit.
    #[serde(default)]
    promotions: Vec<PromotionEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PromotionEntry {
    seq: i64,
    action: PromotionAction,
    by: String,
    at: i64,
}

/// A `models` row, its body read.
#[derive(Debug, Clone)]
pub(crate) struct ModelRow {
    version: i64,
    state: ModelState,
    created_at: i64,
    created_by: String,
    promoted_at: Option<i64>,
    body: ModelBody,
}

impl ModelRow {
    fn into_record(self) -> ModelRecord {
        ModelRecord {
            version: self.version,
            created_at: self.created_at,
            created_by: self.created_by,
            state: self.state,
            model: self.body.model,
            training: self.body.training,
            scores: self.body.scores,
            note: self.body.note,
            promoted_at: self.promoted_at,
        }
    }

    fn promotions(&self) -> impl Iterator<Item = ModelPromotion> + '_ {
        self.body.promotions.iter().map(|entry| ModelPromotion {
            seq: entry.seq,
            version: self.version,
            action: entry.action,
            by: entry.by.clone(),
            at: entry.at,
        })
    }
}

pub(crate) fn read_model_row(row: &dyn Columns) -> Result<ModelRow, StoreError> {
    let state_name = row.text(1)?;
    let state = ModelState::parse(&state_name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown model state {state_name:?}")))?;
    Ok(ModelRow {
        version: row.integer(0)?,
        state,
        created_at: row.integer(2)?,
        created_by: row.text(3)?,
        promoted_at: row.optional_integer(4)?,
        body: from_json(&row.text(5)?, "model body")?,
    })
}

pub(crate) fn read_model(row: &dyn Columns) -> Result<ModelRecord, StoreError> {
    Ok(read_model_row(row)?.into_record())
}

/// Every model's part of the audit, oldest first.
pub(crate) fn promotions_of(rows: &[ModelRow]) -> Vec<ModelPromotion> {
    let mut promotions: Vec<ModelPromotion> = rows.iter().flat_map(ModelRow::promotions).collect();
    promotions.sort_by_key(|promotion| promotion.seq);
    promotions
}

/// The versions of the promotions still in force, the last one on top: each promotion pushes,
/// each rollback pops.
fn promotion_stack(rows: &[ModelRow]) -> Vec<i64> {
    let mut stack: Vec<i64> = Vec::new();
    for promotion in promotions_of(rows) {
        match promotion.action {
            PromotionAction::Promoted => stack.push(promotion.version),
            PromotionAction::RolledBack => {
                if let Some(position) = stack
                    .iter()
                    .rposition(|&version| version == promotion.version)
                {
                    stack.truncate(position);
                }
            }
            PromotionAction::Restored => {}
        }
    }
    stack
}

fn next_seq(rows: &[ModelRow]) -> i64 {
    rows.iter()
        .flat_map(|row| row.body.promotions.iter().map(|entry| entry.seq))
        .max()
        .unwrap_or(0)
        + 1
}

/// Stores a new candidate (see [`crate::Store::add_model`]).
pub(crate) fn insert_model(
    executor: &mut impl Executor,
    model: &NewModel,
) -> Result<i64, StoreError> {
    let body = to_json(&ModelBody {
        model: model.model.clone(),
        training: model.training.clone(),
        scores: model.scores.clone(),
        note: model.note.clone(),
        promotions: Vec::new(),
    })?;
    executor
        .first(
            sql::INSERT_MODEL,
            &[
                Value::Integer(model.created_at),
                Value::Text(&model.created_by),
                Value::Text(&body),
            ],
            |row| row.integer(0),
        )?
        .ok_or_else(|| StoreError::Database("model insert returned no version".to_owned()))
}

fn update_model(executor: &mut impl Executor, row: &ModelRow) -> Result<(), StoreError> {
    let body = to_json(&row.body)?;
    executor.execute(
        sql::UPDATE_MODEL,
        &[
            Value::Text(row.state.as_str()),
            Value::OptionalInteger(row.promoted_at),
            Value::Text(&body),
            Value::Integer(row.version),
        ],
    )?;
    Ok(())
}

fn models_to_change<Backend: Executor>(
    executor: &mut Backend,
) -> Result<Vec<ModelRow>, StoreError> {
    executor.all(Backend::SELECT_MODELS_TO_CHANGE, &[], read_model_row)
}

/// Promotes a model (see [`crate::Store::promote_model`]).
pub(crate) fn promote_model<Backend: Executor>(
    executor: &mut Backend,
    version: i64,
    actor: &str,
    at: i64,
) -> Result<ModelRecord, StoreError> {
    let mut rows = models_to_change(executor)?;
    let seq = next_seq(&rows);
    let Some(index) = rows.iter().position(|row| row.version == version) else {
        return Err(StoreError::UnknownModel { version });
    };
    if rows[index].state == ModelState::Promoted {
        return Err(StoreError::ModelPromoted { version });
    }
    for row in rows
        .iter_mut()
        .filter(|row| row.state == ModelState::Promoted)
    {
        row.state = ModelState::Retired;
        update_model(executor, row)?;
    }
    let promoted = &mut rows[index];
    promoted.state = ModelState::Promoted;
    promoted.promoted_at = Some(at);
    promoted.body.promotions.push(PromotionEntry {
        seq,
        action: PromotionAction::Promoted,
        by: actor.to_owned(),
        at,
    });
    update_model(executor, promoted)?;
    Ok(rows.swap_remove(index).into_record())
}

/// Rolls back the last promotion in force (see [`crate::Store::rollback_model`]).
pub(crate) fn rollback_model<Backend: Executor>(
    executor: &mut Backend,
    actor: &str,
    at: i64,
) -> Result<ModelRollback, StoreError> {
    let mut rows = models_to_change(executor)?;
    let seq = next_seq(&rows);
    let Some(current) = rows
        .iter()
        .position(|row| row.state == ModelState::Promoted)
    else {
        return Err(StoreError::NothingToRollBack);
    };
    let mut stack = promotion_stack(&rows);
    let current_version = rows[current].version;
    if let Some(position) = stack
        .iter()
        .rposition(|&version| version == current_version)
    {
        stack.truncate(position);
    }
    // The model below on the stack; one no longer stored is passed over.
    let restored = stack
        .iter()
        .rev()
        .find_map(|&version| rows.iter().position(|row| row.version == version));

    let retired = &mut rows[current];
    retired.state = ModelState::Retired;
    retired.body.promotions.push(PromotionEntry {
        seq,
        action: PromotionAction::RolledBack,
        by: actor.to_owned(),
        at,
    });
    update_model(executor, retired)?;
    let retired_record = retired.clone().into_record();

    let Some(index) = restored else {
        return Ok(ModelRollback {
            retired: retired_record,
            promoted: None,
        });
    };
    let promoted = &mut rows[index];
    promoted.state = ModelState::Promoted;
    promoted.promoted_at = Some(at);
    promoted.body.promotions.push(PromotionEntry {
        seq: seq + 1,
        action: PromotionAction::Restored,
        by: actor.to_owned(),
        at,
    });
    update_model(executor, promoted)?;
    Ok(ModelRollback {
        retired: retired_record,
        promoted: Some(promoted.clone().into_record()),
    })
}

/// Appends replay figures to a model (see [`crate::Store::set_model_scores`]).
pub(crate) fn add_model_scores<Backend: Executor>(
    executor: &mut Backend,
    version: i64,
    scores: &[ModelScores],
) -> Result<ModelRecord, StoreError> {
    let mut rows = models_to_change(executor)?;
    let Some(index) = rows.iter().position(|row| row.version == version) else {
        return Err(StoreError::UnknownModel { version });
    };
    let row = &mut rows[index];
    row.body.scores.extend_from_slice(scores);
    update_model(executor, row)?;
    Ok(rows.swap_remove(index).into_record())
}
