//! Multi-line events: a Java or Python stack trace, and any line a program continues on the
//! next ones, is one event.
//!
//! A [`Grouper`] follows one stream of lines (one app and host). A line that is not a
//! continuation opens an event; continuation lines join the open one:
//!
//! - lines starting with whitespace (Java's `\tat …`, `\t... 3 more`, Python's frames and
//!   code lines), unless they start with a timestamp, and blank lines;
//! - `at pkg.Class.method(…)`, `... N more`, `Caused by: …`, `Suppressed: …` at the start of
//!   a line;
//! - `Traceback (most recent call last):`, `During handling of the above exception…`,
//!   `The above exception was the direct cause…`, and the `SomeError: message` line that
//!   ends a Python traceback;
//! - a bare Java exception line (`java.lang.IllegalStateException: message`, a qualified
//!   class name ending in `Exception`, `Error` or `Throwable`) right after the event's first
//!   line, as `logger.error(message, exception)` writes it, or after a line ending with `:`
//!   (`nested exception is:`); `SomeError: message` right after the first line; Python frames
//!   written without indentation (`File "app.py", line 3 in run`).
//!
//! An event is closed by the next line that opens one, or by [`Grouper::finish`] (the end of
//! a request body, the end of a file). It keeps nothing of its lines but what it reads from
//! them: how many there are, the stack frames counted, the exception class and the first
//! frame of the program's own code. Only the first [`EventLimits::max_lines`] lines and
//! [`EventLimits::max_bytes`] bytes are read; the rest are counted.

use std::collections::HashMap;

use super::header::Level;
use crate::json::LogLine;

/// Lines of one event read at most; later lines are counted only.
pub const DEFAULT_MAX_EVENT_LINES: usize = 256;
/// Bytes of one event read at most; later lines are counted only.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 << 10;

/// The word a template shows between an event's message and its exception.
pub const EXCEPTION_MARK: &str = "=>";

/// How much of one event is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    pub max_lines: usize,
    pub max_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> EventLimits {
        EventLimits {
            max_lines: DEFAULT_MAX_EVENT_LINES,
            max_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Where a Python traceback is, in the lines read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Python {
    #[default]
    None,
    /// After `Traceback (most recent call last):`, before the line naming the exception.
    InTraceback,
    /// After the line naming the exception.
    Ended,
}

/// What an event's lines told, besides its first line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// Lines of the event, the first included, read or only counted.
    pub lines: usize,
    /// Lines read (within the limits).
    pub read_lines: usize,
    /// Bytes read, a line's end counted as one.
    pub read_bytes: usize,
    /// Stack frames read: Java `at …` lines, Python `File "…", line N, in f` lines.
    pub frames: usize,
    /// The names read from the lines, kept apart: most events have none.
    names: Option<Box<Names>>,
    python: Python,
    /// The last line read ended with `:` (`nested exception is:`).
    after_colon: bool,
}

/// What the lines of a stack trace name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Names {
    /// The exception a continuation line named: the bare Java exception line after the first
    /// line, or the line ending the last Python traceback.
    class: Option<String>,
    /// The exception of the first `Caused by:`, when nothing else names one.
    cause_class: Option<String>,
    /// The first Java frame of the program's own code.
    java_frame: Option<String>,
    /// The innermost Python frame of the program's own code in the last traceback.
    python_frame: Option<String>,
}

/// The exception an event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// `java.lang.NullPointerException`, `ValueError`; `None` when no line named it (a trace
    /// whose start was cut off).
    pub class: Option<String>,
    /// The top frame of the program's own code, line numbers left out and numbers in
    /// generated names masked: `com.shop.OrderService.place`, `views.py:handler`.
    pub frame: Option<String>,
}

impl Exception {
    /// The part of the template after [`EXCEPTION_MARK`]: `class` or `class at frame`.
    pub fn template_suffix(&self) -> String {
        let class = self.class.as_deref().unwrap_or("unknown-exception");
        match &self.frame {
            Some(frame) => format!("{class} at {frame}"),
            None => class.to_owned(),
        }
    }
}

impl Event {
    fn starting(line: &str) -> Event {
        let mut event = Event {
            lines: 1,
            read_lines: 1,
            read_bytes: line.len() + 1,
            ..Event::default()
        };
        event.read(line);
        event.after_colon = ends_with_colon(line);
        event
    }

    /// True when the event carries a stack trace or names an exception on a line of its own.
    pub fn has_trace(&self) -> bool {
        self.frames > 0
            || self
                .names
                .as_ref()
                .is_some_and(|names| names.class.is_some())
    }

