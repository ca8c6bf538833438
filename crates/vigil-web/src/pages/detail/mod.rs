//! One release's page: a summary (state, verdict and why), the batches, the findings most
//! severe first with a chart for each metric, the log templates that appeared or surged, the
//! actions (operators only), the feedback and the transitions.

mod rules;
mod scorecard;
mod view;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vigil_core::release::{Action, FeedbackKind, Role};

use super::html::url;
use super::session::{checked_form, signed_in, Session, SessionForm};
use super::PageError;
use crate::error::ApiError;
use crate::releases::{
    alert_evidence, app_config, perform, record_feedback, release_record, scorecard_on,
    scorecard_step, window, AlertEvidence, ScorecardQuery,
};
use crate::state::AppState;
use scorecard::RowOrder;
use view::Detail;

/// The actions a person may take from the page, in the order their buttons appear.
const PAGE_ACTIONS: [Action; 4] = [
    Action::Pause,
    Action::Resume,
    Action::Rollback,
    Action::Cancel,
];

/// Longest reason an action form may carry, in bytes.
const MAX_REASON_BYTES: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    /// What was just done (`pause`, `resume`, `rollback`, `cancel`, `feedback`).
    #[serde(default)]
    done: Option<String>,
    /// The scorecard's column and order (`?sort=effect&order=desc`).
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    order: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let (sort, descending) = ScorecardQuery {
        sort: query.sort.clone(),
        order: query.order.clone(),
    }
    .parse()?;
    let record = release_record(&state, id).await?;
    // Assembling the window, judging it for the scorecard and drawing a chart for each
    // finding's metric takes a core for tens of milliseconds on a large release: one of the
    // cores heavy work may take, on a blocking thread, never an async worker (health checks
    // and other requests wait on those).
    let _core = state.budget.heavy_work().await?;
    let bundle = window(&state, &record.release).await;
    let judged_at = scorecard_step(&state, &record.release, record.verdicts.last());
    let app = app_config(&state, &record.release.spec.app).await?;
    let notice = query.done.as_deref().and_then(notice_text);
    let alerts = match &bundle {
        Ok(bundle) => alert_evidence(&state, &record.release, bundle).await?,
        Err(_) => AlertEvidence::default(),
    };
    let pull_failures = std::sync::Arc::clone(&state.pull_failures);
    let page = tokio::task::spawn_blocking(move || {
        let scorecard = match &bundle {
            Ok(bundle) => scorecard_on(
                &record.release,
                bundle,
                judged_at,
                app.as_ref(),
                &pull_failures,
                alerts,
            )
            .map(|mut scorecard| {
                scorecard.sort_rows_by(sort, descending);
                scorecard
            })
            .map_err(|error| error.to_string()),
            Err(error) => Err(error.message.clone()),
        };
        let view = Detail {
            record: &record,
            bundle: bundle.as_ref(),
            session: &session,
            notice,
            scorecard: scorecard.as_ref().map_err(String::as_str),
            order: RowOrder { sort, descending },
        };
        view.page()
    })
    .await
    .map_err(|error| ApiError::internal(format!("page task failed: {error}")))?;
    Ok(page)
}

fn notice_text(done: &str) -> Option<&'static str> {
    match done {
        "pause" => Some("Paused: no further batch may start."),
        "resume" => Some("Resumed: the guard judges the release again."),
        "rollback" => Some("Rollback requested: the release is rolling back."),
        "cancel" => Some("Cancelled."),
        "feedback" => Some("Thank you: your feedback is stored."),
        _ => None,
    }
}

/// The fields of the forms of a release's page; each form sends some of them.
#[derive(Debug, Deserialize)]
pub struct ReleaseForm {
    /// The session value (every form).
    #[serde(default)]
    form_key: String,
    /// `pause`, `resume`, `rollback` or `cancel` (the action buttons).
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    /// `confirm_fault`, `false_alarm` or `missed_fault` (the feedback form).
    #[serde(default)]
    kind: String,
    #[serde(default)]
    note: String,
}

impl SessionForm for ReleaseForm {
    fn form_key(&self) -> &str {
        &self.form_key
    }
}

/// The session and the fields of an operator's form post on a release's page (see
/// [`checked_form`]).
async fn operator_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<(Session, ReleaseForm), PageError> {
    let back_to = format!("/releases/{}", url(id));
    checked_form(state, headers, uri, back_to, Role::Operator, form).await
}

/// An action button: pause, resume, roll back or cancel (operators only).
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = operator_form(&state, &headers, &uri, &id, form).await?;
    let action = PAGE_ACTIONS
        .into_iter()
        .find(|action| action.as_str() == request.action)
        .ok_or_else(|| ApiError::bad_request(format!("unknown action {:?}", request.action)))?;
    if request.reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "the reason is longer than {MAX_REASON_BYTES} bytes"
        ))
        .into());
    }
    let reason = Some(request.reason.trim().to_string());
    let release = perform(&state, &session.token, id, action, reason).await?;
    let location = format!(
        "/releases/{}?done={}#summary",
        url(&release.id),
        action.as_str()
    );
    Ok(Redirect::to(&location).into_response())
}

/// The feedback form: confirm fault, false alarm or missed fault, with a note.
pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = operator_form(&state, &headers, &uri, &id, form).await?;
    let kind = match request.kind.as_str() {
        "confirm_fault" => FeedbackKind::ConfirmFault,
        "false_alarm" => FeedbackKind::FalseAlarm,
        "missed_fault" => FeedbackKind::MissedFault,
        "" => {
            return Err(ApiError::bad_request(
                "choose what the feedback says: confirm fault, false alarm or missed fault",
            )
            .into())
        }
        other => {
            return Err(ApiError::bad_request(format!("unknown feedback kind {other:?}")).into())
        }
    };
    let stored = record_feedback(
        &state,
        &session.token,
        id,
        kind,
        request.note.trim().to_string(),
    )
    .await?;
    let location = format!(
        "/releases/{}?done=feedback#feedback",
        url(&stored.release_id)
    );
    Ok(Redirect::to(&location).into_response())
}

#[cfg(test)]
mod tests {
    use super::rules::action_label;
    use super::*;

    #[test]
    fn every_notice_and_action_has_words() {
        for action in PAGE_ACTIONS {
            assert!(notice_text(action.as_str()).is_some());
            assert_ne!(action_label(action), action.as_str());
        }
        assert!(notice_text("feedback").is_some());
        assert!(notice_text("<script>").is_none());
    }
}
