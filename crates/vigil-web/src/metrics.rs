//! `GET /metrics`: Vigil's own metrics in Prometheus' text format, and the count of every
//! request by route template, method and status.
//!
//! The route takes no token, as Prometheus scrapes expect: it shows counts and timings only,
//! never a release, a host, a token or a URL.

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vigil_core::telemetry::{self, event::RequestAnswered};
use vigil_core::Stopwatch;

/// The text of every metric.
pub(crate) async fn show() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        telemetry::render(),
    )
}

/// Counts the request once answered, labelled by its route's template (`unmatched` when no
/// route took it), so that the labels stay a bounded set whatever paths are asked for.
pub(crate) async fn count_request(request: Request, next: Next) -> Response {
    let stopwatch = Stopwatch::start();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    RequestAnswered {
        route: &route,
        method,
        status: response.status().as_u16(),
        elapsed_ms: (stopwatch.seconds() * 1000.0) as u128,
    }
    .emit();
    response
}

/// The method as a label: one of the usual ones, `other` for any other.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
