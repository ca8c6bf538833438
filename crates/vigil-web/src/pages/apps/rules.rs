//! The rules of an app's page: an admin adds or replaces a rule with a form, or removes one.
//! Both forms go through [`crate::rules::change_rules`], as `PUT /api/v1/apps/{app}/rules`
//! does, which checks the admin role itself.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vigil_core::release::Role;
use vigil_core::rules::{RelativeTo, Rule, RuleSeverity};

use super::super::html::url;
use super::super::session::{checked_form, SessionForm};
use super::super::PageError;
use super::choice;
use crate::error::ApiError;
use crate::rules::{change_rules, RuleChange};
use crate::state::AppState;

/// The bounds the form offers: value, words, and how it reads as a rule's fields.
pub(super) const RULE_BOUNDS: [(&str, &str); 6] = [
    ("below", "below a value"),
    ("above", "above a value"),
    ("below_reference", "below the reference hosts by a share"),
    ("above_reference", "above the reference hosts by a share"),
    (
        "below_baseline",
        "below its level before the deploy by a share",
    ),
    (
        "above_baseline",
        "above its level before the deploy by a share",
    ),
];

/// The severities the form offers: value and words.
pub(super) const RULE_SEVERITIES: [(&str, &str); 2] = [
    ("fault", "fault: pause the release"),
    ("anomaly", "anomaly: recommend a look"),
];

/// The fields of the rule forms.
#[derive(Debug, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    form_key: String,
    #[serde(default)]
    name: String,
    /// A metric the app sends, or a PromQL query (one of the two).
    #[serde(default)]
    metric: String,
    #[serde(default)]
    query: String,
    /// One of [`RULE_BOUNDS`].
    #[serde(default)]
    bound: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    duration_seconds: String,
    #[serde(default)]
    severity: String,
}

impl SessionForm for RuleForm {
    fn form_key(&self) -> &str {
        &self.form_key
    }
}

/// A form's text, `None` when left empty.
fn filled(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

impl RuleForm {
    /// The rule the form describes, its fields read as the JSON API reads them; the rule's
    /// own checks come when it is stored.
    fn rule(&self) -> Result<Rule, ApiError> {
        let value: f64 = self
            .value
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request("value: must be a number"))?;
        let duration_seconds = match filled(&self.duration_seconds) {
            Some(text) => text.parse::<i64>().map_err(|_| {
                ApiError::bad_request("duration_seconds: must be a whole number of seconds")
            })?,
            None => 0,
        };
        let severity = choice::<RuleSeverity>("severity", &self.severity)?;
        let mut rule = Rule {
            name: self.name.trim().to_owned(),
            metric: filled(&self.metric),
            query: filled(&self.query),
            above: None,
            below: None,
            above_by: None,
            below_by: None,
            relative_to: None,
            duration_seconds,
            severity,
        };
        match self.bound.trim() {
            "below" => rule.below = Some(value),
            "above" => rule.above = Some(value),
            "below_reference" | "below_baseline" => rule.below_by = Some(value),
            "above_reference" | "above_baseline" => rule.above_by = Some(value),
            other => {
                return Err(ApiError::bad_request(format!(
                    "bound: {other:?} is not one of the choices"
                )))
            }
        }
        rule.relative_to = match self.bound.trim() {
            "below_reference" | "above_reference" => Some(RelativeTo::Reference),
            "below_baseline" | "above_baseline" => Some(RelativeTo::Baseline),
            _ => None,
        };
        Ok(rule)
    }
}

/// A rule form's post, by an admin (see [`checked_form`]).
async fn rule_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    app: &str,
    form: Result<Form<RuleForm>, FormRejection>,
) -> Result<(vigil_core::release::ApiToken, RuleForm), PageError> {
    let back_to = format!("/apps/{}", url(app));
    let (session, request) = checked_form(state, headers, uri, back_to, Role::Admin, form).await?;
    Ok((session.token, request))
}

/// "Save this rule": an admin adds a rule, or replaces the app's rule of the same name.
pub async fn put_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<RuleForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (token, request) = rule_form(&state, &headers, &uri, &app, form).await?;
    let rule = request.rule()?;
    change_rules(&state, &token, app.clone(), RuleChange::Put(rule)).await?;
    Ok(Redirect::to(&format!("/apps/{}?done=rule#rules", url(&app))).into_response())
}

/// "Remove": an admin takes a rule out of the app's rules.
pub async fn remove_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(app): Path<String>,
    form: Result<Form<RuleForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (token, request) = rule_form(&state, &headers, &uri, &app, form).await?;
    let name = request.name.trim().to_owned();
    change_rules(&state, &token, app.clone(), RuleChange::Remove(name)).await?;
    Ok(Redirect::to(&format!("/apps/{}?done=unruled#rules", url(&app))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(bound: &str, value: &str) -> RuleForm {
        RuleForm {
            form_key: String::new(),
            name: " success ".to_owned(),
            metric: "success_rate".to_owned(),
            query: "  ".to_owned(),
            bound: bound.to_owned(),
            value: value.to_owned(),
            duration_seconds: String::new(),
            severity: "fault".to_owned(),
        }
    }

    #[test]
    fn a_rule_form_reads_as_the_json_rule_it_stands_for() {
        let absolute = form("below", "0.99").rule().expect("rule");
        let json: Rule = serde_json::from_str(
            r#"{"name": "success", "metric": "success_rate", "below": 0.99, "severity": "fault"}"#,
        )
        .expect("json");
        assert_eq!(absolute, json);
        let relative = form("above_reference", "0.2").rule().expect("rule");
        assert_eq!(relative.above_by, Some(0.2));
        assert_eq!(relative.relative_to, Some(RelativeTo::Reference));
        assert_eq!(
            form("sideways", "1").rule().expect_err("bound").message,
            "bound: \"sideways\" is not one of the choices"
        );
        assert_eq!(
            form("below", "lots").rule().expect_err("value").message,
            "value: must be a number"
        );
    }
}
