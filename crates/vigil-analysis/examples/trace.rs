//! Prints, for one bundle, each release host's robust z per metric from its deploy on, and the
//! verdict at every step: `cargo run --release -p vigil-analysis --example trace -- FILE [METRIC]`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use vigil_analysis::{Evaluator, Settings};
use vigil_core::Bundle;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: trace FILE [METRIC]");
    let only = args.next();
    let bundle = Bundle::read(std::path::Path::new(&path)).unwrap();
    let evaluator = Evaluator::new(&bundle, &Settings::default());
    let prepared = evaluator.prepared();
    let first = prepared.first_deploy.unwrap_or(0);
    for (index, metric) in prepared.metrics.iter().enumerate() {
        if only.as_deref().is_some_and(|name| name != metric.meta.name) {
            continue;
        }
        let Some(z) = evaluator.metric_scores(index) else {
            continue;
        };
        println!("== {}", metric.meta.name);
        for &host in prepared
            .release
            .iter()
            .chain(prepared.reference.iter().take(3))
        {
            let from = prepared.hosts[host].deploy.unwrap_or(first);
            let row: Vec<String> = (from..bundle.points.min(from + 30))
                .map(|step| format!("{:6.1}", z[host][step]))
                .collect();
            println!("{:>12} {}", prepared.hosts[host].name, row.join(""));
        }
    }
    for now in first..bundle.points {
        let judgement = evaluator.judge_at(now);
        let labels: Vec<String> = judgement
            .findings
            .iter()
            .map(|finding| format!("{}:{}", finding.severity, finding.signal.label()))
            .collect();
        println!(
            "+{:3} {} {}",
            now - first,
            judgement.verdict,
            labels.join(" ")
        );
    }
}
