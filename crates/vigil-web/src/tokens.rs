//! `/api/v1/tokens`: admins list tokens (never their hashes) and revoke one.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use vigil_core::release::{ApiToken, Role};

use crate::error::ApiError;
use crate::state::AppState;

/// A token as the API shows it: everything but its hash.
#[derive(Debug, Serialize)]
pub struct TokenView {
    id: i64,
    name: String,
    role: Role,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> TokenView {
        TokenView {
            id: token.id,
            name: token.name,
            role: token.role,
            created_at: token.created_at,
            revoked_at: token.revoked_at,
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    state.authorize(&headers, Role::Admin).await?;
    let tokens = state.blocking(|store| Ok(store.tokens()?)).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Revokes a token: it is refused from now on (on other servers of the same store within a
/// second) and its page sessions end. Revoking it again keeps the first revocation.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let admin = state.authorize(&headers, Role::Admin).await?;
    let token_id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("token id must be a whole number, not {id:?}"))
    })?;
    let now = state.clock.now();
    let revoked = state
        .blocking(move |store| Ok(store.revoke_token(token_id, now)?))
        .await?;
    state.tokens.forget(&revoked.hash);
    tracing::info!(
        token = revoked.id,
        token_name = %revoked.name,
        by = %admin.name,
        "token revoked through the api"
    );
    Ok(Json(TokenView::from(revoked)))
}
