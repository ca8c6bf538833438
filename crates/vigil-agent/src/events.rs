//! Log lines to events: a stack trace's lines (and any line a program continues on the next
//! ones) become one event, sent as one entry whose lines are joined by `\n`, which the server
//! mines as one event. The rules of what continues an event are vigil-ingest's
//! [`Grouper`]'s. An event stays open while its lines may still be coming: it is closed by the
//! next line that opens one, or by a read that brought no line at all.

use vigil_ingest::logs::{EventLimits, Grouper, Pushed};

/// One event: its lines joined by `\n`, at most [`EventLimits`]' lines and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Unix seconds of its first line's read.
    pub at: i64,
    pub text: String,
    /// Lines beyond the limits, left out.
    pub dropped_lines: usize,
}

/// Groups one stream of lines into events.
#[derive(Debug)]
pub struct EventJoiner {
    grouper: Grouper,
    limits: EventLimits,
    open: Option<LogEvent>,
    open_lines: usize,
}

impl Default for EventJoiner {
    fn default() -> EventJoiner {
        EventJoiner::new(EventLimits::default())
    }
}

impl EventJoiner {
    pub fn new(limits: EventLimits) -> EventJoiner {
        EventJoiner {
            grouper: Grouper::new(limits),
            limits,
            open: None,
            open_lines: 0,
        }
    }

    /// Takes the lines of one read; returns the events they closed. An empty read closes the
    /// open event: its lines were all written.
    pub fn push_lines(&mut self, lines: &[String], at: i64) -> Vec<LogEvent> {
        let mut closed = Vec::new();
        if lines.is_empty() {
            closed.extend(self.finish());
            return closed;
        }
        for line in lines {
            match self.grouper.push(line) {
                Pushed::Opened(_) => {
                    closed.extend(self.open.take());
                    self.open = Some(LogEvent {
                        at,
                        text: line.clone(),
                        dropped_lines: 0,
                    });
                    self.open_lines = 1;
                }
                Pushed::Joined => self.join(line, at),
            }
        }
        closed
    }

    fn join(&mut self, line: &str, at: i64) {
        let Some(event) = self.open.as_mut() else {
            self.open = Some(LogEvent {
                at,
                text: line.to_owned(),
                dropped_lines: 0,
            });
            self.open_lines = 1;
            return;
        };
        let fits = self.open_lines < self.limits.max_lines
            && event.text.len() + 1 + line.len() <= self.limits.max_bytes;
        if fits {
            event.text.push('\n');
            event.text.push_str(line);
            self.open_lines += 1;
        } else {
            event.dropped_lines += 1;
        }
    }

    /// Closes the open event, if any.
    pub fn finish(&mut self) -> Option<LogEvent> {
        self.grouper.finish();
        self.open_lines = 0;
        self.open.take()
    }
}

/// One [`EventJoiner`] per stream of lines (per followed file): a trace written to one file
/// in two parts is not cut by the other files' lines read between them.
#[derive(Debug, Default)]
pub struct StreamJoiners {
    joiners: Vec<EventJoiner>,
}

impl StreamJoiners {
    /// Takes one read's streams (see [`crate::LogSource::read_streams`]); returns the events
    /// they closed, stream by stream.
    pub fn push_streams(&mut self, streams: &[Vec<String>], at: i64) -> Vec<LogEvent> {
        if self.joiners.len() < streams.len() {
            self.joiners
                .resize_with(streams.len(), EventJoiner::default);
        }
        let mut closed = Vec::new();
        for (joiner, lines) in self.joiners.iter_mut().zip(streams) {
            closed.extend(joiner.push_lines(lines, at));
        }
        closed
    }

    /// Closes every stream's open event.
    pub fn finish(&mut self) -> Vec<LogEvent> {
        self.joiners
            .iter_mut()
            .filter_map(EventJoiner::finish)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_stack_trace_is_one_event() {
        let mut joiner = EventJoiner::default();
        let read = lines(
            "2026-12-07 10:00:00 INFO order placed id=1\n\
2026-12-07 10:00:01 ERROR order failed id=2\n\
java.lang.IllegalStateException: stock is gone\n\
\tat com.shop.OrderService.place(OrderService.java:42)\n\
\tat com.shop.Api.post(Api.java:7)\n\
2026-12-07 10:00:02 INFO order placed id=3",
        );
        let closed = joiner.push_lines(&read, 100);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].text, "2026-12-07 10:00:00 INFO order placed id=1");
        assert_eq!(closed[1].text.lines().count(), 4);
        assert!(closed[1]
            .text
            .ends_with("\tat com.shop.Api.post(Api.java:7)"));
        // The last line may still be continued: it closes on an empty read.
        let last = joiner.push_lines(&[], 101);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].text, "2026-12-07 10:00:02 INFO order placed id=3");
        assert_eq!(last[0].at, 100);
        assert!(joiner.push_lines(&[], 102).is_empty());
    }

    #[test]
    fn a_trace_split_over_two_reads_stays_one_event() {
        let mut joiner = EventJoiner::default();
        let first = joiner.push_lines(
            &lines("ERROR boom\njava.lang.RuntimeException: x\n\tat a.B.c(B.java:1)"),
            5,
        );
        assert!(first.is_empty());
        let second = joiner.push_lines(&lines("\tat a.B.d(B.java:2)\nINFO next"), 6);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].text.lines().count(), 4);
    }

    #[test]
    fn a_trace_split_over_two_reads_of_one_file_is_not_cut_by_another_files_lines() {
        let mut joiners = StreamJoiners::default();
        let first = joiners.push_streams(
            &[
                lines("ERROR boom\njava.lang.RuntimeException: x\n\tat a.B.c(B.java:1)"),
                lines("INFO other file"),
            ],
            5,
        );
        assert!(first.is_empty(), "{first:?}");
        let second = joiners.push_streams(&[lines("\tat a.B.d(B.java:2)"), Vec::new()], 6);
        // The other file's read was empty: its event is whole.
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].text, "INFO other file");
        let rest = joiners.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].text.lines().count(), 4, "{rest:?}");
        assert!(rest[0].text.starts_with("ERROR boom"));
        // One joiner over both files would have joined the trace's end to the other file's line.
        let mut one = EventJoiner::default();
        one.push_lines(
            &lines(
                "ERROR boom\njava.lang.RuntimeException: x\n\tat a.B.c(B.java:1)\nINFO other file",
            ),
            5,
        );
        one.push_lines(&lines("\tat a.B.d(B.java:2)"), 6);
        let mixed = one.finish().unwrap();
        assert!(mixed.text.starts_with("INFO other file"), "{mixed:?}");
    }

    #[test]
    fn an_event_is_bounded_and_counts_what_it_left_out() {
        let limits = EventLimits {
            max_lines: 3,
            max_bytes: 1 << 10,
        };
        let mut joiner = EventJoiner::new(limits);
        let mut read = vec!["ERROR boom".to_owned()];
        read.extend((0..10).map(|frame| format!("\tat a.B.m{frame}(B.java:{frame})")));
        joiner.push_lines(&read, 1);
        let event = joiner.finish().unwrap();
        assert_eq!(event.text.lines().count(), 3);
        assert_eq!(event.dropped_lines, 8);
    }
}
