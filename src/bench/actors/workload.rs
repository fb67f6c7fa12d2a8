//! What the actors bench sends: product ids derived from the seed, the
//! commands for them, and, for the journal-only baseline, the batch the
//! inventory service writes for one restock, built the same way.
//!
//! The command is `InventoryCommand::Restock` of one unit: no password to
//! hash, one event, always accepted, and its batch has exactly the shape the
//! baseline appends (the event, its outbox record, the processed reply). A
//! reservation would also read and write the archive index, which the
//! baseline would then have to copy to stay comparable.

use super::sampler::mix;
use ordersaga_actors::aggregates::Product;
use ordersaga_actors::journal::{AppendBatch, OutboxRecord, StreamAppend};
use ordersaga_actors::service::traceparent;
use ordersaga_actors::{Aggregate, Execute, ServiceError};
use ordersaga_events::codec::{encode, encode_event, CodecError, Format};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::topics::header;
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, CorrelationId, Envelope, EventId, Outcome, ProductId, Reply,
    StreamId, Versioned,
};
use uuid::Uuid;

/// Units each product starts with.
pub const INITIAL_STOCK: u64 = 1_000;

/// Which set of aggregates an id belongs to: the load phase's, the
/// baseline's streams, or the passivation phase's. Distinct, so the phases
/// never share a stream.
#[derive(Clone, Copy, Debug)]
pub enum Domain {
    /// The products the actors load phase restocks.
    Load = 1,
    /// The streams the journal-only baseline appends to.
    Baseline = 2,
    /// The products the passivation phase touches.
    Touch = 3,
}

/// The id of aggregate `index` of `domain` in a run seeded with `seed`:
/// distinct for distinct indexes (the low half is a bijection of the
/// index), random-looking in every byte, as v4 ids are.
pub fn aggregate_id(seed: u64, domain: Domain, index: usize) -> Uuid {
    let base = mix(seed ^ mix(domain as u64));
    let low = mix(base ^ index as u64);
    let high = mix(low ^ 0x5eed_5eed_5eed_5eed);
    Uuid::from_u64_pair(high, low)
}

/// The product `index` of `domain`.
pub fn product(seed: u64, domain: Domain, index: usize) -> ProductId {
    ProductId::from_uuid(aggregate_id(seed, domain, index))
}

/// The command that creates product `id` with [`INITIAL_STOCK`] units.
pub fn add_product(id: ProductId, index: usize) -> InventoryCommand {
    InventoryCommand::AddProduct {
        product_id: id,
        sku: format!("BENCH-{index}"),
        name: format!("Bench product {index}"),
        unit_price: Cents(100),
        stock: INITIAL_STOCK,
    }
}

/// The measured command: one unit more of product `id`.
pub fn restock(id: ProductId) -> InventoryCommand {
    InventoryCommand::Restock {
        product_id: id,
        quantity: 1,
    }
}

/// A command for the inventory service with fresh ids, no reply topic.
pub fn execute(command: InventoryCommand) -> (CommandEnvelope<InventoryCommand>, Execute<Product>) {
    let envelope = CommandEnvelope::new(command);
    (envelope.clone(), Execute::new(envelope))
}

/// Whether an answer means the command was not run and may be sent again
/// as it is (same command id): a full entity mailbox.
pub fn refused_for_load(err: &ServiceError) -> bool {
    matches!(err, ServiceError::Overloaded(_))
}

/// The batch the inventory service appends for one accepted restock of
/// `stream` at `version`, built as `service/core.rs` builds it: the event
/// envelope in bincode for the store, the same envelope in
/// `event_format` in an outbox record for the events topic (with the same
/// headers), and the reply under the command id in the processed table.
pub fn restock_batch(
    stream: StreamId,
    version: u64,
    event_format: Format,
) -> Result<AppendBatch, CodecError> {
    let command_id = CommandId::new();
    let correlation_id = CorrelationId::from_uuid(command_id.as_uuid());
    let sequence = version + 1;
    let envelope = Envelope {
        event_id: EventId::new(),
        stream,
        sequence,
        recorded_at: chrono::Utc::now(),
        correlation_id,
        causation_id: command_id,
        schema_version: InventoryEvent::SCHEMA_VERSION,
        payload: InventoryEvent::Restocked { quantity: 1 },
    };
    let stored = encode_event(Format::Bincode, &envelope)?;
    let published = match event_format {
        Format::Bincode => stored.clone(),
        format => encode_event(format, &envelope)?,
    };
    let reply = Reply {
        command_id,
        correlation_id,
        stream,
        outcome: Outcome::Accepted {
            sequences: vec![sequence],
        },
        result: None,
    };
    let header_of = |name: &str, value: String| (name.to_string(), value.into_bytes());
    Ok(AppendBatch {
        events: Some(StreamAppend {
            stream,
            expected_version: version,
            events: vec![stored],
            unique: Vec::new(),
        }),
        outbox: vec![OutboxRecord {
            topic: Product::SERVICE.events_topic().to_string(),
            key: Some(stream.id.to_string().into_bytes()),
            payload: Some(published),
            headers: vec![
                header_of(
                    header::CONTENT_TYPE,
                    event_format.content_type().to_string(),
                ),
                header_of(header::EVENT_ID, envelope.event_id.to_string()),
                header_of(header::STREAM, stream.to_string()),
                header_of(
                    header::TRACEPARENT,
                    traceparent(correlation_id, envelope.event_id.as_uuid()),
                ),
            ],
        }],
        processed: Some((command_id, encode(Format::Bincode, &reply)?)),
        ..AppendBatch::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_distinct_per_index_and_domain_and_stable_per_seed() {
        let mut seen = HashSet::new();
        for domain in [Domain::Load, Domain::Baseline, Domain::Touch] {
            for i in 0..10_000 {
                assert!(seen.insert(aggregate_id(42, domain, i)));
            }
        }
        assert_eq!(
            aggregate_id(42, Domain::Load, 7),
            aggregate_id(42, Domain::Load, 7)
        );
        assert_ne!(
            aggregate_id(42, Domain::Load, 7),
            aggregate_id(43, Domain::Load, 7)
        );
    }

    #[test]
    fn the_baseline_batch_has_the_services_shape() {
        let stream = StreamId::new(Product::KIND, Uuid::from_u128(9));
        let batch = restock_batch(stream, 4, Format::Json).unwrap();
        let append = batch.events.as_ref().unwrap();
        assert_eq!(append.expected_version, 4);
        assert_eq!(append.events.len(), 1);
        assert_eq!(batch.outbox.len(), 1);
        assert_eq!(batch.outbox[0].topic, "inventory.events");
        assert_eq!(batch.outbox[0].payload.as_ref().unwrap()[0], b'{');
        assert!(batch.processed.is_some());
        assert!(batch.offset.is_none() && batch.archive.is_empty() && batch.lists.is_empty());
    }
}
