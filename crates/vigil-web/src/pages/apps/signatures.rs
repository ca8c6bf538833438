//! The feature library on an app's page: every signature (signal, direction, the largest change
//! marked, its marks with who and when, its state), and an admin's button to remove one, which
//! goes through [`crate::signatures::remove_signature`] as the `DELETE` route does.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use vigil_core::release::Role;
use vigil_core::signature::MARKS_TO_SUPPRESS;
use vigil_core::text::change_words;
use vigil_core::{Signature, SignatureState};

use super::super::html::{time_element, url, Text};
use super::super::session::{checked_form, Session, SessionForm};
use super::super::PageError;
use crate::error::ApiError;
use crate::state::AppState;

/// The form of a signature's "Remove" button.
#[derive(Debug, Deserialize)]
pub struct SignatureForm {
    #[serde(default)]
    form_key: String,
    #[serde(default)]
    id: String,
}

impl SessionForm for SignatureForm {
    fn form_key(&self) -> &str {
        &self.form_key
    }
}

/// "Remove": an admin drops a signature of the app.
pub async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<SignatureForm>, FormRejection>,
) -> Result<Response, PageError> {
    let back_to = format!("/apps/{}", url(&app));
    let (session, request) =
        checked_form(&state, &headers, &uri, back_to, Role::Admin, form).await?;
    let id: i64 = request
        .id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("id: expected a signature's number"))?;
    crate::signatures::remove_signature(&state, &session.token, app.clone(), id).await?;
    Ok(Redirect::to(&format!("/apps/{}?done=unsigned#signatures", url(&app))).into_response())
}

/// What a signature's state means, in words.
fn state_words(signature: &Signature) -> String {
    match signature.state {
        SignatureState::Active => "active: suppresses matching findings".to_owned(),
        SignatureState::Learning => {
            format!("learning: suppresses nothing until marked on {MARKS_TO_SUPPRESS} releases")
        }
        SignatureState::Dropped => match &signature.dropped {
            Some(why) => format!("dropped: {}", why.reason),
            None => "dropped".to_owned(),
        },
    }
}

/// The section listing `signatures` of `app`; admins get a remove button on the live ones.
pub(super) fn section(app: &str, signatures: &[Signature], session: &Session) -> Markup {
    let admin = session.is_admin();
    html! {
        section id="signatures" aria-labelledby="signatures-title" {
            h2 id="signatures-title" { "False-alarm signatures" }
            p class="help" {
                "A finding marked a false alarm on a release page starts or widens a signature \
                 of its signal and direction. Marked on " (MARKS_TO_SUPPRESS) " releases, it \
                 suppresses the same change up to one and a half times the largest marked in \
                 later releases of the app (a team's rules, alerts and silences are never \
                 suppressed). A release that matches it and is confirmed a fault drops it."
            }
            @if signatures.is_empty() {
                p { "The app has no signature." }
            } @else {
                table class="signatures" {
                    caption { "The app's feature library, oldest first" }
                    thead {
                        tr {
                            th scope="col" { "Signature" }
                            th scope="col" { "Signal" }
                            th scope="col" { "Change" }
                            th scope="col" { "Marked a false alarm" }
                            th scope="col" { "State" }
                            @if admin { th scope="col" { "Remove" } }
                        }
                    }
                    tbody {
                        @for signature in signatures {
                            tr {
                                th scope="row" { (signature.id) }
                                td { code { (Text(&signature.signal)) } }
                                td {
                                    (Text(&signature.direction)) " by up to "
                                    (Text(&change_words(signature.shape.max_effect)))
                                    ", against " (Text(&signature.baseline))
                                }
                                td {
                                    ul {
                                        @for mark in &signature.marks {
                                            li {
                                                "release " code { (Text(&mark.release_id)) }
                                                " by " (Text(&mark.actor)) " at "
                                                (time_element(mark.at))
                                                @if !mark.note.is_empty() {
                                                    ": " q { (Text(&mark.note)) }
                                                }
                                            }
                                        }
                                    }
                                }
                                td { (Text(&state_words(signature))) }
                                @if admin {
                                    td {
                                        @if signature.state != SignatureState::Dropped {
                                            form class="remove-signature" method="post"
                                                action={ "/apps/" (url(app)) "/signatures/remove" } {
                                                (session.form_field())
                                                input type="hidden" name="id" value=(signature.id);
                                                button type="submit"
                                                    aria-label={ "Remove signature " (signature.id) } {
                                                    "Remove"
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !admin {
                p class="help" { "Removing a signature needs an admin token." }
            }
        }
    }
}
