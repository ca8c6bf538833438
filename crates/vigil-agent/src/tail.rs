//! [`FileLogSource`]: follows log files as `tail -F` does. A file is read from its end when the
//! agent starts (what was written before is not the host's news), from its start when it
//! appears later. An agent started again shortly after it stopped goes on from where it read
//! each file to ([`FileLogSource::resume`] with the [`FilePosition`]s it saved), so the lines
//! written while it was down are not lost. A file that shrank was truncated: it is read again from its start. A file
//! whose inode changed was rotated: the rest of the old file is read, then the new one from
//! its start. Each read takes at most [`FileLogSource::max_bytes_per_read`] bytes of a file; a
//! line longer than [`MAX_PARTIAL_LINE_BYTES`] without its end is given as it is.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::LogSource;

/// Where a followed file was read to: its inode and the offset of the first byte not yet
/// given as a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub path: PathBuf,
    pub inode: u64,
    pub offset: u64,
}

/// A line without its end, held until its end arrives, at most.
pub const MAX_PARTIAL_LINE_BYTES: usize = 64 << 10;

/// One followed file.
#[derive(Debug)]
struct Followed {
    path: PathBuf,
    /// The open file and its inode, once it exists.
    open: Option<(File, u64)>,
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

/// Lines appended to a set of files.
#[derive(Debug)]
pub struct FileLogSource {
    files: Vec<Followed>,
    /// Bytes read from one file in one call at most (default 1 MiB); the rest waits for the
    /// next call.
    pub max_bytes_per_read: u64,
}

impl FileLogSource {
    /// Follows `paths`, each from its current end (or from its start once it appears).
    pub fn new(paths: Vec<PathBuf>) -> FileLogSource {
        FileLogSource::resume(paths, &[])
    }

    /// Follows `paths`, each from its position in `positions` when the file is still the one
    /// read then (the same inode, not shorter than the position); a file rotated since is read
    /// from its start, one without a position from its end.
    pub fn resume(paths: Vec<PathBuf>, positions: &[FilePosition]) -> FileLogSource {
        let files = paths
            .into_iter()
            .map(|path| {
                let saved = positions.iter().find(|position| position.path == path);
                let mut followed = Followed {
                    path,
                    open: None,
                    offset: 0,
                    partial: Vec::new(),
                };
                let Ok(file) = File::open(&followed.path) else {
                    return followed;
                };
                let Ok(metadata) = file.metadata() else {
                    return followed;
                };
                followed.offset = match saved {
                    Some(saved)
                        if saved.inode == metadata.ino() && saved.offset <= metadata.len() =>
                    {
                        saved.offset
                    }
                    // Rotated (or truncated) while the agent was down: all of it is new.
                    Some(_) => 0,
                    None => metadata.len(),
                };
                followed.open = Some((file, metadata.ino()));
                followed
            })
            .collect();
        FileLogSource {
            files,
            max_bytes_per_read: 1 << 20,
        }
    }
}

impl Followed {
    /// Reads what was appended, following truncation and rotation; whole lines go to `lines`.
    fn read_into(&mut self, limit: u64, lines: &mut Vec<String>) {
        let on_disk = std::fs::metadata(&self.path).ok();
        let rotated = match (&self.open, &on_disk) {
            (Some((_, inode)), Some(metadata)) => metadata.ino() != *inode,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let mut budget = limit;
        if rotated {
            // The rest of the old file first, then the new file from its start.
            if self.open.is_some() {
                budget = budget.saturating_sub(self.read_open(budget, lines));
                self.flush_partial(lines);
            }
            self.open = None;
            self.offset = 0;
            let Ok(file) = File::open(&self.path) else {
                return;
            };
            let Ok(metadata) = file.metadata() else {
                return;
            };
            self.open = Some((file, metadata.ino()));
        } else if let (Some(metadata), true) = (&on_disk, self.open.is_some()) {
            if metadata.len() < self.offset {
                // Truncated in place: start again.
                self.offset = 0;
                self.partial.clear();
            }
        }
        self.read_open(budget, lines);
    }

    /// Reads up to `budget` bytes from the open file at the offset; returns the bytes read.
    fn read_open(&mut self, budget: u64, lines: &mut Vec<String>) -> u64 {
        let Some((file, _)) = self.open.as_mut() else {
            return 0;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let mut chunk = Vec::new();
        let read = match file.take(budget).read_to_end(&mut chunk) {
            Ok(read) => read as u64,
            Err(_) => return 0,
        };
        self.offset += read;
        let mut rest: &[u8] = &chunk;
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            lines.push(take_line(&mut self.partial));
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PARTIAL_LINE_BYTES {
            lines.push(take_line(&mut self.partial));
        }
        read
    }

    /// A rotated file's last line, even without its end.
    fn flush_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            lines.push(take_line(&mut self.partial));
        }
    }
}

fn take_line(buffer: &mut Vec<u8>) -> String {
    let bytes = std::mem::take(buffer);
    let text = String::from_utf8_lossy(&bytes);
    text.trim_end_matches('\r').to_owned()
}

impl LogSource for FileLogSource {
    fn read_lines(&mut self, now_ms: i64) -> Vec<String> {
        self.read_streams(now_ms).into_iter().flatten().collect()
    }

