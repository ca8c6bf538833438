//! The pages for people: HTML rendered here, on the server, by `maud` templates, which escape
//! every spliced value unless it is marked as already escaped (`PreEscaped`).
//!
//! - `/releases`: the list, filtered by app and state; a small script re-fetches it
//!   (`/fragment/releases`) every few seconds while a release runs.
//! - `/releases/{id}`: one release: summary, batches, findings with their charts (inline SVG),
//!   log templates, actions (operators only), feedback and transitions.
//! - `/apps`: every app with its onboarding state, hosts and the signal families covered, from
//!   ingested data alone; `/apps/{app}`: one app's whole onboarding report and the discovery of
//!   its Prometheus, where admins apply the proposed queries or add their own.
//! - `/models`: the learned stage's models, their training sets and replay scores beside the
//!   funnel's, and the promotions' audit.
//! - `/replay`: the replay of the stored releases through a model, started by operators, its
//!   progress while it runs and its figures, per cause and over time with a chart, once done.
//! - `/signin`, `/signout`: a session cookie holding an API token (see [`session`]).
//!
//! The pages call the same functions as the JSON handlers (`crate::releases`,
//! `crate::onboarding`), never the store's SQL. The stylesheet and the script are embedded in
//! the binary.

mod agents;
mod apps;
mod chart;
mod detail;
pub mod html;
mod list;
mod models;
mod replay;
pub mod session;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use maud::{html, Markup, PreEscaped};

use crate::error::ApiError;
use crate::state::AppState;
use html::Text;
use session::Session;

const STYLESHEET: &str = include_str!("vigil.css");
const SCRIPT: &str = include_str!("refresh.js");

/// Where the stylesheet and the script are served; the version makes a new build's files
/// bypass a cached old one.
const STYLESHEET_PATH: &str = concat!("/static/vigil.css?v=", env!("CARGO_PKG_VERSION"));
const SCRIPT_PATH: &str = concat!("/static/refresh.js?v=", env!("CARGO_PKG_VERSION"));

/// What the pages may load and where their forms may go.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The routes of the pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/releases") }))
        .route("/releases", get(list::page))
        .route("/fragment/releases", get(list::fragment))
        .route("/releases/{id}", get(detail::page))
        .route("/releases/{id}/actions", post(detail::act))
        .route("/releases/{id}/feedback", post(detail::feedback))
        .route("/apps", get(apps::list))
        .route("/models", get(models::page))
        .route("/agents", get(agents::page))
        .route("/apps/{app}", get(apps::page))
        .route("/apps/{app}/apply", post(apps::apply))
        .route("/apps/{app}/queries", post(apps::add_query))
        .route("/apps/{app}/queries/remove", post(apps::remove_query))
        .route("/apps/{app}/metrics", post(apps::declare))
        .route("/apps/{app}/metrics/remove", post(apps::undeclare))
        .route("/apps/{app}/rules", post(apps::put_rule))
        .route("/apps/{app}/rules/remove", post(apps::remove_rule))
        .route(
            "/apps/{app}/signatures/remove",
            post(apps::remove_signature),
        )
        .route("/replay", get(replay::page).post(replay::start))
        .route("/signin", get(session::form).post(session::sign_in))
        .route(
            "/signout",
            get(session::signout_form).post(session::sign_out),
        )
        .route("/static/vigil.css", get(stylesheet))
        .route("/static/refresh.js", get(script))
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", SCRIPT)
}

fn static_file(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// No valid session: go and sign in, then come back to `next`.
    SignIn { next: String },
    /// Refused or failed, said on an error page with the API's status and message.
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        PageError::Api(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                Redirect::to(&session::signin_location(&next)).into_response()
            }
            PageError::Api(error) => {
                let title = error.status.canonical_reason().unwrap_or("Request failed");
                let body = html! {
                    h1 { (Text(title)) }
                    p class="notice error" role="alert" { (Text(&error.message)) }
                    p { a href="/releases" { "Back to the releases" } }
                };
                html_page(error.status, title, None, None, body)
            }
        }
    }
}

/// The part of the pages a page belongs to, marked as current in the header's navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Releases,
    Apps,
    Models,
    Replay,
    Agents,
}

/// A whole page: the layout around `body`, with the headers every page gets.
pub fn html_page(
    status: StatusCode,
    title: &str,
    session: Option<&Session>,
    section: Option<Section>,
    body: Markup,
) -> Response {
    let page = html! {
        // Safe: a constant; maud's own doctype constant would spell it in capitals.
        (PreEscaped("<!doctype html>"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Text(title)) " · Vigil" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to the content" }
                header class="top" {
                    a class="brand" href="/releases" { "Vigil" }
                    nav aria-label="Main" { (navigation(section)) }
                    @if let Some(session) = session {
                        (signed_in_as(session))
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    };
    html_response(status, page.into_string())
}

/// The header's links, the current section's marked as the current page.
fn navigation(section: Option<Section>) -> Markup {
    html! {
        @for (link_section, href, label) in [
            (Section::Releases, "/releases", "Releases"),
            (Section::Apps, "/apps", "Apps"),
            (Section::Models, "/models", "Models"),
            (Section::Replay, "/replay", "Replay"),
            (Section::Agents, "/agents", "Agents"),
        ] {
            @let current = (section == Some(link_section)).then_some("page");
            a href=(href) aria-current=[current] { (label) } " "
        }
    }
}

/// Who is signed in, with the button that signs out.
fn signed_in_as(session: &Session) -> Markup {
    html! {
        form class="who" method="post" action="/signout" {
            span { "Signed in as " strong { (Text(&session.token.name)) } " (" (session.token.role.as_str()) ")" }
            " "
            (session.form_field())
            button type="submit" class="link" { "Sign out" }
        }
    }
}

/// An HTML answer with the headers every page and fragment gets: no caching (pages show
/// live state and hold a form value), no framing, no sniffing, a strict content policy.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A small bundle for the pages' unit tests: release host `r1` deployed in one batch at
/// `deployed_at`, and reference hosts `k1` and `k2`, without data.
#[cfg(test)]
pub(crate) fn test_bundle(
    step_seconds: i64,
    start: i64,
    points: usize,
    deployed_at: i64,
) -> vigil_core::Bundle {
    use vigil_core::{Batch, Host, HostGroup};
    let host = |name: &str, group: HostGroup| Host {
        name: name.to_string(),
        group,
    };
    vigil_core::Bundle {
        format: vigil_core::BUNDLE_FORMAT.to_string(),
        id: "r".to_string(),
        app: "shop".to_string(),
        step_seconds,
        start,
        points,
        hosts: vec![
            host("r1", HostGroup::Release),
            host("k1", HostGroup::Reference),
            host("k2", HostGroup::Reference),
        ],
        batches: vec![Batch {
            index: 0,
            at: deployed_at,
            hosts: vec!["r1".to_string()],
        }],
        metrics: Vec::new(),
        series: std::collections::BTreeMap::new(),
        logs: vigil_core::Logs::default(),
    }
}
