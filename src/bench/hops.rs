//! Where a saga's time goes, hop by hop, read back from the stores after a
//! bench run.
//!
//! Every event carries the time its aggregate decided it (`recorded_at`).
//! For every saga that completed, the time between two events of the chain
//! (the order placed, the saga started, the stock reserved, the saga told,
//! …) is the latency of that hop: for a hop through Kafka, the first event's
//! append and relay, the broker, the consumer's fetch and the next
//! aggregate's decision; for a hop in process, two actor steps and their
//! appends. The bench runs every service in its own process, so all the
//! times come from one clock.

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::recovery::decode_stored;
use ordersaga_actors::{Journal, JournalError};
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::OrderEvent;
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{OrderId, StreamKind};
use serde::Serialize;
use std::collections::HashMap;

/// The times (µs since the epoch) one order's chain reached each step: the
/// first time for a start, the last for a step with one event per line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Milestones {
    placed: Option<i64>,
    started: Option<i64>,
    reserved: Option<i64>,
    saga_reserved: Option<i64>,
    saga_priced: Option<i64>,
    order_priced: Option<i64>,
    saga_order_priced: Option<i64>,
    charged: Option<i64>,
    saga_charged: Option<i64>,
    confirm_requested: Option<i64>,
    order_confirmed: Option<i64>,
    saga_confirmed: Option<i64>,
    committed: Option<i64>,
    completed: Option<i64>,
}

/// How a hop travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A command or a reply through a Kafka topic.
    Kafka,
    /// Inside the orders service: the saga follower, or the saga's local
    /// commands to its order.
    InProcess,
    /// The whole chain.
    Total,
}

type Span = fn(&Milestones) -> (Option<i64>, Option<i64>);

/// The hops of a completed saga, in the order they happen. Pricing the order
/// (in process) and charging the user (through Kafka) run side by side.
const HOPS: [(&str, Via, Span); 12] = [
    ("order placed -> saga started", Via::InProcess, |m| {
        (m.placed, m.started)
    }),
    ("saga -> stock reserved", Via::Kafka, |m| {
        (m.started, m.reserved)
    }),
    ("stock reserved -> saga", Via::Kafka, |m| {
        (m.reserved, m.saga_reserved)
    }),
    ("saga -> order priced", Via::InProcess, |m| {
        (m.saga_priced, m.order_priced)
    }),
    ("order priced -> saga", Via::InProcess, |m| {
        (m.order_priced, m.saga_order_priced)
    }),
    ("saga -> user charged", Via::Kafka, |m| {
        (m.saga_priced, m.charged)
    }),
    ("user charged -> saga", Via::Kafka, |m| {
        (m.charged, m.saga_charged)
    }),
    ("saga -> order confirmed", Via::InProcess, |m| {
        (m.confirm_requested, m.order_confirmed)
    }),
    ("order confirmed -> saga", Via::InProcess, |m| {
        (m.order_confirmed, m.saga_confirmed)
    }),
    ("saga -> stock committed", Via::Kafka, |m| {
        (m.saga_confirmed, m.committed)
    }),
    ("stock committed -> saga completed", Via::Kafka, |m| {
        (m.committed, m.completed)
    }),
    ("order placed -> saga completed", Via::Total, |m| {
        (m.placed, m.completed)
    }),
];

/// One hop's latency over every completed saga.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hop {
    /// From which event to which.
    pub name: &'static str,
    /// How it travels.
    pub via: Via,
    /// Sagas measured.
    pub samples: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn first(slot: &mut Option<i64>, at: i64) {
    *slot = Some(slot.map_or(at, |seen| seen.min(at)));
}

fn last(slot: &mut Option<i64>, at: i64) {
    *slot = Some(slot.map_or(at, |seen| seen.max(at)));
}

/// Reads every event of the three stores into each order's milestones.
pub fn milestones(
    orders: &Journal,
    inventory: &Journal,
    users: &Journal,
) -> Result<HashMap<OrderId, Milestones>, JournalError> {
    let mut by_order: HashMap<OrderId, Milestones> = HashMap::new();
    let mut order_of = HashMap::new();
    for entry in orders.read_log(1) {
        let entry = entry?;
        match entry.stream.kind {
            StreamKind::Order => {
                let event = decode_stored::<Order>(&entry.stream, entry.sequence, &entry.bytes)?;
                let m = by_order
                    .entry(OrderId::from_uuid(entry.stream.id))
                    .or_default();
                let at = micros(event.recorded_at);
                match event.payload {
                    OrderEvent::Placed { .. } => first(&mut m.placed, at),
                    OrderEvent::Priced { .. } => first(&mut m.order_priced, at),
                    OrderEvent::Confirmed => first(&mut m.order_confirmed, at),
                    _ => {}
                }
            }
            StreamKind::Saga => {
                let event = decode_stored::<Saga>(&entry.stream, entry.sequence, &entry.bytes)?;
                saga_event(
                    &mut by_order,
                    &mut order_of,
                    entry.stream.id,
                    event.payload,
                    micros(event.recorded_at),
                );
            }
            _ => {}
        }
    }
    for entry in inventory.read_log(1) {
        let entry = entry?;
        let event = decode_stored::<Product>(&entry.stream, entry.sequence, &entry.bytes)?;
        let at = micros(event.recorded_at);
        match event.payload {
            InventoryEvent::Reserved { order_id, .. } => {
                last(&mut by_order.entry(order_id).or_default().reserved, at)
            }
            InventoryEvent::Committed { order_id, .. } => {
                last(&mut by_order.entry(order_id).or_default().committed, at)
            }
            _ => {}
        }
    }
    for entry in users.read_log(1) {
        let entry = entry?;
        let event = decode_stored::<User>(&entry.stream, entry.sequence, &entry.bytes)?;
        if let UserEvent::Charged { order_id, .. } = event.payload {
            first(
                &mut by_order.entry(order_id).or_default().charged,
                micros(event.recorded_at),
            );
        }
    }
    Ok(by_order)
}

