//! A team's own rules: "pause when the success rate stays under 0.99 for two minutes".
//!
//! A rule names a metric the app sends (or a PromQL query the app's Prometheus answers per
//! host), a bound, how long the bound must be broken, and what a broken rule does (`fault`
//! pauses, `anomaly` recommends). An app's rules are part of its settings and are copied into a
//! release when it is created; a release may give its own, which replace the app's of the same
//! name. The bound reads, in JSON, as exactly one of:
//!
//! - `"above": x` / `"below": x`: broken when the value is above (below) `x`;
//! - `"above_by": r` / `"below_by": r` with `"relative_to": "reference"` or `"baseline"`: broken
//!   when the value is above (below) the reference hosts' value at the same step, or the release
//!   hosts' own level before the first deploy, by more than `r` of it (`0.2` = 20 %).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::validate::{self, Invalid, Problem};
use crate::verdict::Verdict;

/// Most rules one list (an app's, a release's) may hold.
pub const MAX_RULES: usize = 200;
/// Longest PromQL query of a rule, in bytes.
pub const MAX_RULE_QUERY_BYTES: usize = 10_000;
/// Longest a rule may have to stay broken: a day.
pub const MAX_RULE_DURATION_SECONDS: i64 = 86_400;
/// Largest relative margin (`above_by`, `below_by`): a hundred times the value compared with.
pub const MAX_RELATIVE_MARGIN: f64 = 100.0;

/// What a broken rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSeverity {
    /// Pause the release.
    Fault,
    /// Recommend a look.
    Anomaly,
}

impl RuleSeverity {
    pub fn verdict(self) -> Verdict {
        match self {
            RuleSeverity::Fault => Verdict::Fault,
            RuleSeverity::Anomaly => Verdict::Anomaly,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleSeverity::Fault => "fault",
            RuleSeverity::Anomaly => "anomaly",
        }
    }
}

/// What a relative bound is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelativeTo {
    /// The reference hosts' mean at the same step.
    Reference,
    /// The release hosts' mean over the baseline, before the first deploy.
    Baseline,
}

impl RelativeTo {
    pub fn as_str(self) -> &'static str {
        match self {
            RelativeTo::Reference => "reference",
            RelativeTo::Baseline => "baseline",
        }
    }
}

/// A rule as stored and as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule: `rule:NAME` in findings; a release's rule replaces the app's of the same
    /// name.
    pub name: String,
    /// A metric the app sends (pushed or pulled)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// ...or a PromQL query run on the app's Prometheus, per host by its host label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above_by: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_by: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<RelativeTo>,
    /// How long the bound must be broken, at every step with data, before the rule is broken;
    /// 0 breaks it at the first step.
    #[serde(default)]
    pub duration_seconds: i64,
    pub severity: RuleSeverity,
}

/// Which way a bound is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Above,
    Below,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Above => "above",
            Side::Below => "below",
        }
    }
}

/// A rule's bound, read from its fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Broken on the wrong side of a fixed value.
    Absolute { side: Side, limit: f64 },
    /// Broken on the wrong side of a value compared with, widened by `margin` of it.
    Relative {
        side: Side,
        margin: f64,
        relative_to: RelativeTo,
    },
}

impl Bound {
    pub fn side(&self) -> Side {
        match self {
            Bound::Absolute { side, .. } | Bound::Relative { side, .. } => *side,
        }
    }

    /// The limit a value must not pass, given the value compared with (the reference's or the
    /// baseline's) for a relative bound.
    pub fn limit(&self, compared_with: f64) -> f64 {
        match *self {
            Bound::Absolute { limit, .. } => limit,
            Bound::Relative { side, margin, .. } => match side {
                Side::Above => compared_with + compared_with.abs() * margin,
                Side::Below => compared_with - compared_with.abs() * margin,
            },
        }
    }

    /// Whether `value` breaks the bound at `limit`.
    pub fn broken_by(&self, value: f64, limit: f64) -> bool {
        match self.side() {
            Side::Above => value > limit,
            Side::Below => value < limit,
        }
    }

