//! A team's own rules (`vigil_core::rules`), judged at a step beside the funnel, on the same
//! prepared data.
//!
//! A rule's value at a step is the mean of the deployed release hosts' values of its metric
//! (hosts without a sample skipped), in the metric's own unit. It is compared with its bound: a
//! fixed value, the reference hosts' mean at the same step, or the release hosts' mean over the
//! baseline. A rule is broken when every step with data over its last `duration_seconds` up to
//! the step judged breaks the bound, that span lies after the warm-up of the first deploy, and
//! it holds at least one step with data. A rule without samples on deployed release hosts has
//! not enough data; a rule whose query could not be run is failing, which is said, never
//! skipped, and never pauses on its own.

use std::collections::BTreeMap;

use vigil_core::rules::{Bound, RelativeTo, Rule, RuleSource, Side};
use vigil_core::text::figure;
use vigil_core::{Finding, RowVerdict, ScorecardRow, Signal, Verdict};

use crate::prepare::{MetricData, Prepared};

/// A rule's value at the last step with data.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReading {
    /// The deployed release hosts' mean.
    pub observed: f64,
    /// The limit it must not pass.
    pub limit: f64,
    /// The reference's or baseline's value a relative bound is taken of.
    pub compared_with: Option<f64>,
    /// Deployed release hosts with a sample at that step.
    pub hosts: Vec<String>,
    /// Deployed release hosts.
    pub hosts_judged: usize,
    /// Unix time of that step.
    pub at: i64,
}

/// What became of one rule at the step judged.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleState {
    /// The bound was broken at every step with data for the rule's duration.
    Broken { reading: RuleReading, since: i64 },
    /// Within its bound, or not broken for long enough yet.
    Held(RuleReading),
    /// No sample of its metric on deployed release hosts (or nothing to compare with).
    NotEnoughData(String),
    /// Its query could not be run: the error.
    Failing(String),
}

/// One rule and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    pub rule: Rule,
    pub state: RuleState,
}

/// Judges every rule at step `now` of `prepared`. `failures` holds, by rule name, why a query
/// rule's query could not be run; such a rule is failing whatever data it has.
pub fn evaluate_rules(
    prepared: &Prepared,
    rules: &[Rule],
    now: usize,
    failures: &BTreeMap<String, String>,
) -> Vec<RuleOutcome> {
    rules
        .iter()
        .map(|rule| RuleOutcome {
            rule: rule.clone(),
            state: match failures.get(&rule.name) {
                Some(error) => RuleState::Failing(error.clone()),
                None => evaluate_rule(prepared, rule, now),
            },
        })
        .collect()
}

fn evaluate_rule(prepared: &Prepared, rule: &Rule, now: usize) -> RuleState {
    let Some(bound) = rule.bound() else {
        return RuleState::Failing("the rule gives no single bound".to_owned());
    };
    let Some(first_deploy) = prepared.first_deploy.filter(|&deploy| deploy <= now) else {
        return RuleState::NotEnoughData("no release host deployed yet".to_owned());
    };
    if now >= prepared.points {
        return RuleState::NotEnoughData("no sample at the step judged".to_owned());
    }
    let series = rule.series();
    let Some(metric) = prepared
        .metrics
        .iter()
        .find(|metric| metric.meta.name == series)
    else {
        return RuleState::NotEnoughData(format!("no sample of {series} yet"));
    };
    let baseline = match bound {
        Bound::Relative {
            relative_to: RelativeTo::Baseline,
            ..
        } => {
            let level = baseline_mean(prepared, metric);
            if !level.is_finite() {
                return RuleState::NotEnoughData(format!(
                    "no sample of {series} on release hosts before the first deploy"
                ));
            }
            Some(level)
        }
        _ => None,
    };
    let reading_at = |step: usize| -> Option<RuleReading> {
        let (observed, hosts, hosts_judged) = release_mean(prepared, metric, step);
        if hosts.is_empty() {
            return None;
        }
        let compared_with = match bound {
            Bound::Absolute { .. } => None,
            Bound::Relative {
                relative_to: RelativeTo::Reference,
                ..
            } => Some(reference_mean(prepared, metric, step)?),
            Bound::Relative {
                relative_to: RelativeTo::Baseline,
                ..
            } => baseline,
        };
        Some(RuleReading {
            observed,
            limit: bound.limit(compared_with.unwrap_or(0.0)),
            compared_with,
            hosts,
            hosts_judged,
            at: prepared.time_of(step),
        })
    };
    let Some(latest) = (first_deploy..=now).rev().find_map(reading_at) else {
        let missing = match bound {
            Bound::Relative {
                relative_to: RelativeTo::Reference,
                ..
            } => format!("no sample of {series} on deployed release hosts and reference hosts"),
            _ => format!("no sample of {series} on deployed release hosts"),
        };
        return RuleState::NotEnoughData(missing);
    };
    let span_steps = span_steps(rule.duration_seconds, prepared.step_seconds);
    let Some(span_start) = (now + 1).checked_sub(span_steps) else {
        return RuleState::Held(latest);
    };
    if span_start < first_deploy + prepared.warmup_steps {
        return RuleState::Held(latest);
    }
    let mut steps_with_data = 0;
    for step in span_start..=now {
        let Some(reading) = reading_at(step) else {
            continue;
        };
        steps_with_data += 1;
        if !bound.broken_by(reading.observed, reading.limit) {
            return RuleState::Held(latest);
        }
    }
    if steps_with_data == 0 {
        return RuleState::Held(latest);
    }
    RuleState::Broken {
        reading: latest,
        since: prepared.time_of(span_start),
    }
}

