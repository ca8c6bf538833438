//! `/api/v1/artifacts`, `/api/v1/artifact-key`: the server as the artifacts' origin and
//! tracker. An admin uploads an artifact (streamed to the artifact directory, bounded; its
//! manifest built and signed off the async workers); agents read its signed manifest and the
//! server's public key, announce what they hold to the tracker and fetch from the origin the
//! pieces no peer holds (a bounded number of readers; 503 with `Retry-After` beyond).

use std::path::Path as FilePath;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_core::agent::{Announce, ArtifactRecord, Manifest, Swarm};
use vigil_core::release::{ApiToken, Role};
use vigil_core::validate;
use vigil_p2p::bitfield::Bitfield;
use vigil_p2p::manifest::{build_manifest, is_digest_hex};
use vigil_p2p::tracker::HostProgress;
use vigil_p2p::P2pError;

use crate::distribution::lock;
pub use crate::distribution::{
    Artifacts, DEFAULT_MAX_ARTIFACT_BYTES, DEFAULT_ORIGIN_READERS, KEY_FILE,
};
use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

/// Most peers one announce may report bad.
const MAX_BAD_PEERS: usize = 1_000;
/// Largest announce body.
const MAX_ANNOUNCE_BYTES: usize = 4 * 1024 * 1024;
/// Manifests kept in memory for the piece route.
const CACHED_MANIFESTS: usize = 256;
/// Bytes of an upload gathered before they are written out.
const WRITE_CHUNK: usize = 1 << 20;

/// The distribution's progress of `artifact` as this server's tracker knows it (every host
/// that announced it, with the pieces it held at its last announce); empty when the server
/// distributes no artifacts. For the pages.
pub fn artifact_progress(state: &AppState, artifact: &str) -> Vec<HostProgress> {
    state
        .artifacts
        .as_ref()
        .map(|artifacts| artifacts.progress(artifact))
        .unwrap_or_default()
}

fn configured(state: &AppState) -> Result<Arc<Artifacts>, ApiError> {
    state.artifacts.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "artifacts: this server distributes no artifacts (no artifact directory)",
        )
    })
}

/// Any valid token: an agent's ingest token or a person's.
async fn authorize_any(state: &AppState, headers: &HeaderMap) -> Result<ApiToken, ApiError> {
    match state.authorize(headers, Role::Ingest).await {
        Ok(token) => Ok(token),
        Err(error) if error.status == StatusCode::FORBIDDEN => {
            state.authorize(headers, Role::Viewer).await
        }
        Err(error) => Err(error),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if is_digest_hex(id) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "id: must be an artifact's sha-256, 64 lowercase hex digits",
    ))
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// `POST /api/v1/artifacts?name=NAME`: the body is the artifact.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let token = state.authorize(&headers, Role::Admin).await?;
    let artifacts = configured(&state)?;
    let name = query
        .name
        .ok_or_else(|| ApiError::bad_request("name: the artifact's name is missing (?name=...)"))?;
    validate::name(&name).map_err(|problem| ApiError::bad_request(format!("name: {problem}")))?;
    let limit = artifacts.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let upload_number = artifacts.uploads.fetch_add(1, Ordering::Relaxed);
    let temporary = artifacts
        .dir
        .join(format!(".upload-{}-{upload_number}", std::process::id()));
    let received = receive(body, &temporary, limit).await;
    let size = match received {
        Ok(size) => size,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    if size == 0 {
        let _ = std::fs::remove_file(&temporary);
        return Err(ApiError::bad_request("body: the artifact is empty"));
    }
    let now = state.clock.now();
    let signer = Arc::clone(&artifacts);
    let built_from = temporary.clone();
    let manifest_name = name.clone();
    let built = tokio::task::spawn_blocking(move || {
        let manifest = build_manifest(&built_from, &manifest_name, now, &signer.key)?;
        let destination = signer.artifact_path(&manifest.sha256);
        if destination.exists() {
            std::fs::remove_file(&built_from)?;
        } else {
            std::fs::rename(&built_from, &destination)?;
        }
        Ok::<Manifest, P2pError>(manifest)
    })
    .await
    .map_err(|error| ApiError::internal(format!("manifest task failed: {error}")))?;
    let manifest = match built {
        Ok(manifest) => manifest,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(ApiError::internal(format!("artifact: {error}")));
        }
    };
    let record = ArtifactRecord {
        manifest,
        created_by: token.name.clone(),
    };
    let id = record.manifest.sha256.clone();
    let (stored, created) = state
        .blocking(move |store| {
            let created = store.put_artifact(&record, now)?;
            let stored = store.artifact(&record.manifest.sha256)?.unwrap_or(record);
            Ok((stored, created))
        })
        .await?;
    if created {
        tracing::info!(
            artifact = %id,
            artifact_name = %name,
            bytes = size,
            pieces = stored.manifest.piece_count(),
            by = %token.name,
            "artifact uploaded"
        );
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)).into_response())
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "body: the artifact is more than the limit of {limit} bytes"
    ))
}

