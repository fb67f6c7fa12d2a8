//! Damaged bytes in the middle of a store's file must not pass for an older
//! store. sled recovers its file up to the first damaged message and drops
//! the rest; the durable head beside it tells, and the open fails naming the
//! store and what was lost.

use ordersaga_actors::journal::{AppendBatch, OutboxRecord};
use ordersaga_actors::{Journal, JournalConfig, JournalError};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

fn open(dir: &Path) -> Result<Journal, JournalError> {
    Journal::open(JournalConfig::new(dir.join("store")))
}

/// A closed store holding `n` outbox records of a few hundred bytes each.
fn store(dir: &Path, n: u64) {
    let journal = open(dir).unwrap();
    for i in 0..n {
        journal
            .append_blocking(AppendBatch {
                outbox: vec![OutboxRecord {
                    topic: "t".into(),
                    key: Some(i.to_be_bytes().to_vec()),
                    payload: Some(vec![i as u8; 300]),
                    headers: Vec::new(),
                }],
                ..AppendBatch::default()
            })
            .unwrap();
    }
}

#[test]
fn a_store_that_reopens_whole_passes_the_check() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 50);
    let journal = open(dir.path()).expect("a whole store opens");
    assert_eq!(journal.outbox_len(), 50);
}

#[test]
fn garbage_in_the_middle_of_the_file_fails_the_open_instead_of_losing_writes_silently() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 300);
    // Given 4 KB of garbage written into the middle of sled's file,
    let file = dir.path().join("store").join("db");
    let len = std::fs::metadata(&file).unwrap().len();
    let mut db = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    db.seek(SeekFrom::Start(len / 2)).unwrap();
    db.write_all(&[0xa5; 4096]).unwrap();
    db.sync_all().unwrap();
    drop(db);
    // when the store opens, then it refuses, naming the store and the loss.
    let err = open(dir.path())
        .err()
        .expect("the damaged store must not open");
    let text = err.to_string();
    assert!(text.contains("store"), "{text}");
    assert!(text.contains("was durable up to"), "{text}");
}
