//! Opening a store: sled's file lock, the store's identity, and the log and
//! outbox counters checked against their trees.

use super::keys::read_u64;
use super::{JournalConfig, JournalError, Trees, META_STORE_ID};

/// Opens sled, retrying briefly while the file lock of a store that was just
/// closed (in this process or a killed one) is still held: sled releases it
/// asynchronously (spacejam/sled#1289). Another live process holding the
/// store still fails, after the retries.
pub(super) fn open_db(config: &JournalConfig) -> Result<sled::Db, JournalError> {
    let mut attempt = 0;
    loop {
        let opened = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity)
            .temporary(config.temporary)
            .open();
        match opened {
            Err(sled::Error::Io(err)) if attempt < 100 && lock_held(&err) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(sled::Error::Io(err)) if lock_held(&err) => {
                return Err(JournalError::Storage(sled::Error::Io(std::io::Error::new(
                    err.kind(),
                    format!(
                        "{} is in use by another process: {err}",
                        config.path.display()
                    ),
                ))))
            }
            other => return Ok(other?),
        }
    }
}

/// The store's identity, created (and made durable) on first open.
pub(super) fn store_id(trees: &Trees) -> Result<uuid::Uuid, JournalError> {
    if let Some(bytes) = trees.meta.get(META_STORE_ID)? {
        return uuid::Uuid::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
            what: "the store id (meta/store_id)".into(),
            detail: e.to_string(),
        });
    }
    let id = uuid::Uuid::new_v4();
    // Two openers cannot race: sled's file lock admits one process.
    trees.meta.insert(META_STORE_ID, id.as_bytes().as_slice())?;
    trees.db.flush()?;
    Ok(id)
}

/// The next position of `tree` (the global log or the outbox), as its
/// counter in `meta` says, checked against the tree itself. A counter that is
/// missing is derived from the tree's last key (and written back); one that is
/// unreadable, or behind a position the tree already holds, fails the open:
/// guessing would write new entries over old ones.
pub(super) fn cursor(
    trees: &Trees,
    key: &[u8],
    tree: &sled::Tree,
    name: &str,
) -> Result<u64, JournalError> {
    let counter = String::from_utf8_lossy(key).into_owned();
    let corrupt = |detail: String| JournalError::Corrupt {
        what: format!("the {name} counter (meta/{counter})"),
        detail,
    };
    let derived = match tree.last()? {
        None => 1,
        Some((last, _)) => read_u64(&last)
            .and_then(|p| p.checked_add(1))
            .ok_or_else(|| {
                corrupt(format!(
                    "the {name} tree's last key is {} bytes, not a position",
                    last.len()
                ))
            })?,
    };
    match trees.meta.get(key)? {
        None if derived == 1 => Ok(1),
        None => {
            trees.meta.insert(key, &derived.to_be_bytes())?;
            trees.db.flush()?;
            Ok(derived)
        }
        Some(bytes) => match read_u64(&bytes) {
            None => Err(corrupt(format!("{} bytes, expected 8", bytes.len()))),
            Some(next) if next < derived => Err(corrupt(format!(
                "it says {next} but the {name} already holds position {}",
                derived - 1
            ))),
            Some(next) => Ok(next),
        },
    }
}

/// sled reports a held file lock only through its message.
fn lock_held(err: &std::io::Error) -> bool {
    err.to_string().contains("could not acquire lock")
}
