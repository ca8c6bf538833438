//! Splitting a log line into its header (timestamp, level, thread, logger, pid...) and its
//! message.
//!
//! [`split_header`] finds the message and the level by itself, from the shapes headers take in
//! common formats: a level word after a timestamp (`2015-10-18 18:01:47,978 INFO [main]
//! org.example.Server: message`), syslog tags (`Jun 14 15:16:01 host sshd[1939]: message`),
//! bracketed fields (`[Sun Dec 04 04:47:44 2005] [error] message`), ` - ` separators, padded
//! columns and `|`-separated fields. [`HeaderPattern`] takes a configured regular expression
//! instead, for formats the guess gets wrong.

use regex::Regex;

use super::LogsError;

/// Header units looked at before giving up on finding where the message starts.
const MAX_HEADER_UNITS: usize = 14;
/// Bytes of a line looked at for its header.
const MAX_HEADER_BYTES: usize = 320;
/// Plain words (no digit, no punctuation) a header may hold before its level or tag: host
/// names, facility names, component columns.
const MAX_PLAIN_WORDS: usize = 3;

/// Severity of a log line, normalised from the many spellings formats use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Critical,
    Alert,
    #[serde(rename = "EMERG")]
    Emergency,
    Fatal,
}

impl Level {
    /// The canonical upper-case name (`INFO`, `WARN`, `ERROR`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Notice => "NOTICE",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
            Level::Alert => "ALERT",
            Level::Emergency => "EMERG",
            Level::Fatal => "FATAL",
        }
    }

    /// Reads a level word in any case (`info`, `Warning`, `ERR`, `crit`...); `None` for
    /// anything else. Single letters are not read here: see [`Level::from_letter`].
    pub fn from_word(word: &str) -> Option<Level> {
        if word.len() < 3 || word.len() > 11 || !word.as_bytes()[0].is_ascii_alphabetic() {
            return None;
        }
        let mut buffer = [0u8; 11];
        let lower = &mut buffer[..word.len()];
        lower.copy_from_slice(word.as_bytes());
        lower.make_ascii_lowercase();
        let level = match &*lower {
            b"trace" | b"verbose" | b"finest" | b"finer" => Level::Trace,
            b"debug" | b"fine" | b"dbg" => Level::Debug,
            b"info" | b"information" | b"informational" => Level::Info,
            b"notice" => Level::Notice,
            b"warn" | b"warning" => Level::Warn,
            b"error" | b"err" | b"severe" | b"failure" => Level::Error,
            b"crit" | b"critical" => Level::Critical,
            b"alert" => Level::Alert,
            b"emerg" | b"emergency" => Level::Emergency,
            b"fatal" | b"panic" => Level::Fatal,
            _ => return None,
        };
        Some(level)
    }

    /// Reads the one-letter levels of Android and glog style headers (`V D I W E F`).
    pub fn from_letter(letter: &str) -> Option<Level> {
        let level = match letter {
            "V" => Level::Trace,
            "D" => Level::Debug,
            "I" => Level::Info,
            "W" => Level::Warn,
            "E" => Level::Error,
            "F" | "A" => Level::Fatal,
            _ => return None,
        };
        Some(level)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A line split into its level (when the header has one) and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLine<'a> {
    pub level: Option<Level>,
    pub message: &'a str,
}

impl<'a> SplitLine<'a> {
    /// The whole line as the message, with no level.
    pub fn raw(line: &'a str) -> SplitLine<'a> {
        SplitLine {
            level: None,
            message: trim_line(line),
        }
    }
}

/// A configured header format: a regular expression with a named group `message` and,
/// optionally, a named group `level`. Lines it does not match are taken whole.
#[derive(Debug, Clone)]
pub struct HeaderPattern {
    regex: Regex,
    message_group: usize,
    level_group: Option<usize>,
}

impl HeaderPattern {
    /// Compiles `pattern`; it must have a named group `message`.
    pub fn new(pattern: &str) -> Result<HeaderPattern, LogsError> {
        let regex = Regex::new(pattern).map_err(|error| LogsError::InvalidPattern {
            reason: error.to_string(),
        })?;
        let group_index = |name: &str| {
            regex
                .capture_names()
                .position(|candidate| candidate == Some(name))
        };
        let Some(message_group) = group_index("message") else {
            return Err(LogsError::InvalidPattern {
                reason: "the pattern has no named group `message`".to_string(),
            });
        };
        let level_group = group_index("level");
        Ok(HeaderPattern {
            regex,
            message_group,
            level_group,
        })
    }

