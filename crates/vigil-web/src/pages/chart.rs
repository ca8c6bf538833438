//! A metric finding's chart as inline SVG: the release hosts that show the finding (each host
//! thin, their median thick) against the reference hosts' median and middle half (the band
//! between their 25th and 75th percentiles) over the release's window, with a vertical line
//! at each batch's deploy and at each pause. Lines differ by dash pattern as well as colour,
//! a legend names them, and the SVG's title and description say what it shows.

use std::fmt::Write;

use vigil_analysis::stats::quantile_of_sorted;
use vigil_core::text::{change_words, clock_time, figure};
use vigil_core::{Bundle, Finding, HostGroup};

use maud::{html, Render};

use super::html::Text;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 26.0;
const BOTTOM: f64 = 28.0;

/// Most columns drawn: longer windows are averaged into this many.
const MAX_COLUMNS: usize = 480;

/// Most single release hosts drawn beside their median.
const MAX_HOST_LINES: usize = 8;

/// Dash patterns (SVG `stroke-dasharray`); the release hosts' lines are solid.
const REFERENCE_DASH: &str = "7 4";
const BATCH_DASH: &str = "2 3";
const PAUSE_DASH: &str = "9 3 2 3";
const EXPECTED_DASH: &str = "1 3";

/// What one chart shows.
#[derive(Debug)]
pub struct MetricChart<'a> {
    pub bundle: &'a Bundle,
    pub metric: &'a str,
    pub unit: &'a str,
    /// The release hosts that show the finding (all release hosts when empty).
    pub finding_hosts: &'a [String],
    /// Times the release was paused.
    pub pauses: &'a [i64],
    /// Prefix of the element ids of this chart, unique on the page.
    pub id: &'a str,
    /// The finding the chart illustrates: its expected value is drawn from the change on, and
    /// its description states the finding's own numbers.
    pub finding: Option<&'a Finding>,
}

/// The values of the drawn lines, one per column.
struct Columns {
    times: Vec<i64>,
    release_median: Vec<f64>,
    reference_low: Vec<f64>,
    reference_median: Vec<f64>,
    reference_high: Vec<f64>,
    hosts: Vec<Vec<f64>>,
}

/// The first step a chart draws: the window's first, but of a history much longer than the
/// release has run (a week before the first batch, for a release judged against its own
/// history), only as much as the release has run and at least an hour, so that the release
/// is not squeezed into the last corner of a week-long axis.
fn first_shown_step(bundle: &Bundle) -> usize {
    let Some(first_deploy) = bundle.batches.iter().map(|batch| batch.at).min() else {
        return 0;
    };
    let end = bundle.time_of(bundle.points.saturating_sub(1));
    let shown_before = (end - first_deploy).max(SHOWN_BEFORE_DEPLOY_SECONDS);
    bundle
        .index_at(first_deploy - shown_before)
        .unwrap_or(0)
        .min(bundle.points.saturating_sub(1))
}

/// The least of the history before the first batch a chart draws.
const SHOWN_BEFORE_DEPLOY_SECONDS: i64 = 3600;

/// Per step of `steps`, the quantiles `levels` of the hosts' values (NaN where no host has
/// one).
fn step_quantiles(
    series: &[&Vec<Option<f64>>],
    steps: std::ops::Range<usize>,
    levels: &[f64],
) -> Vec<Vec<f64>> {
    let mut result = vec![Vec::with_capacity(steps.len()); levels.len()];
    let mut values = Vec::with_capacity(series.len());
    for step in steps {
        values.clear();
        values.extend(
            series
                .iter()
                .filter_map(|host| host.get(step).copied().flatten())
                .filter(|value| value.is_finite()),
        );
        // Sorted once per step, then each level read from it.
        values.sort_by(f64::total_cmp);
        for (level, column) in levels.iter().zip(result.iter_mut()) {
            column.push(quantile_of_sorted(&values, *level));
        }
    }
    result
}

/// The mean of each run of `width` values (NaN for a run without a finite value).
fn column_means(values: &[f64], width: usize) -> Vec<f64> {
    values
        .chunks(width.max(1))
        .map(vigil_analysis::stats::mean)
        .collect()
}

/// The chart as a piece of a page template. The SVG's drawing is written by hand (paths, ticks
/// and markers: numbers and this file's constants); the texts from data in it are templates.
impl maud::Render for MetricChart<'_> {
    fn render_to(&self, buffer: &mut String) {
        self.write(buffer);
    }
}

