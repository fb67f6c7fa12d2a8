//! The stores of one process do not wait for each other.
//!
//! `ordersaga run` keeps the three services' stores in one process. sled
//! 0.34 as published guards every database of a process with one lock: a
//! transaction in one store (a journal's group commit) held up every read,
//! write and flush of the others. The workspace uses a copy of sled with a
//! lock per database (vendor/sled/PATCHES.md); these tests hold a
//! transaction open in one store and require the other store to go on.
//!
//! They synchronise on channels. The one timeout bounds a failure: without
//! the patch the second store's write waits for the first store's
//! transaction, which waits for the test, so the test would hang instead of
//! failing.

use sled::transaction::{ConflictableTransactionResult, Transactional};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// How long a write that should not wait at all may take before the test
/// calls it blocked. Only a failing run waits this long.
const BLOCKED: Duration = Duration::from_secs(30);

fn open(dir: &tempfile::TempDir, name: &str) -> sled::Db {
    sled::Config::new()
        .path(dir.path().join(name))
        .open()
        .expect("open a store on real files")
}

/// Runs a transaction on `tree` that stays open (holding its store's lock)
/// until `release` is signalled; `inside` is signalled once it is open.
fn hold_transaction(
    tree: sled::Tree,
    inside: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
) -> thread::JoinHandle<()> {
    let release = std::sync::Mutex::new(release);
    thread::spawn(move || {
        tree.transaction(|tx| -> ConflictableTransactionResult<(), ()> {
            tx.insert(&b"held"[..], &b"1"[..])?;
            let _ = inside.send(());
            let _ = release.lock().expect("release lock").recv();
            Ok(())
        })
        .expect("the held transaction commits");
    })
}

#[test]
fn a_transaction_in_one_store_does_not_hold_up_another_store() {
    // Given two stores in one process, and a transaction held open in the
    // first.
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = (open(&dir, "first"), open(&dir, "second"));
    let (inside_tx, inside) = mpsc::channel();
    let (release_tx, release) = mpsc::channel();
    let held = hold_transaction(first.open_tree("events").unwrap(), inside_tx, release);
    inside.recv().expect("the transaction is open");

    // When the second store writes, reads, runs a transaction and flushes.
    let (done_tx, done) = mpsc::channel();
    let worker = {
        let second = second.clone();
        thread::spawn(move || {
            let tree = second.open_tree("events").unwrap();
            tree.insert(b"k", b"v").unwrap();
            let read = tree.get(b"k").unwrap();
            tree.transaction(|tx| -> ConflictableTransactionResult<(), ()> {
                tx.insert(&b"t"[..], &b"2"[..])?;
                Ok(())
            })
            .unwrap();
            second.flush().unwrap();
            let _ = done_tx.send(read);
        })
    };

    // Then all of it finishes while the first store's transaction is open.
    let finished = done.recv_timeout(BLOCKED);
    release_tx.send(()).expect("release the held transaction");
    held.join().expect("held transaction thread");
    worker.join().expect("second store's thread");
    assert_eq!(
        finished.expect("the second store waited for the first store's transaction"),
        Some(sled::IVec::from(&b"v"[..]))
    );
    assert_eq!(
        first.open_tree("events").unwrap().get(b"held").unwrap(),
        Some(sled::IVec::from(&b"1"[..])),
        "the held transaction committed after the release"
    );
}

#[test]
fn a_transaction_still_excludes_writes_to_its_own_store() {
    // Given a transaction held open in a store.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir, "store");
    let tree = store.open_tree("events").unwrap();
    let (inside_tx, inside) = mpsc::channel();
    let (release_tx, release) = mpsc::channel();
    let held = hold_transaction(tree.clone(), inside_tx, release);
    inside.recv().expect("the transaction is open");

    // When another thread writes to the same store.
    let (done_tx, done) = mpsc::channel();
    let writer = thread::spawn(move || {
        tree.insert(b"outside", b"x").unwrap();
        let _ = done_tx.send(());
    });

    // Then that write waits for the transaction: it is not done while the
    // transaction is open (the write is queued behind the store's lock, so
    // a broken lock would show here in almost every run), and it is done
    // after.
    let early = done.recv_timeout(Duration::from_millis(200));
    release_tx.send(()).expect("release the held transaction");
    held.join().expect("held transaction thread");
    assert!(
        early.is_err(),
        "a write finished inside another transaction of its store"
    );
    done.recv_timeout(BLOCKED)
        .expect("the write finishes after the transaction");
    writer.join().expect("writer thread");
}

#[test]
fn a_transaction_over_trees_of_two_stores_is_refused() {
    // Given two stores, when one transaction names a tree of each.
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = (open(&dir, "first"), open(&dir, "second"));
    let (a, b) = (
        first.open_tree("a").unwrap(),
        second.open_tree("b").unwrap(),
    );
    let result = (&a, &b).transaction(|(a, b)| -> ConflictableTransactionResult<(), ()> {
        a.insert(&b"k"[..], &b"1"[..])?;
        b.insert(&b"k"[..], &b"2"[..])?;
        Ok(())
    });

    // Then sled refuses it before taking any lock and writes nothing, as
    // upstream does: that is why a transaction takes its one store's lock.
    assert!(
        matches!(
            result,
            Err(sled::transaction::TransactionError::Storage(
                sled::Error::Unsupported(_)
            ))
        ),
        "{result:?}"
    );
    assert_eq!(a.get(b"k").unwrap(), None);
    assert_eq!(b.get(b"k").unwrap(), None);
}
