//! `/agents`: the hosts' agents, online or not, with their version, build and labels. Read
//! through the same function as `GET /api/v1/agents`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use maud::{html, Markup};
use vigil_executor::agents::AgentStatus;

use super::html::{time_element, Text};
use super::session::signed_in;
use super::{html_page, PageError, Section};
use crate::agents::agent_statuses;
use crate::state::AppState;

pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let agents = agent_statuses(&state).await?;
    Ok(html_page(
        StatusCode::OK,
        "Agents",
        Some(&session),
        Some(Section::Agents),
        agents_body(&agents, state.agent_timeout_seconds),
    ))
}

fn agents_body(agents: &[AgentStatus], timeout_seconds: i64) -> Markup {
    let online = agents.iter().filter(|agent| agent.online).count();
    html! {
        h1 { "Agents" }
        p class="subtitle" {
            (online) " of " (agents.len()) " agents online (polled within the last "
            (timeout_seconds) " s). An agent registers with " code { "vigil agent" } "."
        }
        @if agents.is_empty() {
            p { "No agent has registered yet." }
        } @else {
            table class="agents" {
                caption { "Registered agents, by host" }
                thead {
                    tr {
                        th scope="col" { "Host" }
                        th scope="col" { "App" }
                        th scope="col" { "State" }
                        th scope="col" { "Version" }
                        th scope="col" { "Agent" }
                        th scope="col" { "Labels" }
                        th scope="col" { "Last seen" }
                    }
                }
                tbody {
                    @for agent in agents {
                        tr data-online=(agent.online) {
                            td { (Text(&agent.record.host)) }
                            td { (Text(&agent.record.app)) }
                            td { @if agent.online { "online" } @else { "offline" } }
                            td { (Text(agent.record.version.as_deref().unwrap_or("none"))) }
                            td { (Text(&agent.record.agent_version)) }
                            td {
                                @for (position, (label, value)) in agent.record.labels.iter().enumerate() {
                                    @if position > 0 { ", " }
                                    code { (Text(label)) "=" (Text(value)) }
                                }
                            }
                            td { (time_element(agent.record.last_seen_at)) }
                        }
                    }
                }
            }
        }
    }
}
