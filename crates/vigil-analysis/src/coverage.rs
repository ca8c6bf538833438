//! Silence is a signal, never a pass: which deployed release hosts and judged metrics stopped
//! reporting, since when, and which release hosts fell silent while their peers kept reporting
//! (a crashed host looks like this).
//!
//! A release is covered at a step when every deployed release host past its warm-up
//! - sent something in the last [`SILENT_STEPS`] steps,
//! - sent every judged critical metric in the last [`SILENT_STEPS`] steps,
//! - and sent every judged metric it usually sends (in most of its baseline steps; critical
//!   metrics always) in most of its steps since its warm-up.
//!
//! A judgement without coverage can pause the release but never pass it.

use crate::prepare::Prepared;
use crate::settings::Settings;

/// Consecutive steps without a sample after which a host or a critical metric counts as
/// silent: one late step is jitter, two are a gap.
pub const SILENT_STEPS: usize = 2;

/// Share of the steps since its warm-up (or of its baseline steps) in which a host must have
/// sent a metric: "most of the observation".
const MOST: f64 = 0.5;

/// Why a release is not covered at a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// The host sent no sample of any metric after step `last` (`None`: none in the window).
    SilentHost { host: usize, last: Option<usize> },
    /// The host sent no sample of the critical metric after step `last`.
    SilentMetric {
        metric: usize,
        host: usize,
        last: Option<usize>,
    },
    /// The host sent the metric in only `reported` of its `steps` steps since its warm-up.
    Sparse {
        metric: usize,
        host: usize,
        reported: usize,
        steps: usize,
    },
}

/// A release host silent for at least the configured time while its peers report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentHost {
    pub host: usize,
    /// The first step it sent nothing in (its deploy step when it sent nothing since).
    pub since: usize,
    /// Peers that reported in the last [`SILENT_STEPS`] steps, of how many.
    pub peers_reporting: usize,
    pub peers: usize,
}

/// What the data of a release covers at one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coverage {
    pub gaps: Vec<Gap>,
    /// Release hosts silent long enough, while their peers report, to be a fault.
    pub silent_hosts: Vec<SilentHost>,
}

impl Coverage {
    /// True when every deployed host sent every judged metric as it should: only then may a
    /// release pass.
    pub fn complete(&self) -> bool {
        self.gaps.is_empty()
    }

    /// One line naming the hosts and metrics missing and since when, or `None` when complete.
    pub fn reason(&self, prepared: &Prepared) -> Option<String> {
        let parts = self.gap_texts(prepared);
        let (first, rest) = parts.split_first()?;
        const SHOWN: usize = 3;
        let mut text = format!("waiting for data: {first}");
        for part in rest.iter().take(SHOWN - 1) {
            text.push_str("; ");
            text.push_str(part);
        }
        if rest.len() >= SHOWN {
            text.push_str(&format!("; and {} more", rest.len() + 1 - SHOWN));
        }
        Some(text)
    }

    /// One text per silent host, per silent metric (its hosts together when silent since the
    /// same step) and per sparse metric on a host.
    fn gap_texts(&self, prepared: &Prepared) -> Vec<String> {
        let host_name = |host: usize| prepared.hosts[host].name.as_str();
        let since = |last: Option<usize>| match last {
            Some(step) => format!(
                "since {}",
                vigil_core::text::clock_time_utc(prepared.time_of(step))
            ),
            None => "in the whole window".to_owned(),
        };
        let mut texts = Vec::new();
        let mut silent_metrics: Vec<(usize, Option<usize>, Vec<&str>)> = Vec::new();
        for gap in &self.gaps {
            match *gap {
                Gap::SilentHost { host, last } => {
                    texts.push(format!("{} sent nothing {}", host_name(host), since(last)));
                }
                Gap::SilentMetric { metric, host, last } => {
                    match silent_metrics
                        .iter_mut()
                        .find(|(known, known_last, _)| *known == metric && *known_last == last)
                    {
                        Some((_, _, hosts)) => hosts.push(host_name(host)),
                        None => silent_metrics.push((metric, last, vec![host_name(host)])),
                    }
                }
                Gap::Sparse {
                    metric,
                    host,
                    reported,
                    steps,
                } => texts.push(format!(
                    "{} sent {} in only {reported} of {steps} steps since its warm-up",
                    host_name(host),
                    prepared.metrics[metric].meta.name
                )),
            }
        }
        for (metric, last, hosts) in silent_metrics {
            texts.push(format!(
                "{} sent no {} {}",
                hosts.join(", "),
                prepared.metrics[metric].meta.name,
                since(last)
            ));
        }
        texts
    }
}

