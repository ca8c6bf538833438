//! The agent routes: `POST /api/v1/agents` (register), `POST /api/v1/agents/{host}/poll` (the
//! heartbeat, reports and downloads, answered with the host's orders) and `GET
//! /api/v1/agents` (every agent, online or not). Agents hold ingest tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use vigil_core::agent::{AgentHello, AgentOrders, AgentPoll, AgentRecord};
use vigil_core::release::Role;
use vigil_deploy::spec::check_name;
use vigil_executor::agents::AgentStatus;

use crate::error::ApiError;
use crate::request::parse_request;
use crate::state::AppState;

/// Largest body of an agent route, in bytes.
pub const MAX_AGENT_BODY_BYTES: usize = 256 * 1024;
/// Most labels of an agent.
const MAX_LABELS: usize = 32;
/// Most reports in one poll.
const MAX_REPORTS: usize = 256;
/// Most artifacts' progress in one poll.
const MAX_ARTIFACTS: usize = vigil_store::MAX_AGENT_ARTIFACTS;
/// Longest message of a report, in bytes (the tail of a command's output).
const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest label value, peer address or build, in bytes.
const MAX_VALUE_BYTES: usize = 256;

fn too_long(field: &str, text: &str, limit: usize) -> Result<(), ApiError> {
    if text.len() > limit {
        return Err(ApiError::bad_request(format!(
            "{field} is {} bytes, more than {limit}",
            text.len()
        )));
    }
    Ok(())
}

fn check_hello(hello: &AgentHello) -> Result<(), ApiError> {
    check_name("host", &hello.host)?;
    check_name("app", &hello.app)?;
    if let Some(version) = &hello.version {
        check_name("version", version)?;
    }
    if hello.labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "labels holds {} labels, more than {MAX_LABELS}",
            hello.labels.len()
        )));
    }
    for (label, value) in &hello.labels {
        check_name(format!("labels.{label}"), label)?;
        too_long(&format!("labels.{label}"), value, MAX_VALUE_BYTES)?;
    }
    too_long(
        "peer_addr",
        hello.peer_addr.as_deref().unwrap_or(""),
        MAX_VALUE_BYTES,
    )?;
    too_long("agent_version", &hello.agent_version, MAX_VALUE_BYTES)?;
    Ok(())
}

fn check_poll(poll: &AgentPoll) -> Result<(), ApiError> {
    if poll.reports.len() > MAX_REPORTS {
        return Err(ApiError::bad_request(format!(
            "reports holds {} reports, more than {MAX_REPORTS}",
            poll.reports.len()
        )));
    }
    if poll.artifacts.len() > MAX_ARTIFACTS {
        return Err(ApiError::bad_request(format!(
            "artifacts holds {} artifacts, more than {MAX_ARTIFACTS}",
            poll.artifacts.len()
        )));
    }
    for (index, report) in poll.reports.iter().enumerate() {
        if !matches!(
            report.state,
            vigil_core::agent::TaskState::Started
                | vigil_core::agent::TaskState::Succeeded
                | vigil_core::agent::TaskState::Failed
        ) {
            return Err(ApiError::bad_request(format!(
                "reports[{index}].state must be started, succeeded or failed"
            )));
        }
        too_long(
            &format!("reports[{index}].message"),
            &report.message,
            MAX_MESSAGE_BYTES,
        )?;
    }
    for (index, progress) in poll.artifacts.iter().enumerate() {
        too_long(
            &format!("artifacts[{index}].artifact"),
            &progress.artifact,
            128,
        )?;
        if progress.pieces_held > progress.pieces {
            return Err(ApiError::bad_request(format!(
                "artifacts[{index}].pieces_held is more than pieces"
            )));
        }
    }
    Ok(())
}

/// Registers the agent of a host (or updates it).
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<AgentRecord>, ApiError> {
    state.authorize(&headers, Role::Ingest).await?;
    let hello: AgentHello = parse_request(body).await?;
    check_hello(&hello)?;
    let now = state.clock.now();
    let stored = state
        .blocking(move |store| Ok(store.register_agent(&hello, now)?))
        .await?;
    tracing::info!(host = %stored.record.host, app = %stored.record.app, "agent registered");
    Ok(Json(stored.record))
}

/// An agent's poll, answered with its orders.
pub async fn poll(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(host): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AgentOrders>, ApiError> {
    state.authorize(&headers, Role::Ingest).await?;
    check_name("host", &host)?;
    let request: AgentPoll = parse_request(body).await?;
    check_poll(&request)?;
    let now = state.clock.now();
    let fetches = Arc::clone(&state.fetches);
    let orders = state
        .blocking(move |store| {
            Ok(vigil_executor::agents::poll(
                store, &fetches, &host, &request, now,
            )?)
        })
        .await?;
    Ok(Json(orders))
}

/// Every registered agent, with whether it polled within the agent timeout.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<AgentStatus>>, ApiError> {
    state.authorize(&headers, Role::Viewer).await?;
    Ok(Json(agent_statuses(&state).await?))
}

/// What the agents route and the Agents page show.
pub(crate) async fn agent_statuses(state: &AppState) -> Result<Vec<AgentStatus>, ApiError> {
    let now = state.clock.now();
    let timeout = state.agent_timeout_seconds;
    state
        .blocking(move |store| {
            Ok(vigil_executor::agents::statuses(
                store.agents()?,
                now,
                timeout,
            ))
        })
        .await
}
