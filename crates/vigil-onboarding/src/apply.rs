//! Applying proposals: pull queries merged into an app's pull source, every query it already
//! has kept as it is.

use serde::{Deserialize, Serialize};
use vigil_guard::apps::{AppConfig, AppConfigError, PullQuery, PullSource};

use crate::discover::DiscoveryParams;

/// The app's settings after a merge, and what the merge did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub settings: AppConfig,
    /// Queries new to the pull source.
    pub added: Vec<PullQuery>,
    /// Queries left out, with the reason.
    pub skipped: Vec<SkippedQuery>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedQuery {
    pub query: PullQuery,
    pub reason: String,
}

/// Why queries cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "the app pulls from {configured}, not {asked}: one app pulls from one server \
         (change prometheus.url with PUT /api/v1/apps/{{app}} first)"
    )]
    OtherServer { configured: String, asked: String },
    #[error(
        "the app's pull source names hosts by label {configured}, not {asked}: its queries \
         must all keep the same host label"
    )]
    OtherHostLabel { configured: String, asked: String },
    #[error("nothing to apply: no query was proposed or given")]
    Nothing,
    #[error("the merged settings are not valid: {0}")]
    Invalid(#[from] AppConfigError),
}

/// Merges `queries` into the pull source of `current` (created from `params` when the app has
/// none). A query whose metric the source already pulls, or whose PromQL it already runs, is
/// skipped: nothing stored is replaced.
pub fn merge_queries(
    current: Option<&AppConfig>,
    params: &DiscoveryParams,
    queries: &[PullQuery],
) -> Result<Merged, ApplyError> {
    if queries.is_empty() {
        return Err(ApplyError::Nothing);
    }
    let mut settings = current.cloned().unwrap_or_default();
    let source = settings.prometheus.get_or_insert_with(|| PullSource {
        url: params.prometheus.clone(),
        host_label: params.host_label.clone(),
        step_seconds: params.step_seconds,
        queries: Vec::new(),
        selector: None,
    });
    if source.url.trim_end_matches('/') != params.prometheus.trim_end_matches('/') {
        return Err(ApplyError::OtherServer {
            configured: source.url.clone(),
            asked: params.prometheus.clone(),
        });
    }
    if source.host_label != params.host_label {
        return Err(ApplyError::OtherHostLabel {
            configured: source.host_label.clone(),
            asked: params.host_label.clone(),
        });
    }
    if source.selector.is_none() {
        source.selector = Some(params.selector.clone());
    }
    let mut added = Vec::new();
    let mut skipped = Vec::new();
    for query in queries {
        let same_metric = source
            .queries
            .iter()
            .find(|existing| existing.metric == query.metric);
        let same_query = source
            .queries
            .iter()
            .find(|existing| existing.query == query.query);
        let reason = match (same_metric, same_query) {
            (Some(existing), _) if existing.query == query.query => {
                Some("already pulled".to_owned())
            }
            (Some(_), _) => Some(format!(
                "metric {} is already pulled with another query",
                query.metric
            )),
            (None, Some(existing)) => Some(format!(
                "the same query is already pulled as metric {}",
                existing.metric
            )),
            (None, None) => None,
        };
        match reason {
            Some(reason) => skipped.push(SkippedQuery {
                query: query.clone(),
                reason,
            }),
            None => {
                source.queries.push(query.clone());
                added.push(query.clone());
            }
        }
    }
    settings.validate()?;
    Ok(Merged {
        settings,
        added,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(url: &str, host_label: &str) -> DiscoveryParams {
        DiscoveryParams::new(url, "job=\"shop\"", host_label, 30).unwrap()
    }

    fn query(metric: &str, promql: &str) -> PullQuery {
        PullQuery {
            metric: metric.into(),
            query: promql.into(),
        }
    }

    #[test]
    fn a_new_source_is_created_with_the_discovery_parameters() {
        let merged = merge_queries(
            None,
            &params("http://prom:9090/", "instance"),
            &[query(
                "load1",
                "max by (instance) (node_load1{job=\"shop\"})",
            )],
        )
        .unwrap();
        let source = merged.settings.prometheus.unwrap();
        assert_eq!(source.url, "http://prom:9090");
        assert_eq!(source.host_label, "instance");
        assert_eq!(source.step_seconds, 30);
        assert_eq!(source.selector.as_deref(), Some("job=\"shop\""));
        assert_eq!(source.queries.len(), 1);
        assert_eq!(merged.added.len(), 1);
    }

    #[test]
    fn existing_queries_and_settings_are_kept() {
        let current = AppConfig {
            prometheus: Some(PullSource {
                url: "http://prom:9090".into(),
                host_label: "instance".into(),
                step_seconds: 10,
                queries: vec![query("latency", "mine"), query("load1", "x")],
                selector: Some("app=\"shop\"".into()),
            }),
            log_pattern: Some("^(?P<message>.*)$".into()),
            metrics: Vec::new(),
            rules: Vec::new(),
        };
        let merged = merge_queries(
            Some(&current),
            &params("http://prom:9090", "instance"),
            &[
                query("load1", "x"),
                query("latency", "theirs"),
                query("other_name", "mine"),
                query("error_ratio", "e"),
            ],
        )
        .unwrap();
        let source = merged.settings.prometheus.as_ref().unwrap();
        assert_eq!(
            source.queries,
            vec![
                query("latency", "mine"),
                query("load1", "x"),
                query("error_ratio", "e")
            ]
        );
        assert_eq!(source.step_seconds, 10);
        assert_eq!(source.selector.as_deref(), Some("app=\"shop\""));
        assert_eq!(merged.settings.log_pattern, current.log_pattern);
        assert_eq!(merged.added, vec![query("error_ratio", "e")]);
        let reasons: Vec<&str> = merged
            .skipped
            .iter()
            .map(|skip| skip.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            [
                "already pulled",
                "metric latency is already pulled with another query",
                "the same query is already pulled as metric latency"
            ]
        );
    }

    #[test]
    fn another_server_or_host_label_or_nothing_is_refused() {
        let current = merge_queries(
            None,
            &params("http://a:9090", "instance"),
            &[query("m", "q")],
        )
        .unwrap()
        .settings;
        assert!(matches!(
            merge_queries(
                Some(&current),
                &params("http://b:9090", "instance"),
                &[query("n", "p")]
            ),
            Err(ApplyError::OtherServer { .. })
        ));
        assert!(matches!(
            merge_queries(
                Some(&current),
                &params("http://a:9090", "host"),
                &[query("n", "p")]
            ),
            Err(ApplyError::OtherHostLabel { .. })
        ));
        assert_eq!(
            merge_queries(Some(&current), &params("http://a:9090", "instance"), &[]),
            Err(ApplyError::Nothing)
        );
        assert!(matches!(
            merge_queries(
                None,
                &params("http://a:9090", "instance"),
                &[query(" ", "q")]
            ),
            Err(ApplyError::Invalid(AppConfigError::EmptyQuery(0)))
        ));
    }
}
