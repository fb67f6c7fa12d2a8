//! The read model's sled store: its trees, its reads and its pages.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `users` | user id (16 bytes) | [`UserRow`] JSON |
//! | `products` | product id (16) | [`ProductRow`] JSON |
//! | `orders` | order id (16) | [`OrderRow`] JSON |
//! | `user_orders` | user (16) ‖ `u64::MAX −` placed-at millis (8, BE) ‖ order (16) | the order's [`OrderRow`] JSON, a copy of its `orders` row |
//! | `streams` | [`StreamId::to_key`] (17) | last applied sequence (u64 BE) |
//! | `offsets` | physical topic ‖ `0` ‖ partition (i32 BE) | next offset (i64 BE) |
//! | `meta` | `source` | [`Source`] JSON: format, cluster id, topics |
//!
//! Each record's row changes, its stream's sequence and its partition's
//! offset are written in one transaction (see `apply.rs`), so the offset a
//! projection resumes from always matches the rows.

use super::error::ReadModelError;
use super::keys::{self, hex};
use super::rows::{OrderRow, ProductRow, UserRow};
use ordersaga_events::StreamId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The layout of rows and keys. A store of another format is cleared and
/// projected again, rather than misread. Format 2: `user_orders` holds a
/// copy of each order's row (format 1 held nothing there).
pub const FORMAT: u32 = 2;

/// The directory of the read model inside a gateway's `--data` directory.
pub const DIR_NAME: &str = "readmodel";

const META_SOURCE: &[u8] = b"source";

/// What a read model was projected from. Offsets are valid only for the
/// cluster that issued them (the embedded broker starts empty on every
/// run, while the store persists) and for the topics they were read from:
/// a store bound to another source is cleared and projected from the
/// beginning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// [`FORMAT`] when the rows were written.
    pub format: u32,
    /// The cluster id.
    pub cluster_id: String,
    /// The physical event topics, sorted.
    pub topics: Vec<String>,
}

impl Source {
    /// The source of this build's rows: `cluster_id`, and `topics` sorted.
    pub fn new(cluster_id: impl Into<String>, mut topics: Vec<String>) -> Self {
        topics.sort();
        Self {
            format: FORMAT,
            cluster_id: cluster_id.into(),
            topics,
        }
    }
}

/// Every tree's entries by tree name: `(key, value)` in key order.
pub type Dump = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// The cursor of the next page; absent on the last one.
    pub next: Option<String>,
}

pub(super) struct Trees {
    pub(super) db: sled::Db,
    pub(super) users: sled::Tree,
    pub(super) products: sled::Tree,
    pub(super) orders: sled::Tree,
    pub(super) user_orders: sled::Tree,
    pub(super) streams: sled::Tree,
    pub(super) offsets: sled::Tree,
    pub(super) meta: sled::Tree,
}

pub(super) struct Inner {
    pub(super) path: PathBuf,
    pub(super) trees: Trees,
    /// Counts committed applies; every wait (read-your-writes, offsets) is
    /// woken by it rather than by polling.
    pub(super) changes: watch::Sender<u64>,
}

