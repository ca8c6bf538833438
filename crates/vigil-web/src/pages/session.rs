//! Signing in to the pages with an API token.
//!
//! `/signin` takes a token, checks it with the same hashed lookup as a bearer token
//! ([`AppState::authorize_secret`]) and opens a session: a random id kept in an `HttpOnly`,
//! `SameSite=Strict` cookie, stored only as its hash, bound to the token and ending after
//! twelve hours, on sign-out, or when the token is revoked. The cookie never holds the token.
//! Ingest tokens cannot sign in. Every form a page posts is checked twice against requests
//! from other sites: its `Origin` (or, without one, its `Referer`) must be this server, and it
//! must carry the session's form value, a hash of the session id that another site cannot
//! know.

use maud::{html, Markup};

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use vigil_core::release::{ApiToken, Role};
use vigil_store::PageSession;

use super::html::{url, Text};
use super::{html_page, PageError};
use crate::error::ApiError;
use crate::state::AppState;

/// Name of the cookie that holds the session id.
pub const COOKIE: &str = "vigil_session";

/// How long a sign-in lasts, in seconds.
const SESSION_SECONDS: u32 = 12 * 3600;

/// Longest session id a cookie may carry (ours are 52 characters).
const MAX_SESSION_ID_BYTES: usize = 200;

/// A signed-in person: their token and the value their forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: ApiToken,
    pub form_key: String,
}

impl Session {
    /// True when the person may pause, resume, roll back, cancel and leave feedback.
    pub fn is_operator(&self) -> bool {
        self.token.role.allows(Role::Operator)
    }

    /// True when the person may also configure apps (apply onboarding proposals).
    pub fn is_admin(&self) -> bool {
        self.token.role.allows(Role::Admin)
    }

    /// The hidden field every form of this session carries.
    pub fn form_field(&self) -> Markup {
        html! { input type="hidden" name="form_key" value=(Text(&self.form_key)); }
    }
}

/// The value a session's forms carry: derived from the session id (which another site cannot
/// read), and different from the stored hash of the session.
fn form_key(session_id: &str) -> String {
    crate::hash_token(&format!("vigil-form:{session_id}"))
}

/// The session id in the request's session cookie, if any.
fn cookie_session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then_some(value)
        })
}

/// The session of a page request; a request without a valid one is sent to `/signin` (and
/// back to `uri` after signing in).
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Session, PageError> {
    let back_to = uri
        .path_and_query()
        .map_or_else(|| "/releases".to_string(), |path| path.as_str().to_string());
    let Some(session_id) = cookie_session_id(headers) else {
        return Err(PageError::SignIn { next: back_to });
    };
    if session_id.len() > MAX_SESSION_ID_BYTES {
        return Err(PageError::SignIn { next: back_to });
    }
    let hash = crate::hash_token(session_id);
    let found = state
        .blocking(move |store| Ok(store.session(&hash)?))
        .await?;
    let Some((token, stored)) = found else {
        return Err(PageError::SignIn { next: back_to });
    };
    let live = stored.expires_at > state.clock.now()
        && token.revoked_at.is_none()
        && token.role.allows(Role::Viewer);
    if !live {
        return Err(PageError::SignIn { next: back_to });
    }
    Ok(Session {
        token,
        form_key: form_key(session_id),
    })
}

/// Refuses a form posted from another site: the `Origin` header (or, without one, the
/// `Referer`) must name this server, as the `Host` header or the configured public URL does.
pub fn check_same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |why: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("form refused: {why}; forms must be sent from vigil's own pages"),
        )
    };
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| refused("the request names no host"))?;
    let public_url = state.guard.config().public_url.trim_end_matches('/');
    let allowed = [
        format!("http://{host}"),
        format!("https://{host}"),
        public_url.to_string(),
    ];
    let is_allowed = |origin: &str| {
        allowed
            .iter()
            .any(|candidate| !candidate.is_empty() && candidate.eq_ignore_ascii_case(origin))
    };
    if let Some(origin_header) = headers.get(header::ORIGIN) {
        let origin = origin_header
            .to_str()
            .map_err(|_| refused("the origin is not text"))?;
        if is_allowed(origin) {
            return Ok(());
        }
        return Err(refused(&format!("it comes from {origin}")));
    }
    let referer = headers
        .get(header::REFERER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| refused("it has neither an origin nor a referer"))?;
    let referer_origin = referer
        .find("://")
        .map(|scheme_end| {
            let after_scheme = &referer[scheme_end + 3..];
            let host_end = after_scheme.find('/').unwrap_or(after_scheme.len());
            &referer[..scheme_end + 3 + host_end]
        })
        .unwrap_or(referer);
    if is_allowed(referer_origin) {
        return Ok(());
    }
    Err(refused(&format!("it comes from {referer_origin}")))
}

/// Checks a posted form of a page: same origin, and the session's form value.
pub fn check_form(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    posted_key: &str,
) -> Result<(), ApiError> {
    check_same_origin(state, headers)?;
    let expected = session.form_key.as_bytes();
    let posted = posted_key.as_bytes();
    // Compared in full whatever the first difference, so timing tells nothing.
    let differences = expected
        .iter()
        .zip(posted)
        .fold(expected.len() ^ posted.len(), |acc, (left, right)| {
            acc | usize::from(left ^ right)
        });
    if differences != 0 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "form refused: its session value is missing or stale; reload the page and try again",
        ));
    }
    Ok(())
}

/// A page form: it carries the session's form value.
pub trait SessionForm {
    /// The posted `form_key` field.
    fn form_key(&self) -> &str;
}