    /// The level the event counts at: an event with a stack trace is an exception, at least
    /// [`Level::Error`]; any other keeps the level of its first line.
    pub fn level(&self, header_level: Option<Level>) -> Option<Level> {
        if self.has_trace() {
            return header_level.max(Some(Level::Error));
        }
        header_level
    }

    /// The exception the event carries, `None` without a stack trace. `first_message` is the
    /// message of the event's first line: its class is taken from there when no continuation
    /// line named one (`Exception in thread "main" java.lang.IllegalStateException: …`).
    pub fn exception(&self, first_message: &str) -> Option<Exception> {
        if !self.has_trace() {
            return None;
        }
        let names = self.names.as_deref().cloned().unwrap_or_default();
        let class = names
            .class
            .or_else(|| class_in_message(first_message).map(str::to_owned))
            .or(names.cause_class);
        let frame = match self.python {
            Python::None => names.java_frame.or(names.python_frame),
            Python::InTraceback | Python::Ended => names.python_frame,
        };
        Some(Exception { class, frame })
    }

    /// Whether `line` continues this event.
    fn takes(&self, line: &str) -> bool {
        let bytes = line.as_bytes();
        let Some(&first) = bytes.first() else {
            return true;
        };
        if first.is_ascii_whitespace() {
            return !starts_with_timestamp(line);
        }
        let known_start = match first {
            b'a' => line.strip_prefix("at ").is_some_and(is_java_frame),
            b'.' => line.starts_with("..."),
            b'C' => line.starts_with("Caused by: "),
            b'S' => line.starts_with("Suppressed: "),
            b'T' => {
                line.starts_with("Traceback (most recent call last)")
                    || line.starts_with("The above exception was the direct cause")
            }
            b'D' => line.starts_with("During handling of the above exception"),
            b'F' => line.starts_with("File \"") && line.contains("\", line "),
            _ => false,
        };
        if known_start {
            return true;
        }
        if self.python == Python::InTraceback && python_exception_line(line).is_some() {
            return true;
        }
        if self.lines != 1 && !self.after_colon {
            return false;
        }
        let Some((name, rest)) = leading_class(line) else {
            return false;
        };
        if !names_an_exception(name) {
            return false;
        }
        let qualified_alone =
            name.contains('.') && (rest.starts_with(':') || rest.trim().is_empty());
        qualified_alone || (self.lines == 1 && rest.starts_with(':'))
    }

    /// Counts a continuation line and reads it when within `limits`.
    fn add(&mut self, line: &str, limits: &EventLimits) {
        self.lines = self.lines.saturating_add(1);
        let size = line.len() + 1;
        if self.read_lines >= limits.max_lines
            || self.read_bytes.saturating_add(size) > limits.max_bytes
        {
            return;
        }
        self.read_lines += 1;
        self.read_bytes += size;
        self.read(line);
        self.after_colon = ends_with_colon(line);
    }

    fn read(&mut self, line: &str) {
        let indented = line.as_bytes().first().is_some_and(u8::is_ascii_whitespace);
        let trimmed = line.trim_matches(|character: char| character.is_ascii_whitespace());
        if let Some(frame) = trimmed.strip_prefix("at ") {
            if is_java_frame(frame) {
                self.frames += 1;
                let names = self.names_mut();
                if names.java_frame.is_none() {
                    names.java_frame = java_project_frame(frame);
                }
                return;
            }
        }
        if trimmed.starts_with("File \"") {
            self.frames += 1;
            if let Some(frame) = python_project_frame(trimmed) {
                self.names_mut().python_frame = Some(frame);
            }
            return;
        }
        if trimmed.starts_with("Traceback (most recent call last)") {
            self.python = Python::InTraceback;
            if let Some(names) = self.names.as_mut() {
                names.python_frame = None;
            }
            return;
        }
        if let Some(cause) = trimmed.strip_prefix("Caused by: ") {
            let names = self.names_mut();
            if names.cause_class.is_none() {
                names.cause_class = qualified_class_at_start(cause).map(str::to_owned);
            }
            return;
        }
        if indented {
            return;
        }
        if self.python == Python::InTraceback {
            if let Some(class) = python_exception_line(trimmed) {
                self.names_mut().class = Some(class.to_owned());
                self.python = Python::Ended;
                return;
            }
        }
        let named = self
            .names
            .as_ref()
            .is_some_and(|names| names.class.is_some());
        if self.lines == 2 && !named {
            let bare = bare_java_exception(trimmed).or_else(|| bare_named_exception(trimmed));
            if let Some(class) = bare {
                self.names_mut().class = Some(class.to_owned());
            }
        }
    }

