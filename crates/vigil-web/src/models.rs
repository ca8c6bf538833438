//! `/api/v1/models`: the learned stage's models. Viewers list them with their scores and the
//! promotions' audit; admins promote one (the promotion gate on its stored held-out scores:
//! `vigil_guard::models`) or roll the last promotion back.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_core::learned::ModelRecord;
use vigil_core::release::Role;
use vigil_guard::models::PromotionError;
use vigil_store::{ModelPromotion, ModelRollback};

use crate::error::ApiError;
use crate::request::parse_body;
use crate::state::AppState;

/// Every model, newest first, and every promotion and rollback, oldest first.
#[derive(Debug, Serialize)]
pub struct ModelsView {
    pub models: Vec<ModelRecord>,
    pub promotions: Vec<ModelPromotion>,
}

/// The models and their audit, for the API and the page.
pub(crate) async fn models_view(state: &AppState) -> Result<ModelsView, ApiError> {
    state
        .blocking(|store| {
            Ok(ModelsView {
                models: store.models()?,
                promotions: store.model_promotions()?,
            })
        })
        .await
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ModelsView>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    Ok(Json(models_view(&state).await?))
}

/// The body of a promotion, optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    /// The largest fall allowed in any figure of the gate.
    #[serde(default)]
    tolerance: Option<f64>,
}

impl From<PromotionError> for ApiError {
    fn from(error: PromotionError) -> ApiError {
        match error {
            PromotionError::Store(store) => ApiError::from(store),
            PromotionError::Refused(reason) => ApiError::conflict(reason),
            tolerance @ PromotionError::Tolerance(_) => {
                ApiError::bad_request(format!("tolerance: {tolerance}"))
            }
        }
    }
}

/// Promotes a model whose stored held-out scores pass the gate against the promoted model (or
/// the funnel alone); refused with both sets of figures otherwise.
pub async fn promote(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Json<ModelRecord>, ApiError> {
    let admin = state.authorize(&headers, Role::Admin).await?;
    let version: i64 = version.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "model version must be a whole number, not {version:?}"
        ))
    })?;
    let request: PromoteBody = if body.iter().all(u8::is_ascii_whitespace) {
        PromoteBody::default()
    } else {
        parse_body(&body)?
    };
    let tolerance = request
        .tolerance
        .unwrap_or(vigil_analysis::promotion::DEFAULT_TOLERANCE);
    let now = state.clock.now();
    let actor = admin.name.clone();
    let promoted = state
        .blocking(move |store| {
            Ok(vigil_guard::models::promote_on_stored_scores(
                store, version, &actor, now, tolerance,
            )?)
        })
        .await?;
    Ok(Json(promoted))
}

/// Rolls the last promotion in force back: the model it replaced is promoted again, or none
/// (the funnel alone).
pub async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<RollbackView>, ApiError> {
    let admin = state.authorize(&headers, Role::Admin).await?;
    let now = state.clock.now();
    let actor = admin.name.clone();
    let ModelRollback { retired, promoted } = state
        .blocking(move |store| Ok(vigil_guard::models::roll_back(store, &actor, now)?))
        .await?;
    Ok(Json(RollbackView { retired, promoted }))
}

#[derive(Debug, Serialize)]
pub struct RollbackView {
    retired: ModelRecord,
    promoted: Option<ModelRecord>,
}
