//! The saga's commands to its own order are written for delivery in process
//! (a local outbox topic), in the same transaction as the saga's decision;
//! its commands to other services are written for Kafka.

use chrono::{DateTime, TimeZone, Utc};
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::codec;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::{saga_command_id, saga_of, SagaCommand, SagaPolicy, SagaStep};
use ordersaga_events::topics::{
    local, local_of, INVENTORY_COMMANDS, ORDERS_COMMANDS, ORDERS_EVENTS, SAGA_REPLIES,
    USERS_COMMANDS,
};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandResult, CorrelationId, OrderId, Outcome, ProductId, Reply,
    StreamId, StreamKind, UserId,
};
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// The topics of the outbox rows that are commands (not the saga's own
/// events), in order.
fn command_topics(journal: &Journal) -> Vec<String> {
    journal
        .outbox_pending(0, usize::MAX)
        .expect("outbox")
        .into_iter()
        .map(|(_, record)| record.topic)
        .filter(|topic| topic != ORDERS_EVENTS)
        .collect()
}

#[actix_rt::test]
async fn price_goes_in_process_while_reserve_and_charge_go_to_kafka() {
    // Given a saga service and an order of one line
    let journal = Journal::open(JournalConfig::tmp()).expect("open temp journal");
    let sagas = Service::<Saga>::start(journal.clone(), ServiceConfig::default());
    let order_id = OrderId::from_uuid(Uuid::from_u128(7));
    let saga_id = saga_of(order_id);
    let product_id = ProductId::from_uuid(Uuid::from_u128(8));

    // When the saga starts
    let started = sagas
        .send(SagaCommand::Start {
            saga_id,
            order_id,
            user_id: UserId::from_uuid(Uuid::from_u128(9)),
            lines: vec![OrderLine {
                product_id,
                quantity: 2,
            }],
            policy: SagaPolicy::default(),
            now: t0(),
        })
        .await
        .expect("start");
    assert!(matches!(started.outcome, Outcome::Accepted { .. }));
    // Then its reservation is for Kafka
    assert_eq!(command_topics(&journal), [INVENTORY_COMMANDS]);

    // When the reservation is answered with a price
    let reserve = saga_command_id(saga_id, &SagaStep::Reserve(product_id));
    sagas
        .send(SagaCommand::Reply {
            saga_id,
            reply: Reply {
                command_id: reserve,
                correlation_id: CorrelationId::from_uuid(saga_id.as_uuid()),
                stream: StreamId::new(StreamKind::Product, product_id.as_uuid()),
                outcome: Outcome::Accepted { sequences: vec![1] },
                result: Some(CommandResult::Reserved {
                    quantity: 2,
                    unit_price: Cents(250),
                }),
            },
            now: t0(),
        })
        .await
        .expect("reply");

    // Then the price of its own order is local and the charge is for Kafka
    let topics = command_topics(&journal);
    assert_eq!(
        topics,
        [
            INVENTORY_COMMANDS.to_owned(),
            local(ORDERS_COMMANDS),
            USERS_COMMANDS.to_owned()
        ],
        "the price and the charge after the reservation"
    );
    let rows = journal.outbox_pending(0, usize::MAX).expect("outbox");
    let price = rows
        .iter()
        .find(|(_, r)| local_of(&r.topic).is_some())
        .map(|(_, r)| r)
        .expect("a local row");
    assert_eq!(price.topic, local(ORDERS_COMMANDS));
    // And it is the same command, id and all, that Kafka would have carried
    let envelope: CommandEnvelope<OrderCommand> =
        codec::decode(price.payload.as_deref().expect("a payload")).expect("decodes");
    assert_eq!(
        envelope.command_id,
        saga_command_id(saga_id, &SagaStep::Price)
    );
    assert_eq!(envelope.reply_to.as_deref(), Some(SAGA_REPLIES));
    assert!(matches!(envelope.command, OrderCommand::Price { order_id: id, .. } if id == order_id));
    sagas.shutdown().await;
}