impl MetricChart<'_> {
    fn columns(&self) -> Option<Columns> {
        let bundle = self.bundle;
        let by_host = bundle.series.get(self.metric)?;
        let release_names: Vec<&String> = if self.finding_hosts.is_empty() {
            bundle
                .hosts
                .iter()
                .filter(|host| host.group == HostGroup::Release)
                .map(|host| &host.name)
                .collect()
        } else {
            self.finding_hosts.iter().collect()
        };
        let release: Vec<&Vec<Option<f64>>> = release_names
            .iter()
            .filter_map(|name| by_host.get(*name))
            .collect();
        if release.is_empty() {
            return None;
        }
        let reference: Vec<&Vec<Option<f64>>> = bundle
            .hosts
            .iter()
            .filter(|host| host.group == HostGroup::Reference)
            .filter_map(|host| by_host.get(&host.name))
            .collect();
        let points = bundle.points;
        let first = first_shown_step(bundle);
        let width = (points - first).div_ceil(MAX_COLUMNS).max(1);
        let release_steps = step_quantiles(&release, first..points, &[0.5]);
        let reference_steps = step_quantiles(&reference, first..points, &[0.25, 0.5, 0.75]);
        // One host's line would be its median's: hosts are drawn one by one only when several.
        let single_lines = if release.len() > 1 { MAX_HOST_LINES } else { 0 };
        let hosts = release
            .iter()
            .take(single_lines)
            .map(|values| {
                let raw: Vec<f64> = values
                    .iter()
                    .skip(first)
                    .map(|value| value.unwrap_or(f64::NAN))
                    .collect();
                column_means(&raw, width)
            })
            .collect();
        Some(Columns {
            times: (first..points)
                .step_by(width)
                .map(|step| bundle.time_of(step))
                .collect(),
            release_median: column_means(&release_steps[0], width),
            reference_low: column_means(&reference_steps[0], width),
            reference_median: column_means(&reference_steps[1], width),
            reference_high: column_means(&reference_steps[2], width),
            hosts,
        })
    }

    /// Writes the chart (a figure with the SVG and its legend), or a sentence saying why there
    /// is none.
    pub fn write(&self, out: &mut String) {
        let Some(columns) = self.columns() else {
            html! {
                p class="help" {
                    "No samples of " (Text(self.metric)) " on the release hosts in this window."
                }
            }
            .render_to(out);
            return;
        };
        let expected = self.finding.map(|finding| finding.expected);
        let drawn = columns
            .release_median
            .iter()
            .chain(&columns.reference_low)
            .chain(&columns.reference_high)
            .chain(columns.hosts.iter().flatten())
            .chain(expected.iter())
            .filter(|value| value.is_finite());
        let (low, high) = drawn.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(*value), high.max(*value))
        });
        if !low.is_finite() {
            html! { p class="help" { "No samples of " (Text(self.metric)) " in this window." } }
                .render_to(out);
            return;
        }
        let scale = Scale::new(self.bundle, low, high);
        let has_reference = columns
            .reference_median
            .iter()
            .any(|value| value.is_finite());
        // The drawing below holds numbers and this file's class names only; the texts from
        // data (the metric's name in the title and description) go through the template.
        let _ = write!(
            out,
            "<figure class=\"chart\"><svg class=\"chart-svg\" role=\"img\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" aria-labelledby=\"{id}-title {id}-desc\">",
            id = self.id,
        );
        html! {
            title id={ (self.id) "-title" } { (Text(&self.title())) }
            desc id={ (self.id) "-desc" } { (Text(&self.description(&columns, has_reference))) }
        }
        .render_to(out);
        self.write_axes(out, &scale);
        if has_reference {
            write_band(out, &scale, &columns);
            out.push_str("<path class=\"reference-median\" stroke-dasharray=\"");
            out.push_str(REFERENCE_DASH);
            out.push_str("\" d=\"");
            write_line(out, &scale, &columns.times, &columns.reference_median);
            out.push_str("\"/>");
        }
        for host in &columns.hosts {
            out.push_str("<path class=\"release-host\" d=\"");
            write_line(out, &scale, &columns.times, host);
            out.push_str("\"/>");
        }
        out.push_str("<path class=\"release-median\" d=\"");
        write_line(out, &scale, &columns.times, &columns.release_median);
        out.push_str("\"/>");
        self.write_expected(out, &scale);
        self.write_markers(out, &scale);
        out.push_str("</svg>");
        self.write_legend(out, &columns, has_reference);
        out.push_str("</figure>");
    }

    fn title(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.unit)
        };
        format!(
            "{}{unit}: release hosts against the reference hosts",
            self.metric
        )
    }

    /// What the chart shows, in words: the window, the last values and the markers.
    fn description(&self, columns: &Columns, has_reference: bool) -> String {
        let bundle = self.bundle;
        let end = bundle.time_of(bundle.points.saturating_sub(1));
        let last = |values: &[f64]| {
            values
                .iter()
                .rev()
                .find(|value| value.is_finite())
                .map_or_else(|| "no value".to_string(), |value| figure(*value))
        };
        let mut text = format!(
            "From {} to {} UTC. {}: {} at the end.",
            clock_time(bundle.time_of(first_shown_step(bundle))),
            clock_time(end),
            self.release_words(),
            last(&columns.release_median)
        );
        if has_reference {
            let _ = write!(
                text,
                " Reference hosts: median {}, middle half {} to {}.",
                last(&columns.reference_median),
                last(&columns.reference_low),
                last(&columns.reference_high)
            );
        } else {
            text.push_str(
                " No reference hosts: the release hosts were compared with their own history.",
            );
        }
        if let Some(finding) = self.finding.filter(|finding| finding.expected.is_finite()) {
            let _ = write!(
                text,
                " The finding: {} against {} expected, {}.",
                figure(finding.observed),
                figure(finding.expected),
                change_words(finding.effect)
            );
        }
        let batches: Vec<String> = bundle
            .batches
            .iter()
            .map(|batch| format!("batch {} at {}", batch.index, clock_time(batch.at)))
            .collect();
        if !batches.is_empty() {
            let _ = write!(text, " Deployed: {}.", batches.join(", "));
        }
        let pauses: Vec<String> = self.pauses.iter().map(|at| clock_time(*at)).collect();
        if !pauses.is_empty() {
            let _ = write!(text, " Paused at {}.", pauses.join(", "));
        }
        text
    }

    /// What the thick line is: the one release host with the finding, or their median.
    fn release_words(&self) -> String {
        match self.host_count() {
            1 => "The release host with the finding".to_string(),
            count => format!("Median of the {count} release hosts with the finding"),
        }
    }

    fn host_count(&self) -> usize {
        if self.finding_hosts.is_empty() {
            self.bundle
                .hosts
                .iter()
                .filter(|host| host.group == HostGroup::Release)
                .count()
        } else {
            self.finding_hosts.len()
        }
    }

    fn write_axes(&self, out: &mut String, scale: &Scale) {
        out.push_str("<g class=\"axes\" aria-hidden=\"true\">");
        let value_ticks = scale.value_ticks();
        let largest = value_ticks
            .iter()
            .fold(0.0_f64, |largest, tick| largest.max(tick.abs()));
        let axis = ValueAxis::of(self.unit, largest);
        for value in value_ticks {
            let y = scale.y(value);
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                axis.label(value)
            );
        }
        let (times, labels) = scale.time_ticks();
        for time in times {
            let x = scale.x(time);
            // Written in UTC; the page's script rewrites `data-time` labels in the viewer's
            // time zone.
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                 <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                 data-time=\"{time}\" data-format=\"{}\">{}</text>",
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 4.0,
                HEIGHT - 8.0,
                labels.as_str(),
                labels.utc(time)
            );
        }
        let _ = write!(
            out,
            "<rect class=\"frame\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\"/></g>",
            WIDTH - LEFT - RIGHT,
            HEIGHT - TOP - BOTTOM
        );
    }

    /// The finding's expected value, from the time its change holds to the window's end.
    fn write_expected(&self, out: &mut String, scale: &Scale) {
        let Some(finding) = self.finding.filter(|finding| finding.expected.is_finite()) else {
            return;
        };
        let from = finding.since.clamp(scale.start, scale.end);
        let y = scale.y(finding.expected);
        let _ = write!(
            out,
            "<line class=\"expected\" stroke-dasharray=\"{EXPECTED_DASH}\" x1=\"{:.1}\" \
             x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
            scale.x(from),
            scale.x(scale.end)
        );
    }

    fn write_markers(&self, out: &mut String, scale: &Scale) {
        out.push_str("<g class=\"markers\">");
        for batch in &self.bundle.batches {
            // Numbered as the API and the transitions number batches: from 0.
            let label = format!("B{}", batch.index);
            write_marker(out, scale, batch.at, "batch", BATCH_DASH, &label);
        }
        for at in self.pauses {
            write_marker(out, scale, *at, "pause", PAUSE_DASH, "paused");
        }
        out.push_str("</g>");
    }

    fn write_legend(&self, out: &mut String, columns: &Columns, has_reference: bool) {
        let swatch = |class: &str, dash: &str| {
            let dash_attribute = if dash.is_empty() {
                String::new()
            } else {
                format!(" stroke-dasharray=\"{dash}\"")
            };
            format!(
                "<svg class=\"swatch\" viewBox=\"0 0 32 12\" aria-hidden=\"true\" \
                 focusable=\"false\"><line class=\"{class}\"{dash_attribute} x1=\"1\" y1=\"6\" \
                 x2=\"31\" y2=\"6\"/></svg>"
            )
        };
        out.push_str("<figcaption><ul class=\"legend\">");
        let _ = write!(
            out,
            "<li>{}{} (solid, thick)</li>",
            swatch("release-median", ""),
            self.release_words()
        );
        let drawn = columns.hosts.len();
        if drawn > 0 {
            let _ = write!(
                out,
                "<li>{}{} (solid, thin)</li>",
                swatch("release-host", ""),
                if drawn < self.host_count() {
                    format!("{drawn} of those hosts, one line each")
                } else {
                    "Each of those hosts".to_string()
                }
            );
        }
        if has_reference {
            let _ = write!(
                out,
                "<li>{}Median of the reference hosts (dashed)</li>\
                 <li><svg class=\"swatch\" viewBox=\"0 0 32 12\" aria-hidden=\"true\" \
                 focusable=\"false\"><rect class=\"band\" x=\"1\" y=\"1\" width=\"30\" \
                 height=\"10\"/></svg>Middle half of the reference hosts, 25th to 75th \
                 percentile (shaded band)</li>",
                swatch("reference-median", REFERENCE_DASH)
            );
        }
        if let Some(finding) = self.finding.filter(|finding| finding.expected.is_finite()) {
            let _ = write!(
                out,
                "<li>{}Expected without the change: {}, the value the finding compares with \
                 (fine dots)</li>",
                swatch("expected", EXPECTED_DASH),
                figure(finding.expected)
            );
        }
        let _ = write!(
            out,
            "<li>{}A batch deployed, B0 being the first (dotted)</li>",
            swatch("batch", BATCH_DASH)
        );
        if !self.pauses.is_empty() {
            let _ = write!(
                out,
                "<li>{}The release was paused (dash and dot)</li>",
                swatch("pause", PAUSE_DASH)
            );
        }
        out.push_str("<li class=\"zone\" data-zone-note>Times in UTC.</li></ul></figcaption>");
    }
}

