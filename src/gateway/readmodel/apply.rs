//! Applying one record: exactly-once projection.
//!
//! A record's row changes, its stream's last sequence and its partition's
//! next offset are written in ONE sled transaction. After a crash the
//! projection resumes at the stored offset, which matches the rows: no
//! record is applied twice or lost. Independently of offsets, an event
//! whose sequence its stream already has is a duplicate (the relay
//! publishes at least once) and moves nothing but the offset.

use super::error::ReadModelError;
use super::keys::{self, hex};
use super::record::{Applied, ProjectedEvent, ProjectedRecord};
use super::rows::{apply_order, apply_product, apply_user};
use super::store::ReadModel;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

type TxResult<T> = Result<T, ConflictableTransactionError<ReadModelError>>;

impl ReadModel {
    /// Applies one record in one transaction: its row(s), its stream's
    /// sequence and its partition's next offset move together or not at
    /// all. See [`Applied`] for the outcomes; an error leaves the store as
    /// it was, so the same record can be applied again.
    pub fn apply(&self, record: &ProjectedRecord) -> Result<Applied, ReadModelError> {
        let t = &self.inner.trees;
        let offset_key = keys::offset_key(&record.topic, record.partition);
        let trees = (
            &t.users,
            &t.products,
            &t.orders,
            &t.user_orders,
            &t.streams,
            &t.offsets,
        );
        let result =
            trees.transaction(|(users, products, orders, user_orders, streams, offsets)| {
                if let Some(stored) = offsets.get(&offset_key)? {
                    let stored = keys::read_u64(&stored).ok_or_else(|| {
                        abort(self.corrupt(format!("offsets/{}", hex(&offset_key)), "not 8 bytes"))
                    })?;
                    if u64::try_from(record.offset).unwrap_or(0) < stored {
                        return Ok(Applied::AlreadyConsumed);
                    }
                }
                let next = u64::try_from(record.offset.saturating_add(1)).unwrap_or(0);
                offsets.insert(offset_key.as_slice(), &next.to_be_bytes())?;
                let (stream, sequence) = match &record.event {
                    ProjectedEvent::Undecodable(reason) => {
                        return Ok(Applied::Skipped(reason.clone()))
                    }
                    ProjectedEvent::Ignored(_) => return Ok(Applied::Ignored),
                    ProjectedEvent::User(e) => (e.stream, e.sequence),
                    ProjectedEvent::Product(e) => (e.stream, e.sequence),
                    ProjectedEvent::Order(e) => (e.stream, e.sequence),
                };
                let stream_key = stream.to_key();
                let last = match streams.get(stream_key)? {
                    None => 0,
                    Some(bytes) => keys::read_u64(&bytes).ok_or_else(|| {
                        abort(self.corrupt(format!("streams/{stream}"), "not 8 bytes"))
                    })?,
                };
                if sequence <= last {
                    return Ok(Applied::Duplicate { last });
                }
                streams.insert(&stream_key[..], &sequence.to_be_bytes())?;
                let id = stream.id;
                let key = id.as_bytes();
                match &record.event {
                    ProjectedEvent::User(e) => {
                        let row = self.read(users, "users", key)?;
                        if let Some(row) = apply_user(row, id, &e.payload, sequence) {
                            self.write(users, "users", key, &row)?;
                        }
                    }
                    ProjectedEvent::Product(e) => {
                        let row = self.read(products, "products", key)?;
                        if let Some(row) = apply_product(row, id, &e.payload, sequence) {
                            self.write(products, "products", key, &row)?;
                        }
                    }
                    ProjectedEvent::Order(e) => {
                        let before = self.read(orders, "orders", key)?;
                        if let Some(row) =
                            apply_order(before, id, &e.payload, sequence, e.recorded_at)
                        {
                            let json = self.write(orders, "orders", key, &row)?;
                            // The user's list holds a copy of the row, so a
                            // page is one range scan (no point read per row).
                            let entry = keys::user_order_key(row.user_id, id, row.placed_at);
                            user_orders.insert(entry, json)?;
                        }
                    }
                    ProjectedEvent::Undecodable(_) | ProjectedEvent::Ignored(_) => {}
                }
                Ok(if sequence == last + 1 {
                    Applied::Updated
                } else {
                    Applied::Gap {
                        expected: last + 1,
                        got: sequence,
                    }
                })
            });
        let applied = result.map_err(|err| ReadModelError::Apply {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            source: Box::new(match err {
                TransactionError::Abort(err) => err,
                TransactionError::Storage(err) => self.storage(err),
            }),
        })?;
        if applied != Applied::AlreadyConsumed {
            self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(applied)
    }

    fn read<T: DeserializeOwned>(
        &self,
        tree: &TransactionalTree,
        name: &str,
        key: &[u8],
    ) -> TxResult<Option<T>> {
        match tree.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| abort(self.corrupt(format!("{name}/{}", hex(key)), e))),
        }
    }

    fn write<T: Serialize>(
        &self,
        tree: &TransactionalTree,
        name: &str,
        key: &[u8],
        row: &T,
    ) -> TxResult<sled::IVec> {
        let json = serde_json::to_vec(row)
            .map_err(|e| abort(self.corrupt(format!("{name}/{}", hex(key)), e)))?;
        let json = sled::IVec::from(json);
        tree.insert(key, json.clone())?;
        Ok(json)
    }
}

