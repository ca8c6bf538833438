//! A progress bar on standard error, drawn only when it is a terminal.

use std::io::{IsTerminal, Write};

#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
    enabled: bool,
    label: &'static str,
}

impl Progress {
    pub fn new(label: &'static str, total: usize) -> Self {
        Progress {
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
            label,
        }
    }

    pub fn advance(&mut self) {
        self.advance_to(self.done + 1);
    }

    /// Draws `done` of the total as done (a count told by a server).
    pub fn advance_to(&mut self, done: usize) {
        self.done = done;
        if !self.enabled {
            return;
        }
        let width = 30;
        let filled = (self.done * width)
            .checked_div(self.total)
            .unwrap_or(width)
            .min(width);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{} [{}{}] {}/{}",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            self.done,
            self.total
        );
        let _ = stderr.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{}\r", " ".repeat(60));
            let _ = stderr.flush();
        }
    }
}