/// The coverage of a release at step `now`: `judged[m]` says whether metric `m` is judged.
pub fn coverage_at(
    prepared: &Prepared,
    settings: &Settings,
    judged: &[bool],
    now: usize,
) -> Coverage {
    let mut coverage = Coverage::default();
    let step_seconds = prepared.step_seconds.max(1);
    let fault_steps = usize::try_from(settings.silent_host_fault_seconds.max(0) / step_seconds)
        .unwrap_or(usize::MAX)
        .max(SILENT_STEPS);
    for &host in &prepared.release {
        let Some(deploy) = prepared.hosts[host].deploy.filter(|&deploy| deploy <= now) else {
            continue;
        };
        let judged_from = deploy + prepared.warmup_steps;
        if now < judged_from {
            continue;
        }
        let last = last_sample(prepared, host, None, now);
        if silent_steps(last, judged_from, now) >= SILENT_STEPS {
            coverage.gaps.push(Gap::SilentHost { host, last });
            // Silent since its deploy (or since it last sent something after it).
            let since = last.map_or(deploy, |last| (last + 1).max(deploy));
            if now + 1 - since >= fault_steps {
                let (peers_reporting, peers) = peers_reporting(prepared, host, now);
                if peers > 0 && 2 * peers_reporting >= peers {
                    coverage.silent_hosts.push(SilentHost {
                        host,
                        since,
                        peers_reporting,
                        peers,
                    });
                }
            }
            continue;
        }
        for (metric, data) in prepared.metrics.iter().enumerate() {
            if !judged.get(metric).copied().unwrap_or(false) {
                continue;
            }
            let critical = data.meta.critical;
            if critical {
                let last = last_sample(prepared, host, Some(metric), now);
                if silent_steps(last, judged_from, now) >= SILENT_STEPS {
                    coverage.gaps.push(Gap::SilentMetric { metric, host, last });
                    continue;
                }
            }
            let steps = now + 1 - judged_from;
            let reported = data.values[host][judged_from..=now]
                .iter()
                .filter(|value| value.is_finite())
                .count();
            let sparse =
                steps - reported >= SILENT_STEPS && (reported as f64) < MOST * steps as f64;
            // Checked last: most metrics are sent, and the baseline is longer than the rest.
            if sparse && (critical || usually_sent(prepared, host, metric, deploy)) {
                coverage.gaps.push(Gap::Sparse {
                    metric,
                    host,
                    reported,
                    steps,
                });
            }
        }
    }
    coverage
}

/// The last step at or before `now` in which `host` sent `metric` (any metric for `None`).
fn last_sample(
    prepared: &Prepared,
    host: usize,
    metric: Option<usize>,
    now: usize,
) -> Option<usize> {
    let sent = |step: usize| match metric {
        Some(metric) => prepared.metrics[metric].values[host][step].is_finite(),
        None => prepared
            .metrics
            .iter()
            .any(|data| data.values[host][step].is_finite()),
    };
    (0..=now.min(prepared.points.saturating_sub(1)))
        .rev()
        .find(|&step| sent(step))
}

/// Steps from `judged_from` to `now` after the last sample: silence during the warm-up is
/// the restart's, not yet a gap.
fn silent_steps(last: Option<usize>, judged_from: usize, now: usize) -> usize {
    let first_silent = last.map_or(judged_from, |last| (last + 1).max(judged_from));
    (now + 1).saturating_sub(first_silent)
}

/// Whether `host` sent `metric` in most of its baseline steps before its deploy: a metric it
/// seldom sends is not expected of it afterwards either.
fn usually_sent(prepared: &Prepared, host: usize, metric: usize, deploy: usize) -> bool {
    let baseline = prepared.baseline.start..prepared.baseline.end.min(deploy);
    if baseline.is_empty() {
        return false;
    }
    let sent = prepared.metrics[metric].values[host][baseline.clone()]
        .iter()
        .filter(|value| value.is_finite())
        .count();
    sent as f64 >= MOST * baseline.len() as f64
}

/// How many of a release host's peers sent anything in the last [`SILENT_STEPS`] steps, of
/// how many: the reference hosts, or without them the other deployed release hosts.
fn peers_reporting(prepared: &Prepared, host: usize, now: usize) -> (usize, usize) {
    let peers: Vec<usize> = if prepared.reference.is_empty() {
        prepared
            .release
            .iter()
            .copied()
            .filter(|&other| other != host && prepared.hosts[other].deploy.is_some())
            .collect()
    } else {
        prepared.reference.clone()
    };
    let recent = (now + 1).saturating_sub(SILENT_STEPS)..=now;
    let reporting = peers
        .iter()
        .filter(|&&peer| {
            recent.clone().any(|step| {
                prepared
                    .metrics
                    .iter()
                    .any(|data| data.values[peer][step].is_finite())
            })
        })
        .count();
    (reporting, peers.len())
}
