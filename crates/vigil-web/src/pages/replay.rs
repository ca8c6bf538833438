//! `/replay`: the replay of the team's stored releases. Operators start one with a model
//! (the promoted one, none, or a version); while it runs the page shows its progress and
//! `refresh.js` reloads it; once done, the figures, a table per cause, and a chart of
//! precision, recall and time to pause per day or week, with the same figures as a table.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use vigil_analysis::score::Figures;
use vigil_core::release::Role;
use vigil_core::text::utc_date;
use vigil_guard::history::HistoryReport;

use super::html::{time_element, Text};
use super::session::{checked_form, signed_in, Session, SessionForm};
use super::{html_page, PageError, Section};
use crate::replays::{start_replay, ModelChoice, ReplayAsk, ReplayRun, RunState};
use crate::state::AppState;

/// How often the script reloads the page while a replay runs, in milliseconds.
const RELOAD_MILLISECONDS: u32 = 2000;

pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let run = state.replays.latest();
    let body = view(&session, run.as_ref());
    Ok(html_page(
        StatusCode::OK,
        "Replay",
        Some(&session),
        Some(Section::Replay),
        body,
    ))
}

/// The start form's fields.
#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    form_key: String,
    /// `promoted` or `none`.
    #[serde(default)]
    model: String,
    /// A model version, overriding `model` when given.
    #[serde(default)]
    version: String,
    #[serde(default)]
    app: String,
}

impl SessionForm for ReplayForm {
    fn form_key(&self) -> &str {
        &self.form_key
    }
}

/// The start button: the same start as `POST /api/v1/replays`.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ReplayForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (session, request) = checked_form(
        &state,
        &headers,
        &uri,
        "/replay".to_owned(),
        Role::Operator,
        form,
    )
    .await?;
    let model = if request.version.trim().is_empty() {
        ModelChoice::parse(&request.model)?
    } else {
        ModelChoice::parse(&request.version)?
    };
    let ask = ReplayAsk::new(model, Some(request.app))?;
    start_replay(&state, &session.token, ask).await?;
    Ok(Redirect::to("/replay#latest").into_response())
}

fn view(session: &Session, run: Option<&ReplayRun>) -> Markup {
    let operator = session.token.role.allows(Role::Operator);
    let running = run.is_some_and(|run| run.state == RunState::Running);
    html! {
        h1 { "Replay of stored history" }
        p {
            "Replays every finished release this server stored through the analysis and a model, "
            "and scores it against what people said: a confirmed fault, a rollback after a pause "
            "or a missed fault is a fault; a false alarm, or a success nobody reviewed, is "
            "healthy. Releases still running, and those nothing labels, are left out."
        }
        @if operator && !running {
            form class="replay-start" method="post" action="/replay" {
                (session.form_field())
                label { "Model " select name="model" {
                    option value="promoted" { "the promoted model" }
                    option value="none" { "none (the funnel alone)" }
                } }
                " "
                label { "or version " input type="number" name="version" min="1" step="1" size="6"; }
                " "
                label { "App " input type="text" name="app" placeholder="every app" size="16"; }
                " "
                button type="submit" { "Start replay" }
            }
        }
        section id="latest" aria-labelledby="latest-heading" {
            h2 id="latest-heading" { "Latest replay" }
            @match run {
                None => p { "No replay was started since the server started." },
                Some(run) => (run_view(run)),
            }
        }
    }
}

