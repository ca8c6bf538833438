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
    scorecard_step, window, AlertEvidence, FeedbackRequest, ScorecardQuery,
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
    let execution = crate::deployments::execution_of(&state, record.release.id.clone()).await?;
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
            execution: execution.as_ref(),
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
    /// The finding a false alarm is about, by its signal's label (a finding's button).
    #[serde(default)]
    signal: String,
    /// When a missed fault began: `YYYY-MM-DDTHH:MM` in UTC, as a `datetime-local` field
    /// sends it, or Unix seconds.
    #[serde(default)]
    onset: String,
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
    let signal = Some(request.signal.trim())
        .filter(|label| !label.is_empty())
        .map(str::to_owned);
    let onset = onset_time(&request.onset)?;
    let said = FeedbackRequest {
        kind,
        note: request.note.trim().to_string(),
        signal,
        onset,
    };
    let stored = record_feedback(&state, &session.token, id, said).await?;
    let location = format!(
        "/releases/{}?done=feedback#feedback",
        url(&stored.release_id)
    );
    Ok(Redirect::to(&location).into_response())
}

/// A form's onset: empty for none, Unix seconds, or a UTC time `YYYY-MM-DDTHH:MM[:SS]` (a
/// space for the `T` too).
fn onset_time(text: &str) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(Some(seconds));
    }
    utc_minutes(text).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "onset: expected a UTC time such as 2026-03-01T10:15 or unix seconds, not {text:?}"
        ))
    })
}

/// Unix seconds of `YYYY-MM-DDTHH:MM[:SS]` read as UTC.
fn utc_minutes(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let mut time_parts = time.splitn(3, ':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let second: i64 = match time_parts.next() {
        Some(seconds) => seconds.parse().ok()?,
        None => 0,
    };
    let in_range = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second);
    if !in_range {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), March-based years.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
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

    #[test]
    fn an_onset_is_read_as_utc_or_unix_seconds() {
        assert_eq!(onset_time("").unwrap(), None);
        assert_eq!(onset_time("1700000000").unwrap(), Some(1_700_000_000));
        assert_eq!(onset_time("1970-01-01T00:00").unwrap(), Some(0));
        assert_eq!(
            onset_time("2023-11-14T22:13:20").unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(onset_time("2024-02-29 12:00").unwrap(), Some(1_709_208_000));
        for bad in [
            "yesterday",
            "2024-13-01T00:00",
            "2024-01-01T25:00",
            "2024-01-01",
        ] {
            let error = onset_time(bad).unwrap_err();
            assert!(error.message.starts_with("onset: "), "{}", error.message);
        }
    }
}