    fn names_mut(&mut self) -> &mut Names {
        self.names.get_or_insert_with(Box::default)
    }
}

/// The outcome of [`Grouper::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The line opened a new event, closing the one before when there was one.
    Opened(Option<Event>),
    /// The line continues the open event.
    Joined,
}

/// Groups the lines of one stream into events. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Grouper {
    limits: EventLimits,
    open: Option<Event>,
}

impl Grouper {
    pub fn new(limits: EventLimits) -> Grouper {
        Grouper { limits, open: None }
    }

    /// Takes the next line of the stream.
    pub fn push(&mut self, line: &str) -> Pushed {
        let Some(event) = self.open.as_mut() else {
            self.open = Some(Event::starting(line));
            return Pushed::Opened(None);
        };
        if !event.takes(line) {
            return Pushed::Opened(self.open.replace(Event::starting(line)));
        }
        event.add(line, &self.limits);
        Pushed::Joined
    }

    /// Takes a line the sender says continues the open event (a later line of one
    /// multi-line entry); it opens an event when none is open.
    pub fn join(&mut self, line: &str) -> Pushed {
        match self.open.as_mut() {
            Some(event) => {
                event.add(line, &self.limits);
                Pushed::Joined
            }
            None => {
                self.open = Some(Event::starting(line));
                Pushed::Opened(None)
            }
        }
    }

    /// Closes the open event, if any.
    pub fn finish(&mut self) -> Option<Event> {
        self.open.take()
    }
}

/// An event of a batch of log entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEvent<'a> {
    /// The index of the event's first entry in the batch.
    pub index: usize,
    /// The event's first line.
    pub first_line: &'a str,
    pub event: Event,
}

/// Groups a batch of entries (a request body) into events: consecutive entries of the same
/// app and host are grouped as lines of a file are; an entry holding several lines (with
/// `\n`) is one event by itself. The batch holds whole events: every event is closed at its
/// end. Events come in the order of their first entries.
pub fn group_entries<'a>(entries: &'a [LogLine], limits: &EventLimits) -> Vec<BatchEvent<'a>> {
    struct Stream<'a> {
        grouper: Grouper,
        index: usize,
        first_line: &'a str,
    }
    let mut streams: HashMap<(&str, &str), Stream<'a>> = HashMap::new();
    let mut events = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let stream = streams
            .entry((entry.app.as_str(), entry.host.as_str()))
            .or_insert_with(|| Stream {
                grouper: Grouper::new(*limits),
                index,
                first_line: "",
            });
        if !entry.line.contains('\n') {
            if let Pushed::Opened(closed) = stream.grouper.push(&entry.line) {
                if let Some(event) = closed {
                    events.push(BatchEvent {
                        index: stream.index,
                        first_line: stream.first_line,
                        event,
                    });
                }
                stream.index = index;
                stream.first_line = &entry.line;
            }
            continue;
        }
        if let Some(event) = stream.grouper.finish() {
            events.push(BatchEvent {
                index: stream.index,
                first_line: stream.first_line,
                event,
            });
        }
        let mut own = Grouper::new(*limits);
        let mut lines = entry
            .line
            .split('\n')
            .map(|line| line.trim_end_matches('\r'));
        let first_line = lines.next().unwrap_or("");
        own.push(first_line);
        for line in lines {
            own.join(line);
        }
        if let Some(event) = own.finish() {
            events.push(BatchEvent {
                index,
                first_line,
                event,
            });
        }
    }
    for stream in streams.into_values() {
        let mut grouper = stream.grouper;
        if let Some(event) = grouper.finish() {
            events.push(BatchEvent {
                index: stream.index,
                first_line: stream.first_line,
                event,
            });
        }
    }
    events.sort_by_key(|event| event.index);
    events
}

/// An indented line that still starts with a timestamp (`  2024-05-01 10:00:00 INFO …`)
/// opens an event.
fn starts_with_timestamp(line: &str) -> bool {
    let trimmed = line.trim_start_matches(|character: char| character.is_ascii_whitespace());
    let first = trimmed
        .split(|character: char| character.is_ascii_whitespace())
        .next()
        .unwrap_or("");
    let digits = first.bytes().filter(u8::is_ascii_digit).count();
    digits >= 4
        && first.bytes().any(|byte| matches!(byte, b'-' | b':' | b'/'))
        && first.bytes().all(|byte| {
            byte.is_ascii_digit() || matches!(byte, b'-' | b':' | b'/' | b'.' | b',' | b'T' | b'Z')
        })
}

