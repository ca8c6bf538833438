//! Detect log templates that are new on the release hosts, or much more frequent there than on
//! the reference hosts and than on the release hosts themselves before the deploy.

use crate::prepare::{LogData, Prepared};
use crate::settings::Settings;
use crate::stats;

/// A template that surges on release hosts at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvidence {
    /// Release hosts that logged it clearly above the expected rate.
    pub hosts: Vec<usize>,
    pub hosts_judged: usize,
    /// Lines seen on the judged release hosts in the window, and lines expected there.
    pub observed: f64,
    pub expected: f64,
    /// Natural log of the Poisson tail probability of seeing that many.
    pub tail_ln: f64,
    /// Lines per minute per affected host.
    pub rate_per_minute: f64,
    /// Whether the template was never seen before the deploy nor on the reference hosts.
    pub new: bool,
    pub since: usize,
}

/// Steps of the window the surge is measured over.
pub fn window_steps(settings: &Settings) -> usize {
    settings.persistence_steps.max(1) + 2
}

/// The surge test of one template at one step, surging or not.
#[derive(Debug, Clone, PartialEq)]
pub struct LogTest {
    /// The figures of the test; a finding when `surging`.
    pub evidence: LogEvidence,
    pub surging: bool,
}

/// The evidence of a template surging on release hosts at `now`, or `None`.
pub fn log_evidence(
    prepared: &Prepared,
    log: &LogData,
    now: usize,
    settings: &Settings,
) -> Option<LogEvidence> {
    log_test(prepared, log, now, settings)
        .filter(|test| test.surging)
        .map(|test| test.evidence)
}

/// The surge test of `log` at `now`, with its figures whether it surges or not; `None` when no
/// release host is judged yet.
pub fn log_test(
    prepared: &Prepared,
    log: &LogData,
    now: usize,
    settings: &Settings,
) -> Option<LogTest> {
    let window = window_steps(settings);
    let window_start = (now + 1).saturating_sub(window);
    let step_minutes = prepared.step_seconds as f64 / 60.0;
    let baseline = prepared.baseline.clone();

    // Expected lines per host and step: the most of the release hosts' own rate before the
    // deploy, the reference hosts' rate now, and less than one line in the whole baseline.
    let baseline_lines = log.release_baseline_lines;
    let baseline_exposure = (prepared.release.len() * baseline.len()) as f64;
    let own_rate = if baseline_exposure > 0.0 {
        baseline_lines / baseline_exposure
    } else {
        0.0
    };
    let reference_lines: f64 = prepared
        .reference
        .iter()
        .map(|&host| log.counts[host][window_start..=now].iter().sum::<f64>())
        .sum();
    let reference_exposure = (prepared.reference.len() * (now + 1 - window_start)) as f64;
    let reference_rate = if reference_exposure > 0.0 {
        reference_lines / reference_exposure
    } else {
        0.0
    };
    let reference_baseline_lines = log.reference_baseline_lines;
    let all_baseline_exposure = (prepared.hosts.len() * baseline.len()).max(1) as f64;
    let prior_rate = 1.0 / all_baseline_exposure;
    let expected_rate = own_rate.max(reference_rate).max(prior_rate);
    let new = baseline_lines == 0.0 && reference_lines == 0.0 && reference_baseline_lines == 0.0;

    let mut observed = 0.0;
    let mut exposure = 0usize;
    let mut hosts_judged = 0usize;
    let mut affected = Vec::new();
    let mut affected_lines = 0.0;
    let mut affected_exposure = 0usize;
    let mut steps_with_lines = std::collections::BTreeSet::new();
    for &host in &prepared.release {
        let Some(deploy) = prepared.hosts[host].deploy else {
            continue;
        };
        let judged_from = deploy + prepared.warmup_steps;
        if now < judged_from {
            continue;
        }
        hosts_judged += 1;
        let from = window_start.max(judged_from);
        let counts = &log.counts[host][from..=now];
        let lines: f64 = counts.iter().sum();
        observed += lines;
        exposure += counts.len();
        for (offset, count) in counts.iter().enumerate() {
            if *count > 0.0 {
                steps_with_lines.insert(from + offset);
            }
        }
        let host_expected = expected_rate * counts.len() as f64;
        if lines >= 2.0 && lines >= settings.log_min_ratio * host_expected {
            affected.push(host);
            affected_lines += lines;
            affected_exposure += counts.len();
        }
    }
    if hosts_judged == 0 || exposure == 0 {
        return None;
    }
    let expected = expected_rate * exposure as f64;
    let tail_ln = stats::poisson_upper_tail_ln(observed, expected);
    let surging = observed >= 3.0
        && observed >= settings.log_min_ratio * expected
        && tail_ln <= settings.log_max_tail_ln
        && steps_with_lines.len() >= 2
        && !affected.is_empty();
    let surplus = affected_lines - expected_rate * affected_exposure as f64;
    let rate_per_minute = surplus / (affected_exposure.max(1) as f64 * step_minutes);
    let since = steps_with_lines.iter().next().copied().unwrap_or(now);
    Some(LogTest {
        evidence: LogEvidence {
            hosts: affected,
            hosts_judged,
            observed,
            expected,
            tail_ln,
            rate_per_minute,
            new,
            since,
        },
        surging,
    })
}