    /// The bound in words: `below 0.99`, `above the reference by 20 %`.
    pub fn describe(&self) -> String {
        match *self {
            Bound::Absolute { side, limit } => {
                format!("{} {}", side.as_str(), crate::text::figure(limit))
            }
            Bound::Relative {
                side,
                margin,
                relative_to,
            } => format!(
                "{} the {} by {} %",
                side.as_str(),
                relative_to.as_str(),
                crate::text::figure(margin * 100.0)
            ),
        }
    }
}

/// The rule's source, read from its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSource<'rule> {
    Metric(&'rule str),
    Query(&'rule str),
}

impl Rule {
    /// What the rule looks at; a query when both are given (validation refuses that).
    pub fn source(&self) -> RuleSource<'_> {
        match (&self.query, &self.metric) {
            (Some(query), _) => RuleSource::Query(query),
            (None, Some(metric)) => RuleSource::Metric(metric),
            (None, None) => RuleSource::Metric(""),
        }
    }

    /// The metric (series) the rule is judged on: its metric, or for a query the series the
    /// puller stores the query's results in ([`query_series`]).
    pub fn series(&self) -> String {
        match self.source() {
            RuleSource::Metric(metric) => metric.to_owned(),
            RuleSource::Query(_) => query_series(&self.name),
        }
    }

    /// The bound, or `None` for a rule that does not give exactly one (validation refuses it).
    pub fn bound(&self) -> Option<Bound> {
        let given = [self.above, self.below, self.above_by, self.below_by];
        if given.iter().filter(|value| value.is_some()).count() != 1 {
            return None;
        }
        if let Some(limit) = self.above {
            return Some(Bound::Absolute {
                side: Side::Above,
                limit,
            });
        }
        if let Some(limit) = self.below {
            return Some(Bound::Absolute {
                side: Side::Below,
                limit,
            });
        }
        let relative_to = self.relative_to?;
        let (side, margin) = match (self.above_by, self.below_by) {
            (Some(margin), _) => (Side::Above, margin),
            (None, Some(margin)) => (Side::Below, margin),
            (None, None) => return None,
        };
        Some(Bound::Relative {
            side,
            margin,
            relative_to,
        })
    }

    /// The rule's words, for a page: `success_rate below 0.99 for 120 s`.
    pub fn describe(&self) -> String {
        let subject = match self.source() {
            RuleSource::Metric(metric) => metric.to_owned(),
            RuleSource::Query(query) => format!("query {query:?}"),
        };
        let bound = self
            .bound()
            .map_or_else(|| "without a bound".to_owned(), |bound| bound.describe());
        format!("{subject} {bound} for {} s", self.duration_seconds)
    }
}

/// The series a query rule's results are stored in, per host: `rule:NAME`.
pub fn query_series(rule_name: &str) -> String {
    format!("rule:{rule_name}")
}

/// Checks one rule at `field` (`rules[2]`), naming the field at fault.
pub fn check_rule(rule: &Rule, field: &str) -> Result<(), Invalid> {
    validate::name(&rule.name).map_err(|problem| problem.at(format!("{field}.name")))?;
    match (&rule.metric, &rule.query) {
        (Some(metric), None) => {
            validate::name(metric).map_err(|problem| problem.at(format!("{field}.metric")))?;
        }
        (None, Some(query)) => {
            if query.trim().is_empty() {
                return Err(Problem::Empty.at(format!("{field}.query")));
            }
            validate::free_text(query, MAX_RULE_QUERY_BYTES)
                .map_err(|problem| problem.at(format!("{field}.query")))?;
        }
        _ => {
            return Err(Problem::Combination("needs exactly one of `metric` and `query`").at(field))
        }
    }
    let bounds = [
        ("above", rule.above),
        ("below", rule.below),
        ("above_by", rule.above_by),
        ("below_by", rule.below_by),
    ];
    let given: Vec<(&str, f64)> = bounds
        .iter()
        .filter_map(|(key, value)| value.map(|number| (*key, number)))
        .collect();
    let [(key, value)] = given.as_slice() else {
        return Err(Problem::Combination(
            "needs exactly one of `above`, `below`, `above_by` and `below_by`",
        )
        .at(field));
    };
    let relative = matches!(*key, "above_by" | "below_by");
    if relative {
        validate::number_in(*value, 0.0, MAX_RELATIVE_MARGIN)
            .map_err(|problem| problem.at(format!("{field}.{key}")))?;
        if rule.relative_to.is_none() {
            return Err(Problem::Combination(
                "needs `relative_to` (\"reference\" or \"baseline\") with a relative bound",
            )
            .at(format!("{field}.relative_to")));
        }
    } else {
        validate::number_in(*value, -f64::MAX, f64::MAX)
            .map_err(|problem| problem.at(format!("{field}.{key}")))?;
        if rule.relative_to.is_some() {
            return Err(Problem::Combination(
                "goes only with `above_by` or `below_by`, not with an absolute bound",
            )
            .at(format!("{field}.relative_to")));
        }
    }
    validate::whole_in(rule.duration_seconds, 0, MAX_RULE_DURATION_SECONDS)
        .map_err(|problem| problem.at(format!("{field}.duration_seconds")))?;
    Ok(())
}