/// What follows `at ` in a Java frame: a qualified method, then `(`:
/// `com.shop.Api.handle(Api.java:10)`, `java.base/java.lang.Thread.run(Thread.java:829)`.
fn is_java_frame(text: &str) -> bool {
    let Some((method, _)) = text.split_once('(') else {
        return false;
    };
    method.contains('.') && !method.contains(|character: char| character.is_ascii_whitespace())
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'$')
}

/// A dotted or plain name: `java.lang.NullPointerException`, `ValueError`.
fn is_class_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_')
        && !name.ends_with('.')
        && !name.contains("..")
        && bytes
            .iter()
            .all(|&byte| is_identifier_byte(byte) || byte == b'.')
}

/// The class name a line starts with and the rest of the line; `None` when the line does
/// not start with one. Looks at the first word only, so that the many lines that are not
/// exceptions cost little.
fn leading_class(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let first = *bytes.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let end = bytes
        .iter()
        .position(|&byte| !(is_identifier_byte(byte) || byte == b'.'))
        .unwrap_or(bytes.len());
    let name = &line[..end];
    if name.ends_with('.') || name.contains("..") {
        return None;
    }
    Some((name, &line[end..]))
}

fn names_an_exception(name: &str) -> bool {
    let simple = name.rsplit('.').next().unwrap_or(name);
    simple.ends_with("Exception") || simple.ends_with("Error") || simple.ends_with("Throwable")
}

/// A qualified exception class at the start of `text`, followed by nothing, `:` or
/// whitespace: `java.io.IOException: Broken pipe` gives `java.io.IOException`.
fn qualified_class_at_start(text: &str) -> Option<&str> {
    let (name, rest) = leading_class(text)?;
    let ends_well = rest.is_empty() || rest.starts_with(':') || rest.starts_with([' ', '\t']);
    (ends_well && name.contains('.') && names_an_exception(name)).then_some(name)
}

/// A Java exception line of its own: a qualified exception class, then nothing or `: …`.
fn bare_java_exception(line: &str) -> Option<&str> {
    let (name, rest) = leading_class(line)?;
    let ends_well = rest.starts_with(':') || rest.trim().is_empty();
    (ends_well && name.contains('.') && names_an_exception(name)).then_some(name)
}

/// An exception named without a package, then `:`, as Python's logging writes one after the
/// header line: `KeyError: 'user'`.
fn bare_named_exception(line: &str) -> Option<&str> {
    let (name, rest) = leading_class(line)?;
    (rest.starts_with(':') && names_an_exception(name)).then_some(name)
}

fn ends_with_colon(line: &str) -> bool {
    line.trim_end().ends_with(':')
}

/// The line ending a Python traceback: `ValueError: message`, `KeyboardInterrupt`,
/// `requests.exceptions.ConnectionError: …`.
fn python_exception_line(line: &str) -> Option<&str> {
    let (name, rest) = leading_class(line)?;
    let rest = rest.trim_end();
    let ends_well = match rest.strip_prefix(':') {
        Some(message) => message.is_empty() || message.starts_with(' '),
        None => rest.is_empty(),
    };
    ends_well.then_some(name)
}

/// An exception class named inside a message: the first qualified exception class
/// (`Exception in thread "main" java.lang.IllegalStateException: boom`) or a plain one
/// closing a field (`ValueError: …`).
fn class_in_message(message: &str) -> Option<&str> {
    message.split_ascii_whitespace().find_map(|word| {
        let name = word.trim_end_matches([':', ',', ';']);
        let qualified = name.contains('.');
        let closes_field = word.ends_with(':');
        ((qualified || closes_field) && is_class_name(name) && names_an_exception(name))
            .then_some(name)
    })
}

/// Packages of the platform and of common libraries and frameworks: their frames are not the
/// program's own code.
const LIBRARY_PACKAGES: [&str; 30] = [
    "java.",
    "javax.",
    "jakarta.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "akka.",
    "groovy.",
    "org.springframework.",
    "org.apache.",
    "org.eclipse.",
    "org.hibernate.",
    "org.glassfish.",
    "org.jboss.",
    "org.junit.",
    "org.slf4j.",
    "ch.qos.logback.",
    "io.netty.",
    "io.grpc.",
    "io.undertow.",
    "io.micrometer.",
    "io.reactivex.",
    "reactor.",
    "com.google.",
    "com.fasterxml.",
    "okhttp3.",
    "feign.",
];

