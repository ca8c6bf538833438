//! The replays of stored history this server keeps in memory: what one asks for, and each run
//! with its progress and figures. One runs at a time; the last few are kept.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vigil_guard::history::HistoryReport;

use crate::error::ApiError;
use crate::request::parse_body;

/// Runs kept in memory, newest last; older ones are forgotten.
pub const KEPT_REPLAYS: usize = 5;

/// Largest request body of `POST /api/v1/replays`, in bytes.
pub const MAX_REPLAY_BODY_BYTES: usize = 4096;

/// Which model the replay's learned stage applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// The promoted model, or the funnel alone when none is promoted.
    Promoted,
    /// The funnel alone.
    None,
    /// A stored model, by version.
    Version(i64),
}

impl ModelChoice {
    /// `promoted`, `none` or a version number, as a request gives it.
    pub fn parse(text: &str) -> Result<ModelChoice, ApiError> {
        match text.trim() {
            "promoted" | "" => Ok(ModelChoice::Promoted),
            "none" => Ok(ModelChoice::None),
            number => match number.parse::<i64>() {
                Ok(version) if version > 0 => Ok(ModelChoice::Version(version)),
                _ => Err(bad_model()),
            },
        }
    }

    fn from_json(value: Option<&serde_json::Value>) -> Result<ModelChoice, ApiError> {
        match value {
            None => Ok(ModelChoice::Promoted),
            Some(serde_json::Value::String(text)) if !text.trim().is_empty() => {
                ModelChoice::parse(text)
            }
            Some(serde_json::Value::Number(number)) => match number.as_i64() {
                Some(version) if version > 0 => Ok(ModelChoice::Version(version)),
                _ => Err(bad_model()),
            },
            Some(_) => Err(bad_model()),
        }
    }

    pub(crate) fn label(self) -> String {
        match self {
            ModelChoice::Promoted => "promoted".to_owned(),
            ModelChoice::None => "none".to_owned(),
            ModelChoice::Version(version) => version.to_string(),
        }
    }
}

fn bad_model() -> ApiError {
    ApiError::bad_request("model: must be \"promoted\", \"none\" or a model version number")
}

/// What a replay is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayAsk {
    pub model: ModelChoice,
    /// The releases of this app only; every app's when none.
    pub app: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    app: Option<String>,
}

impl ReplayAsk {
    /// A request body: `{"model": "promoted" | "none" | version, "app": name}`, both
    /// optional; an empty body asks for the promoted model on every app.
    pub(crate) fn from_body(body: &[u8]) -> Result<ReplayAsk, ApiError> {
        if body.len() > MAX_REPLAY_BODY_BYTES {
            return Err(ApiError::too_large(format!(
                "body: a replay request is at most {MAX_REPLAY_BODY_BYTES} bytes"
            )));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(ReplayAsk {
                model: ModelChoice::Promoted,
                app: None,
            });
        }
        let parsed: ReplayBody = parse_body(body)?;
        ReplayAsk::new(ModelChoice::from_json(parsed.model.as_ref())?, parsed.app)
    }

    /// The ask, its app checked (an empty one means every app).
    pub fn new(model: ModelChoice, app: Option<String>) -> Result<ReplayAsk, ApiError> {
        let app = app.filter(|app| !app.trim().is_empty());
        if let Some(app) = &app {
            vigil_core::validate::name(app)
                .map_err(|problem| ApiError::bad_request(format!("app: {problem}")))?;
        }
        Ok(ReplayAsk { model, app })
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Finished,
    Failed,
}

/// One replay of the stored history.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRun {
    pub id: u64,
    pub state: RunState,
    /// As asked: `promoted`, `none` or a version number.
    pub model: String,
    /// The version of the model applied; none for the funnel alone.
    pub model_version: Option<i64>,
    pub app: Option<String>,
    pub started_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Labelled releases replayed so far, out of `total` (known once they are labelled).
    pub done: usize,
    pub total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The figures, once finished.
    pub result: Option<HistoryReport>,
}