/// Files a saga event under its order. A saga's id is derived from its
/// order's one way only, so `order_of` learns it from `Started`, which comes
/// before every other event of the saga in the log.
fn saga_event(
    by_order: &mut HashMap<OrderId, Milestones>,
    order_of: &mut HashMap<uuid::Uuid, OrderId>,
    saga: uuid::Uuid,
    event: SagaEvent,
    at: i64,
) {
    if let SagaEvent::Started { order_id, .. } = &event {
        order_of.insert(saga, *order_id);
    }
    let Some(order_id) = order_of.get(&saga).copied() else {
        return;
    };
    let m = by_order.entry(order_id).or_default();
    match event {
        SagaEvent::Started { .. } => first(&mut m.started, at),
        SagaEvent::LineReserved { .. } => last(&mut m.saga_reserved, at),
        SagaEvent::Priced { .. } => first(&mut m.saga_priced, at),
        SagaEvent::OrderPriced => first(&mut m.saga_order_priced, at),
        SagaEvent::Charged { .. } => first(&mut m.saga_charged, at),
        SagaEvent::ConfirmRequested { .. } => first(&mut m.confirm_requested, at),
        SagaEvent::OrderConfirmed { .. } => first(&mut m.saga_confirmed, at),
        SagaEvent::Completed => first(&mut m.completed, at),
        _ => {}
    }
}

/// The latency of every hop over the orders whose saga completed.
pub fn hops(by_order: &HashMap<OrderId, Milestones>) -> Vec<Hop> {
    HOPS.iter()
        .map(|(name, via, span)| {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
            for m in by_order.values().filter(|m| m.completed.is_some()) {
                if let (Some(from), Some(to)) = span(m) {
                    // Clocks of one process never run back; clamp to 1 µs so
                    // two events in the same microsecond still count.
                    let _ = histogram.record((to - from).max(1) as u64);
                }
            }
            let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
            Hop {
                name,
                via: *via,
                samples: histogram.len(),
                p50_ms: ms(0.5),
                p90_ms: ms(0.9),
                p99_ms: ms(0.99),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A completed chain whose every step takes `step` µs after the last.
    fn chain(start: i64, step: i64) -> Milestones {
        let at = |n: i64| Some(start + n * step);
        Milestones {
            placed: at(0),
            started: at(1),
            reserved: at(2),
            saga_reserved: at(3),
            saga_priced: at(3),
            order_priced: at(4),
            saga_order_priced: at(5),
            charged: at(4),
            saga_charged: at(5),
            confirm_requested: at(5),
            order_confirmed: at(6),
            saga_confirmed: at(7),
            committed: at(8),
            completed: at(9),
        }
    }

    #[test]
    fn every_hop_is_the_time_between_its_two_events() {
        // Given two completed sagas whose steps take 2 ms and one unfinished
        let mut by_order = HashMap::new();
        by_order.insert(OrderId::new(), chain(1_000_000, 2_000));
        by_order.insert(OrderId::new(), chain(5_000_000, 2_000));
        let mut unfinished = chain(9_000_000, 50_000);
        unfinished.completed = None;
        by_order.insert(OrderId::new(), unfinished);
        // When the hops are measured
        let hops = hops(&by_order);
        // Then each hop is 2 ms over the two completed sagas, and the whole
        // chain is nine steps
        assert_eq!(hops.len(), HOPS.len());
        for hop in &hops[..hops.len() - 1] {
            assert_eq!(hop.samples, 2, "{}", hop.name);
            assert!(
                (hop.p50_ms - 2.0).abs() < 0.01,
                "{}: {}",
                hop.name,
                hop.p50_ms
            );
        }
        let total = hops.last().expect("the total");
        assert_eq!(total.via, Via::Total);
        assert!((total.p99_ms - 18.0).abs() < 0.02, "{}", total.p99_ms);
    }

    #[test]
    fn a_hop_with_a_missing_event_is_not_counted() {
        // Given a completed saga whose charge event is missing (a user store
        // that was not read)
        let mut m = chain(0, 1_000);
        m.charged = None;
        let by_order = HashMap::from([(OrderId::new(), m)]);
        // When the hops are measured
        let hops = hops(&by_order);
        // Then the two hops around the charge have no sample, the rest one
        let counts: Vec<u64> = hops.iter().map(|h| h.samples).collect();
        assert_eq!(counts, [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    }
}
