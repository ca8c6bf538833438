//! Vigil's REST API under `/api/v1`, described by the OpenAPI document it serves at
//! `/api/v1/openapi.json`, and the release pages (`pages`) for people.
//!
//! Handlers check the token, validate the request and call the store, the guard and the intake;
//! they never write SQL and hold no analysis logic. Store calls run on blocking threads.
#![forbid(unsafe_code)]

pub mod auth;
pub mod budget;
pub mod error;
mod ingest;
mod onboarding;
mod pages;
mod releases;
pub mod server;
mod tokens;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use axum::Router;
use vigil_core::release::{ApiToken, Role};
use vigil_core::Clock;
use vigil_guard::intake::Intake;
use vigil_guard::Guard;
use vigil_store::Store;

pub use auth::{hash_token, new_session_id, new_token};
pub use error::ApiError;

/// The OpenAPI document of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Limits on what a request may carry and on the heavy work done at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (compressed, for remote write and gzip'd imports).
    pub max_body_bytes: usize,
    /// Most samples or log lines in one ingestion request.
    pub max_items: usize,
    /// Largest imported bundle once decompressed, in bytes.
    pub max_import_bytes: usize,
    /// Most values (samples and log counts) in one imported bundle.
    pub max_import_values: usize,
    /// Imports decompressed, parsed and replayed at once.
    pub imports_at_once: usize,
    /// Bytes being decoded at once across every ingestion request (a remote-write body counts
    /// twice its decompressed size, a JSON body four times its size: what parsing them takes).
    pub decode_budget_bytes: usize,
    /// How long a request waits for its share of the budget before a 503 with `Retry-After`.
    pub busy_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_items: 1_000_000,
            max_import_bytes: 32 * 1024 * 1024,
            max_import_values: 2_000_000,
            imports_at_once: 1,
            decode_budget_bytes: 256 * 1024 * 1024,
            busy_wait_ms: 2000,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub guard: Arc<Guard>,
    pub intake: Arc<Intake>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub tokens: Arc<auth::TokenCache>,
    pub ingest: Arc<ingest::IngestState>,
    pub budget: Arc<budget::Budget>,
    /// The app pull queries failing now (the server's puller records them).
    pub pull_failures: Arc<vigil_guard::pull::PullFailures>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        guard: Arc<Guard>,
        intake: Arc<Intake>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        ingest_options: IngestOptions,
    ) -> AppState {
        let budget = budget::Budget::new(
            limits.decode_budget_bytes,
            limits.imports_at_once,
            std::time::Duration::from_millis(limits.busy_wait_ms),
        );
        AppState {
            store,
            guard,
            intake,
            clock,
            limits,
            tokens: Arc::new(auth::TokenCache::default()),
            ingest: Arc::new(ingest::IngestState::new(ingest_options)),
            budget: Arc::new(budget),
            pull_failures: Arc::default(),
        }
    }

    /// The token of a request, checked against `needed`.
    pub async fn authorize(&self, headers: &HeaderMap, needed: Role) -> Result<ApiToken, ApiError> {
        self.authorize_secret(auth::bearer(headers)?, needed).await
    }

    /// The token whose secret is `secret`, checked against `needed`.
    pub(crate) async fn authorize_secret(
        &self,
        secret: &str,
        needed: Role,
    ) -> Result<ApiToken, ApiError> {
        let hash = hash_token(secret);
        let now = self.clock.now();
        let token = match self.tokens.get(&hash, now) {
            Some(token) => token,
            None => {
                let lookup_hash = hash.clone();
                let found = self
                    .blocking(move |store| Ok(store.token_by_hash(&lookup_hash)?))
                    .await?;
                let token = found.ok_or_else(|| {
                    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unknown api token")
                })?;
                self.tokens.put(token.clone(), now);
                token
            }
        };
        auth::require_not_revoked(&token)?;
        auth::require(&token, needed)?;
        Ok(token)
    }

    /// The token of an ingestion request: the bearer token, or, for senders that cannot set
    /// headers, a `token` query parameter (`/api/v1/ingest/prometheus?token=...`).
    pub async fn authorize_ingest(
        &self,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
    ) -> Result<ApiToken, ApiError> {
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            return self.authorize(headers, Role::Ingest).await;
        }
        let from_query = uri.query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        });
        match from_query {
            Some(secret) => self.authorize_secret(secret, Role::Ingest).await,
            None => self.authorize(headers, Role::Ingest).await,
        }
    }

    /// Runs a store call on a blocking thread.
    pub async fn blocking<T, F>(&self, call: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|error| ApiError::internal(format!("store task failed: {error}")))?
    }
}

pub use ingest::IngestOptions;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/releases",
            post(releases::create).get(releases::list),
        )
        .route("/api/v1/releases/import", post(releases::import))
        .route("/api/v1/releases/{id}", get(releases::show))
        .route("/api/v1/releases/{id}/verdict", get(releases::verdict))
        .route("/api/v1/releases/{id}/findings", get(releases::findings))
        .route(
            "/api/v1/releases/{id}/transitions",
            get(releases::transitions),
        )
        .route("/api/v1/releases/{id}/series", get(releases::series))
        .route("/api/v1/releases/{id}/export", get(releases::export))
        .route(
            "/api/v1/releases/{id}/batches/{n}/deployed",
            post(releases::batch_deployed),
        )
        .route("/api/v1/releases/{id}/pause", post(releases::pause))
        .route("/api/v1/releases/{id}/resume", post(releases::resume))
        .route("/api/v1/releases/{id}/rollback", post(releases::rollback))
        .route(
            "/api/v1/releases/{id}/rolled-back",
            post(releases::rolled_back),
        )
        .route("/api/v1/releases/{id}/cancel", post(releases::cancel))
        .route(
            "/api/v1/releases/{id}/feedback",
            post(releases::add_feedback).get(releases::list_feedback),
        )
        .route(
            "/api/v1/releases/{id}/notifications",
            get(releases::notifications),
        )
        .route("/api/v1/tokens", get(tokens::list))
        .route("/api/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/api/v1/apps", get(ingest::list_apps))
        .route("/api/v1/apps/{app}", put(ingest::put_app))
        .route("/api/v1/apps/{app}/onboarding", get(onboarding::show))
        .route(
            "/api/v1/apps/{app}/onboarding/apply",
            post(onboarding::apply),
        )
        .route("/api/v1/ingest/samples", post(ingest::samples))
        .route("/api/v1/ingest/prometheus", post(ingest::remote_write))
        .route("/api/v1/ingest/logs", post(ingest::logs))
        .merge(pages::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// An unknown path, answered like every other refusal: JSON naming what was wrong.
async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("path: no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("method: {method} is not allowed on {}", uri.path()),
    )
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}
