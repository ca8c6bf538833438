//! The releases list: newest first, filtered by app and state with a plain GET form. The list
//! itself is a region that `refresh.js` re-fetches from `/fragment/releases` while some
//! release in it is running; without the script it is a plain page.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_core::release::{Release, ReleaseState};

use super::html::{is_running, state_badge, state_words, time_element, url, verdict_badge, Text};
use super::session::signed_in;
use super::{html_page, html_response, PageError, Section};
use crate::releases::{find_releases, release_filter};
use crate::state::AppState;

/// Most releases one list shows.
const LIST_LIMIT: usize = 200;

/// Characters of a release's reason shown in its row; the whole reason is its title.
const REASON_SHOWN: usize = 80;

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
    let body = html! {
        h1 { "Releases" }
        (filter_form(&query))
        (list_region(&releases, &query, state.clock.now()))
    };
    Ok(html_page(
        StatusCode::OK,
        "Releases",
        Some(&session),
        Some(Section::Releases),
        body,
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
    let region = list_region(&releases, &query, state.clock.now());
    Ok(html_response(StatusCode::OK, region.into_string()))
}

fn filter_form(query: &ListQuery) -> Markup {
    html! {
        form class="filters" method="get" action="/releases" role="search"
            aria-label="Filter the releases" {
            div class="field" {
                label for="filter-app" { "App" }
                input id="filter-app" name="app" type="text" value=(Text(query.app()))
                    placeholder="every app" autocomplete="off";
            }
            div class="field" {
                label for="filter-state" { "State" }
                select id="filter-state" name="state" {
                    option value="" { "every state" }
                    @for candidate in ReleaseState::ALL {
                        option value=(candidate.as_str())
                            selected[query.state() == candidate.as_str()] {
                            (state_words(candidate))
                        }
                    }
                }
            }
            button type="submit" { "Filter" }
            a class="clear" href="/releases" { "Clear the filter" }
        }
    }
}

/// The region the script replaces: a note on refreshing and the table.
fn list_region(releases: &[Release], query: &ListQuery, now: i64) -> Markup {
    let running = releases.iter().any(|release| is_running(release.state));
    html! {
        section id="releases" aria-labelledby="releases-caption" data-running=(running)
            data-every=(REFRESH_MILLISECONDS)
            data-fragment={ "/fragment/releases?" (Text(&query.query_string())) } {
            p class="help refresh-note" {
                "As of " (time_element(now))
                @if running {
                    ". A release is running: this list refreshes itself every "
                    (REFRESH_MILLISECONDS / 1000) " seconds."
                } @else {
                    ". No release here is running."
                }
            }
            table class="releases" {
                caption id="releases-caption" { "Releases, newest first" }
                thead {
                    tr {
                        @for heading in COLUMN_HEADINGS {
                            th scope="col" { (heading) }
                        }
                    }
                }
                tbody {
                    @if releases.is_empty() {
                        tr { td colspan=(COLUMN_HEADINGS.len()) { "No release matches this filter." } }
                    }
                    @for release in releases {
                        (release_row(release))
                    }
                }
            }
            @if releases.len() >= LIST_LIMIT {
                p class="help" {
                    "Showing the newest " (LIST_LIMIT) "; filter to see older ones."
                }
            }
        }
    }
}

/// The headings of the list's columns.
const COLUMN_HEADINGS: [&str; 9] = [
    "Release",
    "App",
    "Version",
    "State",
    "Verdict",
    "Reason",
    "Batches done",
    "Started",
    "Started by",
];

/// One release's row of the list.
fn release_row(release: &Release) -> Markup {
    html! {
        tr {
            th scope="row" {
                a href={ "/releases/" (url(&release.id)) } { (Text(&release.id)) }
            }
            td { (Text(&release.spec.app)) }
            td { (Text(&release.spec.version)) }
            td { (state_badge(release.state)) }
            td { (verdict_badge(release.verdict)) }
            (reason_cell(&release.reason))
            td { (release.deployed.len()) " of " (release.spec.batches.len()) }
            td { (time_element(release.created_at)) }
            td { (Text(&release.created_by)) }
        }
    }
}

/// A release's reason (why it is where it is), cut to [`REASON_SHOWN`] characters with the
/// whole of it in the cell's title.
fn reason_cell(reason: &str) -> Markup {
    let reason = reason.trim();
    let cut = reason
        .char_indices()
        .nth(REASON_SHOWN)
        .map(|(position, _)| &reason[..position]);
    match cut {
        Some(shown) => html! {
            td class="reason" title=(Text(reason)) { (Text(shown.trim_end())) "…" }
        },
        None => html! { td class="reason" { (Text(reason)) } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_with_the_whole_of_it_in_the_title() {
        let long = format!("paused: {}", "latency <up> & 'more' ".repeat(10));
        let cell = reason_cell(&long).into_string();
        let shown: String = long.chars().take(REASON_SHOWN).collect();
        assert!(
            cell.contains("title=\"paused: latency &lt;up&gt; &amp; &#39;more&#39;"),
            "{cell}"
        );
        let shown_text = maud::Render::render(&Text(shown.trim_end())).into_string();
        assert!(cell.ends_with(&format!(">{shown_text}…</td>")), "{cell}");
        let short = reason_cell("resumed by alice").into_string();
        assert_eq!(short, "<td class=\"reason\">resumed by alice</td>");
    }
}