    /// Splits `line` with the pattern; a line it does not match is taken whole, with no level.
    pub fn split<'a>(&self, line: &'a str) -> SplitLine<'a> {
        let Some(captures) = self.regex.captures(line) else {
            return SplitLine::raw(line);
        };
        let Some(message) = captures.get(self.message_group) else {
            return SplitLine::raw(line);
        };
        let level = self
            .level_group
            .and_then(|group| captures.get(group))
            .and_then(|found| {
                let word = found.as_str().trim();
                Level::from_word(word).or_else(|| Level::from_letter(word))
            });
        SplitLine {
            level,
            message: trim_line(message.as_str()),
        }
    }
}

/// How lines are split into header and message.
#[derive(Debug, Clone, Default)]
pub enum HeaderFormat {
    /// Guess the header of each line ([`split_header`]).
    #[default]
    Auto,
    /// Lines have no header: the whole line is the message.
    Raw,
    /// A configured pattern.
    Pattern(HeaderPattern),
}

impl HeaderFormat {
    /// Splits one line according to the format.
    pub fn split<'a>(&self, line: &'a str) -> SplitLine<'a> {
        match self {
            HeaderFormat::Auto => split_header(line),
            HeaderFormat::Raw => SplitLine::raw(line),
            HeaderFormat::Pattern(pattern) => pattern.split(line),
        }
    }
}

fn trim_line(text: &str) -> &str {
    text.trim_matches(|character: char| character.is_ascii_whitespace())
}

/// One unit of a header: a whitespace-separated token, or a bracketed group that may hold
/// spaces (`[Sun Dec 04 04:47:44 2005]`).
#[derive(Debug, Clone, Copy)]
struct Unit<'a> {
    text: &'a str,
    end: usize,
    /// Spaces after the unit (column padding shows as two or more).
    gap: usize,
}

/// Walks the units of a line from a byte offset.
fn next_unit(line: &str, start: usize) -> Option<Unit<'_>> {
    let bytes = line.as_bytes();
    let mut begin = start;
    while begin < bytes.len() && bytes[begin].is_ascii_whitespace() {
        begin += 1;
    }
    if begin >= bytes.len() {
        return None;
    }
    let mut end = begin;
    if bytes[begin] == b'[' {
        let mut depth = 0usize;
        while end < bytes.len() {
            match bytes[end] {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        end += 1;
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        // A bracket followed by more text (`[main]-x`) stays one unit up to the next space.
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
    } else {
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
    }
    let mut after = end;
    while after < bytes.len() && bytes[after].is_ascii_whitespace() {
        after += 1;
    }
    // Brackets and whitespace are ASCII, so both ends fall on character boundaries.
    let text = line.get(begin..end)?;
    Some(Unit {
        text,
        end,
        gap: after - end,
    })
}

/// Characters that may surround a field in a header: `[INFO]`, `<warn>`, `INFO:`, `(E)`.
fn strip_field_punctuation(text: &str) -> &str {
    let is_punctuation = |byte: &u8| {
        matches!(
            byte,
            b'[' | b']' | b'(' | b')' | b'<' | b'>' | b':' | b',' | b'|' | b'{' | b'}'
        )
    };
    let bytes = text.as_bytes();
    let Some(start) = bytes.iter().position(|byte| !is_punctuation(byte)) else {
        return "";
    };
    let end = bytes
        .iter()
        .rposition(|byte| !is_punctuation(byte))
        .map_or(start, |last| last + 1);
    // The trimmed bytes are ASCII, so both ends fall on character boundaries.
    text.get(start..end).unwrap_or("")
}

fn is_month_or_weekday(word: &str) -> bool {
    const NAMES: [&str; 19] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "mon",
        "tue", "wed", "thu", "fri", "sat", "sun",
    ];
    if word.len() < 3 || word.len() > 10 || !word.as_bytes()[0].is_ascii_alphabetic() {
        return false;
    }
    if !word
        .bytes()
        .all(|byte| byte.is_ascii_alphabetic() || byte == b',' || byte == b'.')
    {
        return false;
    }
    let prefix = &word[..3];
    NAMES.iter().any(|name| prefix.eq_ignore_ascii_case(name))
}