/// The session and the fields of a page's form post, after every check: signed in (else sent
/// to sign in, then to `back_to`), a role that allows `needed`, and sent from this server's
/// pages with the session's form value. The role is checked first, so that a viewer learns
/// why.
pub async fn checked_form<T: SessionForm>(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    back_to: String,
    needed: Role,
    form: Result<Form<T>, FormRejection>,
) -> Result<(Session, T), PageError> {
    let session = match signed_in(state, headers, uri).await {
        Err(PageError::SignIn { .. }) => return Err(PageError::SignIn { next: back_to }),
        other => other?,
    };
    crate::auth::require(&session.token, needed)?;
    let Form(request) = form.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    check_form(state, headers, &session, request.form_key())?;
    Ok((session, request))
}

/// A path to go back to after signing in: only a path on this server.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/releases",
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

pub async fn form(Query(query): Query<SignInQuery>) -> Response {
    signin_page(StatusCode::OK, safe_next(query.next.as_deref()), None)
}

fn signin_page(status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    let described_by = if problem.is_some() {
        "signin-help signin-problem"
    } else {
        "signin-help"
    };
    let body = html! {
        h1 { "Sign in to Vigil" }
        @if let Some(problem) = problem {
            p class="notice error" role="alert" id="signin-problem" { (Text(problem)) }
        }
        form method="post" action="/signin" class="signin" {
            input type="hidden" name="next" value=(Text(next));
            label for="token" { "API token" }
            input id="token" name="token" type="password" autocomplete="current-password"
                required autofocus aria-describedby=(described_by);
            p id="signin-help" class="help" {
                "A viewer, operator or admin token, as printed by "
                code { "vigil token create --role operator" }
                ". Viewers see releases and apps; operators also pause, resume, roll back, \
                 cancel and leave feedback; admins also change an app's pull source."
            }
            button type="submit" { "Sign in" }
        }
    };
    html_page(status, "Sign in", None, None, body)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, PageError> {
    check_same_origin(&state, &headers)?;
    let Form(request) = form.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let next = safe_next(request.next.as_deref());
    let secret = request.token.trim();
    let well_formed = !secret.is_empty()
        && secret.len() <= 200
        && secret
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
    if !well_formed {
        return Ok(signin_page(
            StatusCode::UNAUTHORIZED,
            next,
            Some("that is not a vigil api token"),
        ));
    }
    let token = match state.authorize_secret(secret, Role::Viewer).await {
        Ok(token) => token,
        Err(error) if error.status == StatusCode::FORBIDDEN => {
            return Ok(signin_page(
                StatusCode::FORBIDDEN,
                next,
                Some(
                    "this token can only push data; sign in with a viewer, operator or admin token",
                ),
            ));
        }
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            // "unknown api token" or "api token was revoked".
            return Ok(signin_page(
                StatusCode::UNAUTHORIZED,
                next,
                Some(&error.message),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let session_id = open_session(&state, &token).await?;
    tracing::info!(token = token.id, token_name = %token.name, role = token.role.as_str(), "signed in to the pages");
    let secure = if state.guard.config().public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"
    );
    Ok(redirect_with_cookie(next, &cookie))
}

/// Stores a new session of `token` (by the hash of its id) and returns its id.
async fn open_session(state: &AppState, token: &ApiToken) -> Result<String, ApiError> {
    let session_id = crate::new_session_id()?;
    let now = state.clock.now();
    let session = PageSession {
        hash: crate::hash_token(&session_id),
        token_id: token.id,
        created_at: now,
        expires_at: now + i64::from(SESSION_SECONDS),
    };
    state
        .blocking(move |store| Ok(store.create_session(&session)?))
        .await?;
    Ok(session_id)
}

/// A `303 See Other` to `location` that sets `cookie`.
fn redirect_with_cookie(location: &str, cookie: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// The page behind a `/signout` link: a button that signs out.
pub async fn signout_form(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let signed_in_now = signed_in(&state, &headers, &uri).await.ok();
    let body = html! {
        h1 { "Sign out" }
        form method="post" action="/signout" { button type="submit" { "Sign out" } }
    };
    html_page(
        StatusCode::OK,
        "Sign out",
        signed_in_now.as_ref(),
        None,
        body,
    )
}

/// Ends the session on the server and forgets its cookie. Only a form from this server's pages
/// may sign out.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    check_same_origin(&state, &headers)?;
    if let Some(session_id) = cookie_session_id(&headers) {
        let hash = crate::hash_token(session_id);
        let ended = state
            .blocking(move |store| Ok(store.end_session(&hash)?))
            .await?;
        tracing::info!(ended, "signed out of the pages");
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(redirect_with_cookie("/signin", &cookie))
}

/// Where a request without a session is sent.
pub fn signin_location(next: &str) -> String {
    format!("/signin?next={}", url(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; vigil_session=vgl_x"),
        );
        assert_eq!(cookie_session_id(&headers), Some("vgl_x"));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("vigil_session="));
        assert_eq!(cookie_session_id(&empty), None);
        assert_eq!(cookie_session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        assert_eq!(safe_next(Some("/releases/r1?x=1")), "/releases/r1?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/releases");
        assert_eq!(safe_next(Some("/\\evil.example/")), "/releases");
        assert_eq!(safe_next(Some("https://evil.example/")), "/releases");
        assert_eq!(safe_next(None), "/releases");
    }

    #[test]
    fn the_form_key_is_not_the_stored_hash() {
        assert_ne!(form_key("vgl_abc"), crate::hash_token("vgl_abc"));
        assert_eq!(form_key("vgl_abc"), form_key("vgl_abc"));
    }
}
