//! Ingestion routes (JSON samples, Prometheus remote write, log lines) and app settings.
//!
//! Every accepted request is stored before it is acknowledged. Duplicates: a sample with the
//! same series and time as one already held replaces it (so a resent request changes nothing);
//! a JSON request with a `key` already seen is acknowledged as a duplicate and not applied
//! again (log lines need a key to be safe to resend, since counts add up).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use vigil_core::release::Role;
use vigil_guard::intake::{Accepted, Intake};
use vigil_ingest::json::JsonOptions;
use vigil_ingest::remote_write::{RemoteWriteDecoder, RemoteWriteOptions};

use crate::error::ApiError;
use crate::AppState;

/// How ingested data is read.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub remote_write: RemoteWriteOptions,
    pub json: JsonOptions,
}

/// Decoders kept between requests (they remember series they have seen).
#[derive(Debug)]
pub struct IngestState {
    options: IngestOptions,
    decoders: Mutex<Vec<RemoteWriteDecoder>>,
}

impl IngestState {
    pub fn new(options: IngestOptions) -> IngestState {
        IngestState {
            options,
            decoders: Mutex::new(Vec::new()),
        }
    }

    fn take_decoder(&self) -> RemoteWriteDecoder {
        self.decoders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_else(|| RemoteWriteDecoder::new(self.options.remote_write.clone()))
    }

    fn give_back(&self, decoder: RemoteWriteDecoder) {
        let mut decoders = self
            .decoders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if decoders.len() < 16 {
            decoders.push(decoder);
        }
    }
}

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

/// A JSON ingestion request: authorize, parse (a 400 names the bad value), then hand it to the
/// intake on a blocking thread.
async fn accept_json<Parsed: Send + 'static>(
    state: AppState,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
    parse: fn(&[u8], &JsonOptions) -> Result<Parsed, vigil_ingest::json::JsonError>,
    take: fn(&Intake, Parsed, i64) -> Result<Accepted, vigil_store::StoreError>,
) -> Result<Json<IngestAnswer>, ApiError> {
    state.authorize_ingest(&headers, &uri).await?;
    let parsed = parse(&body, &state.ingest.options.json)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let intake = Arc::clone(&state.intake);
    let now = state.clock.now();
    let accepted = state
        .blocking(move |_| Ok(take(&intake, parsed, now)?))
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
    let ingest = Arc::clone(&state.ingest);
    let intake = Arc::clone(&state.intake);
    let now = state.clock.now();
    let answer = state
        .blocking(move |_| {
            let mut decoder = ingest.take_decoder();
            let decoded = decoder.decode(&body);
            ingest.give_back(decoder);
            let batch = decoded.map_err(|error| ApiError::bad_request(error.to_string()))?;
            let accepted = intake.remote_write(&body, &batch.chunk, now)?;
            let mut skipped = Vec::new();
            if batch.skipped.series_without_host > 0 {
                skipped.push(format!(
                    "{} series without a host label (for example {})",
                    batch.skipped.series_without_host,
                    batch.skipped.example_without_host.as_deref().unwrap_or("?")
                ));
            }
            if batch.skipped.series_without_name > 0 {
                skipped.push(format!(
                    "{} series without __name__",
                    batch.skipped.series_without_name
                ));
            }
            Ok(IngestAnswer {
                accepted: accepted.items,
                duplicate: accepted.duplicate,
                skipped,
            })
        })
        .await?;
    // Prometheus expects 204 on success; a body does no harm to other senders.
    Ok((StatusCode::OK, Json(answer)))
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
    let config: vigil_guard::pull::AppConfig = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("invalid app settings: {error}")))?;
    config
        .validate()
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let value =
        serde_json::to_value(&config).map_err(|error| ApiError::internal(error.to_string()))?;
    let stored = value.clone();
    let intake = Arc::clone(&state.intake);
    state
        .blocking(move |store| {
            store.put_app(&app, &stored)?;
            intake.reload_app(&app);
            Ok(())
        })
        .await?;
    Ok(Json(value))
}