/// The runs this server keeps.
#[derive(Debug, Default)]
pub struct Replays {
    runs: Mutex<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    last_id: u64,
    /// Newest last.
    kept: VecDeque<ReplayRun>,
}

impl Replays {
    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new running run, unless one runs already.
    pub(crate) fn begin(
        &self,
        ask: &ReplayAsk,
        model_version: Option<i64>,
        by: &str,
        at: i64,
    ) -> Result<u64, ApiError> {
        let mut runs = self.runs();
        if let Some(running) = runs.kept.iter().find(|run| run.state == RunState::Running) {
            return Err(ApiError::conflict(format!(
                "replay {} is running; one replay runs at a time",
                running.id
            )));
        }
        runs.last_id += 1;
        let id = runs.last_id;
        runs.kept.push_back(ReplayRun {
            id,
            state: RunState::Running,
            model: ask.model.label(),
            model_version,
            app: ask.app.clone(),
            started_by: by.to_owned(),
            started_at: at,
            finished_at: None,
            done: 0,
            total: None,
            error: None,
            result: None,
        });
        while runs.kept.len() > KEPT_REPLAYS {
            runs.kept.pop_front();
        }
        Ok(id)
    }

    pub(crate) fn update(&self, id: u64, change: impl FnOnce(&mut ReplayRun)) {
        if let Some(run) = self.runs().kept.iter_mut().find(|run| run.id == id) {
            change(run);
        }
    }

    /// The run with this id, if kept.
    pub fn get(&self, id: u64) -> Option<ReplayRun> {
        self.runs().kept.iter().find(|run| run.id == id).cloned()
    }

    /// The newest run, if any.
    pub fn latest(&self) -> Option<ReplayRun> {
        self.runs().kept.back().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn a_request_names_its_model_or_is_refused_naming_the_field() {
        let ask = |body: &str| ReplayAsk::from_body(body.as_bytes());
        assert_eq!(ask("").unwrap().model, ModelChoice::Promoted);
        assert_eq!(ask(r#"{"model":"none"}"#).unwrap().model, ModelChoice::None);
        assert_eq!(
            ask(r#"{"model":4,"app":"shop"}"#).unwrap(),
            ReplayAsk {
                model: ModelChoice::Version(4),
                app: Some("shop".into())
            }
        );
        for bad in [
            r#"{"model":"best"}"#,
            r#"{"model":0}"#,
            r#"{"model":1.5}"#,
            r#"{"model":[]}"#,
        ] {
            let error = ask(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(
                error.message.starts_with("model:"),
                "{bad}: {}",
                error.message
            );
        }
        let unknown = ask(r#"{"modle":"none"}"#).unwrap_err();
        assert!(unknown.message.contains("modle"), "{}", unknown.message);
        let bad_app = ask(r#"{"app":"a\u0007b"}"#).unwrap_err();
        assert!(bad_app.message.starts_with("app:"), "{}", bad_app.message);
        let huge = format!(r#"{{"app":"{}"}}"#, "a".repeat(MAX_REPLAY_BODY_BYTES));
        assert_eq!(
            ask(&huge).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn one_run_at_a_time_and_only_the_last_few_are_kept() {
        let replays = Replays::default();
        let ask = ReplayAsk {
            model: ModelChoice::None,
            app: None,
        };
        let first = replays.begin(&ask, None, "ops", 10).unwrap();
        let refused = replays.begin(&ask, None, "ops", 11).unwrap_err();
        assert_eq!(refused.status, StatusCode::CONFLICT);
        replays.update(first, |run| run.state = RunState::Finished);
        for at in 0..KEPT_REPLAYS as i64 {
            let id = replays.begin(&ask, None, "ops", 20 + at).unwrap();
            replays.update(id, |run| run.state = RunState::Finished);
        }
        assert!(replays.get(first).is_none());
        assert_eq!(replays.latest().unwrap().id, first + KEPT_REPLAYS as u64);
    }
}
