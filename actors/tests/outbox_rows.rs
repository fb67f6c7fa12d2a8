//! Outbox rows keep what a record is, null key and null value included, and
//! rows written by an earlier layout (before keys and values could be null)
//! are still read, so an upgrade publishes what the old build left behind.

use ordersaga_actors::journal::{AppendBatch, OutboxRecord};
use ordersaga_actors::{Journal, JournalConfig};
use ordersaga_events::codec::{encode, Format};
use serde::Serialize;
use std::path::Path;

fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir.join("store"))).expect("open")
}

/// The row layout of the first builds.
#[derive(Serialize)]
struct OutboxRecordV1 {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

#[test]
fn null_keys_and_values_survive_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let tombstone = OutboxRecord {
        topic: "t".into(),
        key: None,
        payload: None,
        headers: vec![("h".into(), b"v".to_vec())],
    };
    let empty = OutboxRecord {
        key: Some(Vec::new()),
        payload: Some(Vec::new()),
        ..tombstone.clone()
    };
    journal
        .append_blocking(AppendBatch {
            outbox: vec![tombstone.clone(), empty.clone()],
            ..AppendBatch::default()
        })
        .unwrap();
    let rows: Vec<OutboxRecord> = journal
        .outbox_pending(0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, record)| record)
        .collect();
    // Null and empty are different records, and stay so.
    assert_eq!(rows, vec![tombstone, empty]);
}

#[test]
fn a_row_of_the_first_layout_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = sled::open(dir.path().join("store")).unwrap();
        let outbox = db.open_tree("outbox").unwrap();
        let old = OutboxRecordV1 {
            topic: "users.events".into(),
            key: b"k".to_vec(),
            payload: b"{}".to_vec(),
            headers: Vec::new(),
        };
        outbox
            .insert(1u64.to_be_bytes(), encode(Format::Bincode, &old).unwrap())
            .unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("outbox_next", &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let journal = open(dir.path());
    let rows = journal.outbox_pending(0, 10).unwrap();
    assert_eq!(
        rows,
        vec![(
            1,
            OutboxRecord {
                topic: "users.events".into(),
                key: Some(b"k".to_vec()),
                payload: Some(b"{}".to_vec()),
                headers: Vec::new(),
            }
        )]
    );
}