fn abort(err: ReadModelError) -> ConflictableTransactionError<ReadModelError> {
    ConflictableTransactionError::Abort(err)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::gateway::readmodel::store::DIR_NAME;
    use chrono::{DateTime, Utc};
    use ordersaga_events::inventory::InventoryEvent;
    use ordersaga_events::order::{OrderEvent, OrderLine};
    use ordersaga_events::user::UserEvent;
    use ordersaga_events::{
        Cents, CommandId, CorrelationId, Envelope, EventId, OrderId, ProductId, StreamId,
        StreamKind, UserId,
    };
    use uuid::Uuid;

    pub(crate) const TOPIC: &str = "t.events";

    pub(crate) fn envelope<P>(
        kind: StreamKind,
        id: Uuid,
        sequence: u64,
        payload: P,
    ) -> Envelope<P> {
        Envelope {
            event_id: EventId::new(),
            stream: StreamId::new(kind, id),
            sequence,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version: 1,
            payload,
        }
    }

    pub(crate) fn record_of(offset: i64, event: ProjectedEvent) -> ProjectedRecord {
        ProjectedRecord {
            topic: TOPIC.into(),
            partition: 0,
            offset,
            event,
        }
    }

    pub(crate) fn product_added(id: Uuid, stock: u64) -> ProjectedEvent {
        ProjectedEvent::Product(envelope(
            StreamKind::Product,
            id,
            1,
            InventoryEvent::ProductAdded {
                product_id: ProductId::from_uuid(id),
                sku: "SKU".into(),
                name: "thing".into(),
                unit_price: Cents(100),
                stock,
            },
        ))
    }

    pub(crate) fn order_placed(order: Uuid, user: Uuid, at: DateTime<Utc>) -> ProjectedEvent {
        let mut e = envelope(
            StreamKind::Order,
            order,
            1,
            OrderEvent::Placed {
                order_id: OrderId::from_uuid(order),
                user_id: UserId::from_uuid(user),
                lines: vec![OrderLine {
                    product_id: ProductId::new(),
                    quantity: 1,
                }],
            },
        );
        e.recorded_at = at;
        ProjectedEvent::Order(e)
    }

    fn user(id: Uuid, sequence: u64, event: UserEvent) -> ProjectedEvent {
        ProjectedEvent::User(envelope(StreamKind::User, id, sequence, event))
    }

    fn registered(id: Uuid) -> ProjectedEvent {
        user(
            id,
            1,
            UserEvent::Registered {
                user_id: UserId::from_uuid(id),
                email: "a@example.com".into(),
                username: "a".into(),
            },
        )
    }

    fn temp() -> (tempfile::TempDir, ReadModel) {
        let dir = tempfile::tempdir().unwrap();
        let model = ReadModel::open(dir.path().join(DIR_NAME)).unwrap();
        (dir, model)
    }

    fn next_offset(model: &ReadModel) -> Option<i64> {
        model
            .offsets()
            .unwrap()
            .get(&(TOPIC.to_string(), 0))
            .copied()
    }

    #[test]
    fn a_duplicate_is_skipped_by_sequence_and_its_offset_still_advances() {
        let (_dir, model) = temp();
        let id = Uuid::new_v4();
        let deposit = user(id, 2, UserEvent::Deposited { amount: Cents(40) });
        assert_eq!(
            model.apply(&record_of(0, registered(id))).unwrap(),
            Applied::Updated
        );
        assert_eq!(
            model.apply(&record_of(1, deposit.clone())).unwrap(),
            Applied::Updated
        );
        // The relay published the deposit again.
        assert_eq!(
            model.apply(&record_of(2, deposit)).unwrap(),
            Applied::Duplicate { last: 2 }
        );
        let row = model.user(id).unwrap().unwrap();
        assert_eq!((row.balance, row.total_deposited, row.version), (40, 40, 2));
        assert_eq!(next_offset(&model), Some(3));
    }

    #[test]
    fn a_record_below_the_stored_offset_moves_nothing() {
        let (_dir, model) = temp();
        let id = Uuid::new_v4();
        model.apply(&record_of(5, registered(id))).unwrap();
        let again = record_of(3, user(id, 2, UserEvent::Deposited { amount: Cents(1) }));
        assert_eq!(model.apply(&again).unwrap(), Applied::AlreadyConsumed);
        assert_eq!(model.user(id).unwrap().unwrap().balance, 0);
        assert_eq!(next_offset(&model), Some(6));
    }

    #[test]
    fn a_gap_is_applied_and_reported() {
        let (_dir, model) = temp();
        let id = Uuid::new_v4();
        model.apply(&record_of(0, registered(id))).unwrap();
        let late = record_of(1, user(id, 4, UserEvent::Deposited { amount: Cents(9) }));
        assert_eq!(
            model.apply(&late).unwrap(),
            Applied::Gap {
                expected: 2,
                got: 4
            }
        );
        let row = model.user(id).unwrap().unwrap();
        assert_eq!((row.balance, row.version), (9, 4));
        assert_eq!(
            model.version(&StreamId::new(StreamKind::User, id)).unwrap(),
            4
        );
    }

    #[test]
    fn unreadable_and_saga_records_advance_the_offset_only() {
        let (_dir, model) = temp();
        let skipped = record_of(0, ProjectedEvent::Undecodable("bad bytes".into()));
        assert_eq!(
            model.apply(&skipped).unwrap(),
            Applied::Skipped("bad bytes".into())
        );
        let saga = StreamId::new(StreamKind::Saga, Uuid::new_v4());
        assert_eq!(
            model
                .apply(&record_of(1, ProjectedEvent::Ignored(saga)))
                .unwrap(),
            Applied::Ignored
        );
        assert_eq!(next_offset(&model), Some(2));
        assert_eq!(model.version(&saga).unwrap(), 0);
        assert!(model.dump().unwrap()["streams"].is_empty());
    }

    #[test]
    fn an_aborted_apply_moves_neither_the_offset_nor_the_stream_nor_the_row() {
        let (_dir, model) = temp();
        let id = Uuid::new_v4();
        model.apply(&record_of(0, registered(id))).unwrap();
        // Damage the row: the transaction writes the offset and the
        // sequence before it reads the row, then has to abort.
        model
            .inner
            .trees
            .users
            .insert(id.as_bytes(), b"{damaged".as_slice())
            .unwrap();
        let before = model.dump().unwrap();
        let deposit = record_of(1, user(id, 2, UserEvent::Deposited { amount: Cents(5) }));
        let err = model.apply(&deposit).unwrap_err();
        assert!(
            matches!(&err, ReadModelError::Apply { topic, offset: 1, source, .. }
                if topic == TOPIC && matches!(**source, ReadModelError::Corrupt { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(TOPIC), "{err}");
        assert_eq!(model.dump().unwrap(), before, "nothing moved");
        assert_eq!(next_offset(&model), Some(1));
        assert_eq!(
            model.version(&StreamId::new(StreamKind::User, id)).unwrap(),
            1
        );
    }

    #[test]
    fn every_product_and_order_event_reaches_its_row_and_the_users_list() {
        let (_dir, model) = temp();
        let (product, order, buyer) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let order_id = OrderId::from_uuid(order);
        let stock = |sequence, event| {
            ProjectedEvent::Product(envelope(StreamKind::Product, product, sequence, event))
        };
        let records = [
            product_added(product, 10),
            stock(
                2,
                InventoryEvent::Reserved {
                    order_id,
                    quantity: 4,
                    unit_price: Cents(100),
                },
            ),
            stock(
                3,
                InventoryEvent::Committed {
                    order_id,
                    quantity: 4,
                },
            ),
            stock(4, InventoryEvent::Restocked { quantity: 2 }),
            order_placed(order, buyer, Utc::now()),
            ProjectedEvent::Order(envelope(StreamKind::Order, order, 2, OrderEvent::Confirmed)),
        ];
        for (offset, event) in records.into_iter().enumerate() {
            model.apply(&record_of(offset as i64, event)).unwrap();
        }
        let row = model.product(product).unwrap().unwrap();
        assert_eq!(
            (row.on_hand, row.reserved, row.available, row.version),
            (8, 0, 8, 4)
        );
        let listed = model.user_orders_page(buyer, None, 10).unwrap();
        assert_eq!(listed.items.len(), 1);
        assert_eq!(listed.items[0], model.order(order).unwrap().unwrap());
        assert_eq!(listed.items[0].version, 2);
        assert_eq!(next_offset(&model), Some(6));
    }
}