/// A unit made of digits and date or time separators: `2015-10-18`, `18:01:47,978`, `081109`,
/// `[10.30`, `16:49:06]`, `2005-06-03-15.42.50.675872`, `20171223-22:15:29:606`.
fn is_time_like(text: &str) -> bool {
    is_time_core(strip_field_punctuation(text))
}

/// [`is_time_like`] on a unit already stripped of its surrounding punctuation.
fn is_time_core(core: &str) -> bool {
    let mut digits = 0usize;
    for byte in core.bytes() {
        match byte {
            b'0'..=b'9' => digits += 1,
            b'-' | b':' | b'.' | b',' | b'/' | b'_' | b'T' | b'Z' | b'+' => {}
            _ => return false,
        }
    }
    digits >= 2 && digits * 2 >= core.len()
}

fn is_bracketed(text: &str) -> bool {
    (text.starts_with('[') && text.ends_with(']'))
        || (text.starts_with('<') && text.ends_with('>'))
        || (text.starts_with('(') && text.ends_with(')'))
}

/// A bracketed unit that holds a time: `[Sun Dec 04 04:47:44 2005]`, `[10.30 16:49:06]`.
fn is_bracketed_time(text: &str) -> bool {
    if !is_bracketed(text) {
        return false;
    }
    let inner = &text[1..text.len() - 1];
    inner.split_ascii_whitespace().any(is_time_like)
}

/// Header-ish units that carry no decision: numbers, times, host names with digits, ids.
fn is_header_value(text: &str, core: &str, time_unit: bool, calendar: bool) -> bool {
    if core.is_empty() || text == "-" {
        return true;
    }
    time_unit || calendar || core.bytes().any(|byte| byte.is_ascii_digit())
}

fn is_plain_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'/'))
}

/// A logger or component name: `org.apache.hadoop.Server`, `nova.compute.manager`,
/// `dfs.DataNode$PacketResponder`.
fn is_qualified_name(text: &str) -> bool {
    let Some(first) = text.bytes().next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && (text.contains('.') || text.contains('$'))
        && text.bytes().all(|byte| {
            byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'$' | b'_' | b'-' | b'/')
        })
}

/// A syslog or logger tag closing the header: `sshd[24200]:`, `kernel:`,
/// `org.apache.Server:`, `WindowManager:`. Message words end with `:` too (`error:`), so a tag
/// only counts where the header before it was recognised.
fn is_tag(text: &str) -> bool {
    text.len() > 1 && text.ends_with(':') && !text.ends_with("::") && !is_time_like(text)
}

/// Finds the message and the level of a line without configuration.
///
/// The header ends after a syslog-style tag (`prog[pid]:`), after the fields that follow a
/// level word (a bracketed thread, a logger name, a ` - ` separator), or after `|`-separated
/// fields; a line with none of these is taken whole, less its leading timestamps. The guess is
/// cheap: it looks at the first few units of the line only.
pub fn split_header(line: &str) -> SplitLine<'_> {
    let line = trim_line(line);
    if let Some(split) = split_pipe_fields(line) {
        return split;
    }
    let mut position = 0usize;
    let mut seen_time = false;
    let mut plain_words = 0usize;
    let mut time_prefix_end = 0usize;
    let mut only_times_so_far = true;
    for index in 0..MAX_HEADER_UNITS {
        let Some(unit) = next_unit(line, position) else {
            break;
        };
        if unit.end > MAX_HEADER_BYTES {
            break;
        }
        let text = unit.text;
        let core = strip_field_punctuation(text);
        let level = Level::from_word(core).or_else(|| {
            if seen_time && index > 0 {
                Level::from_letter(core)
            } else {
                None
            }
        });
        if let Some(level) = level {
            if index == 0 || seen_time || is_bracketed(text) || text.ends_with(':') {
                let message_start = after_level(line, unit);
                return SplitLine {
                    level: Some(level),
                    message: trim_line(&line[message_start..]),
                };
            }
        }
        if seen_time && is_tag(text) {
            return SplitLine {
                level: None,
                message: trim_line(&line[unit.end..]),
            };
        }
        if seen_time && index > 0 {
            if let Some(after_dash) = dash_after(line, unit) {
                return SplitLine {
                    level: None,
                    message: trim_line(&line[after_dash..]),
                };
            }
        }
        let time_unit = is_time_core(core) || is_bracketed_time(text);
        let calendar = is_month_or_weekday(core);
        if time_unit {
            seen_time = true;
        }
        if only_times_so_far && (time_unit || calendar || text == "-") {
            time_prefix_end = unit.end;
        } else {
            only_times_so_far = false;
        }
        if !is_header_value(text, core, time_unit, calendar) && !is_bracketed(text) {
            if !is_plain_word(text) {
                break;
            }
            plain_words += 1;
            if plain_words > MAX_PLAIN_WORDS {
                break;
            }
        }
        position = unit.end;
    }
    SplitLine {
        level: None,
        message: trim_line(&line[time_prefix_end..]),
    }
}