fn run_view(run: &ReplayRun) -> Markup {
    let model_words = match run.model_version {
        Some(version) => format!("model version {version}"),
        None if run.model == "promoted" => "the funnel alone (no model is promoted)".to_owned(),
        None => "the funnel alone".to_owned(),
    };
    html! {
        p {
            "Replay " (run.id) " with " (Text(&model_words))
            @if let Some(app) = &run.app { " on app " strong { (Text(app)) } }
            ", started by " (Text(&run.started_by)) " at " (time_element(run.started_at)) "."
        }
        @match run.state {
            RunState::Running => {
                @let total = run.total.unwrap_or(0);
                p {
                    label for="replay-progress" { "Replaying: " }
                    progress id="replay-progress" data-reload=(RELOAD_MILLISECONDS)
                        value=(run.done) max=(total.max(1)) { (run.done) " of " (total) }
                    " " (run.done) " of " (total) " releases"
                }
            }
            RunState::Failed => p class="notice error" role="alert" {
                "The replay failed: " (Text(run.error.as_deref().unwrap_or("unknown error")))
            },
            RunState::Finished => @if let Some(report) = &run.result { (report_view(report)) },
        }
    }
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(
        || "n/a".to_owned(),
        |value| format!("{:.1} %", value * 100.0),
    )
}

fn minutes(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.1} min"))
}

/// Precision where something was paused, recall where something was faulty; none otherwise.
fn precision_of(figures: &Figures) -> Option<f64> {
    (figures.tp + figures.fp > 0).then_some(figures.precision)
}

fn recall_of(figures: &Figures) -> Option<f64> {
    (figures.tp + figures.fn_ > 0).then_some(figures.recall)
}

fn report_view(report: &HistoryReport) -> Markup {
    let counts = &report.counts;
    let overall = &report.overall;
    let period_word = if report.period == "week" {
        "Week of"
    } else {
        "Day"
    };
    html! {
        dl class="replay-figures" {
            dt { "Releases scored" } dd { (report.releases.len()) " of " (counts.stored) " stored" }
            dt { "Faults" } dd { (counts.faults) }
            dt { "Healthy" } dd { (counts.healthy_reviewed) " marked a false alarm, " (counts.healthy_unreviewed) " unreviewed" }
            dt { "Left out" } dd { (counts.running) " running, " (counts.unlabelled) " unlabelled" }
            @if counts.failed > 0 { dt { "Not replayed" } dd { (counts.failed) } }
            dt { "Precision" } dd id="replay-precision" { (rate(precision_of(overall))) }
            dt { "Recall" } dd id="replay-recall" { (rate(recall_of(overall))) }
            dt { "Time to pause" } dd { "median " (minutes(overall.delay_min_median)) ", 90th percentile " (minutes(overall.delay_min_p90)) }
            dt { "False recommendations" } dd { (rate(overall.healthy_recommended)) " of healthy releases" }
            dt { "Recommendation precision" } dd { (rate(overall.recommendation_precision)) }
        }
        h3 { "Per cause" }
        table class="replay-causes" {
            thead { tr {
                th scope="col" { "Cause" } th scope="col" { "Releases" } th scope="col" { "Paused" }
                th scope="col" { "Precision" } th scope="col" { "Recall" }
                th scope="col" { "Time to pause, median" } th scope="col" { "90th percentile" }
            } }
            tbody {
                @for row in &report.per_cause {
                    tr {
                        th scope="row" { (Text(&row.cause)) }
                        td { (row.figures.releases) }
                        td { (row.figures.tp + row.figures.fp) }
                        td { (rate(precision_of(&row.figures))) }
                        td { (rate(recall_of(&row.figures))) }
                        td { (minutes(row.figures.delay_min_median)) }
                        td { (minutes(row.figures.delay_min_p90)) }
                    }
                }
            }
        }
        h3 { "Over time, per " (report.period) " of the release's creation" }
        (over_time_chart(report))
        table class="replay-over-time" {
            thead { tr {
                th scope="col" { (period_word) " (UTC)" } th scope="col" { "Releases" }
                th scope="col" { "Precision" } th scope="col" { "Recall" }
                th scope="col" { "Time to pause, median" } th scope="col" { "90th percentile" }
            } }
            tbody {
                @for point in &report.over_time {
                    tr {
                        th scope="row" { (utc_date(point.start)) }
                        td { (point.figures.releases) }
                        td { (rate(precision_of(&point.figures))) }
                        td { (rate(recall_of(&point.figures))) }
                        td { (minutes(point.figures.delay_min_median)) }
                        td { (minutes(point.figures.delay_min_p90)) }
                    }
                }
            }
        }
    }
}