    /// One stream per followed file, in the order the files were given.
    fn read_streams(&mut self, _now_ms: i64) -> Vec<Vec<String>> {
        self.files
            .iter_mut()
            .map(|followed| {
                let mut lines = Vec::new();
                followed.read_into(self.max_bytes_per_read, &mut lines);
                lines
            })
            .collect()
    }

    /// The open files' positions; a line without its end yet is read again by the next run.
    fn positions(&self) -> Vec<FilePosition> {
        self.files
            .iter()
            .filter_map(|followed| {
                let (_, inode) = followed.open.as_ref()?;
                Some(FilePosition {
                    path: followed.path.clone(),
                    inode: *inode,
                    offset: followed
                        .offset
                        .saturating_sub(followed.partial.len() as u64),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(label: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("vigil-agent-tail-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    fn append(path: &std::path::Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_file_is_read_from_its_end_and_lines_wait_for_their_end() {
        let dir = scratch("end");
        let log = dir.join("app.log");
        append(&log, "old line\n");
        let mut source = FileLogSource::new(vec![log.clone()]);
        assert!(source.read_lines(0).is_empty());
        append(&log, "first\nsecond without its end");
        assert_eq!(source.read_lines(0), ["first"]);
        append(&log, " yet\r\n");
        assert_eq!(source.read_lines(0), ["second without its end yet"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncation_and_rotation_are_followed() {
        let dir = scratch("rotate");
        let log = dir.join("app.log");
        append(&log, "before start\n");
        let mut source = FileLogSource::new(vec![log.clone()]);
        append(&log, "a\n");
        assert_eq!(source.read_lines(0), ["a"]);
        // Truncated in place (copytruncate), then written again.
        std::fs::write(&log, "b\n").unwrap();
        assert_eq!(source.read_lines(0), ["b"]);
        // Rotated: a last line lands in the old file after the rename, then the new file.
        append(&log, "c\n");
        std::fs::rename(&log, dir.join("app.log.1")).unwrap();
        append(&dir.join("app.log.1"), "d\n");
        append(&log, "e\n");
        assert_eq!(source.read_lines(0), ["c", "d", "e"]);
        append(&log, "f\n");
        assert_eq!(source.read_lines(0), ["f"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_file_is_a_stream_of_its_own_in_the_order_given() {
        let dir = scratch("streams");
        let first = dir.join("app.log");
        let second = dir.join("error.log");
        append(&first, "");
        append(&second, "");
        let mut source = FileLogSource::new(vec![first.clone(), second.clone()]);
        append(&second, "to error\n");
        append(&first, "to app\nagain\n");
        assert_eq!(
            source.read_streams(0),
            [vec!["to app", "again"], vec!["to error"]]
        );
        assert_eq!(source.read_streams(0), [Vec::<String>::new(), Vec::new()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start() {
        let dir = scratch("later");
        let log = dir.join("late.log");
        let mut source = FileLogSource::new(vec![log.clone()]);
        assert!(source.read_lines(0).is_empty());
        append(&log, "hello\n");
        assert_eq!(source.read_lines(0), ["hello"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_read_is_bounded_and_the_rest_comes_next() {
        let dir = scratch("bounded");
        let log = dir.join("app.log");
        append(&log, "");
        let mut source = FileLogSource::new(vec![log.clone()]);
        source.max_bytes_per_read = 8;
        append(&log, "1234567\nabcdefg\n");
        assert_eq!(source.read_lines(0), ["1234567"]);
        assert_eq!(source.read_lines(0), ["abcdefg"]);
        assert!(source.read_lines(0).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_source_resumed_from_its_positions_reads_what_was_written_meanwhile() {
        let dir = scratch("resume");
        let log = dir.join("app.log");
        let rotated = dir.join("other.log");
        append(&log, "old\n");
        append(&rotated, "old\n");
        let mut source = FileLogSource::new(vec![log.clone(), rotated.clone()]);
        append(&log, "seen\nhalf a li");
        append(&rotated, "seen\n");
        assert_eq!(source.read_lines(0), ["seen", "seen"]);
        let positions = source.positions();
        assert_eq!(positions.len(), 2);
        drop(source);

        // While no agent ran: the first file grows, the second is rotated.
        append(&log, "ne\nwritten while down\n");
        std::fs::rename(&rotated, dir.join("other.log.1")).unwrap();
        append(&rotated, "new file\n");
        let mut resumed = FileLogSource::resume(vec![log.clone(), rotated.clone()], &positions);
        assert_eq!(
            resumed.read_lines(0),
            ["half a line", "written while down", "new file"]
        );
        // A file without a position is read from its end, as by a new source.
        let fresh = dir.join("fresh.log");
        append(&fresh, "before\n");
        let mut other = FileLogSource::resume(vec![fresh.clone()], &positions);
        append(&fresh, "after\n");
        assert_eq!(other.read_lines(0), ["after"]);
        // A position past the file's end (truncated while down) starts it over.
        std::fs::write(&log, "short\n").unwrap();
        let mut truncated = FileLogSource::resume(vec![log.clone()], &resumed.positions());
        assert_eq!(truncated.read_lines(0), ["short"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_line_without_end_is_given_once_it_is_too_long() {
        let dir = scratch("long");
        let log = dir.join("app.log");
        append(&log, "");
        let mut source = FileLogSource::new(vec![log.clone()]);
        append(&log, &"x".repeat(MAX_PARTIAL_LINE_BYTES + 1));
        let lines = source.read_lines(0);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_PARTIAL_LINE_BYTES + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