/// `com.shop.OrderService.place` from `com.shop.OrderService.place(OrderService.java:42)`,
/// `None` for a frame of the platform or of a common library.
fn java_project_frame(frame: &str) -> Option<String> {
    let method = frame.split('(').next().unwrap_or("").trim();
    // `java.base/java.lang.Thread.run`, `app//com.shop.Main.main`: the module goes (a
    // generated class's name holds a `/` too, after a `$`).
    let method = match method.split_once('/') {
        Some((module, rest)) if !module.contains('$') => rest.trim_start_matches('/'),
        _ => method,
    };
    if method.is_empty()
        || LIBRARY_PACKAGES
            .iter()
            .any(|package| method.starts_with(package))
    {
        return None;
    }
    Some(mask_numbers(method))
}

/// `views.py:handler` from `File "/srv/app/views.py", line 12, in handler`, `None` for a
/// frame of the standard library or an installed package.
fn python_project_frame(line: &str) -> Option<String> {
    let path_start = line.find('"')? + 1;
    let path_length = line[path_start..].find('"')?;
    let path = &line[path_start..path_start + path_length];
    let library = [
        "site-packages",
        "dist-packages",
        "/lib/python",
        "\\lib\\",
        "<frozen",
    ];
    if library.iter().any(|marker| path.contains(marker)) {
        return None;
    }
    let function = line
        .rsplit_once(", in ")
        .or_else(|| line.rsplit_once(" in "))
        .map_or("", |(_, function)| function.trim());
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    Some(mask_numbers(&format!("{file}:{function}")))
}

/// Numbers (and `0x…` hexadecimal) as `<*>`, whitespace as `_`: a frame's name as a template
/// word.
fn mask_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut masked = String::with_capacity(text.len());
    let mut index = 0usize;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_digit() {
            let hexadecimal = byte == b'0' && matches!(bytes.get(index + 1), Some(b'x' | b'X'));
            index += if hexadecimal { 2 } else { 1 };
            while index < bytes.len()
                && (bytes[index].is_ascii_digit()
                    || (hexadecimal && bytes[index].is_ascii_hexdigit()))
            {
                index += 1;
            }
            masked.push_str(super::token::WILDCARD);
            continue;
        }
        let Some(character) = text[index..].chars().next() else {
            break;
        };
        masked.push(if character.is_whitespace() {
            '_'
        } else {
            character
        });
        index += character.len_utf8();
    }
    masked
}