/// Streams `body` into the file at `path`, at most `limit` bytes; the bytes written.
async fn receive(mut body: Body, path: &FilePath, limit: u64) -> Result<u64, ApiError> {
    let file = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || std::fs::File::create(path))
            .await
            .map_err(|error| ApiError::internal(format!("upload task failed: {error}")))?
            .map_err(|error| ApiError::internal(format!("artifact: cannot write: {error}")))?
    };
    let file = Arc::new(Mutex::new(file));
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut total = 0u64;
    loop {
        let frame = std::future::poll_fn(|context| Pin::new(&mut body).poll_frame(context)).await;
        let Some(frame) = frame else {
            break;
        };
        let frame = frame
            .map_err(|error| ApiError::bad_request(format!("body: could not be read: {error}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            return Err(too_large(limit));
        }
        pending_bytes += data.len();
        pending.push(data);
        if pending_bytes >= WRITE_CHUNK {
            write_out(&file, std::mem::take(&mut pending)).await?;
            pending_bytes = 0;
        }
    }
    write_out(&file, pending).await?;
    let syncing = Arc::clone(&file);
    tokio::task::spawn_blocking(move || lock(&syncing).sync_all())
        .await
        .map_err(|error| ApiError::internal(format!("upload task failed: {error}")))?
        .map_err(|error| ApiError::internal(format!("artifact: cannot write: {error}")))?;
    Ok(total)
}

async fn write_out(file: &Arc<Mutex<std::fs::File>>, chunks: Vec<Bytes>) -> Result<(), ApiError> {
    use std::io::Write;
    if chunks.is_empty() {
        return Ok(());
    }
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let mut file = lock(&file);
        for chunk in chunks {
            file.write_all(&chunk)?;
        }
        Ok::<(), std::io::Error>(())
    })
    .await
    .map_err(|error| ApiError::internal(format!("upload task failed: {error}")))?
    .map_err(|error| ApiError::internal(format!("artifact: cannot write: {error}")))
}

/// `GET /api/v1/artifacts`: every artifact, newest first.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<ArtifactRecord>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    let records = state.blocking(|store| Ok(store.artifacts()?)).await?;
    Ok(Json(records))
}

/// The manifest of artifact `id`, from memory or the store.
async fn manifest_of(
    state: &AppState,
    artifacts: &Artifacts,
    id: &str,
) -> Result<Arc<Manifest>, ApiError> {
    check_id(id)?;
    if let Some(manifest) = lock(&artifacts.manifests).get(id) {
        return Ok(Arc::clone(manifest));
    }
    let lookup = id.to_string();
    let record = state
        .blocking(move |store| Ok(store.artifact(&lookup)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("id: no artifact {id}")))?;
    let manifest = Arc::new(record.manifest);
    let mut cached = lock(&artifacts.manifests);
    if cached.len() >= CACHED_MANIFESTS {
        cached.clear();
    }
    cached.insert(id.to_string(), Arc::clone(&manifest));
    Ok(manifest)
}