/// Checks a list of rules at `field` (`rules`): at most [`MAX_RULES`], each valid, each name
/// given once.
pub fn check_rules(rules: &[Rule], field: &str) -> Result<(), Invalid> {
    if rules.len() > MAX_RULES {
        return Err(Problem::TooMany {
            count: rules.len(),
            limit: MAX_RULES,
        }
        .at(field));
    }
    let mut names = HashSet::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let at = format!("{field}[{index}]");
        check_rule(rule, &at)?;
        if !names.insert(rule.name.as_str()) {
            return Err(Problem::RepeatedRule(rule.name.clone()).at(format!("{at}.name")));
        }
    }
    Ok(())
}

/// The rules a release is judged by: its own, then its app's whose names it does not give.
pub fn merged_rules(own: Vec<Rule>, app: &[Rule]) -> Vec<Rule> {
    let given: HashSet<String> = own.iter().map(|rule| rule.name.clone()).collect();
    let mut merged = own;
    merged.extend(
        app.iter()
            .filter(|rule| !given.contains(&rule.name))
            .cloned(),
    );
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Rule {
        serde_json::from_str(text).expect("a rule")
    }

    fn refusal(text: &str) -> String {
        check_rules(&[read(text)], "rules")
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn each_bound_reads_from_its_json_shape() {
        let absolute = read(
            r#"{"name": "success", "metric": "success_rate", "below": 0.99, "duration_seconds": 120, "severity": "fault"}"#,
        );
        assert_eq!(
            check_rules(std::slice::from_ref(&absolute), "rules"),
            Ok(())
        );
        assert_eq!(
            absolute.bound(),
            Some(Bound::Absolute {
                side: Side::Below,
                limit: 0.99
            })
        );
        assert_eq!(absolute.describe(), "success_rate below 0.990 for 120 s");
        let relative = read(
            r#"{"name": "latency", "query": "sum by (host) (x)", "relative_to": "reference", "above_by": 0.2, "severity": "anomaly"}"#,
        );
        assert_eq!(
            check_rules(std::slice::from_ref(&relative), "rules"),
            Ok(())
        );
        let bound = relative.bound().expect("bound");
        assert_eq!(bound.limit(100.0), 120.0);
        assert!(bound.broken_by(121.0, bound.limit(100.0)));
        assert!(!bound.broken_by(119.0, bound.limit(100.0)));
        assert_eq!(relative.series(), "rule:latency");
        assert_eq!(relative.duration_seconds, 0);
        let below_baseline = read(
            r#"{"name": "rps", "metric": "rps", "relative_to": "baseline", "below_by": 0.5, "severity": "fault"}"#,
        );
        assert_eq!(below_baseline.bound().expect("bound").limit(-10.0), -15.0);
        let text = serde_json::to_string(&absolute).expect("json");
        assert_eq!(
            text,
            r#"{"name":"success","metric":"success_rate","below":0.99,"duration_seconds":120,"severity":"fault"}"#
        );
    }

    #[test]
    fn a_bad_rule_is_refused_naming_its_field() {
        assert_eq!(
            refusal(r#"{"name": "", "metric": "m", "above": 1, "severity": "fault"}"#),
            "rules[0].name: must not be empty"
        );
        assert_eq!(
            refusal(r#"{"name": "r", "above": 1, "severity": "fault"}"#),
            "rules[0]: needs exactly one of `metric` and `query`"
        );
        assert_eq!(
            refusal(
                r#"{"name": "r", "metric": "m", "query": "q", "above": 1, "severity": "fault"}"#
            ),
            "rules[0]: needs exactly one of `metric` and `query`"
        );
        assert_eq!(
            refusal(r#"{"name": "r", "query": "  ", "above": 1, "severity": "fault"}"#),
            "rules[0].query: must not be empty"
        );
        assert_eq!(
            refusal(r#"{"name": "r", "metric": "m", "severity": "fault"}"#),
            "rules[0]: needs exactly one of `above`, `below`, `above_by` and `below_by`"
        );
        assert_eq!(
            refusal(r#"{"name": "r", "metric": "m", "above": 1, "below": 0, "severity": "fault"}"#),
            "rules[0]: needs exactly one of `above`, `below`, `above_by` and `below_by`"
        );
        assert_eq!(
            refusal(r#"{"name": "r", "metric": "m", "above_by": 0.2, "severity": "fault"}"#),
            "rules[0].relative_to: needs `relative_to` (\"reference\" or \"baseline\") with a relative bound"
        );
        assert_eq!(
            refusal(
                r#"{"name": "r", "metric": "m", "above": 2, "relative_to": "reference", "severity": "fault"}"#
            ),
            "rules[0].relative_to: goes only with `above_by` or `below_by`, not with an absolute bound"
        );
        assert_eq!(
            refusal(
                r#"{"name": "r", "metric": "m", "below_by": -1, "relative_to": "baseline", "severity": "fault"}"#
            ),
            "rules[0].below_by: must be between 0 and 100"
        );
        assert_eq!(
            refusal(
                r#"{"name": "r", "metric": "m", "above": 1, "duration_seconds": -5, "severity": "fault"}"#
            ),
            "rules[0].duration_seconds: must be between 0 and 86400"
        );
        assert_eq!(
            refusal("{\"name\": \"r\", \"metric\": \"m\\u001b\", \"above\": 1, \"severity\": \"fault\"}"),
            "rules[0].metric: holds a control character at byte 1"
        );
        let twice = vec![
            read(r#"{"name": "r", "metric": "m", "above": 1, "severity": "fault"}"#),
            read(r#"{"name": "r", "metric": "n", "above": 1, "severity": "anomaly"}"#),
        ];
        assert_eq!(
            check_rules(&twice, "rules").expect_err("twice").to_string(),
            "rules[1].name: names rule \"r\" a second time"
        );
        assert!(serde_json::from_str::<Rule>(
            r#"{"name": "r", "metric": "m", "above": 1, "severity": "healthy"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Rule>(
            r#"{"name": "r", "metric": "m", "above": 1, "severity": "fault", "for": 3}"#
        )
        .is_err());
    }

    #[test]
    fn a_release_rule_replaces_the_app_rule_of_its_name() {
        let app = vec![
            read(r#"{"name": "a", "metric": "m", "above": 1, "severity": "fault"}"#),
            read(r#"{"name": "b", "metric": "m", "above": 2, "severity": "anomaly"}"#),
        ];
        let own = vec![read(
            r#"{"name": "b", "metric": "m", "above": 5, "severity": "fault"}"#,
        )];
        let merged = merged_rules(own.clone(), &app);
        let names: Vec<(&str, Option<f64>)> = merged
            .iter()
            .map(|rule| (rule.name.as_str(), rule.above))
            .collect();
        assert_eq!(names, [("b", Some(5.0)), ("a", Some(1.0))]);
        assert_eq!(merged_rules(Vec::new(), &app), app);
    }
}
