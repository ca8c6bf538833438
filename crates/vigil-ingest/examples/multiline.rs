//! Event grouping on logs that hold multi-line events (Java and Python stack traces): how many
//! true events the grouper finds exactly, and how many templates the lines make when each line
//! is mined alone (as before grouping) and when each event is.
//!
//! ```text
//! MULTILINE_DIR=/path/to/samples cargo run --release -p vigil-ingest --example multiline
//! ```
//!
//! Every `*.log` file of the folder is one stream. Its true events: a line starting with a
//! timestamp (`2019-05-03 06:58:45,564`, `[2018-02-07 16:50:15,479: …`, `[2025-09-03, 11:47:46
//! PKT]`, `Jul 09, 2015 3:23:29 PM`) opens one, and every other line belongs to the event
//! before it; a file without such a line is one event (a stack trace on its own). An event is
//! found exactly when the grouper opens an event on its first line and the next one right
//! after its last line.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;

use regex::Regex;
use vigil_ingest::logs::{EventLimits, Grouper, HeaderFormat, Miner, MinerConfig, Pushed};

fn main() -> std::process::ExitCode {
    let Some(root) = std::env::var_os("MULTILINE_DIR") else {
        eprintln!("MULTILINE_DIR is not set: nothing measured.");
        eprintln!("Set it to a folder of *.log files holding multi-line events.");
        return std::process::ExitCode::FAILURE;
    };
    let timestamp = Regex::new(r"^(\[?\d{4}-\d{2}-\d{2}[ T,]|[A-Z][a-z]{2} \d{2}, \d{4} )")
        .unwrap_or_else(|error| panic!("the timestamp pattern is valid: {error}"));
    let mut paths = match std::fs::read_dir(Path::new(&root)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
            .collect::<Vec<_>>(),
        Err(error) => {
            eprintln!("cannot read {}: {error}", Path::new(&root).display());
            return std::process::ExitCode::FAILURE;
        }
    };
    paths.sort();
    println!(
        "{:<28} {:>5} {:>6} {:>6} {:>6} {:>14} {:>15} {:>10}",
        "file",
        "lines",
        "events",
        "found",
        "exact",
        "templates/line",
        "templates/event",
        "exceptions"
    );
    let mut totals = [0usize; 7];
    let mut exception_templates = Vec::new();
    for path in &paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("cannot read {}", path.display());
            continue;
        };
        let lines = text.lines().collect::<Vec<_>>();
        let true_starts = true_event_starts(&lines, &timestamp);
        let found_starts = grouped_event_starts(&lines);
        let exact = exact_events(&true_starts, &found_starts, lines.len());

        let format = HeaderFormat::Auto;
        let mut line_miner = Miner::new(MinerConfig::default());
        for line in &lines {
            line_miner.add_line(line, &format);
        }
        let mut event_miner = Miner::new(MinerConfig::default());
        let mut grouper = Grouper::new(EventLimits::default());
        let mut first_line = "";
        for line in &lines {
            if let Pushed::Opened(closed) = grouper.push(line) {
                if let Some(event) = closed {
                    event_miner.add_event(first_line, &format, &event);
                }
                first_line = line;
            }
        }
        if let Some(event) = grouper.finish() {
            event_miner.add_event(first_line, &format, &event);
        }
        let exceptions = event_miner
            .templates()
            .into_iter()
            .filter(|template| template.text.contains(" => ") || template.text.starts_with("=> "))
            .collect::<Vec<_>>();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{name:<28} {:>5} {:>6} {:>6} {:>6} {:>14} {:>15} {:>10}",
            lines.len(),
            true_starts.len(),
            found_starts.len(),
            exact,
            line_miner.len(),
            event_miner.len(),
            exceptions.len()
        );
        let counts = [
            lines.len(),
            true_starts.len(),
            found_starts.len(),
            exact,
            line_miner.len(),
            event_miner.len(),
            exceptions.len(),
        ];
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
        for template in exceptions {
            exception_templates.push(format!(
                "{name}: {} {}",
                template.level.map_or("-", |level| level.as_str()),
                template.text
            ));
        }
    }
    println!(
        "{:<28} {:>5} {:>6} {:>6} {:>6} {:>14} {:>15} {:>10}",
        "total", totals[0], totals[1], totals[2], totals[3], totals[4], totals[5], totals[6]
    );
    println!(
        "events found exactly: {:.4} of the true events; found events that are true: {:.4}",
        totals[3] as f64 / totals[1].max(1) as f64,
        totals[3] as f64 / totals[2].max(1) as f64
    );
    println!("exception templates:");
    for line in exception_templates {
        println!("  {line}");
    }
    std::process::ExitCode::SUCCESS
}

/// The first line of every true event (see the module documentation).
fn true_event_starts(lines: &[&str], timestamp: &Regex) -> Vec<usize> {
    let mut starts = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| timestamp.is_match(line))
        .map(|(index, _)| index)
        .collect::<Vec<_>>();
    if starts.first() != Some(&0) && !lines.is_empty() {
        starts.insert(0, 0);
    }
    starts
}

/// The first line of every event the grouper finds.
fn grouped_event_starts(lines: &[&str]) -> Vec<usize> {
    let mut grouper = Grouper::new(EventLimits::default());
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| matches!(grouper.push(line), Pushed::Opened(_)))
        .map(|(index, _)| index)
        .collect()
}

/// True events whose first and last lines are those of one found event.
fn exact_events(true_starts: &[usize], found_starts: &[usize], lines: usize) -> usize {
    let spans = |starts: &[usize]| {
        starts
            .iter()
            .enumerate()
            .map(|(index, &start)| (start, starts.get(index + 1).copied().unwrap_or(lines)))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let found = spans(found_starts);
    spans(true_starts)
        .iter()
        .filter(|span| found.contains(span))
        .count()
}