/// Maps times and values to the plot area.
struct Scale {
    start: i64,
    end: i64,
    low: f64,
    high: f64,
}

impl Scale {
    fn new(bundle: &Bundle, low: f64, high: f64) -> Scale {
        let end = bundle.time_of(bundle.points.saturating_sub(1));
        let spread = high - low;
        let margin = if spread > 0.0 {
            spread * 0.06
        } else {
            low.abs().max(1.0) * 0.1
        };
        // A series that never goes below zero keeps zero at the bottom when it is near.
        let padded_low = if low >= 0.0 && low - margin < 0.0 {
            0.0
        } else {
            low - margin
        };
        let start = bundle.time_of(first_shown_step(bundle));
        Scale {
            start,
            end: end.max(start + 1),
            low: padded_low,
            high: high + margin,
        }
    }

    fn contains(&self, time: i64) -> bool {
        (self.start..=self.end).contains(&time)
    }

    fn x(&self, time: i64) -> f64 {
        let share = (time - self.start) as f64 / (self.end - self.start) as f64;
        LEFT + share * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let share = (value - self.low) / (self.high - self.low);
        HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM)
    }

    /// Round values (1, 2, 2.5 or 5 times a power of ten apart) inside the value range, three
    /// to six of them.
    fn value_ticks(&self) -> Vec<f64> {
        let rough = (self.high - self.low) / 5.0;
        if rough.is_nan() || rough <= 0.0 {
            return Vec::new();
        }
        let power = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .map(|factor| factor * power)
            .find(|candidate| *candidate >= rough)
            .unwrap_or(10.0 * power);
        let first = (self.low / step).ceil() as i64;
        let last = (self.high / step).floor() as i64;
        (first..=last)
            .map(|multiple| multiple as f64 * step)
            .collect()
    }

    /// Round times inside the window, at most eight, a step apart chosen from the window's
    /// length (minutes for an hour, hours for a day, days for a week or more), with how they
    /// are labelled.
    fn time_ticks(&self) -> (Vec<i64>, TimeLabels) {
        time_ticks(self.start, self.end)
    }
}