/// Where the message starts after the level unit: past a separator, a bracketed thread or
/// context, a logger name or a padded column.
fn after_level(line: &str, level_unit: Unit<'_>) -> usize {
    let mut position = level_unit.end;
    if level_unit.text.ends_with(':') {
        return position;
    }
    let mut skipped_name = false;
    for _ in 0..4 {
        let Some(unit) = next_unit(line, position) else {
            return position;
        };
        let text = unit.text;
        if text == "-" || text == ":" || text == "|" {
            position = unit.end;
            continue;
        }
        if is_bracketed(text) {
            position = unit.end;
            continue;
        }
        if is_tag(text) && !text.contains(' ') {
            return unit.end;
        }
        if let Some(after_dash) = dash_after(line, unit) {
            return after_dash;
        }
        if !skipped_name && is_qualified_name(text) {
            skipped_name = true;
            position = unit.end;
            continue;
        }
        if !skipped_name && unit.gap >= 2 && is_plain_word(text) && text.len() <= 24 {
            skipped_name = true;
            position = unit.end;
            continue;
        }
        return position;
    }
    position
}

/// When `unit` is followed by a lone `-` (` - `), the offset after that dash; not when a
/// level follows the dash (`12:00:01 - INFO [main] - message`).
fn dash_after(line: &str, unit: Unit<'_>) -> Option<usize> {
    let next = next_unit(line, unit.end)?;
    if next.text != "-" || unit.text.ends_with(':') {
        return None;
    }
    if let Some(after) = next_unit(line, next.end) {
        if Level::from_word(strip_field_punctuation(after.text)).is_some() {
            return None;
        }
    }
    Some(next.end)
}

