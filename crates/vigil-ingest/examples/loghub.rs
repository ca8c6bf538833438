//! Grouping accuracy of the template miner on the loghub benchmark (Zhu et al., "Tools and
//! Benchmarks for Automated Log Parsing", 2019): a line counts as correct when the lines its
//! template groups are exactly the lines its true event groups.
//!
//! ```text
//! LOGHUB_DIR=/path/to/loghub cargo run --release -p vigil-ingest --example loghub
//! ```
//!
//! `LOGHUB_DIR` is a checkout of the public loghub repository: one folder per system holding
//! `<System>_2k.log_structured.csv` (and `<System>_2k.log` for the `raw` column, which mines
//! whole lines as `vigil logs` and the log route do: the automatic header split, lines grouped
//! into events, each line taking its event's template). `LOGHUB_SHOW=<System>` prints that
//! system's wrongly grouped lines. One default configuration serves every system.
//!
//! The last line gives the throughput of the `raw` path on all systems' lines, in lines per
//! second on one core (the median of several runs): with grouping, and line by line as before
//! grouping existed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::Path;

use vigil_ingest::logs::{
    EventLimits, Grouper, HeaderFormat, Miner, MinerConfig, Pushed, TemplateId,
};

/// Runs of the throughput measurement; the median is printed.
const SPEED_RUNS: usize = 21;

const SYSTEMS: [&str; 16] = [
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
    "Zookeeper",
];

fn main() -> std::process::ExitCode {
    let Some(root) = std::env::var_os("LOGHUB_DIR") else {
        eprintln!("LOGHUB_DIR is not set: nothing measured.");
        eprintln!("Set it to a checkout of the public loghub repository (one folder per system with <System>_2k.log_structured.csv).");
        return std::process::ExitCode::FAILURE;
    };
    let show = std::env::var("LOGHUB_SHOW").ok();
    let root = Path::new(&root);
    let mut content_total = 0.0;
    let mut raw_total = 0.0;
    let mut measured = 0usize;
    let mut raw_logs: Vec<String> = Vec::new();
    println!(
        "{:<12} {:>8} {:>8} {:>10}",
        "system", "content", "raw", "templates"
    );
    for system in SYSTEMS {
        let folder = root.join(system);
        let structured = folder.join(format!("{system}_2k.log_structured.csv"));
        let Ok(text) = std::fs::read_to_string(&structured) else {
            println!("{system:<12} missing {}", structured.display());
            continue;
        };
        let Some((contents, events)) = read_structured(&text) else {
            println!("{system:<12} no Content or EventId column");
            continue;
        };
        let mut miner = Miner::new(MinerConfig::default());
        let added = contents
            .iter()
            .map(|content| miner.add(content).id)
            .collect::<Vec<_>>();
        let predicted = resolve_all(&miner, &added);
        let content_accuracy = grouping_accuracy(&predicted, &events);
        if show.as_deref() == Some(system) {
            show_errors(&miner, &contents, &predicted, &events);
        }
        let raw = std::fs::read_to_string(folder.join(format!("{system}_2k.log"))).ok();
        let raw_accuracy = raw
            .as_deref()
            .map(|raw| {
                let mut raw_miner = Miner::new(MinerConfig::default());
                let lines = raw.lines().collect::<Vec<_>>();
                let ids = mine_events(&mut raw_miner, &lines);
                if ids.len() == events.len() {
                    grouping_accuracy(&resolve_all(&raw_miner, &ids), &events)
                } else {
                    f64::NAN
                }
            })
            .unwrap_or(f64::NAN);
        raw_logs.extend(raw);
        println!(
            "{system:<12} {content_accuracy:>8.4} {raw_accuracy:>8.4} {:>10}",
            miner.len()
        );
        content_total += content_accuracy;
        raw_total += raw_accuracy;
        measured += 1;
    }
    if measured == 0 {
        eprintln!("no system measured under {}", root.display());
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "{:<12} {:>8.4} {:>8.4}   ({measured} systems)",
        "mean",
        content_total / measured as f64,
        raw_total / measured as f64
    );
    let raw_lines = raw_logs
        .iter()
        .map(|raw| raw.lines().collect::<Vec<_>>())
        .collect::<Vec<_>>();
    // The two paths take turns, so that the machine's load weighs on both alike.
    let mut grouped_rates = Vec::with_capacity(SPEED_RUNS);
    let mut line_rates = Vec::with_capacity(SPEED_RUNS);
    for _ in 0..SPEED_RUNS {
        grouped_rates.push(lines_per_second(&raw_lines, |miner, lines| {
            mine_events(miner, lines).len()
        }));
        line_rates.push(lines_per_second(&raw_lines, |miner, lines| {
            let format = HeaderFormat::Auto;
            lines
                .iter()
                .map(|line| miner.add_line(line, &format).id.0 as usize)
                .sum()
        }));
    }
    let grouped = median(grouped_rates);
    let line_by_line = median(line_rates);
    println!(
        "raw: {:.2} M lines/s grouped into events, {:.2} M lines/s line by line (median of {SPEED_RUNS} runs over {} lines)",
        grouped / 1e6,
        line_by_line / 1e6,
        raw_lines.iter().map(Vec::len).sum::<usize>()
    );
    std::process::ExitCode::SUCCESS
}

