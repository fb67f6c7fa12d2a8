//! The global log and outbox counters, when their bytes in the store are
//! damaged or missing: the journal never guesses a position (which would
//! write new entries over old ones, and hide new orders from the saga's
//! follower). A missing counter is derived from its tree; an unreadable one,
//! or one behind its tree, fails the open with an error naming it.

use ordersaga_actors::journal::{AppendBatch, OutboxRecord};
use ordersaga_actors::{Journal, JournalConfig, JournalError};
use std::path::Path;

fn open(dir: &Path) -> Result<Journal, JournalError> {
    Journal::open(JournalConfig::new(dir.join("store")))
}

fn record(n: u64) -> OutboxRecord {
    OutboxRecord {
        topic: "t".into(),
        key: Some(n.to_be_bytes().to_vec()),
        payload: Some(vec![1]),
        headers: Vec::new(),
    }
}

/// A store with `n` outbox records, closed.
fn store_with_outbox(dir: &Path, n: u64) {
    let journal = open(dir).unwrap();
    for i in 0..n {
        journal
            .append_blocking(AppendBatch {
                outbox: vec![record(i)],
                ..AppendBatch::default()
            })
            .unwrap();
    }
}

/// Changes the store's raw `meta` tree, as damage on disk would.
fn damage_meta(dir: &Path, change: impl FnOnce(&sled::Tree)) {
    let db = open_raw(&dir.join("store"));
    let meta = db.open_tree("meta").unwrap();
    change(&meta);
    db.flush().unwrap();
}

#[test]
fn given_an_unreadable_counter_when_the_store_opens_then_it_fails_naming_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    store_with_outbox(dir.path(), 3);
    damage_meta(dir.path(), |meta| {
        meta.insert("outbox_next", &[0xde, 0xad, 0xbe][..]).unwrap();
    });
    match open(dir.path()) {
        Err(JournalError::Open { path, source }) => match *source {
            JournalError::Corrupt { what, detail } => {
                // The error names the store, and the counter in it.
                assert!(path.ends_with("store"), "{}", path.display());
                assert!(what.contains("meta/outbox_next"), "{what}");
                assert!(detail.contains("3 bytes"), "{detail}");
            }
            other => panic!("wrong error: {other}"),
        },
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a store whose outbox counter is unreadable"),
    }
}

#[test]
fn given_a_counter_behind_its_tree_when_the_store_opens_then_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    store_with_outbox(dir.path(), 3);
    damage_meta(dir.path(), |meta| {
        meta.insert("outbox_next", &1u64.to_be_bytes()[..]).unwrap();
    });
    let err = open(dir.path()).err().expect("the open fails");
    assert!(
        err.to_string().contains("already holds position 3"),
        "{err}"
    );
}

#[test]
fn given_a_missing_counter_when_the_store_opens_then_it_is_derived_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    store_with_outbox(dir.path(), 3);
    damage_meta(dir.path(), |meta| {
        meta.remove("outbox_next").unwrap();
    });
    let journal = open(dir.path()).unwrap();
    let receipt = journal
        .append_blocking(AppendBatch {
            outbox: vec![record(99)],
            ..AppendBatch::default()
        })
        .unwrap();
    assert_eq!(
        receipt.outbox_positions,
        4..5,
        "after the three kept records"
    );
    let keys: Vec<Vec<u8>> = journal
        .outbox_pending(0, 10)
        .unwrap()
        .into_iter()
        .filter_map(|(_, r)| r.key)
        .collect();
    assert_eq!(keys.len(), 4, "no record was overwritten");
}

/// Opens a store's raw sled files, as damage on disk would reach them. sled
/// lets go of a closed store's file lock a moment after the close (its
/// flusher thread ends on its own), so a lock still held is waited for,
/// briefly.
fn open_raw(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(err)
                if err.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(err) => panic!("cannot open {}: {err}", path.display()),
        }
    }
}
