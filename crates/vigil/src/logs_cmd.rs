//! `vigil logs`: mine the templates of a log file (or standard input) and print them, or print
//! the template id of every line. Lines are grouped into events first: a stack trace is one
//! event, counted once, under its first line's template with its exception.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use vigil_ingest::logs::{
    Event, EventLimits, Grouper, HeaderFormat, HeaderPattern, Miner, MinerConfig, Pushed,
    TemplateId,
};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A file of log lines; standard input when not given.
    pub file: Option<PathBuf>,
    /// Print the template id of each input line, one a line, in order, instead of the
    /// templates (the lines of one event, such as a stack trace, show its template's id).
    #[arg(long)]
    pub ids: bool,
    /// The header format: a regular expression with a named group `message` and, optionally,
    /// a named group `level`. Lines it does not match are mined whole.
    #[arg(long, conflicts_with = "raw")]
    pub pattern: Option<String>,
    /// The lines have no header: mine them whole.
    #[arg(long)]
    pub raw: bool,
}

pub fn run(args: LogsArgs) -> Result<()> {
    let format = header_format(&args)?;
    let stdout = std::io::stdout();
    let mut writer = std::io::BufWriter::new(stdout.lock());
    match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let reader = std::io::BufReader::new(file);
            mine(reader, &format, args.ids, &mut writer)
                .with_context(|| format!("cannot mine {}", path.display()))?;
        }
        None => {
            let stdin = std::io::stdin();
            mine(stdin.lock(), &format, args.ids, &mut writer)
                .context("cannot mine standard input")?;
        }
    }
    writer.flush().context("cannot write the output")?;
    Ok(())
}

fn header_format(args: &LogsArgs) -> Result<HeaderFormat> {
    if args.raw {
        return Ok(HeaderFormat::Raw);
    }
    match &args.pattern {
        Some(pattern) => Ok(HeaderFormat::Pattern(HeaderPattern::new(pattern)?)),
        None => Ok(HeaderFormat::Auto),
    }
}

/// Mines every event of `reader` (see [`Grouper`]) and writes the templates (most frequent
/// first) or, with `ids`, the template id of each line. Invalid UTF-8 is read lossily. Ids
/// are written once every line is mined, so that templates found to be one show under one id.
pub(crate) fn mine(
    mut reader: impl BufRead,
    format: &HeaderFormat,
    ids: bool,
    writer: &mut impl Write,
) -> Result<()> {
    let mut miner = Miner::new(MinerConfig::default());
    let mut line_ids: Vec<TemplateId> = Vec::new();
    let mut grouper = Grouper::new(EventLimits::default());
    let mut buffer = Vec::new();
    // The open event's first line: the buffer a line opening an event was read into is
    // swapped in, so no line is copied.
    let mut first_line = Vec::new();
    let mut mine_event = |event_start: &[u8], event: &Event| {
        let line = String::from_utf8_lossy(event_start);
        let added = miner.add_event(&line, format, event);
        if ids {
            line_ids.extend(std::iter::repeat_n(added.id, event.lines));
        }
    };
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .context("cannot read a line")?;
        if read == 0 {
            break;
        }
        while matches!(buffer.last(), Some(b'\n' | b'\r')) {
            buffer.pop();
        }
        let line = String::from_utf8_lossy(&buffer);
        if let Pushed::Opened(closed) = grouper.push(&line) {
            if let Some(event) = closed {
                mine_event(&first_line, &event);
            }
            std::mem::swap(&mut first_line, &mut buffer);
        }
    }
    if let Some(event) = grouper.finish() {
        mine_event(&first_line, &event);
    }
    if ids {
        for id in line_ids {
            let current = miner.resolve(id).unwrap_or(id);
            writeln!(writer, "{current}")?;
        }
        return Ok(());
    }
    let mut templates = miner.templates();
    templates.sort_by(|left, right| right.count.cmp(&left.count).then(left.id.cmp(&right.id)));
    writeln!(writer, "count\tid\tlevel\ttemplate")?;
    for template in templates {
        let level = template.level.map_or("-", |level| level.as_str());
        writeln!(
            writer,
            "{}\t{}\t{}\t{}",
            template.count, template.id, level, template.text
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on(input: &[u8], format: &HeaderFormat, ids: bool) -> String {
        let mut output = Vec::new();
        mine(input, format, ids, &mut output).unwrap();
        String::from_utf8(output).unwrap()
    }

    const LINES: &str = "\
2024-01-01 10:00:00 INFO [main] app.Server: started on port 8080
2024-01-01 10:00:01 ERROR [pool-1] app.Db: connection to 10.0.0.5 lost after 30 s
2024-01-01 10:00:02 INFO [main] app.Server: started on port 8081
2024-01-01 10:00:03 ERROR [pool-2] app.Db: connection to 10.0.0.6 lost after 31 s
2024-01-01 10:00:04 WARN [main] app.Cache: cache nearly full
";

    #[test]
    fn ids_follow_the_input_order() {
        let output = run_on(LINES.as_bytes(), &HeaderFormat::Auto, true);
        let ids = output.lines().collect::<Vec<_>>();
        assert_eq!(ids.len(), 5);
        assert_eq!(ids[0], ids[2]);
        assert_eq!(ids[1], ids[3]);
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[4], ids[0]);
        assert_ne!(ids[4], ids[1]);
    }

    #[test]
    fn templates_most_frequent_first_with_level() {
        let output = run_on(LINES.as_bytes(), &HeaderFormat::Auto, false);
        let rows = output.lines().skip(1).collect::<Vec<_>>();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].starts_with("2\t"), "{output}");
        assert!(rows[2].starts_with("1\t"), "{output}");
        assert!(
            output.contains("ERROR\tconnection to <*> lost after <*> s"),
            "{output}"
        );
        assert!(output.contains("WARN\tcache nearly full"), "{output}");
    }

    #[test]
    fn invalid_utf8_and_crlf_are_read() {
        let input = b"caf\xe9 opened\r\ncaf\xe9 opened\r\n\xff\xfe\n";
        let output = run_on(input, &HeaderFormat::Raw, true);
        let ids = output.lines().collect::<Vec<_>>();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], ids[1]);
    }

    #[test]
    fn a_pattern_without_message_group_is_refused() {
        let args = LogsArgs {
            file: None,
            ids: false,
            pattern: Some("^(?P<level>\\w+)".to_string()),
            raw: false,
        };
        let error = header_format(&args).unwrap_err();
        assert!(error.to_string().contains("message"), "{error}");
    }
}
