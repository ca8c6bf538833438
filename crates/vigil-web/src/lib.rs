//! Vigil's REST API under `/api/v1`, described by the OpenAPI document it serves at
//! `/api/v1/openapi.json`, and the release pages (`pages`) for people.
//!
//! Handlers check the token, validate the request and call the store, the guard and the intake;
//! they never write SQL and hold no analysis logic. Store calls run on blocking threads.
#![forbid(unsafe_code)]

mod agents;
pub mod artifacts;
pub mod auth;
pub mod budget;
mod decoders;
mod deployments;
mod distribution;
pub mod error;
mod ingest;
mod metrics;
mod models;
mod onboarding;
mod pages;
mod releases;
mod replay_runs;
mod replays;
mod replicas;
mod request;
mod rules;
mod signatures;
pub mod state;
mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

pub use auth::{hash_token, new_session_id, new_token};
pub use error::ApiError;
pub use state::{AppState, Limits};

/// The OpenAPI document of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub use decoders::IngestOptions;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::show))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/releases",
            post(releases::create).get(releases::list),
        )
        .route("/api/v1/releases/import", post(releases::import))
        .route("/api/v1/deployments", post(deployments::create))
        .route("/api/v1/releases/{id}/execution", get(deployments::show))
        .route(
            "/api/v1/agents",
            post(agents::register)
                .get(agents::list)
                .layer(DefaultBodyLimit::max(agents::MAX_AGENT_BODY_BYTES)),
        )
        .route(
            "/api/v1/agents/{host}/poll",
            post(agents::poll).layer(DefaultBodyLimit::max(agents::MAX_AGENT_BODY_BYTES)),
        )
        .route("/api/v1/releases/{id}", get(releases::show))
        .route("/api/v1/releases/{id}/verdict", get(releases::verdict))
        .route("/api/v1/releases/{id}/findings", get(releases::findings))
        .route("/api/v1/releases/{id}/scorecard", get(releases::scorecard))
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
        .route("/api/v1/replays", post(replays::start))
        .route("/api/v1/replays/latest", get(replays::latest))
        .route("/api/v1/replays/{id}", get(replays::show))
        .route("/api/v1/replicas", get(replicas::list))
        .route("/api/v1/models", get(models::list))
        .route("/api/v1/models/rollback", post(models::rollback))
        .route("/api/v1/models/{version}/promote", post(models::promote))
        .route("/api/v1/tokens", get(tokens::list))
        .route("/api/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/api/v1/apps", get(ingest::list_apps))
        .route("/api/v1/apps/{app}", put(ingest::put_app))
        .route("/api/v1/apps/{app}/rules", get(rules::show).put(rules::put))
        .route("/api/v1/apps/{app}/signatures", get(signatures::list))
        .route(
            "/api/v1/apps/{app}/signatures/{id}",
            axum::routing::delete(signatures::remove),
        )
        .route("/api/v1/apps/{app}/onboarding", get(onboarding::show))
        .route(
            "/api/v1/apps/{app}/onboarding/apply",
            post(onboarding::apply),
        )
        .route(
            "/api/v1/artifacts",
            post(artifacts::upload)
                .layer(DefaultBodyLimit::disable())
                .get(artifacts::list),
        )
        .route("/api/v1/artifact-key", get(artifacts::key))
        .route("/api/v1/artifacts/{id}/manifest", get(artifacts::manifest))
        .route(
            "/api/v1/artifacts/{id}/pieces/{index}",
            get(artifacts::piece),
        )
        .route("/api/v1/artifacts/{id}/announce", post(artifacts::announce))
        .route("/api/v1/ingest/samples", post(ingest::samples))
        .route("/api/v1/ingest/prometheus", post(ingest::remote_write))
        .route("/api/v1/ingest/logs", post(ingest::logs))
        .route("/api/v1/alerts", post(ingest::alerts))
        .route(
            "/api/v1/alerts/alertmanager",
            post(ingest::alertmanager_alerts),
        )
        .merge(pages::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(metrics::count_request))
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