/// Mines the lines of one stream as events; every line gets its event's template id.
fn mine_events(miner: &mut Miner, lines: &[&str]) -> Vec<TemplateId> {
    let format = HeaderFormat::Auto;
    let mut grouper = Grouper::new(EventLimits::default());
    let mut ids = Vec::with_capacity(lines.len());
    let mut first_line = "";
    for line in lines {
        if let Pushed::Opened(closed) = grouper.push(line) {
            if let Some(event) = closed {
                let id = miner.add_event(first_line, &format, &event).id;
                ids.extend(std::iter::repeat_n(id, event.lines));
            }
            first_line = line;
        }
    }
    if let Some(event) = grouper.finish() {
        let id = miner.add_event(first_line, &format, &event).id;
        ids.extend(std::iter::repeat_n(id, event.lines));
    }
    ids
}

/// Lines mined per second in one pass over every system's lines, each system with a fresh
/// miner.
fn lines_per_second(systems: &[Vec<&str>], mine: impl Fn(&mut Miner, &[&str]) -> usize) -> f64 {
    let total: usize = systems.iter().map(Vec::len).sum();
    #[allow(clippy::disallowed_methods)] // a measurement of wall time
    let started = std::time::Instant::now();
    let mut checksum = 0usize;
    for lines in systems {
        let mut miner = Miner::new(MinerConfig::default());
        checksum = checksum.wrapping_add(mine(&mut miner, lines));
    }
    std::hint::black_box(checksum);
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
/// The ids the lines' templates go by at the end (templates found to be one are merged).
fn resolve_all(miner: &Miner, ids: &[TemplateId]) -> Vec<TemplateId> {
    ids.iter()
        .map(|id| miner.resolve(*id).unwrap_or(*id))
        .collect()
}

/// The `Content` and `EventId` columns of a structured loghub file.
fn read_structured(text: &str) -> Option<(Vec<String>, Vec<String>)> {
    let mut lines = text.lines();
    let header = split_csv(lines.next()?);
    let content_column = header.iter().position(|name| name == "Content")?;
    let event_column = header.iter().position(|name| name == "EventId")?;
    let mut contents = Vec::new();
    let mut events = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let fields = split_csv(line);
        contents.push(fields.get(content_column).cloned().unwrap_or_default());
        events.push(fields.get(event_column).cloned().unwrap_or_default());
    }
    Some((contents, events))
}

/// One CSV record: commas separate fields, double quotes protect them, `""` is a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut characters = line.chars().peekable();
    while let Some(character) = characters.next() {
        match (character, quoted) {
            ('"', true) if characters.peek() == Some(&'"') => {
                field.push('"');
                characters.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(character),
        }
    }
    fields.push(field);
    fields
}

/// Share of lines whose predicted group holds exactly the lines of their true group.
fn grouping_accuracy(predicted: &[TemplateId], events: &[String]) -> f64 {
    let mut predicted_groups: HashMap<TemplateId, Vec<usize>> = HashMap::new();
    for (line, id) in predicted.iter().enumerate() {
        predicted_groups.entry(*id).or_default().push(line);
    }
    let mut event_sizes: HashMap<&str, usize> = HashMap::new();
    for event in events {
        *event_sizes.entry(event.as_str()).or_default() += 1;
    }
    let mut correct = 0usize;
    for lines in predicted_groups.values() {
        let first_event = events[lines[0]].as_str();
        let one_event = lines.iter().all(|&line| events[line] == first_event);
        if one_event && event_sizes[first_event] == lines.len() {
            correct += lines.len();
        }
    }
    correct as f64 / events.len().max(1) as f64
}

/// Prints the templates that group lines wrongly, with the true events they mix or split.
fn show_errors(miner: &Miner, contents: &[String], predicted: &[TemplateId], events: &[String]) {
    let mut by_template: HashMap<TemplateId, Vec<usize>> = HashMap::new();
    for (line, id) in predicted.iter().enumerate() {
        by_template.entry(*id).or_default().push(line);
    }
    let mut by_event: HashMap<&str, Vec<usize>> = HashMap::new();
    for (line, event) in events.iter().enumerate() {
        by_event.entry(event.as_str()).or_default().push(line);
    }
    let templates = miner
        .templates()
        .into_iter()
        .map(|template| (template.id, template.text))
        .collect::<HashMap<_, _>>();
    let mut wrong = by_template
        .iter()
        .filter(|(_, lines)| {
            let event = events[lines[0]].as_str();
            !(lines.iter().all(|&line| events[line] == event)
                && by_event[event].len() == lines.len())
        })
        .collect::<Vec<_>>();
    wrong.sort_by_key(|(_, lines)| std::cmp::Reverse(lines.len()));
    for (id, lines) in wrong {
        let mut events_here: HashMap<&str, usize> = HashMap::new();
        for &line in lines {
            *events_here.entry(events[line].as_str()).or_default() += 1;
        }
        println!(
            "-- template {id} ({} lines): {}",
            lines.len(),
            templates.get(id).map(String::as_str).unwrap_or("?")
        );
        for (event, count) in events_here {
            let example = by_event[event]
                .iter()
                .find(|&&line| predicted[line] == *id)
                .map(|&line| contents[line].as_str())
                .unwrap_or("");
            println!(
                "     {event} {count}/{} e.g. {}",
                by_event[event].len(),
                example.chars().take(160).collect::<String>()
            );
        }
    }
}