/// Steps between time ticks, shortest first: whole minutes, hours, days and weeks.
const TIME_STEPS: [i64; 16] = [
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 345_600,
    604_800, 1_209_600,
];

/// Ticks at most this many.
const MOST_TIME_TICKS: i64 = 8;

/// Round times in `start..=end` (Unix seconds) for the time axis: the shortest step of
/// [`TIME_STEPS`] that gives at most [`MOST_TIME_TICKS`], a multiple of a step that gives more
/// for windows longer than them all; and how they are labelled.
fn time_ticks(start: i64, end: i64) -> (Vec<i64>, TimeLabels) {
    let span = (end - start).max(1);
    let longest = TIME_STEPS[TIME_STEPS.len() - 1];
    let step = TIME_STEPS
        .into_iter()
        .find(|candidate| span / candidate <= MOST_TIME_TICKS)
        .unwrap_or_else(|| (span / MOST_TIME_TICKS).div_euclid(longest).max(1) * longest + longest);
    let labels = if step >= 86_400 {
        TimeLabels::Day
    } else if step >= 3600 || span > 86_400 / 2 {
        TimeLabels::Hour
    } else {
        TimeLabels::Minute
    };
    let first = start.div_euclid(step) * step + step;
    let ticks = (0..)
        .map(|multiple| first + multiple * step)
        .take_while(|time| *time <= end)
        .collect();
    (ticks, labels)
}