/// The suffix of a template text after its last [`EXCEPTION_MARK`], when it has the form
/// [`Exception::template_suffix`] gives: how a miner rebuilt from stored templates tells
/// the exception events' templates.
pub(crate) fn template_suffix_of(text: &str) -> Option<&str> {
    let mark = format!(" {EXCEPTION_MARK} ");
    let (start, suffix) = match text.rfind(&mark) {
        Some(position) => (position + mark.len(), &text[position + mark.len()..]),
        None => {
            let rest = text.strip_prefix(EXCEPTION_MARK)?.strip_prefix(' ')?;
            (EXCEPTION_MARK.len() + 1, rest)
        }
    };
    let words = suffix.split(' ').collect::<Vec<_>>();
    let well_formed = match words.as_slice() {
        [class] => !class.is_empty(),
        [class, at, frame] => !class.is_empty() && *at == "at" && !frame.is_empty(),
        _ => false,
    };
    well_formed.then(|| &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups one stream's lines: each event as (its first line, the event).
    fn group(text: &str, limits: EventLimits) -> Vec<(String, Event)> {
        let mut grouper = Grouper::new(limits);
        let mut events = Vec::new();
        let mut first = String::new();
        for line in text.lines() {
            if let Pushed::Opened(closed) = grouper.push(line) {
                if let Some(event) = closed {
                    events.push((std::mem::take(&mut first), event));
                }
                first = line.to_owned();
            }
        }
        if let Some(event) = grouper.finish() {
            events.push((first, event));
        }
        events
    }

    fn exception_of(first_line: &str, event: &Event) -> Option<Exception> {
        let split = super::super::split_header(first_line);
        event.exception(split.message)
    }

    const JAVA: &str = "\
2024-05-01 10:00:00,001 INFO [main] com.shop.Server: started
2024-05-01 10:00:01,002 ERROR [http-7] com.shop.OrderService: order 42 failed
java.lang.IllegalStateException: payment refused for order 42
\tat com.shop.Payments.charge(Payments.java:88)
\tat com.shop.OrderService.place(OrderService.java:42)
\tat java.base/java.lang.Thread.run(Thread.java:829)
Caused by: java.net.SocketTimeoutException: read timed out
\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)
\tat com.shop.Payments.charge(Payments.java:80)
\t... 3 more
Suppressed: java.io.IOException: close failed
\t\tat com.shop.Payments.close(Payments.java:99)
2024-05-01 10:00:02,003 INFO [main] com.shop.Server: order 43 placed
";

    #[test]
    fn a_java_trace_with_its_cause_is_one_event() {
        let events = group(JAVA, EventLimits::default());
        assert_eq!(events.len(), 3, "{events:#?}");
        let (first_line, trace) = &events[1];
        assert!(first_line.contains("order 42 failed"));
        assert_eq!(trace.lines, 11);
        assert_eq!(trace.frames, 6);
        assert_eq!(trace.level(Some(Level::Info)), Some(Level::Error));
        let exception = exception_of(first_line, trace).unwrap();
        assert_eq!(
            exception.class.as_deref(),
            Some("java.lang.IllegalStateException")
        );
        assert_eq!(exception.frame.as_deref(), Some("com.shop.Payments.charge"));
        assert_eq!(
            exception.template_suffix(),
            "java.lang.IllegalStateException at com.shop.Payments.charge"
        );
        for (first_line, event) in [&events[0], &events[2]] {
            assert_eq!(event.lines, 1);
            assert!(!event.has_trace());
            assert_eq!(event.level(Some(Level::Info)), Some(Level::Info));
            assert_eq!(exception_of(first_line, event), None);
        }
    }

    #[test]
    fn an_uncaught_java_exception_takes_its_class_from_its_first_line() {
        let text = "\
Exception in thread \"main\" java.lang.NullPointerException: null
\tat java.base/java.util.Objects.requireNonNull(Objects.java:209)
\tat com.shop.Main$1.run(Main.java:12)
";
        let events = group(text, EventLimits::default());
        assert_eq!(events.len(), 1);
        let exception = exception_of(&events[0].0, &events[0].1).unwrap();
        assert_eq!(
            exception.class.as_deref(),
            Some("java.lang.NullPointerException")
        );
        assert_eq!(exception.frame.as_deref(), Some("com.shop.Main$<*>.run"));
    }

    const PYTHON: &str = "\
2024-05-01 10:00:00,001 ERROR app.views: request failed
Traceback (most recent call last):
  File \"/srv/app/views.py\", line 12, in handler
    count = int(value)
ValueError: invalid literal for int() with base 10: 'abc'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/srv/app/views.py\", line 15, in handler
    raise BadRequest(value)
  File \"/usr/lib/python3.11/site-packages/web/errors.py\", line 3, in __init__
    super().__init__(value)
web.errors.BadRequest: abc
2024-05-01 10:00:01,001 INFO app.views: request served
";

    #[test]
    fn a_chained_python_traceback_is_one_event_named_by_its_last_exception() {
        let events = group(PYTHON, EventLimits::default());
        assert_eq!(events.len(), 2, "{events:#?}");
        let (first_line, trace) = &events[0];
        assert_eq!(trace.lines, 14);
        assert_eq!(trace.frames, 3);
        let exception = exception_of(first_line, trace).unwrap();
        assert_eq!(exception.class.as_deref(), Some("web.errors.BadRequest"));
        assert_eq!(exception.frame.as_deref(), Some("views.py:handler"));
        assert_eq!(events[1].1.lines, 1);
    }

    #[test]
    fn a_traceback_opening_a_stream_is_an_event_of_its_own() {
        let text = "\
Traceback (most recent call last):
  File \"job.py\", line 3, in <module>
KeyError: 'user'
worker stopped
";
        let events = group(text, EventLimits::default());
        let firsts = events
            .iter()
            .map(|(first, _)| first.as_str())
            .collect::<Vec<_>>();
        assert_eq!(
            firsts,
            ["Traceback (most recent call last):", "worker stopped"]
        );
        assert_eq!(events[0].1.level(None), Some(Level::Error));
        let exception = exception_of(&events[0].0, &events[0].1).unwrap();
        assert_eq!(exception.class.as_deref(), Some("KeyError"));
        assert_eq!(exception.frame.as_deref(), Some("job.py:<module>"));
    }

    #[test]
    fn plain_lines_stay_events_of_their_own() {
        let text = "\
2024-05-01 10:00:00 INFO cache warmed
connection reset by peer
Caching: done
  2024-05-01 10:00:01 INFO indented header
    with a continuation
java.lang.IllegalStateException: not right after a first line
";
        let events = group(text, EventLimits::default());
        let lines = events
            .iter()
            .map(|(_, event)| event.lines)
            .collect::<Vec<_>>();
        assert_eq!(lines, [1, 1, 1, 2, 1], "{events:#?}");
        assert!(events.iter().all(|(_, event)| !event.has_trace()));
        let text = "\
2024-05-01 10:00:00 INFO request served
  in 12 ms
ValueError: neither after a traceback nor right after a first line
";
        let events = group(text, EventLimits::default());
        let lines = events
            .iter()
            .map(|(_, event)| event.lines)
            .collect::<Vec<_>>();
        assert_eq!(lines, [2, 1], "{events:#?}");
    }

    #[test]
    fn a_nested_exception_and_unindented_python_frames_join() {
        let text = "\
java.lang.RuntimeException: javax.mail.SendFailedException: Invalid Addresses;
  nested exception is:
com.sun.mail.smtp.SMTPAddressFailedException: 550 relaying denied

\tat com.shop.Mail.send(Mail.java:236)
[2026-01-19, 09:35:27] ERROR - Task failed with exception: source=\"task\"
KeyError: 'asset_events'
File \"/opt/dags/replay.py\", line 920 in run

File \"/usr/lib/python3.12/site-packages/sdk/runner.py\", line 12 in execute
[2026-01-19, 09:35:28] INFO - done
";
        let events = group(text, EventLimits::default());
        let lines = events
            .iter()
            .map(|(_, event)| event.lines)
            .collect::<Vec<_>>();
        assert_eq!(lines, [5, 5, 1], "{events:#?}");
        let java = exception_of(&events[0].0, &events[0].1).unwrap();
        assert_eq!(java.class.as_deref(), Some("java.lang.RuntimeException"));
        let python = exception_of(&events[1].0, &events[1].1).unwrap();
        assert_eq!(python.class.as_deref(), Some("KeyError"));
        assert_eq!(python.frame.as_deref(), Some("replay.py:run"));
    }

    #[test]
    fn lines_past_the_limits_are_counted_not_read() {
        let mut text = String::from("2024-05-01 10:00:00 ERROR job failed\n");
        for index in 0..300 {
            text.push_str(&format!(
                "\tat com.shop.Step{index}.run(Step.java:{index})\n"
            ));
        }
        let limits = EventLimits {
            max_lines: 10,
            max_bytes: 1 << 20,
        };
        let events = group(&text, limits);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.lines, 301);
        assert_eq!(events[0].1.read_lines, 10);
        assert_eq!(events[0].1.frames, 9);
        let small = EventLimits {
            max_lines: 1000,
            max_bytes: 200,
        };
        let events = group(&text, small);
        assert_eq!(events[0].1.lines, 301);
        assert!(events[0].1.read_bytes <= 200);
        assert!(events[0].1.frames < 6);
    }

    fn entry(host: &str, line: &str) -> LogLine {
        LogLine {
            app: "shop".to_owned(),
            host: host.to_owned(),
            ms: 0,
            line: line.to_owned(),
        }
    }

    #[test]
    fn interleaved_hosts_are_grouped_apart() {
        let entries = [
            entry("a", "2024-05-01 10:00:00 ERROR [x] com.shop.Api: failed"),
            entry("b", "2024-05-01 10:00:00 INFO [x] com.shop.Api: served"),
            entry("a", "java.lang.IllegalStateException: boom"),
            entry("b", "2024-05-01 10:00:01 INFO [x] com.shop.Api: served"),
            entry("a", "\tat com.shop.Api.handle(Api.java:10)"),
            entry("b", "\tat com.shop.Other.handle(Other.java:10)"),
            entry("a", "2024-05-01 10:00:02 INFO [x] com.shop.Api: served"),
        ];
        let events = group_entries(&entries, &EventLimits::default());
        let spans = events
            .iter()
            .map(|event| (event.index, event.event.lines))
            .collect::<Vec<_>>();
        assert_eq!(spans, [(0, 3), (1, 1), (3, 2), (6, 1)]);
        let first = &events[0];
        let split = super::super::split_header(first.first_line);
        let exception = first.event.exception(split.message).unwrap();
        assert_eq!(
            exception.class.as_deref(),
            Some("java.lang.IllegalStateException")
        );
    }

    #[test]
    fn an_entry_of_several_lines_is_one_event() {
        let entries = [
            entry("a", "2024-05-01 10:00:00 INFO start"),
            entry(
                "a",
                "2024-05-01 10:00:01 ERROR failed\r\njava.io.IOException: broken pipe\r\n\tat com.shop.Io.write(Io.java:3)\r\n2024-05-01 10:00:01 ERROR still the same entry",
            ),
            entry("a", "\tat com.shop.Io.flush(Io.java:9)"),
        ];
        let events = group_entries(&entries, &EventLimits::default());
        let spans = events
            .iter()
            .map(|event| (event.index, event.first_line, event.event.lines))
            .collect::<Vec<_>>();
        assert_eq!(
            spans,
            [
                (0, "2024-05-01 10:00:00 INFO start", 1),
                (1, "2024-05-01 10:00:01 ERROR failed", 4),
                (2, "\tat com.shop.Io.flush(Io.java:9)", 1),
            ]
        );
        assert_eq!(events[1].event.frames, 1);
    }

    #[test]
    fn a_body_cut_mid_trace_closes_the_event_at_its_end() {
        let first_body = [
            entry("a", "2024-05-01 10:00:00 ERROR [x] com.shop.Api: failed"),
            entry("a", "java.lang.IllegalStateException: boom"),
            entry("a", "\tat com.shop.Api.handle(Api.java:10)"),
        ];
        let second_body = [
            entry("a", "\tat com.shop.Api.serve(Api.java:20)"),
            entry("a", "\t... 4 more"),
            entry("a", "2024-05-01 10:00:02 INFO [x] com.shop.Api: served"),
        ];
        let first = group_entries(&first_body, &EventLimits::default());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].event.lines, 3);
        let second = group_entries(&second_body, &EventLimits::default());
        let spans = second
            .iter()
            .map(|event| (event.index, event.event.lines))
            .collect::<Vec<_>>();
        assert_eq!(spans, [(0, 2), (2, 1)]);
        // The cut-off rest is an exception without a class, named by its frame.
        let rest = second[0].event.exception(second[0].first_line).unwrap();
        assert_eq!(rest.class, None);
        assert_eq!(
            rest.template_suffix(),
            "unknown-exception at com.shop.Api.serve"
        );
    }

    #[test]
    fn stored_template_texts_give_back_their_suffix() {
        assert_eq!(
            template_suffix_of("failed <*> => java.io.IOException at com.shop.Io.write"),
            Some("java.io.IOException at com.shop.Io.write")
        );
        assert_eq!(template_suffix_of("=> ValueError"), Some("ValueError"));
        assert_eq!(template_suffix_of("a => b => KeyError"), Some("KeyError"));
        assert_eq!(template_suffix_of("mapping a => b c"), None);
        assert_eq!(template_suffix_of("no exception here"), None);
    }

    #[test]
    fn prose_starting_with_at_is_no_frame() {
        let text = "\
2024-05-01 10:00:00 WARN pool low
at least one (1) worker is idle
";
        let events = group(text, EventLimits::default());
        assert_eq!(events.len(), 2, "{events:#?}");
        assert!(!events[0].1.has_trace());
    }

    #[test]
    fn frame_numbers_are_masked() {
        assert_eq!(
            java_project_frame("com.shop.Api$$Lambda$123/0x0000000800c0b440.apply(Unknown)"),
            Some("com.shop.Api$$Lambda$<*>/<*>.apply".to_owned())
        );
        assert_eq!(
            java_project_frame("java.base/java.lang.Thread.run(T.java:1)"),
            None
        );
        assert_eq!(
            python_project_frame("File \"/srv/my app/v2.py\", line 7, in run"),
            Some("v<*>.py:run".to_owned())
        );
    }

    proptest::proptest! {
        #[test]
        fn any_lines_are_grouped_without_losing_one(lines in proptest::collection::vec("[ \\ta-zA-Z0-9.:()$\"_-]{0,40}", 0..60)) {
            let limits = EventLimits { max_lines: 4, max_bytes: 64 };
            let mut grouper = Grouper::new(limits);
            let mut counted = 0usize;
            for line in &lines {
                if let Pushed::Opened(Some(event)) = grouper.push(line) {
                    proptest::prop_assert!(event.read_lines <= 4);
                    counted += event.lines;
                }
            }
            if let Some(event) = grouper.finish() {
                counted += event.lines;
            }
            proptest::prop_assert_eq!(counted, lines.len());
        }
    }
}