/// `GET /api/v1/artifacts/{id}/manifest`.
pub async fn manifest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Manifest>, ApiError> {
    authorize_any(&state, &headers).await?;
    let artifacts = configured(&state)?;
    let manifest = manifest_of(&state, &artifacts, &id).await?;
    Ok(Json(Manifest::clone(&manifest)))
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    public_key: String,
}

/// `GET /api/v1/artifact-key`: the public key the manifests are signed with.
pub async fn key(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<KeyView>, ApiError> {
    authorize_any(&state, &headers).await?;
    let artifacts = configured(&state)?;
    Ok(Json(KeyView {
        public_key: artifacts.public_key_hex(),
    }))
}

/// `GET /api/v1/artifacts/{id}/pieces/{index}`: one piece from the origin.
pub async fn piece(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize_any(&state, &headers).await?;
    let artifacts = configured(&state)?;
    let index: u32 = index
        .parse()
        .map_err(|_| ApiError::bad_request("index: must be a piece number from 0"))?;
    let manifest = manifest_of(&state, &artifacts, &id).await?;
    if index >= manifest.piece_count() {
        return Err(ApiError::not_found(format!(
            "index: piece {index} is past the artifact's {} pieces",
            manifest.piece_count()
        )));
    }
    let reader = Arc::clone(&artifacts);
    let read = tokio::task::spawn_blocking(move || {
        reader
            .readers
            .read_piece(&reader.artifact_path(&manifest.sha256), &manifest, index)
    })
    .await
    .map_err(|error| ApiError::internal(format!("origin task failed: {error}")))?;
    match read {
        Ok(Some(bytes)) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        Ok(None) => Err(ApiError::busy("origin: every reader is busy", 1)),
        Err(error) => {
            tracing::error!(artifact = %id, piece = index, error = %error, "artifact piece unreadable");
            Err(ApiError::internal(format!(
                "artifact: piece {index}: {error}"
            )))
        }
    }
}

/// `POST /api/v1/artifacts/{id}/announce`: what a peer holds, answered with peers to fetch
/// from.
pub async fn announce(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Swarm>, ApiError> {
    state.authorize(&headers, Role::Ingest).await?;
    let artifacts = configured(&state)?;
    if body.len() > MAX_ANNOUNCE_BYTES {
        return Err(ApiError::too_large(format!(
            "body: an announce is more than the limit of {MAX_ANNOUNCE_BYTES} bytes"
        )));
    }
    let announce: Announce = parse_request(body).await?;
    let manifest = manifest_of(&state, &artifacts, &id).await?;
    validate::name(&announce.host)
        .map_err(|problem| ApiError::bad_request(format!("host: {problem}")))?;
    if announce.addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(ApiError::bad_request("addr: must be ip:port"));
    }
    if Bitfield::from_hex(&announce.have, manifest.piece_count()).is_none() {
        return Err(ApiError::bad_request(format!(
            "have: must be the lowercase hex bitfield of the artifact's {} pieces",
            manifest.piece_count()
        )));
    }
    if announce.bad_peers.len() > MAX_BAD_PEERS {
        return Err(ApiError::bad_request(format!(
            "bad_peers: holds {} entries, more than the limit of {MAX_BAD_PEERS}",
            announce.bad_peers.len()
        )));
    }
    for (position, peer) in announce.bad_peers.iter().enumerate() {
        validate::name(peer).map_err(|problem| {
            ApiError::bad_request(format!("bad_peers[{position}]: {problem}"))
        })?;
    }
    let now_ms = state.clock.now().saturating_mul(1_000);
    let swarm = lock(&artifacts.tracker).announce(&id, manifest.piece_count(), &announce, now_ms);
    Ok(Json(swarm))
}