/// How time ticks are written: a clock time for a window of minutes or hours (the date too
/// at a day's first tick when it spans days), a date for one of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeLabels {
    Minute,
    Hour,
    Day,
}

impl TimeLabels {
    /// The name the page's script reads (`data-format`).
    fn as_str(self) -> &'static str {
        match self {
            TimeLabels::Minute => "minute",
            TimeLabels::Hour => "hour",
            TimeLabels::Day => "day",
        }
    }

    /// The label of `time` in UTC, as written before the script (if any) localizes it.
    fn utc(self, time: i64) -> String {
        let full = vigil_core::text::utc(time);
        // "YYYY-MM-DD HH:MM:SS UTC"
        let month_day = full.get(5..10).unwrap_or_default();
        match self {
            TimeLabels::Minute => clock_time(time),
            TimeLabels::Hour if time.rem_euclid(86_400) == 0 => {
                format!("{month_day} {}", clock_time(time))
            }
            TimeLabels::Hour => clock_time(time),
            TimeLabels::Day => month_day.to_owned(),
        }
    }
}

/// How the value axis writes its ticks: in the metric's unit, scaled (ms to s, k, M, G) so
/// that a large number stays short.
#[derive(Debug, Clone, PartialEq)]
struct ValueAxis {
    divisor: f64,
    suffix: String,
}

impl ValueAxis {
    /// The axis of `unit` (as `MetricMeta.unit` names it; empty when unknown) whose largest
    /// tick is `largest` in size.
    fn of(unit: &str, largest: f64) -> ValueAxis {
        let axis = |divisor: f64, suffix: &str| ValueAxis {
            divisor,
            suffix: suffix.to_owned(),
        };
        let trimmed = unit.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "ms" | "millisecond" | "milliseconds" => {
                if largest >= 1000.0 {
                    axis(1000.0, " s")
                } else {
                    axis(1.0, " ms")
                }
            }
            "s" | "second" | "seconds" => {
                if largest > 0.0 && largest < 1.0 {
                    axis(0.001, " ms")
                } else {
                    axis(1.0, " s")
                }
            }
            "us" | "µs" | "microsecond" | "microseconds" => {
                if largest >= 1e6 {
                    axis(1e6, " s")
                } else if largest >= 1000.0 {
                    axis(1000.0, " ms")
                } else {
                    axis(1.0, " µs")
                }
            }
            "%" | "percent" => axis(1.0, " %"),
            "b" | "byte" | "bytes" => {
                let (divisor, prefix) = si_prefix(largest);
                axis(divisor, &format!(" {prefix}B"))
            }
            _ => {
                let (divisor, prefix) = si_prefix(largest);
                let suffix = match (prefix, trimmed) {
                    ("", "") => String::new(),
                    (prefix, "") => prefix.to_owned(),
                    (prefix, unit) => format!("{prefix} {unit}"),
                };
                ValueAxis { divisor, suffix }
            }
        }
    }

    /// A tick's label: the value in the axis's scale, without trailing zeros, and its unit.
    fn label(&self, value: f64) -> String {
        let scaled = figure(value / self.divisor);
        let short = if scaled.contains('.') && !scaled.contains('e') {
            scaled
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        } else {
            scaled
        };
        format!("{short}{}", self.suffix)
    }
}