const WIDTH: f64 = 760.0;
const PANEL_HEIGHT: f64 = 150.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const GAP: f64 = 44.0;
const BOTTOM: f64 = 28.0;
const RECALL_DASH: &str = "7 4";
const P90_DASH: &str = "2 3";

/// One line of the chart: its values per period (none where it is undefined).
struct Line<'a> {
    name: &'a str,
    colour: &'a str,
    dash: Option<&'a str>,
    values: Vec<Option<f64>>,
}

/// SVG elements are closed (`{}`), never left void: inside `<svg>` an element without its end
/// tag would hold every later one.
///
/// Two panels over the same periods: precision and recall (0 to 100 %) above, time to pause
/// (median and 90th percentile, minutes) below. Lines differ by dash and marker as well as
/// colour; a line breaks where its figure is undefined.
fn over_time_chart(report: &HistoryReport) -> Markup {
    let points = &report.over_time;
    let count = points.len().max(1);
    let plot_width = WIDTH - LEFT - RIGHT;
    let x_of = |index: usize| LEFT + plot_width * (index as f64 + 0.5) / count as f64;
    let upper_top = TOP;
    let lower_top = TOP + PANEL_HEIGHT + GAP;
    let height = lower_top + PANEL_HEIGHT + BOTTOM;
    let rates = [
        Line {
            name: "Precision",
            colour: "#1f6feb",
            dash: None,
            values: points
                .iter()
                .map(|point| precision_of(&point.figures))
                .collect(),
        },
        Line {
            name: "Recall",
            colour: "#b35900",
            dash: Some(RECALL_DASH),
            values: points
                .iter()
                .map(|point| recall_of(&point.figures))
                .collect(),
        },
    ];
    let delays = [
        Line {
            name: "Time to pause, median",
            colour: "#2f7d32",
            dash: None,
            values: points
                .iter()
                .map(|point| point.figures.delay_min_median)
                .collect(),
        },
        Line {
            name: "Time to pause, 90th percentile",
            colour: "#8250df",
            dash: Some(P90_DASH),
            values: points
                .iter()
                .map(|point| point.figures.delay_min_p90)
                .collect(),
        },
    ];
    let most_minutes = delays
        .iter()
        .flat_map(|line| line.values.iter().flatten().copied())
        .fold(0.0_f64, f64::max);
    let minutes_top = nice_ceiling(most_minutes);
    let upper_y = |value: f64| upper_top + PANEL_HEIGHT * (1.0 - value.clamp(0.0, 1.0));
    let lower_y =
        |value: f64| lower_top + PANEL_HEIGHT * (1.0 - (value / minutes_top).clamp(0.0, 1.0));
    let label_every = count.div_ceil(8).max(1);
    let description = format!(
        "{} {}s of releases. Upper panel: precision and recall from 0 to 100 percent. Lower \
         panel: time from the fault's onset to the pause, median and 90th percentile, from 0 \
         to {} minutes. The table below gives the same figures.",
        points.len(),
        report.period,
        format_number(minutes_top)
    );
    html! {
        figure class="chart replay-chart" {
            svg class="chart-svg" viewBox=(format!("0 0 {WIDTH} {height}")) role="img"
                aria-labelledby="replay-chart-title replay-chart-desc" {
                title id="replay-chart-title" { "Precision, recall and time to pause per " (report.period) }
                desc id="replay-chart-desc" { (Text(&description)) }
                (panel_frame(upper_top, plot_width, &[(0.0, "0 %"), (0.5, "50 %"), (1.0, "100 %")]))
                @let minute_ticks = [
                    (0.0, "0 min".to_owned()),
                    (0.5, format!("{} min", format_number(minutes_top / 2.0))),
                    (1.0, format!("{} min", format_number(minutes_top))),
                ];
                @let minute_ticks: Vec<(f64, &str)> = minute_ticks.iter().map(|(at, text)| (*at, text.as_str())).collect();
                (panel_frame(lower_top, plot_width, &minute_ticks))
                @for line in &rates { (draw_line(line, &x_of, &upper_y)) }
                @for line in &delays { (draw_line(line, &x_of, &lower_y)) }
                @for (index, point) in points.iter().enumerate() {
                    @if index % label_every == 0 {
                        text class="tick" x=(format_number(x_of(index))) y=(format_number(height - 8.0)) text-anchor="middle" {
                            (utc_date(point.start))
                        }
                    }
                }
                (legend(&rates, 8.0))
                (legend(&delays, lower_top - 14.0))
            }
        }
    }
}

