//! The scorecard section of a release's page: every signal judged, healthy ones too, in a
//! table a person sorts by clicking a column's heading (links, no script). A large exporter's
//! hundreds of rows are folded after the first [`ROWS_SHOWN`].

use maud::{html, Markup};
use vigil_core::scorecard::{RowSort, Scorecard, ScorecardRow};
use vigil_core::text::{change_words, figure};
use vigil_core::Signal;

use super::view::Detail;
use crate::pages::html::{row_verdict_badge, time_element, verdict_words, Text};

/// Rows shown before the rest is folded behind a disclosure.
pub(super) const ROWS_SHOWN: usize = 40;

/// The headings of the scorecard's table, with the column each sorts by.
const HEADINGS: [(&str, Option<RowSort>); 9] = [
    ("Signal", Some(RowSort::Signal)),
    ("Verdict", Some(RowSort::Verdict)),
    ("Observed", None),
    ("Reference", None),
    ("Effect", Some(RowSort::Effect)),
    ("Score", Some(RowSort::Score)),
    ("Hosts", None),
    ("Note", None),
    ("Source", None),
];

/// The order the rows are shown in: a column and whether it runs downwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowOrder {
    pub(super) sort: RowSort,
    pub(super) descending: bool,
}

impl RowOrder {
    /// The link of a column's heading: the column in its own first order, or the other way
    /// round when it is the column sorted by already.
    fn link(self, column: RowSort) -> String {
        let descending = if column == self.sort {
            !self.descending
        } else {
            column.natural_descending()
        };
        let order = if descending { "desc" } else { "asc" };
        format!("?sort={}&order={order}#scorecard", column.as_str())
    }

    /// `aria-sort` of a column's heading.
    fn aria_sort(self, column: Option<RowSort>) -> Option<&'static str> {
        match column {
            Some(column) if column == self.sort => Some(if self.descending {
                "descending"
            } else {
                "ascending"
            }),
            _ => None,
        }
    }
}

impl Detail<'_> {
    pub(super) fn scorecard(&self) -> Markup {
        let unit_of = |name: &str| -> String {
            let from_window = self
                .bundle
                .ok()
                .into_iter()
                .flat_map(|bundle| bundle.metrics.iter());
            from_window
                .chain(&self.record.release.spec.metrics)
                .find(|meta| meta.name == name)
                .map_or_else(String::new, |meta| meta.unit.clone())
        };
        // Rows of the findings the learned stage set aside at the deciding step say so.
        let set_aside: Vec<String> = self
            .deciding()
            .map(|record| {
                record
                    .suppressed
                    .iter()
                    .map(|aside| aside.finding.signal.label())
                    .collect()
            })
            .unwrap_or_default();
        scorecard_section(self.scorecard, self.order, &unit_of, &set_aside)
    }
}

/// The section: the table of the first [`ROWS_SHOWN`] rows, the others folded in a second;
/// `unit_of` gives a metric's unit.
fn scorecard_section(
    scorecard: Result<&Scorecard, &str>,
    order: RowOrder,
    unit_of: &dyn Fn(&str) -> String,
    set_aside: &[String],
) -> Markup {
    let scorecard = match scorecard {
        Ok(scorecard) => scorecard,
        Err(why) => {
            return html! {
                section id="scorecard" aria-labelledby="scorecard-title" {
                    h2 id="scorecard-title" { "Scorecard" }
                    p class="help" { "No scorecard: " (Text(why)) "." }
                }
            };
        }
    };
    let (shown, folded) = scorecard
        .rows
        .split_at(scorecard.rows.len().min(ROWS_SHOWN));
    html! {
        section id="scorecard" aria-labelledby="scorecard-title" {
            h2 id="scorecard-title" { "Scorecard" }
            p class="help" {
                "Every signal judged at the step at " (time_element(scorecard.at)) " ("
                (verdict_words(Some(scorecard.verdict))) "), healthy ones too. "
                "Click a column's heading to sort by it."
            }
            @if scorecard.rows.is_empty() {
                p { "No signal in the release's window yet." }
            } @else {
                (scorecard_table(scorecard, shown, true, order, unit_of, set_aside))
                @if !folded.is_empty() {
                    details class="scorecard-more" {
                        summary { (folded.len()) " more rows" }
                        (scorecard_table(scorecard, folded, false, order, unit_of, set_aside))
                    }
                }
            }
        }
    }
}

fn scorecard_table(
    scorecard: &Scorecard,
    rows: &[ScorecardRow],
    first: bool,
    order: RowOrder,
    unit_of: &dyn Fn(&str) -> String,
    set_aside: &[String],
) -> Markup {
    html! {
        table class="scorecard" {
            @if first {
                caption {
                    (scorecard.rows.len()) " signals: observed on the release hosts against \
                     the reference hosts or their own history"
                }
            }
            thead {
                tr {
                    @for (heading, column) in HEADINGS {
                        th scope="col" aria-sort=[order.aria_sort(column)] {
                            @match column {
                                Some(column) => {
                                    a href=(order.link(column)) { (heading) }
                                    @if let Some(direction) = order.aria_sort(Some(column)) {
                                        " " span class="sorted" {
                                            (if direction == "descending" { "▼" } else { "▲" })
                                        }
                                    }
                                }
                                None => { (heading) }
                            }
                        }
                    }
                }
            }
            tbody {
                @for row in rows {
                    (scorecard_row(row, unit_of, set_aside.contains(&row.signal.label())))
                }
            }
        }
    }
}