/// The divisor and SI prefix that keep `largest` under a thousand.
fn si_prefix(largest: f64) -> (f64, &'static str) {
    [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(divisor, _)| largest >= *divisor)
        .unwrap_or((1.0, ""))
}

/// A vertical line at `time` (when inside the window) with a short label: batch labels above
/// the plot, others inside its top, so that a pause soon after a batch does not hide it.
fn write_marker(out: &mut String, scale: &Scale, time: i64, class: &str, dash: &str, label: &str) {
    if !scale.contains(time) {
        return;
    }
    let x = scale.x(time);
    let (label_x, label_y) = if class == "batch" {
        (x + 3.0, TOP - 8.0)
    } else {
        (x + 3.0, TOP + 12.0)
    };
    let _ = write!(
        out,
        "<line class=\"{class}\" stroke-dasharray=\"{dash}\" x1=\"{x:.1}\" x2=\"{x:.1}\" \
         y1=\"{TOP}\" y2=\"{:.1}\"/><text class=\"marker-label\" x=\"{label_x:.1}\" \
         y=\"{label_y:.1}\">{label}</text>",
        HEIGHT - BOTTOM
    );
}

/// SVG path data of a line through the finite values, broken where values are missing.
fn write_line(out: &mut String, scale: &Scale, times: &[i64], values: &[f64]) {
    let mut drawing = false;
    for (time, value) in times.iter().zip(values) {
        if !value.is_finite() {
            drawing = false;
            continue;
        }
        let command = if drawing { 'L' } else { 'M' };
        let _ = write!(out, "{command}{:.1} {:.1}", scale.x(*time), scale.y(*value));
        drawing = true;
    }
}

