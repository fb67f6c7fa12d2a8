//! The durable head: a small file beside sled's, naming the log and outbox
//! positions the store had made durable.
//!
//! sled recovers its file by replaying it up to the first damaged message
//! and drops everything after it, as it would a write torn by a crash. Bytes
//! damaged in the middle of the file therefore do not fail the open: the
//! store comes back as an older, self-consistent store, and every check of
//! its contents passes (we saw `verify` pass on a store with 4 KB of garbage
//! written into it, missing two of its three orders). Only something outside
//! the file can tell. After every flush that moved a position, the writer
//! records the positions here; on open, positions the file no longer reaches
//! mean that durable writes were lost, and the open fails saying so.
//!
//! The file is written after sled's flush returned, so it never runs ahead
//! of what sled made durable. It is not synced itself: after a power cut it
//! may be behind, which only weakens the check, never fails it falsely.
//!
//! It is kept open and overwritten in place (one `pwrite` at offset 0), not
//! truncated and written anew: on ext4 a truncate followed by a write makes
//! the close start writeback of the file (`auto_da_alloc`), which cost a
//! lone append more than its whole sled flush (measured: ~2.5 ms per
//! `fs::write` against ~1 µs per `pwrite`). Positions only grow, so the new
//! text is never shorter than the old one; should it be, it is padded with
//! spaces, which the reader skips.

use super::writer::Cursor;
use super::JournalError;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The file's name inside the store's directory.
const FILE: &str = "durable-head";

/// Where the writer records the durable head.
pub(crate) struct DurableHead {
    path: PathBuf,
    /// The file, opened on the first record, and its length.
    file: Option<(File, usize)>,
    /// The text being written, kept to reuse its allocation.
    text: String,
}

impl DurableHead {
    /// The head file of the store at `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
            file: None,
            text: String::new(),
        }
    }

    /// Records `cursor` (best effort: a failure is logged and only weakens
    /// the check on the next open).
    pub fn record(&mut self, cursor: &Cursor) {
        if let Err(err) = self.write(cursor) {
            // Reopen on the next record.
            self.file = None;
            tracing::warn!(file = %self.path.display(), cause = %err, "cannot record the durable head");
        }
    }

    fn write(&mut self, cursor: &Cursor) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
            self.file = Some((file, len));
        }
        let Some((file, len)) = &mut self.file else {
            return Ok(());
        };
        let text = &mut self.text;
        text.clear();
        let _ = write!(
            text,
            "log {} outbox {}",
            cursor.log_next, cursor.outbox_next
        );
        while text.len() + 1 < *len {
            text.push(' ');
        }
        text.push('\n');
        file.write_all_at(text.as_bytes(), 0)?;
        *len = (*len).max(text.len());
        Ok(())
    }

    /// Fails when the store, as sled recovered it, ends before positions it
    /// had made durable. A missing or unreadable head file checks nothing.
    pub fn check(&self, cursor: &Cursor) -> Result<(), JournalError> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Ok(());
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let (Some(log), Some(outbox)) = (
            words.get(1).and_then(|w| w.parse::<u64>().ok()),
            words.get(3).and_then(|w| w.parse::<u64>().ok()),
        ) else {
            tracing::warn!(file = %self.path.display(), "ignoring an unreadable durable head");
            return Ok(());
        };
        if cursor.log_next < log || cursor.outbox_next < outbox {
            return Err(JournalError::Corrupt {
                what: "the store's file (db)".into(),
                detail: format!(
                    "it was durable up to log position {} and outbox position {}, but now \
                     ends at {} and {}: sled dropped everything after damaged bytes in the \
                     file. Restore the store from a backup; nothing was written to it",
                    log - 1,
                    outbox - 1,
                    cursor.log_next - 1,
                    cursor.outbox_next - 1
                ),
            });
        }
        Ok(())
    }
}
