//! The log decoder on arbitrary bytes: header splitting (guessed, raw and a configured
//! pattern) and template mining, line by line, then a rebuild from the stored templates; then
//! the lines grouped into events (small limits, so that the bounds are reached) and the events
//! mined, every line counted in exactly one event.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil_ingest::logs::{
    split_header, EventLimits, Grouper, HeaderFormat, HeaderPattern, Miner, MinerConfig, Pushed,
};

/// Compiled once: building a regular expression per input would dwarf the decoder.
fn pattern() -> Option<HeaderPattern> {
    static PATTERN: OnceLock<Option<HeaderPattern>> = OnceLock::new();
    PATTERN
        .get_or_init(|| HeaderPattern::new(r"^(?P<level>\w+)\s+(?P<message>.*)$").ok())
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let formats = [
        Some(HeaderFormat::Auto),
        Some(HeaderFormat::Raw),
        pattern().map(HeaderFormat::Pattern),
    ];
    let config = MinerConfig {
        max_templates: 64,
        max_shapes: 128,
        ..MinerConfig::default()
    };
    for format in formats.iter().flatten() {
        let mut miner = Miner::new(config.clone());
        let mut lines = 0u64;
        for line in text.lines() {
            let split = split_header(line);
            assert!(line.contains(split.message));
            let added = miner.add_line(line, format);
            assert!(miner.template(added.id).is_some());
            lines += 1;
        }
        let templates = miner.templates();
        let total: u64 = templates.iter().map(|template| template.count).sum();
        assert_eq!(total, lines);
        let rebuilt = Miner::from_templates(config.clone(), templates.clone());
        assert_eq!(rebuilt.templates(), templates);
    }
    let limits = EventLimits {
        max_lines: 8,
        max_bytes: 512,
    };
    let mut grouper = Grouper::new(limits);
    let mut miner = Miner::new(config.clone());
    let format = HeaderFormat::Auto;
    let mut first_line = "";
    let mut lines = 0usize;
    let mut grouped = 0usize;
    let mut events = 0u64;
    for line in text.lines() {
        lines += 1;
        if let Pushed::Opened(closed) = grouper.push(line) {
            if let Some(event) = closed {
                assert!(event.read_lines <= limits.max_lines);
                grouped += event.lines;
                let added = miner.add_event(first_line, &format, &event);
                assert!(miner.template(added.id).is_some());
                events += 1;
            }
            first_line = line;
        }
    }
    if let Some(event) = grouper.finish() {
        grouped += event.lines;
        miner.add_event(first_line, &format, &event);
        events += 1;
    }
    assert_eq!(grouped, lines);
    let templates = miner.templates();
    let total: u64 = templates.iter().map(|template| template.count).sum();
    assert_eq!(total, events);
    let rebuilt = Miner::from_templates(config, templates.clone());
    assert_eq!(rebuilt.templates(), templates);
});