/// The reference band: one closed shape per run of columns where both its edges are known.
fn write_band(out: &mut String, scale: &Scale, columns: &Columns) {
    out.push_str("<path class=\"band\" d=\"");
    let known = |index: usize| {
        columns.reference_low[index].is_finite() && columns.reference_high[index].is_finite()
    };
    let mut index = 0;
    let count = columns.times.len();
    while index < count {
        if !known(index) {
            index += 1;
            continue;
        }
        let run_start = index;
        while index < count && known(index) {
            index += 1;
        }
        for (position, column) in (run_start..index).enumerate() {
            let command = if position == 0 { 'M' } else { 'L' };
            let _ = write!(
                out,
                "{command}{:.1} {:.1}",
                scale.x(columns.times[column]),
                scale.y(columns.reference_high[column])
            );
        }
        for column in (run_start..index).rev() {
            let _ = write!(
                out,
                "L{:.1} {:.1}",
                scale.x(columns.times[column]),
                scale.y(columns.reference_low[column])
            );
        }
        out.push('Z');
    }
    out.push_str("\"/>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample_bundle() -> Bundle {
        let points = 10;
        let mut by_host = BTreeMap::new();
        by_host.insert(
            "r1".to_string(),
            (0..points)
                .map(|step| Some(if step >= 5 { 300.0 } else { 100.0 }))
                .collect(),
        );
        by_host.insert("k1".to_string(), vec![Some(98.0); points]);
        by_host.insert(
            "k2".to_string(),
            (0..points)
                .map(|step| if step == 3 { None } else { Some(102.0) })
                .collect(),
        );
        let mut bundle = crate::pages::test_bundle(60, 1_700_000_000, points, 1_700_000_240);
        bundle.series.insert("latency".to_string(), by_host);
        bundle
    }

    #[test]
    fn quantiles_interpolate_between_neighbours() {
        assert_eq!(quantile_of_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert_eq!(quantile_of_sorted(&[1.0, 2.0], 0.25), 1.25);
        assert!(quantile_of_sorted(&[], 0.5).is_nan());
        let means = column_means(&[1.0, f64::NAN, 3.0, f64::NAN, f64::NAN], 2);
        assert_eq!(means[0], 1.0);
        assert_eq!(means[1], 3.0);
        assert!(means[2].is_nan());
    }

    #[test]
    fn the_chart_draws_hosts_band_and_markers_and_says_what_it_shows() {
        let bundle = sample_bundle();
        let hosts = vec!["r1".to_string()];
        let pauses = [1_700_000_420];
        let chart = MetricChart {
            bundle: &bundle,
            metric: "latency",
            unit: "ms",
            finding_hosts: &hosts,
            pauses: &pauses,
            id: "chart-0",
            finding: None,
        };
        let mut out = String::new();
        chart.write(&mut out);
        assert!(out.contains("role=\"img\""));
        assert!(out.contains("<title id=\"chart-0-title\">latency (ms): release hosts"));
        assert!(out.contains("300 at the end"), "{out}");
        assert!(
            out.contains("Reference hosts: median 100, middle half 99.0 to 101"),
            "{out}"
        );
        assert!(out.contains("class=\"band\""));
        assert!(out.contains("stroke-dasharray=\"7 4\""));
        let plot = &out[..out.find("</svg>").unwrap()];
        assert_eq!(plot.matches("<line class=\"batch\"").count(), 1);
        assert_eq!(plot.matches("<line class=\"pause\"").count(), 1);
        assert!(
            out.contains("The release was paused"),
            "the legend names the pause"
        );
        assert!(out.contains("Paused at 22:20."), "{out}");
    }

    #[test]
    fn a_metric_without_samples_gets_a_sentence_instead() {
        let bundle = sample_bundle();
        let chart = MetricChart {
            bundle: &bundle,
            metric: "absent",
            unit: "",
            finding_hosts: &[],
            pauses: &[],
            id: "chart-1",
            finding: None,
        };
        let mut out = String::new();
        chart.write(&mut out);
        assert!(out.starts_with("<p class=\"help\">No samples of absent"));
    }

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let bundle = sample_bundle();
        let scale = Scale::new(&bundle, 95.0, 305.0);
        let ticks = scale.value_ticks();
        assert!(ticks
            .iter()
            .all(|tick| *tick >= scale.low && *tick <= scale.high));
        assert!(
            ticks.contains(&100.0) && ticks.contains(&300.0),
            "{ticks:?}"
        );
        let (times, labels) = scale.time_ticks();
        assert!(!times.is_empty());
        assert_eq!(labels, TimeLabels::Minute);
        assert!(times
            .iter()
            .all(|time| time % 60 == 0 && scale.contains(*time)));
    }

    /// The ticks of a window of `seconds` from a start off any round time.
    fn ticks_over(seconds: i64) -> (Vec<i64>, TimeLabels) {
        let start = 1_700_000_123;
        time_ticks(start, start + seconds)
    }

    #[test]
    fn time_ticks_follow_the_window_length_across_the_whole_axis() {
        let cases = [
            (3600, 600, TimeLabels::Minute),
            (86_400, 10_800, TimeLabels::Hour),
            (7 * 86_400, 86_400, TimeLabels::Day),
            (30 * 86_400, 345_600, TimeLabels::Day),
            (400 * 86_400, 4_838_400, TimeLabels::Day),
        ];
        for (seconds, step, labels) in cases {
            let (ticks, chosen) = ticks_over(seconds);
            assert_eq!(chosen, labels, "{seconds} s");
            assert!(
                ticks.len() >= 3 && ticks.len() as i64 <= MOST_TIME_TICKS,
                "{seconds} s: {ticks:?}"
            );
            assert!(
                ticks.windows(2).all(|pair| pair[1] - pair[0] == step),
                "{seconds} s: {ticks:?}"
            );
            assert!(ticks.iter().all(|tick| tick % step == 0));
            // Spread over the whole window: the first tick within a step of its start, the
            // last within a step of its end.
            let start = 1_700_000_123;
            assert!(ticks[0] - start <= step);
            assert!(start + seconds - ticks[ticks.len() - 1] < step);
        }
        assert_eq!(TimeLabels::Minute.utc(1_700_000_400), "22:20");
        assert_eq!(TimeLabels::Hour.utc(1_700_010_000), "01:00");
        assert_eq!(TimeLabels::Hour.utc(1_699_920_000), "11-14 00:00");
        assert_eq!(TimeLabels::Day.utc(1_699_920_000), "11-14");
    }

    #[test]
    fn the_value_axis_names_its_unit_and_scales_large_numbers() {
        assert_eq!(ValueAxis::of("ms", 800.0).label(250.0), "250 ms");
        assert_eq!(ValueAxis::of("ms", 2500.0).label(1500.0), "1.5 s");
        assert_eq!(ValueAxis::of("s", 0.5).label(0.25), "250 ms");
        assert_eq!(ValueAxis::of("bytes", 3e9).label(2.5e9), "2.5 GB");
        assert_eq!(ValueAxis::of("", 40_000.0).label(20_000.0), "20k");
        assert_eq!(ValueAxis::of("req/s", 1.2e6).label(1e6), "1M req/s");
        assert_eq!(ValueAxis::of("%", 80.0).label(12.5), "12.5 %");
        assert_eq!(ValueAxis::of("", 0.8).label(0.25), "0.25");
        assert_eq!(ValueAxis::of("ms", 100.0).label(0.0), "0 ms");
    }

    /// The tick labels and their x positions drawn for a window of `points` steps of `step`.
    fn drawn_time_ticks(step: i64, points: usize) -> Vec<(f64, String)> {
        drawn_time_ticks_deployed_at(step, points, 10)
    }

    /// The time ticks drawn (their x and label) for a window of `points` steps of `step`
    /// seconds whose first batch is at step `deploy_step`.
    fn drawn_time_ticks_deployed_at(
        step: i64,
        points: usize,
        deploy_step: i64,
    ) -> Vec<(f64, String)> {
        let start = 1_700_000_000;
        let mut bundle = crate::pages::test_bundle(step, start, points, start + step * deploy_step);
        let by_host = ["r1", "k1", "k2"]
            .into_iter()
            .map(|host| {
                let values = (0..points)
                    .map(|index| Some(100.0 + (index % 7) as f64))
                    .collect();
                (host.to_owned(), values)
            })
            .collect();
        bundle.series.insert("latency".to_owned(), by_host);
        let chart = MetricChart {
            bundle: &bundle,
            metric: "latency",
            unit: "ms",
            finding_hosts: &[],
            pauses: &[],
            id: "chart-w",
            finding: None,
        };
        let mut out = String::new();
        chart.write(&mut out);
        out.split("<text class=\"tick\" x=\"")
            .skip(1)
            .filter(|piece| piece.contains("data-time="))
            .map(|piece| {
                let x: f64 = piece[..piece.find('"').unwrap()].parse().unwrap();
                let label_start = piece.find('>').unwrap() + 1;
                let label_end = piece.find("</text>").unwrap();
                (x, piece[label_start..label_end].to_owned())
            })
            .collect()
    }

    #[test]
    fn an_hour_a_day_and_a_week_get_distinct_ticks_across_the_whole_axis() {
        let plot = WIDTH - LEFT - RIGHT;
        for (step, points) in [(30, 121), (300, 289), (1800, 337)] {
            let ticks = drawn_time_ticks(step, points);
            assert!(ticks.len() >= 5, "{step} s × {points}: {ticks:?}");
            let labels: std::collections::HashSet<&String> =
                ticks.iter().map(|(_, label)| label).collect();
            assert_eq!(labels.len(), ticks.len(), "distinct labels: {ticks:?}");
            assert!(ticks[0].0 < LEFT + 0.2 * plot, "{ticks:?}");
            assert!(ticks[ticks.len() - 1].0 > LEFT + 0.8 * plot, "{ticks:?}");
        }
        // A week is labelled by day.
        let week = drawn_time_ticks(1800, 337);
        assert!(
            week.iter()
                .all(|(_, label)| label.len() == 5 && label.contains('-')),
            "{week:?}"
        );
    }

    #[test]
    fn a_week_of_history_before_a_short_release_is_cut_to_what_the_release_has_run() {
        // A week at one-minute steps, the first batch half an hour before the end: the axis
        // spans the hour before the batch and the half hour after it, labelled by minute.
        let points = 7 * 24 * 60 + 1;
        let deploy_step = points as i64 - 31;
        let ticks = drawn_time_ticks_deployed_at(60, points, deploy_step);
        let plot = WIDTH - LEFT - RIGHT;
        assert!(ticks.len() >= 5, "{ticks:?}");
        assert!(
            ticks.iter().all(|(_, label)| label.contains(':')),
            "{ticks:?}"
        );
        assert!(ticks[0].0 < LEFT + 0.2 * plot, "{ticks:?}");
        let bundle = crate::pages::test_bundle(60, 0, points, 60 * deploy_step);
        assert_eq!(first_shown_step(&bundle), points - 31 - 60);
        // A window whose history is no longer than the release has run is drawn whole.
        let short = crate::pages::test_bundle(60, 0, 121, 60 * 10);
        assert_eq!(first_shown_step(&short), 0);
    }

    #[test]
    fn the_drawn_axes_carry_the_unit_and_times_the_script_can_localize() {
        let bundle = sample_bundle();
        let chart = MetricChart {
            bundle: &bundle,
            metric: "latency",
            unit: "ms",
            finding_hosts: &[],
            pauses: &[],
            id: "chart-2",
            finding: None,
        };
        let mut out = String::new();
        chart.write(&mut out);
        assert!(out.contains(" ms</text>"), "{out}");
        assert!(out.contains("data-format=\"minute\""), "{out}");
        assert!(out.contains("data-time=\"1700000160\""), "{out}");
    }
}
