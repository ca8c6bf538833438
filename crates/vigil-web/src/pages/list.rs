//! The releases list: newest first, filtered by app and state with a plain GET form. The list
//! itself is a region that `refresh.js` re-fetches from `/fragment/releases` while some
//! release in it is running; without the script it is a plain page.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vigil_core::release::{Release, ReleaseState};

use super::html::{esc, is_running, state_badge, state_words, time_element, url, verdict_badge};
use super::session::signed_in;
use super::{html_page, html_response, PageError, Section};
use crate::releases::{find_releases, release_filter};
use crate::state::AppState;

/// Most releases one list shows.
const LIST_LIMIT: usize = 200;

/// How often the script re-fetches the list while a release runs, in milliseconds.
const REFRESH_MILLISECONDS: u32 = 5000;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

impl ListQuery {
    fn app(&self) -> &str {
        self.app.as_deref().map(str::trim).unwrap_or("")
    }

    fn state(&self) -> &str {
        self.state.as_deref().map(str::trim).unwrap_or("")
    }

    /// The query string of this filter (empty values left out).
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        if !self.app().is_empty() {
            parts.push(format!("app={}", url(self.app())));
        }
        if !self.state().is_empty() {
            parts.push(format!("state={}", url(self.state())));
        }
        parts.join("&")
    }
}

async fn releases_of(state: &AppState, query: &ListQuery) -> Result<Vec<Release>, PageError> {
    let app = Some(query.app().to_string());
    let filter = release_filter(app, Some(query.state()), Some(LIST_LIMIT))?;
    Ok(find_releases(state, filter).await?)
}

pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let releases = releases_of(&state, &query).await?;
    let mut body = String::with_capacity(4096 + releases.len() * 600);
    body.push_str("<h1>Releases</h1>");
    filter_form(&mut body, &query);
    list_region(&mut body, &releases, &query, state.clock.now());
    Ok(html_page(
        StatusCode::OK,
        "Releases",
        Some(&session),
        Some(Section::Releases),
        &body,
    ))
}

/// The list region alone, for the script; `401` without a session so that the script stops.
pub async fn fragment(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    if signed_in(&state, &headers, &uri).await.is_err() {
        return Ok((StatusCode::UNAUTHORIZED, "sign in again").into_response());
    }
    let releases = releases_of(&state, &query).await?;
    let mut region = String::with_capacity(1024 + releases.len() * 600);
    list_region(&mut region, &releases, &query, state.clock.now());
    Ok(html_response(StatusCode::OK, region))
}

fn filter_form(out: &mut String, query: &ListQuery) {
    let _ = write!(
        out,
        "<form class=\"filters\" method=\"get\" action=\"/releases\" role=\"search\" \
         aria-label=\"Filter the releases\">\
         <div class=\"field\"><label for=\"filter-app\">App</label>\
         <input id=\"filter-app\" name=\"app\" type=\"text\" value=\"{}\" \
         placeholder=\"every app\" autocomplete=\"off\"></div>\
         <div class=\"field\"><label for=\"filter-state\">State</label>\
         <select id=\"filter-state\" name=\"state\"><option value=\"\">every state</option>",
        esc(query.app())
    );
    for candidate in ReleaseState::ALL {
        let selected = if query.state() == candidate.as_str() {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{}</option>",
            candidate.as_str(),
            state_words(candidate)
        );
    }
    out.push_str(
        "</select></div><button type=\"submit\">Filter</button>\
         <a class=\"clear\" href=\"/releases\">Clear the filter</a></form>",
    );
}

/// The region the script replaces: a note on refreshing and the table.
fn list_region(out: &mut String, releases: &[Release], query: &ListQuery, now: i64) {
    let running = releases.iter().any(|release| is_running(release.state));
    let _ = write!(
        out,
        "<section id=\"releases\" aria-labelledby=\"releases-caption\" data-running=\"{running}\" \
         data-every=\"{REFRESH_MILLISECONDS}\" data-fragment=\"/fragment/releases?{}\">",
        esc(&query.query_string())
    );
    out.push_str("<p class=\"help refresh-note\">As of ");
    time_element(out, now);
    if running {
        let _ = write!(
            out,
            ". A release is running: this list refreshes itself every {} seconds.</p>",
            REFRESH_MILLISECONDS / 1000
        );
    } else {
        out.push_str(". No release here is running.</p>");
    }
    out.push_str(
        "<table class=\"releases\"><caption id=\"releases-caption\">Releases, newest first\
         </caption><thead><tr><th scope=\"col\">Release</th><th scope=\"col\">App</th>\
         <th scope=\"col\">Version</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Verdict</th><th scope=\"col\">Batches done</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Started by</th></tr></thead><tbody>",
    );
    if releases.is_empty() {
        out.push_str("<tr><td colspan=\"8\">No release matches this filter.</td></tr>");
    }
    for release in releases {
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><a href=\"/releases/{}\">{}</a></th><td>{}</td><td>{}</td><td>",
            url(&release.id),
            esc(&release.id),
            esc(&release.spec.app),
            esc(&release.spec.version)
        );
        state_badge(out, release.state);
        out.push_str("</td><td>");
        verdict_badge(out, release.verdict);
        let _ = write!(
            out,
            "</td><td>{} of {}</td><td>",
            release.deployed.len(),
            release.spec.batches.len()
        );
        time_element(out, release.created_at);
        let _ = write!(out, "</td><td>{}</td></tr>", esc(&release.created_by));
    }
    out.push_str("</tbody></table>");
    if releases.len() >= LIST_LIMIT {
        let _ = write!(
            out,
            "<p class=\"help\">Showing the newest {LIST_LIMIT}; filter to see older ones.</p>"
        );
    }
    out.push_str("</section>");
}