/// A panel's frame with its value ticks (`(share of the height from the bottom, text)`).
fn panel_frame(top: f64, plot_width: f64, ticks: &[(f64, &str)]) -> Markup {
    html! {
        rect class="frame" x=(format_number(LEFT)) y=(format_number(top))
            width=(format_number(plot_width)) height=(format_number(PANEL_HEIGHT)) {}
        @for (share, text) in ticks {
            @let y = top + PANEL_HEIGHT * (1.0 - share);
            line class="grid" x1=(format_number(LEFT)) x2=(format_number(LEFT + plot_width))
                y1=(format_number(y)) y2=(format_number(y)) {}
            text class="tick" x=(format_number(LEFT - 6.0)) y=(format_number(y + 4.0)) text-anchor="end" { (Text(text)) }
        }
    }
}

/// A line through its defined values, broken where one is undefined, with a marker on each.
fn draw_line(line: &Line, x_of: &dyn Fn(usize) -> f64, y_of: &dyn Fn(f64) -> f64) -> Markup {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (index, value) in line.values.iter().enumerate() {
        match value {
            Some(value) if value.is_finite() => {
                if let Some(run) = runs.last_mut() {
                    run.push((x_of(index), y_of(*value)));
                }
            }
            _ => runs.push(Vec::new()),
        }
    }
    let square = line.dash.is_some();
    html! {
        g class="replay-line" data-line=(line.name) {
            @for run in runs.iter().filter(|run| run.len() > 1) {
                polyline fill="none" stroke=(line.colour) stroke-width="2"
                    stroke-dasharray=[line.dash]
                    points=(run.iter().map(|(x, y)| format!("{},{}", format_number(*x), format_number(*y))).collect::<Vec<_>>().join(" ")) {}
            }
            @for (x, y) in runs.iter().flatten() {
                @if square {
                    rect x=(format_number(x - 3.5)) y=(format_number(y - 3.5)) width="7" height="7" fill=(line.colour) {}
                } @else {
                    circle cx=(format_number(*x)) cy=(format_number(*y)) r="3.5" fill=(line.colour) {}
                }
            }
        }
    }
}

fn legend(lines: &[Line], y: f64) -> Markup {
    html! {
        @for (position, line) in lines.iter().enumerate() {
            @let x = LEFT + position as f64 * 260.0;
            line x1=(format_number(x)) x2=(format_number(x + 24.0)) y1=(format_number(y + 6.0)) y2=(format_number(y + 6.0))
                stroke=(line.colour) stroke-width="2" stroke-dasharray=[line.dash] {}
            @if line.dash.is_some() {
                rect x=(format_number(x + 8.5)) y=(format_number(y + 2.5)) width="7" height="7" fill=(line.colour) {}
            } @else {
                circle cx=(format_number(x + 12.0)) cy=(format_number(y + 6.0)) r="3.5" fill=(line.colour) {}
            }
            text class="tick" x=(format_number(x + 30.0)) y=(format_number(y + 10.0)) { (line.name) }
        }
    }
}

/// The least of 1, 2, 5 × 10ⁿ minutes at or above `value` (at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|ceiling| *ceiling >= value)
        .unwrap_or(10.0 * magnitude)
}

/// A coordinate or a tick's number: at most one decimal, no trailing zero.
fn format_number(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minutes_axis_ends_at_a_round_number() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(50.0), 50.0);
        assert_eq!(format_number(12.25), "12.3");
        assert_eq!(format_number(4.0), "4");
    }
}