/// Steps a rule's duration spans, the step judged included: at least one.
fn span_steps(duration_seconds: i64, step_seconds: i64) -> usize {
    let step = step_seconds.max(1);
    let steps = (duration_seconds.max(0) + step - 1) / step;
    usize::try_from(steps).unwrap_or(usize::MAX).max(1)
}

/// A host's value at a step in the metric's own unit, if it has one.
fn raw_value(metric: &MetricData, host: usize, step: usize) -> Option<f64> {
    let value = *metric.values.get(host)?.get(step)?;
    if value.is_nan() {
        return None;
    }
    let raw = metric.transform.invert(value);
    raw.is_finite().then_some(raw)
}

/// The mean over the release hosts deployed at `step` that have a sample, the names of those
/// hosts, and how many release hosts were deployed.
fn release_mean(
    prepared: &Prepared,
    metric: &MetricData,
    step: usize,
) -> (f64, Vec<String>, usize) {
    let deployed: Vec<usize> = prepared
        .release
        .iter()
        .copied()
        .filter(|&host| {
            prepared.hosts[host]
                .deploy
                .is_some_and(|deploy| deploy <= step)
        })
        .collect();
    let mut total = 0.0;
    let mut hosts = Vec::new();
    for &host in &deployed {
        if let Some(value) = raw_value(metric, host, step) {
            total += value;
            hosts.push(prepared.hosts[host].name.clone());
        }
    }
    let mean = if hosts.is_empty() {
        f64::NAN
    } else {
        total / hosts.len() as f64
    };
    (mean, hosts, deployed.len())
}

/// The reference hosts' mean at `step`, if one has a sample.
fn reference_mean(prepared: &Prepared, metric: &MetricData, step: usize) -> Option<f64> {
    let values: Vec<f64> = prepared
        .reference
        .iter()
        .filter_map(|&host| raw_value(metric, host, step))
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// The release hosts' mean over the baseline; `NaN` without a sample there.
fn baseline_mean(prepared: &Prepared, metric: &MetricData) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for &host in &prepared.release {
        for step in prepared.baseline.clone() {
            if let Some(value) = raw_value(metric, host, step) {
                total += value;
                count += 1;
            }
        }
    }
    if count == 0 {
        return f64::NAN;
    }
    total / count as f64
}

/// What a rule looks at, in a finding's words: its metric, or its name for a query.
fn subject(rule: &Rule) -> String {
    match rule.source() {
        RuleSource::Metric(metric) => metric.to_owned(),
        RuleSource::Query(_) => format!("the query of {}", rule.name),
    }
}

/// The bound and duration in a finding's words: `below 0.990 for 120 s`.
fn bound_words(rule: &Rule) -> String {
    let bound = rule
        .bound()
        .map_or_else(|| "without a bound".to_owned(), |bound| bound.describe());
    format!("{bound} for {} s", rule.duration_seconds)
}

/// `observed / limit - 1`, or 0 against a limit of zero.
fn effect_of(reading: &RuleReading) -> f64 {
    if reading.limit == 0.0 || !reading.limit.is_finite() {
        return 0.0;
    }
    reading.observed / reading.limit - 1.0
}

