//! The lists: pages of products and of a user's orders, as rows or as the
//! JSON an answer carries.
//!
//! The rows are stored as JSON already, so the HTTP answer is built from
//! the stored bytes as they are ([`ReadModel::products_json`],
//! [`ReadModel::user_orders_json`]): parsing twenty rows only to print them
//! again cost more than the rest of a list request (measured with
//! `ordersaga bench http`).

use super::keys::{hex, parse_cursor, USER_ORDER_ENTRY};
use super::rows::{OrderRow, ProductRow};
use super::store::{Page, ReadModel};
use super::ReadModelError;
use serde::de::DeserializeOwned;
use std::ops::Bound;
use uuid::Uuid;

/// Stored rows of one page and the cursor of the next.
struct RawPage {
    /// `(key, row JSON)` of each entry, in order.
    rows: Vec<(Vec<u8>, sled::IVec)>,
    next: Option<String>,
}

impl RawPage {
    /// `{"items":[…],"next":…}` from the rows as stored.
    fn json(self) -> Vec<u8> {
        let size: usize = self.rows.iter().map(|(_, row)| row.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 64);
        body.extend_from_slice(b"{\"items\":[");
        for (i, (_, row)) in self.rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(row);
        }
        body.extend_from_slice(b"],\"next\":");
        match &self.next {
            // A cursor is hex: nothing to escape.
            Some(next) => {
                body.push(b'"');
                body.extend_from_slice(next.as_bytes());
                body.push(b'"');
            }
            None => body.extend_from_slice(b"null"),
        }
        body.push(b'}');
        body
    }
}

impl ReadModel {
    /// Products in id order, `limit` at most, after `cursor` (the `next` of
    /// the previous page).
    pub fn products_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ProductRow>, ReadModelError> {
        let page = self.products_raw(cursor, limit)?;
        self.parsed(page, "products")
    }

    /// [`ReadModel::products_page`] as the JSON of a [`Page`].
    pub fn products_json(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<u8>, ReadModelError> {
        Ok(self.products_raw(cursor, limit)?.json())
    }

    /// `user`'s orders, newest first, `limit` at most, after `cursor`.
    pub fn user_orders_page(
        &self,
        user: Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<OrderRow>, ReadModelError> {
        let page = self.user_orders_raw(user, cursor, limit)?;
        self.parsed(page, "orders")
    }

    /// [`ReadModel::user_orders_page`] as the JSON of a [`Page`].
    pub fn user_orders_json(
        &self,
        user: Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<u8>, ReadModelError> {
        Ok(self.user_orders_raw(user, cursor, limit)?.json())
    }

    fn parsed<T: DeserializeOwned>(
        &self,
        page: RawPage,
        tree: &str,
    ) -> Result<Page<T>, ReadModelError> {
        let items = page
            .rows
            .iter()
            .map(|(key, row)| {
                serde_json::from_slice(row)
                    .map_err(|e| self.corrupt(format!("{tree}/{}", hex(key)), e))
            })
            .collect::<Result<Vec<T>, _>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    fn products_raw(&self, cursor: Option<&str>, limit: usize) -> Result<RawPage, ReadModelError> {
        let tree = &self.inner.trees.products;
        let range = match cursor {
            Some(text) => tree.range((Bound::Excluded(parse_cursor(text, 16)?), Bound::Unbounded)),
            None => tree.range::<&[u8], _>(..),
        };
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for entry in range {
            let (key, row) = entry.map_err(|e| self.storage(e))?;
            if rows.len() == limit {
                more = true;
                break;
            }
            rows.push((key.to_vec(), row));
        }
        let next = more.then(|| rows.last().map(|(key, _)| hex(key))).flatten();
        Ok(RawPage { rows, next })
    }

    fn user_orders_raw(
        &self,
        user: Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RawPage, ReadModelError> {
        let prefix = user.as_bytes().to_vec();
        let start = match cursor {
            Some(text) => {
                let mut key = prefix.clone();
                key.extend(parse_cursor(text, USER_ORDER_ENTRY)?);
                Bound::Excluded(key)
            }
            None => Bound::Included(prefix.clone()),
        };
        let mut end = prefix.clone();
        end.extend([0xff; USER_ORDER_ENTRY]);
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        let mut last = Vec::new();
        for entry in self
            .inner
            .trees
            .user_orders
            .range((start, Bound::Included(end)))
        {
            let (key, row) = entry.map_err(|e| self.storage(e))?;
            if rows.len() == limit {
                more = true;
                break;
            }
            let order = key
                .get(16 + 8..)
                .and_then(|id| Uuid::from_slice(id).ok())
                .ok_or_else(|| self.corrupt(format!("user_orders/{}", hex(&key)), "not a key"))?;
            // The entry holds the order's row, written in the transaction
            // that wrote its `orders` row.
            rows.push((order.as_bytes().to_vec(), row));
            last = key[16..].to_vec();
        }
        let next = (more && !rows.is_empty()).then(|| hex(&last));
        Ok(RawPage { rows, next })
    }
}

#[cfg(test)]
mod tests {
    use super::RawPage;

    #[test]
    fn a_raw_page_is_the_json_of_a_page() {
        let rows = vec![
            (vec![1], sled::IVec::from(&br#"{"a":1}"#[..])),
            (vec![2], sled::IVec::from(&br#"{"a":2}"#[..])),
        ];
        let page = RawPage {
            rows,
            next: Some("0a0b".into()),
        };
        let json: serde_json::Value = serde_json::from_slice(&page.json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"items": [{"a": 1}, {"a": 2}], "next": "0a0b"})
        );
        let last = RawPage {
            rows: vec![],
            next: None,
        };
        assert_eq!(last.json(), br#"{"items":[],"next":null}"#);
    }
}