/// The gateway's read models: users, products, orders and each user's
/// orders, projected from the event topics. Cheap to clone (one store).
#[derive(Clone)]
pub struct ReadModel {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// How long `open` waits for the file lock of a store that was just closed
/// (sled lets go of it asynchronously, spacejam/sled#1289).
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

impl ReadModel {
    /// Opens (or creates) the read model in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<ReadModel, ReadModelError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source| ReadModelError::Open {
            path: path.clone(),
            source,
        };
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        let db = loop {
            match sled::Config::new().path(&path).open() {
                Err(sled::Error::Io(err))
                    if err.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other.map_err(open_error)?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(open_error);
        let trees = Trees {
            users: tree("users")?,
            products: tree("products")?,
            orders: tree("orders")?,
            user_orders: tree("user_orders")?,
            streams: tree("streams")?,
            offsets: tree("offsets")?,
            meta: tree("meta")?,
            db,
        };
        Ok(ReadModel {
            inner: Arc::new(Inner {
                path,
                trees,
                changes: watch::channel(0).0,
            }),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(super) fn storage(&self, source: sled::Error) -> ReadModelError {
        ReadModelError::Storage {
            path: self.inner.path.clone(),
            source,
        }
    }

    pub(super) fn corrupt(&self, what: String, detail: impl ToString) -> ReadModelError {
        ReadModelError::Corrupt {
            path: self.inner.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    fn row<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &str,
        key: &[u8],
    ) -> Result<Option<T>, ReadModelError> {
        match tree.get(key).map_err(|e| self.storage(e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(format!("{name}/{}", hex(key)), e)),
        }
    }

    /// The user's row, if the read model has seen the user registered.
    pub fn user(&self, id: Uuid) -> Result<Option<UserRow>, ReadModelError> {
        self.row(&self.inner.trees.users, "users", id.as_bytes())
    }

    /// The product's row, if the read model has seen it added.
    pub fn product(&self, id: Uuid) -> Result<Option<ProductRow>, ReadModelError> {
        self.row(&self.inner.trees.products, "products", id.as_bytes())
    }

    /// The order's row, if the read model has seen it placed.
    pub fn order(&self, id: Uuid) -> Result<Option<OrderRow>, ReadModelError> {
        self.row(&self.inner.trees.orders, "orders", id.as_bytes())
    }

    /// The last sequence of `stream` the read model applied; 0 for none.
    pub fn version(&self, stream: &StreamId) -> Result<u64, ReadModelError> {
        match self
            .inner
            .trees
            .streams
            .get(stream.to_key())
            .map_err(|e| self.storage(e))?
        {
            None => Ok(0),
            Some(bytes) => keys::read_u64(&bytes)
                .ok_or_else(|| self.corrupt(format!("streams/{stream}"), "not 8 bytes")),
        }
    }

    /// The next offset to read, per (physical topic, partition).
    pub fn offsets(&self) -> Result<BTreeMap<(String, i32), i64>, ReadModelError> {
        let mut offsets = BTreeMap::new();
        for entry in self.inner.trees.offsets.iter() {
            let (key, value) = entry.map_err(|e| self.storage(e))?;
            let what = || format!("offsets/{}", hex(&key));
            let partition =
                keys::parse_offset_key(&key).ok_or_else(|| self.corrupt(what(), "key"))?;
            let next = keys::read_u64(&value).ok_or_else(|| self.corrupt(what(), "value"))?;
            offsets.insert(partition, next as i64);
        }
        Ok(offsets)
    }

    /// The source the store was projected from, if it is bound to one.
    pub fn source(&self) -> Result<Option<Source>, ReadModelError> {
        self.row(&self.inner.trees.meta, "meta", META_SOURCE)
    }

    /// Binds the store to `source`: when it was projected from another
    /// source (another cluster, other topics, another format) or none, it
    /// is cleared first. Returns whether it was cleared.
    pub fn bind(&self, source: &Source) -> Result<bool, ReadModelError> {
        if self.source()?.as_ref() == Some(source) {
            return Ok(false);
        }
        self.reset(source)?;
        Ok(true)
    }

    /// Clears the store and binds it to `source`.
    pub fn reset(&self, source: &Source) -> Result<(), ReadModelError> {
        self.clear()?;
        let json = serde_json::to_vec(source).map_err(|e| self.corrupt("meta/source".into(), e))?;
        let trees = &self.inner.trees;
        trees
            .meta
            .insert(META_SOURCE, json)
            .map_err(|e| self.storage(e))?;
        trees.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Empties every tree. The source goes first and is made durable: a
    /// clear cut short by a crash leaves a store bound to nothing, which the
    /// next start clears again, never rows without their offsets.
    pub fn clear(&self) -> Result<(), ReadModelError> {
        let trees = &self.inner.trees;
        let storage = |e| self.storage(e);
        trees.meta.clear().map_err(storage)?;
        trees.db.flush().map_err(storage)?;
        for tree in [
            &trees.offsets,
            &trees.streams,
            &trees.users,
            &trees.products,
            &trees.orders,
            &trees.user_orders,
        ] {
            tree.clear().map_err(storage)?;
        }
        trees.db.flush().map_err(storage)?;
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Makes every applied record durable. (Each apply is atomic; this
    /// only bounds how many a crash can lose, which are then read again.)
    pub async fn flush(&self) -> Result<(), ReadModelError> {
        self.inner
            .trees
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }

    /// Every tree's entries, in key order: to compare two read models (a
    /// rebuild and a live projection must be equal) and for diagnostics.
    pub fn dump(&self) -> Result<Dump, ReadModelError> {
        let trees = &self.inner.trees;
        let mut dump = BTreeMap::new();
        for (name, tree) in [
            ("users", &trees.users),
            ("products", &trees.products),
            ("orders", &trees.orders),
            ("user_orders", &trees.user_orders),
            ("streams", &trees.streams),
            ("offsets", &trees.offsets),
            ("meta", &trees.meta),
        ] {
            let entries = tree
                .iter()
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.storage(e))?;
            dump.insert(name.to_owned(), entries);
        }
        Ok(dump)
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::tests::{order_placed, product_added, record_of};
    use super::*;
    use chrono::{DateTime, Utc};

    fn temp() -> (tempfile::TempDir, ReadModel) {
        let dir = tempfile::tempdir().unwrap();
        let model = ReadModel::open(dir.path().join(DIR_NAME)).unwrap();
        (dir, model)
    }

    #[test]
    fn products_page_in_id_order_with_cursors() {
        let (_dir, model) = temp();
        let mut ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (offset, id) in ids.iter().enumerate() {
            model
                .apply(&record_of(offset as i64, product_added(*id, 1)))
                .unwrap();
        }
        ids.sort();
        let first = model.products_page(None, 2).unwrap();
        assert_eq!(
            first.items.iter().map(|p| p.product_id).collect::<Vec<_>>(),
            ids[..2]
        );
        let second = model.products_page(first.next.as_deref(), 2).unwrap();
        assert_eq!(
            second
                .items
                .iter()
                .map(|p| p.product_id)
                .collect::<Vec<_>>(),
            ids[2..4]
        );
        let last = model.products_page(second.next.as_deref(), 2).unwrap();
        assert_eq!(
            last.items.iter().map(|p| p.product_id).collect::<Vec<_>>(),
            ids[4..]
        );
        assert_eq!(last.next, None, "the last page has no next");
        let all = model.products_page(None, 5).unwrap();
        assert_eq!((all.items.len(), all.next), (5, None));
    }

    #[test]
    fn a_users_orders_page_newest_first_and_only_theirs() {
        let (_dir, model) = temp();
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        let at = |s| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let orders: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for (i, order) in orders.iter().enumerate() {
            let record = record_of(i as i64, order_placed(*order, user, at(1_000 + i as i64)));
            model.apply(&record).unwrap();
        }
        model
            .apply(&record_of(
                9,
                order_placed(Uuid::new_v4(), other, at(5_000)),
            ))
            .unwrap();
        let first = model.user_orders_page(user, None, 2).unwrap();
        let ids: Vec<Uuid> = first.items.iter().map(|o| o.order_id).collect();
        assert_eq!(ids, [orders[2], orders[1]], "newest first");
        let rest = model
            .user_orders_page(user, first.next.as_deref(), 2)
            .unwrap();
        let ids: Vec<Uuid> = rest.items.iter().map(|o| o.order_id).collect();
        assert_eq!((ids, rest.next), (vec![orders[0]], None));
        let none = model.user_orders_page(Uuid::new_v4(), None, 10).unwrap();
        assert!(none.items.is_empty() && none.next.is_none());
    }

    #[test]
    fn an_invalid_cursor_is_an_error_naming_it() {
        let (_dir, model) = temp();
        for bad in ["zz", "00", &"0".repeat(31)] {
            let err = model.products_page(Some(bad), 10).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
            let err = model
                .user_orders_page(Uuid::new_v4(), Some(bad), 10)
                .unwrap_err();
            assert!(matches!(err, ReadModelError::InvalidCursor(c) if c == bad));
        }
    }

    #[test]
    fn binding_to_another_source_clears_and_the_same_source_keeps() {
        let (_dir, model) = temp();
        let a = Source::new("cluster-a", vec!["t.users.events".into()]);
        assert!(model.bind(&a).unwrap(), "an unbound store is cleared");
        model
            .apply(&record_of(0, product_added(Uuid::new_v4(), 3)))
            .unwrap();
        assert!(!model.bind(&a).unwrap());
        assert_eq!(model.products_page(None, 10).unwrap().items.len(), 1);

        let b = Source::new("cluster-b", vec!["t.users.events".into()]);
        assert!(model.bind(&b).unwrap());
        assert!(model.products_page(None, 10).unwrap().items.is_empty());
        assert!(model.offsets().unwrap().is_empty());
        assert_eq!(model.source().unwrap(), Some(b));
    }

    #[test]
    fn the_store_reopens_with_its_rows_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DIR_NAME);
        let id = Uuid::new_v4();
        {
            let model = ReadModel::open(&path).unwrap();
            model.apply(&record_of(0, product_added(id, 3))).unwrap();
        }
        let model = ReadModel::open(&path).unwrap();
        assert_eq!(model.product(id).unwrap().unwrap().on_hand, 3);

        let file = dir.path().join("a-file");
        std::fs::write(&file, b"not a directory").unwrap();
        let err = ReadModel::open(&file).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}