/// The reading in words: `0.962 on 2 hosts`, with what it was compared with.
fn reading_words(reading: &RuleReading) -> String {
    let compared = reading
        .compared_with
        .map(|value| format!(" against {}", figure(value)))
        .unwrap_or_default();
    let hosts = reading.hosts.len();
    let noun = if hosts == 1 { "host" } else { "hosts" };
    format!("{}{compared} on {hosts} {noun}", figure(reading.observed))
}

/// The findings of the rules that are broken or failing: a broken rule's with its severity, a
/// failing rule's as an `anomaly` (it cannot pause on its own).
pub fn rule_findings(outcomes: &[RuleOutcome]) -> Vec<Finding> {
    outcomes.iter().filter_map(rule_finding).collect()
}

fn rule_finding(outcome: &RuleOutcome) -> Option<Finding> {
    let rule = &outcome.rule;
    let signal = Signal::Rule {
        name: rule.name.clone(),
    };
    // The way the rule watches: a broken rule's change, a failing one's concern.
    let direction = match rule.bound().map(|bound| bound.side()) {
        Some(Side::Below) => "down",
        _ => "up",
    };
    match &outcome.state {
        RuleState::Broken { reading, since } => {
            let evidence = format!(
                "rule: {} {} ({})",
                subject(rule),
                bound_words(rule),
                reading_words(reading)
            );
            let explanation = format!(
                "{evidence}: rule {} is broken on {} of {} release hosts",
                rule.name,
                reading.hosts.len(),
                reading.hosts_judged
            );
            Some(Finding {
                severity: rule.severity.verdict(),
                signal,
                hosts: reading.hosts.clone(),
                hosts_judged: reading.hosts_judged,
                direction: direction.to_owned(),
                observed: reading.observed,
                expected: reading.limit,
                effect: effect_of(reading),
                score: 0.0,
                baseline: "bound".to_owned(),
                evidence,
                since: *since,
                explanation,
            })
        }
        RuleState::Failing(error) => {
            let evidence = format!("rule: {} could not be evaluated: {error}", rule.name);
            Some(Finding {
                severity: Verdict::Anomaly,
                signal,
                hosts: Vec::new(),
                hosts_judged: 0,
                direction: direction.to_owned(),
                observed: 0.0,
                expected: 0.0,
                effect: 0.0,
                score: 0.0,
                baseline: "bound".to_owned(),
                explanation: evidence.clone(),
                evidence,
                since: 0,
            })
        }
        RuleState::Held(_) | RuleState::NotEnoughData(_) => None,
    }
}

/// One scorecard row per rule: a broken rule fails or recommends by its severity, a held one
/// passes, one without data has not enough, a failing one fails with its error.
pub fn rule_rows(outcomes: &[RuleOutcome]) -> Vec<ScorecardRow> {
    outcomes.iter().map(rule_row).collect()
}

fn rule_row(outcome: &RuleOutcome) -> ScorecardRow {
    let rule = &outcome.rule;
    let signal = Signal::Rule {
        name: rule.name.clone(),
    };
    let bound = format!("{} {}", subject(rule), bound_words(rule));
    let row = |verdict: RowVerdict, reading: Option<&RuleReading>, note: String| ScorecardRow {
        signal: signal.clone(),
        verdict,
        observed: reading.map(|reading| reading.observed),
        reference: reading.map(|reading| reading.limit),
        effect: reading.map(effect_of),
        score: None,
        compared_with: "bound".to_owned(),
        hosts_affected: match (verdict, reading) {
            (RowVerdict::Fail | RowVerdict::Recommend, Some(reading)) => reading.hosts.len(),
            _ => 0,
        },
        hosts_judged: reading.map_or(0, |reading| reading.hosts_judged),
        note,
        source: None,
    };
    match &outcome.state {
        RuleState::Broken { reading, .. } => row(
            RowVerdict::of_severity(rule.severity.verdict()),
            Some(reading),
            format!("broken: {bound} ({})", reading_words(reading)),
        ),
        RuleState::Held(reading) => row(
            RowVerdict::Pass,
            Some(reading),
            format!("held: {bound} ({})", reading_words(reading)),
        ),
        RuleState::NotEnoughData(why) => {
            row(RowVerdict::NotEnoughData, None, format!("{bound}: {why}"))
        }
        RuleState::Failing(error) => row(
            RowVerdict::Fail,
            None,
            format!("{bound}: could not be evaluated: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests;