/// Headers made of `|`-separated fields (`20171223-22:15:29:606|Step_LSC|30002312|message`):
/// the header is the leading fields without spaces, the first of them a time.
fn split_pipe_fields(line: &str) -> Option<SplitLine<'_>> {
    let first_pipe = line.find('|')?;
    if first_pipe == 0 || first_pipe > 64 || !is_time_like(line[..first_pipe].trim()) {
        return None;
    }
    let mut start = first_pipe + 1;
    let mut level = None;
    for _ in 0..6 {
        let rest = &line[start..];
        let Some(next_pipe) = rest.find('|') else {
            break;
        };
        let field = &rest[..next_pipe];
        if field.trim().contains(' ') {
            break;
        }
        if level.is_none() {
            level = Level::from_word(field.trim());
        }
        start += next_pipe + 1;
    }
    Some(SplitLine {
        level,
        message: trim_line(&line[start..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, level: Option<Level>, message: &str) {
        let split = split_header(line);
        assert_eq!(split.message, message, "message of {line:?}");
        assert_eq!(split.level, level, "level of {line:?}");
    }

    #[test]
    fn java_logger_with_thread() {
        check(
            "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster for application appattempt_1445144423722_0020_000001",
            Some(Level::Info),
            "Created MRAppMaster for application appattempt_1445144423722_0020_000001",
        );
    }

    #[test]
    fn compact_date_pid_and_logger() {
        check(
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
            Some(Level::Info),
            "PacketResponder 1 for block blk_38865049064139660 terminating",
        );
    }

    #[test]
    fn slash_date_and_logger() {
        check(
            "17/06/09 20:10:40 WARN executor.CoarseGrainedExecutorBackend: Registered signal handlers for [TERM, HUP, INT]",
            Some(Level::Warn),
            "Registered signal handlers for [TERM, HUP, INT]",
        );
    }

    #[test]
    fn log4j_with_dashes_and_nested_brackets() {
        check(
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
            Some(Level::Info),
            "Notification time out: 3200",
        );
    }

    #[test]
    fn syslog_tag() {
        check(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0",
            None,
            "authentication failure; logname= uid=0",
        );
        check(
            "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
            None,
            "Invalid user webmaster from 173.234.31.186",
        );
        check(
            "Jul  1 09:00:55 calvisitor-10-105-160-95 kernel[0]: IOThunderboltSwitch<0>(0x0)::listenerCallback - Thunderbolt HPD packet",
            None,
            "IOThunderboltSwitch<0>(0x0)::listenerCallback - Thunderbolt HPD packet",
        );
    }

    #[test]
    fn syslog_behind_epoch_and_node() {
        check(
            "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
            None,
            "session closed for user root",
        );
    }

    #[test]
    fn level_after_location_columns() {
        check(
            "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected",
            Some(Level::Info),
            "instruction cache parity error corrected",
        );
    }

    #[test]
    fn apache_bracketed_time_and_level() {
        check(
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
            Some(Level::Error),
            "mod_jk child workerEnv in error state 6",
        );
    }

    #[test]
    fn android_letter_level_and_tag() {
        check(
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogsopening app wtoken",
            Some(Level::Debug),
            "printFreezingDisplayLogsopening app wtoken",
        );
    }

    #[test]
    fn padded_columns() {
        check(
            "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505",
            Some(Level::Info),
            "Loaded Servicing Stack v6.1.7601.23505",
        );
    }

    #[test]
    fn logger_and_request_context() {
        check(
            "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38101a0b-2096 113d3a99 - - -] 10.11.10.1 \"GET /v2/servers HTTP/1.1\" status: 200",
            Some(Level::Info),
            "10.11.10.1 \"GET /v2/servers HTTP/1.1\" status: 200",
        );
    }

    #[test]
    fn pipe_fields() {
        check(
            "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
            None,
            "onStandStepChanged 3579",
        );
    }

    #[test]
    fn bracketed_time_program_and_dash() {
        check(
            "[10.30 16:49:06] chrome.exe - proxy.example.org:5070 open through proxy proxy.example.org:5070 HTTPS",
            None,
            "proxy.example.org:5070 open through proxy proxy.example.org:5070 HTTPS",
        );
    }

    #[test]
    fn iso_timestamp_and_bracketed_level() {
        check(
            "2024-03-01T10:00:00.123Z [WARN] disk almost full on /var",
            Some(Level::Warn),
            "disk almost full on /var",
        );
    }

    #[test]
    fn line_without_header_is_kept_whole() {
        check(
            "connection reset by peer while reading response",
            None,
            "connection reset by peer while reading response",
        );
        check("", None, "");
    }

    #[test]
    fn unknown_header_loses_leading_timestamps_only() {
        check(
            "134681 node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change",
            None,
            "node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change",
        );
    }

    #[test]
    fn configured_pattern() {
        let pattern =
            HeaderPattern::new(r"^\S+ (?P<level>\w+) \[[^\]]*\] (?P<message>.*)$").unwrap();
        let split = pattern.split("12:00:01 error [worker-3] queue overflow");
        assert_eq!(split.level, Some(Level::Error));
        assert_eq!(split.message, "queue overflow");
        let unmatched = pattern.split("no header here");
        assert_eq!(unmatched.level, None);
        assert_eq!(unmatched.message, "no header here");
    }

    #[test]
    fn pattern_needs_a_message_group() {
        assert!(matches!(
            HeaderPattern::new(r"^(?P<level>\w+) (.*)$"),
            Err(LogsError::InvalidPattern { .. })
        ));
        assert!(matches!(
            HeaderPattern::new(r"^(?P<message>.*"),
            Err(LogsError::InvalidPattern { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_text_splits_into_a_part_of_itself(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let line = String::from_utf8_lossy(&bytes);
            let split = split_header(&line);
            proptest::prop_assert!(line.contains(split.message));
        }

        #[test]
        fn header_like_text_splits_into_a_part_of_itself(line in "[A-Za-z0-9 :\\[\\]|,.-]{0,120}") {
            let split = split_header(&line);
            proptest::prop_assert!(line.contains(split.message));
        }
    }
}
