//! How an app's page groups the metric families it receives: a large exporter sends hundreds
//! (a node exporter about 290), one row each would run for thousands of pixels. Families are
//! grouped by the words their names start with, and only the groups that matter (a family
//! filling a signal, or one the app declares judged) are shown open. Pure rules, no HTML.

use vigil_core::model::MetricMeta;
use vigil_onboarding::{MetricSource, Signal};

/// Apps with at most this many families keep one table: a few rows need no folding.
pub const GROUPED_ABOVE: usize = 20;

/// A group of more families than this, named by the first word alone (`node`), splits by the
/// first two words (`node_cpu`, `node_memory`).
const SPLIT_ABOVE: usize = 24;

/// Families whose names start alike, in the order the report lists them.
#[derive(Debug)]
pub struct MetricGroup<'a> {
    /// The words the names share, without the underscore after them.
    pub prefix: &'a str,
    pub metrics: Vec<&'a MetricSource>,
    /// Families of the group that fill a signal or are declared judged.
    pub in_use: usize,
}

/// Whether a family matters to the guard: it fills a signal, or the app declares it judged.
pub fn is_in_use(metric: &MetricSource, declared: &[MetricMeta]) -> bool {
    metric.signals.iter().any(|signal| *signal != Signal::Other)
        || declared.iter().any(|meta| meta.name == metric.name)
}

/// `name` up to its `words`-th underscore; `None` when it has fewer underscores.
fn leading_words(name: &str, words: usize) -> Option<&str> {
    name.match_indices('_')
        .nth(words - 1)
        .map(|(position, _)| &name[..position])
}

/// The first word of a name, or the whole name without an underscore.
fn first_word(name: &str) -> &str {
    leading_words(name, 1).unwrap_or(name)
}

/// Appends `metric` to the group named `prefix`, opening one after the others if none is.
fn add_to<'a>(groups: &mut Vec<MetricGroup<'a>>, prefix: &'a str, metric: &'a MetricSource) {
    match groups.iter_mut().find(|group| group.prefix == prefix) {
        Some(group) => group.metrics.push(metric),
        None => groups.push(MetricGroup {
            prefix,
            metrics: vec![metric],
            in_use: 0,
        }),
    }
}

/// The families in groups by their first word, a large group split by the first two words
/// (a name of two words stays in its first word's group); groups in the order their first
/// family is listed, families in the report's order.
pub fn metric_groups<'a>(
    metrics: &'a [MetricSource],
    declared: &[MetricMeta],
) -> Vec<MetricGroup<'a>> {
    let mut by_first_word: Vec<MetricGroup<'a>> = Vec::new();
    for metric in metrics {
        add_to(&mut by_first_word, first_word(&metric.name), metric);
    }
    let mut groups: Vec<MetricGroup<'a>> = Vec::new();
    for coarse in by_first_word {
        if coarse.metrics.len() <= SPLIT_ABOVE {
            groups.push(coarse);
            continue;
        }
        for metric in coarse.metrics {
            let prefix = leading_words(&metric.name, 2).unwrap_or(coarse.prefix);
            add_to(&mut groups, prefix, metric);
        }
    }
    for group in &mut groups {
        group.in_use = group
            .metrics
            .iter()
            .filter(|metric| is_in_use(metric, declared))
            .count();
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_onboarding::MetricType;

    fn family(name: &str, signal: Signal) -> MetricSource {
        MetricSource {
            name: name.to_owned(),
            series: 1,
            hosts_reporting: 1,
            hosts_missing: Vec::new(),
            last_sample: 0,
            metric_type: MetricType::Gauge,
            unit: String::new(),
            signals: vec![signal],
            evidence: Vec::new(),
            pulled: false,
            suggested: None,
        }
    }

    fn prefixes(groups: &[MetricGroup<'_>]) -> Vec<(String, usize, usize)> {
        groups
            .iter()
            .map(|group| (group.prefix.to_owned(), group.metrics.len(), group.in_use))
            .collect()
    }

    #[test]
    fn small_groups_keep_the_first_word_and_large_ones_split_by_two() {
        let mut metrics = vec![
            family("go_goroutines", Signal::Other),
            family("node_cpu_seconds_total", Signal::Cpu),
        ];
        for index in 0..30 {
            metrics.push(family(&format!("node_disk_read_{index}"), Signal::Other));
        }
        metrics.push(family("node_load1", Signal::Load));
        metrics.push(family("go_gc_duration_seconds", Signal::Other));
        metrics.push(family("latency", Signal::Latency));
        let groups = metric_groups(&metrics, &[]);
        assert_eq!(
            prefixes(&groups),
            vec![
                ("go".to_owned(), 2, 0),
                ("node_cpu".to_owned(), 1, 1),
                ("node_disk".to_owned(), 30, 0),
                ("node".to_owned(), 1, 1),
                ("latency".to_owned(), 1, 1),
            ]
        );
    }

    #[test]
    fn a_declared_family_is_in_use_though_it_fills_no_signal() {
        let metrics = vec![family("orders_total", Signal::Other)];
        let declared = MetricMeta {
            name: "orders_total".to_owned(),
            kind: vigil_core::MetricKind::Business,
            unit: String::new(),
            direction: vigil_core::Direction::Decrease,
            critical: false,
            judged: true,
        };
        assert_eq!(
            metric_groups(&metrics, &[]).first().map(|g| g.in_use),
            Some(0)
        );
        let groups = metric_groups(&metrics, std::slice::from_ref(&declared));
        assert_eq!(groups.first().map(|group| group.in_use), Some(1));
    }
}
