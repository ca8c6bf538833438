//! Ingestion routes (JSON samples, Prometheus remote write, log lines) and app settings.
//!
//! Every accepted request is stored before it is acknowledged. Duplicates: a sample with the
//! same series and time as one already held replaces it (so a resent request changes nothing);
//! a JSON request with a `key` already seen is acknowledged as a duplicate and not applied
//! again (log lines need a key to be safe to resend, since counts add up).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use vigil_core::release::Role;
use vigil_core::validate;
use vigil_guard::intake::{Accepted, Intake};
use vigil_ingest::alerts::AlertOptions;
use vigil_ingest::json::{JsonError, JsonOptions};
use vigil_ingest::remote_write::{decompressed_length, RemoteWriteError, Skipped};

use crate::error::ApiError;
use crate::state::AppState;

/// The answer to an ingestion request.
#[derive(Debug, Serialize)]
pub struct IngestAnswer {
    pub accepted: usize,
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

pub async fn samples(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Result<Json<IngestAnswer>, ApiError> {
    accept_json(
        state,
        headers,
        uri,
        body,
        vigil_ingest::json::parse_samples,
        |intake, parsed, now| intake.metrics(&parsed.chunk, parsed.key, now),
    )
    .await
}

/// What parsing a JSON body holds in memory, per byte of the body (strings and vectors of the
/// parsed entries): its charge on the decoding budget.
const JSON_PARSE_FACTOR: usize = 4;
/// The same for a remote-write body, per decompressed byte (the buffer, then the chunk).
const REMOTE_WRITE_DECODE_FACTOR: usize = 2;

/// A JSON ingestion request: authorize, take its share of the decoding budget, then parse (a
/// 400 names the bad value) and hand it to the intake, both on a blocking thread.
async fn accept_json<Parsed: Send + 'static>(
    state: AppState,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
    parse: fn(&[u8], &JsonOptions) -> Result<Parsed, vigil_ingest::json::JsonError>,
    take: fn(&Intake, Parsed, i64) -> Result<Accepted, vigil_store::StoreError>,
) -> Result<Json<IngestAnswer>, ApiError> {
    state.authorize_ingest(&headers, &uri).await?;
    let mut held = state
        .budget
        .decode(body.len().saturating_mul(JSON_PARSE_FACTOR))
        .await?;
    let ingest = Arc::clone(&state.ingest);
    let intake = Arc::clone(&state.intake);
    let now = state.clock.now();
    let accepted = state
        .blocking(move |_| {
            let parsed = parse(&body, &ingest.options.json).map_err(json_refusal)?;
            drop(body);
            held.decoded();
            let accepted = take(&intake, parsed, now)?;
            drop(held);
            Ok(accepted)
        })
        .await?;
    Ok(Json(IngestAnswer {
        accepted: accepted.items,
        duplicate: accepted.duplicate,
        skipped: Vec::new(),
    }))
}

pub async fn remote_write(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<IngestAnswer>), ApiError> {
    state.authorize_ingest(&headers, &uri).await?;
    // The snappy header says what decoding will hold; the per-request limit and the budget
    // are checked on it before a byte is decompressed.
    let length = decompressed_length(&body).map_err(remote_write_refusal)?;
    let limit = state.ingest.options.remote_write.max_decompressed_bytes;
    if length > limit {
        return Err(ApiError::too_large(format!(
            "body decompresses to {length} bytes, more than the limit of {limit}"
        )));
    }
    let mut held = state
        .budget
        .decode(length.saturating_mul(REMOTE_WRITE_DECODE_FACTOR))
        .await?;
    let ingest = Arc::clone(&state.ingest);
    let intake = Arc::clone(&state.intake);
    let now = state.clock.now();
    let answer = state
        .blocking(move |_| {
            let mut decoder = ingest.take_decoder();
            let decoded = decoder.decode(&body);
            ingest.give_back(decoder);
            held.decoded();
            let batch = decoded.map_err(remote_write_refusal)?;
            let accepted = intake.remote_write(&body, &batch.chunk, now)?;
            drop(held);
            Ok(IngestAnswer {
                accepted: accepted.items,
                duplicate: accepted.duplicate,
                skipped: skipped_words(&batch.skipped),
            })
        })
        .await?;
    // Prometheus expects 204 on success; a body does no harm to other senders.
    Ok((StatusCode::OK, Json(answer)))
}

/// A JSON body refused: 413 when over a size or count limit, else 400 naming the value.
fn json_refusal(error: JsonError) -> ApiError {
    match error {
        JsonError::BodyTooLarge { .. } | JsonError::TooMany { .. } => {
            ApiError::too_large(error.to_string())
        }
        JsonError::Invalid { .. } => ApiError::bad_request(error.to_string()),
    }
}

/// A remote-write body refused: 413 when over a size limit, else 400 saying what is wrong.
fn remote_write_refusal(error: RemoteWriteError) -> ApiError {
    match error {
        RemoteWriteError::BodyTooLarge { .. }
        | RemoteWriteError::DecompressedTooLarge { .. }
        | RemoteWriteError::TooManySeries { .. }
        | RemoteWriteError::TooManySamples { .. } => ApiError::too_large(error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    }
}

/// What an accepted remote-write request left out, in words for the sender.
fn skipped_words(skipped: &Skipped) -> Vec<String> {
    let example = |text: &Option<String>| text.as_deref().unwrap_or("?").to_owned();
    let counted = [
        (
            skipped.series_without_host,
            format!(
                "series without a host label (for example {})",
                example(&skipped.example_without_host)
            ),
        ),
        (
            skipped.series_without_name,
            "series without __name__".to_owned(),
        ),
        (
            skipped.series_invalid,
            format!(
                "series with an invalid name (for example {})",
                example(&skipped.example_invalid)
            ),
        ),
        (
            skipped.samples_bad_time,
            "samples with a time before 1970 or after the year 9999".to_owned(),
        ),
    ];
    counted
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect()
}

pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Result<Json<IngestAnswer>, ApiError> {
    accept_json(
        state,
        headers,
        uri,
        body,
        vigil_ingest::json::parse_log_lines,
        |intake, parsed, now| intake.log_lines(&parsed.lines, parsed.key, now),
    )
    .await
}

/// `POST /api/v1/alerts/alertmanager`: Alertmanager's webhook payload.
pub async fn alertmanager_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Result<Json<IngestAnswer>, ApiError> {
    accept_alerts(
        state,
        headers,
        uri,
        body,
        vigil_ingest::alerts::parse_alertmanager,
    )
    .await
}

/// `POST /api/v1/alerts`: alerts in Vigil's generic JSON form.
pub async fn alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Result<Json<IngestAnswer>, ApiError> {
    accept_alerts(
        state,
        headers,
        uri,
        body,
        vigil_ingest::alerts::parse_alerts,
    )
    .await
}

/// A parser of an alert body: the body, its limits, the time it was received.
type ParseAlerts = fn(&[u8], &AlertOptions, i64) -> Result<Vec<vigil_core::Alert>, JsonError>;

/// An alert body: authorize (ingest role), take its share of the decoding budget, then parse
/// (a 400 names the bad value, a 413 a body or count over its limit) and store the alerts,
/// both on a blocking thread; the answer counts the alerts taken.
async fn accept_alerts(
    state: AppState,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
    parse: ParseAlerts,
) -> Result<Json<IngestAnswer>, ApiError> {
    state.authorize_ingest(&headers, &uri).await?;
    let options = AlertOptions::default();
    if body.len() > options.max_body_bytes {
        return Err(ApiError::too_large(format!(
            "body is {} bytes, more than the limit of {}",
            body.len(),
            options.max_body_bytes
        )));
    }
    let mut held = state
        .budget
        .decode(body.len().saturating_mul(JSON_PARSE_FACTOR))
        .await?;
    let intake = Arc::clone(&state.intake);
    let guard = Arc::clone(&state.guard);
    let now = state.clock.now();
    let accepted = state
        .blocking(move |_| {
            let parsed = parse(&body, &options, now).map_err(json_refusal)?;
            drop(body);
            held.decoded();
            let accepted = intake.alerts(&parsed, |stored| {
                guard.alerts_arrived(stored.iter().map(|alert| alert.app.as_str()));
            })?;
            drop(held);
            Ok(accepted)
        })
        .await?;
    Ok(Json(IngestAnswer {
        accepted: accepted.items,
        duplicate: false,
        skipped: Vec::new(),
    }))
}

pub async fn list_apps(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let apps = state.blocking(|store| Ok(store.apps()?)).await?;
    let listed: serde_json::Map<String, serde_json::Value> = apps.into_iter().collect();
    Ok(Json(serde_json::Value::Object(listed)))
}

pub async fn put_app(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.authorize(&headers, Role::Admin).await?;
    validate::name(&app).map_err(|problem| problem.at("app"))?;
    // `[]` must not be read as settings with every field left out: that would wipe the app's
    // pull source.
    let config: vigil_guard::apps::AppConfig = crate::request::parse_request(body).await?;
    let intake = Arc::clone(&state.intake);
    let value = state
        .blocking(move |store| store_app_settings(store, &intake, &app, &config))
        .await?;
    Ok(Json(value))
}

/// Checks an app's settings and stores them, as `PUT /api/v1/apps/{app}` and the app's page
/// both do; answers the settings as stored. Runs on a blocking thread (it uses the store).
pub(crate) fn store_app_settings(
    store: &dyn vigil_store::Store,
    intake: &vigil_guard::intake::Intake,
    app: &str,
    config: &vigil_guard::apps::AppConfig,
) -> Result<serde_json::Value, ApiError> {
    validate::name(app).map_err(|problem| problem.at("app"))?;
    config
        .validate()
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let queries = config.prometheus.iter().flat_map(|source| &source.queries);
    for (index, query) in queries.enumerate() {
        validate::name(&query.metric)
            .map_err(|problem| problem.at(format!("prometheus.queries[{index}].metric")))?;
    }
    let value =
        serde_json::to_value(config).map_err(|error| ApiError::internal(error.to_string()))?;
    store.put_app(app, &value)?;
    intake.reload_app(app);
    Ok(value)
}
