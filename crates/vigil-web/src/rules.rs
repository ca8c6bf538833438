//! An app's rules (`vigil_core::rules`): `GET` and `PUT /api/v1/apps/{app}/rules`, and the
//! changes the app's page makes (one rule added or replaced, one removed). Every change goes
//! through [`change_rules`], which checks the admin role itself and stores the settings as
//! `PUT /api/v1/apps/{app}` does; a release takes the app's rules when it is created.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_core::release::{ApiToken, Role};
use vigil_core::validate;
use vigil_core::Rule;

use crate::error::ApiError;
use crate::onboarding::stored_config;
use crate::state::AppState;

/// The body of `PUT /api/v1/apps/{app}/rules` and the answer of both routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRules {
    pub rules: Vec<Rule>,
}

/// A change of an app's rules.
#[derive(Debug, Clone)]
pub(crate) enum RuleChange {
    /// Every rule, in place of the app's.
    Replace(Vec<Rule>),
    /// One rule, in place of the app's rule of the same name or after the others.
    Put(Rule),
    /// Take the rule of this name out.
    Remove(String),
}

impl RuleChange {
    fn apply_to(self, app: &str, rules: &mut Vec<Rule>) -> Result<(), ApiError> {
        match self {
            RuleChange::Replace(given) => *rules = given,
            RuleChange::Put(rule) => match rules.iter_mut().find(|known| known.name == rule.name) {
                Some(known) => *known = rule,
                None => rules.push(rule),
            },
            RuleChange::Remove(name) => {
                let before = rules.len();
                rules.retain(|known| known.name != name);
                if rules.len() == before {
                    return Err(ApiError::not_found(format!(
                        "name: app {app} has no rule {name:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn words(&self) -> &'static str {
        match self {
            RuleChange::Replace(_) => "replaced",
            RuleChange::Put(_) => "put",
            RuleChange::Remove(_) => "removed",
        }
    }
}

/// Changes `app`'s rules through the checks and the storing of `PUT /api/v1/apps/{app}`, and
/// returns the rules as stored. Needs an admin token, checked here.
pub(crate) async fn change_rules(
    state: &AppState,
    token: &ApiToken,
    app: String,
    change: RuleChange,
) -> Result<Vec<Rule>, ApiError> {
    crate::auth::require(token, Role::Admin)?;
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    let words = change.words();
    let intake = Arc::clone(&state.intake);
    let store_app = app.clone();
    let rules = state
        .blocking(move |store| {
            // Read, changed and stored in one blocking call.
            let mut config = stored_config(store, &store_app)?.unwrap_or_default();
            change.apply_to(&store_app, &mut config.rules)?;
            crate::ingest::store_app_settings(store, &intake, &store_app, &config)?;
            Ok(config.rules)
        })
        .await?;
    tracing::info!(app = %app, change = words, rules = rules.len(), by = %token.name, "app rules changed");
    Ok(rules)
}

/// `GET /api/v1/apps/{app}/rules`: the app's rules (none when it has no settings).
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(app): Path<String>,
) -> Result<Json<AppRules>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    let rules = state
        .blocking(move |store| {
            let config = stored_config(store, &app)?;
            Ok(config.map(|config| config.rules).unwrap_or_default())
        })
        .await?;
    Ok(Json(AppRules { rules }))
}

/// `PUT /api/v1/apps/{app}/rules`: every rule of the app, replacing its rules.
pub async fn put(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AppRules>, ApiError> {
    let token = state.authorize(&headers, Role::Admin).await?;
    let request: AppRules = crate::request::parse_request(body).await?;
    let rules = change_rules(&state, &token, app, RuleChange::Replace(request.rules)).await?;
    Ok(Json(AppRules { rules }))
}