/// One row; `set_aside` when the learned stage set its finding aside at the deciding step.
fn scorecard_row(row: &ScorecardRow, unit_of: &dyn Fn(&str) -> String, set_aside: bool) -> Markup {
    let unit = match &row.signal {
        Signal::Metric { name } => unit_of(name),
        Signal::Log { .. } => "lines".to_owned(),
        Signal::Silence | Signal::Rule { .. } | Signal::Alert { .. } => String::new(),
    };
    let value = |value: Option<f64>| match value {
        Some(value) if unit.is_empty() => figure(value),
        Some(value) => format!("{} {unit}", figure(value)),
        None => "–".to_owned(),
    };
    html! {
        tr class={ "row-" (row.verdict.as_str()) } {
            th scope="row" { (signal_cell(&row.signal)) }
            td { (row_verdict_badge(row.verdict)) }
            td class="number" { (value(row.observed)) }
            td class="number" {
                (value(row.reference))
                @if row.reference.is_some() {
                    " " span class="help" { "(" (Text(&row.compared_with)) ")" }
                }
            }
            td class="number" { (row.effect.map_or("–".to_owned(), change_words)) }
            td class="number" { (row.score.map_or("–".to_owned(), |score| format!("{score:.1}"))) }
            td class="number" { (row.hosts_affected) " of " (row.hosts_judged) }
            td {
                (Text(&row.note))
                @if set_aside {
                    " " span class="help suppressed" {
                        "(set aside by the learned stage: see the findings)"
                    }
                }
            }
            td {
                @if let Some(source) = row.source.as_deref().filter(|source| {
                    source.starts_with("http://") || source.starts_with("https://")
                }) {
                    a href=(source) rel="noopener noreferrer" { "query" }
                }
            }
        }
    }
}

fn signal_cell(signal: &Signal) -> Markup {
    match signal {
        Signal::Metric { name } => html! { code { (Text(name)) } },
        Signal::Log { text, level, .. } => html! {
            span class="signal-kind" { "log" @if !level.is_empty() { " " (Text(level)) } } " "
            code { (Text(text)) }
        },
        Signal::Silence => html! { span class="signal-kind" { "silence" } },
        Signal::Rule { name } => {
            html! { span class="signal-kind" { "rule" } " " code { (Text(name)) } }
        }
        Signal::Alert { name } => {
            html! { span class="signal-kind" { "alert" } " " code { (Text(name)) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::scorecard::RowVerdict;
    use vigil_core::Verdict;

    fn rows(count: usize) -> Scorecard {
        let rows = (0..count)
            .map(|index| ScorecardRow {
                signal: Signal::Metric {
                    name: format!("node_metric_{index:03}"),
                },
                verdict: if index == 7 {
                    RowVerdict::Recommend
                } else {
                    RowVerdict::Pass
                },
                observed: Some(1500.0 + index as f64),
                reference: Some(1500.0),
                effect: Some(index as f64 / 1500.0),
                score: Some(0.5),
                compared_with: "reference".to_owned(),
                hosts_affected: 0,
                hosts_judged: 3,
                note: "within bounds <b>".to_owned(),
                source: (index == 0).then(|| "javascript:alert(1)".to_owned()),
            })
            .collect();
        let mut scorecard = Scorecard {
            at: 1_700_000_000,
            verdict: Verdict::Anomaly,
            rows,
        };
        scorecard.sort_rows();
        scorecard
    }

    #[test]
    fn a_large_exporter_s_rows_fold_after_the_first_ones() {
        let scorecard = rows(500);
        let order = RowOrder {
            sort: RowSort::Verdict,
            descending: false,
        };
        let out = scorecard_section(Ok(&scorecard), order, &|_| "ms".to_owned(), &[]).into_string();
        let (open, folded) = out.split_at(out.find("<details").unwrap());
        assert_eq!(open.matches("<th scope=\"row\">").count(), ROWS_SHOWN);
        assert_eq!(
            folded.matches("<th scope=\"row\">").count(),
            500 - ROWS_SHOWN
        );
        assert!(folded.contains("<summary>460 more rows</summary>"));
        // The recommended row first, values in their unit, text escaped, no script link.
        assert!(open.find("node_metric_007").unwrap() < open.find("node_metric_000").unwrap());
        assert!(open.contains("1507 ms"), "{open}");
        assert!(open.contains("within bounds &lt;b&gt;"));
        assert!(!out.contains("javascript:"));
        assert!(open.contains("aria-sort=\"ascending\""));
        assert!(open.contains("href=\"?sort=effect&amp;order=desc#scorecard\""));
        assert!(open.contains("href=\"?sort=verdict&amp;order=desc#scorecard\""));
    }

    #[test]
    fn without_a_window_the_section_says_why() {
        let order = RowOrder {
            sort: RowSort::Effect,
            descending: true,
        };
        let out = scorecard_section(Err("no <data>"), order, &|_| String::new(), &[]).into_string();
        assert!(out.contains("No scorecard: no &lt;data&gt;."), "{out}");
    }
}
