//! No secret in any record the system produces: a run of the whole shop
//! (registrations, deposits, an order that completes and one that cannot be
//! paid), then every record of every topic the services write (events,
//! replies, the saga's commands and replies, dead letters) is read back to
//! the end and searched for password hashes and the passwords used.
//!
//! `users.commands` is the one exception, by necessity: a client's
//! registration carries the plaintext it chose, and only the users service
//! reads that topic.

mod support;

use ordersaga::kafka::topics::all_topics;
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::{Service, USERS_COMMANDS};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use std::time::Duration;
use support::shop::Shop;
use support::{from_the_beginning, TestBroker};

/// The password `Shop::user` registers every account with.
const PASSWORD: &str = "a long password";

/// Every record of the logical `topic`, read up to its end as it is now.
async fn read_to_end(shop: &Shop, topic: &str) -> Vec<OwnedMessage> {
    let consumer = from_the_beginning(&shop.kafka, topic, "secret-scan");
    let physical = shop.kafka.name(topic);
    let mut ends = Vec::new();
    for partition in 0..shop.kafka.partitions {
        let (_, high) = consumer
            .fetch_watermarks(&physical, partition, Duration::from_secs(10))
            .expect("watermarks");
        ends.push(high);
    }
    let mut next = vec![0i64; ends.len()];
    let mut seen = Vec::new();
    while next.iter().zip(&ends).any(|(n, end)| n < end) {
        let message = consumer.recv().await.expect("a record").detach();
        next[message.partition() as usize] = message.offset() + 1;
        seen.push(message);
    }
    seen
}

/// The bytes of a record a reader sees: key, value and header values.
fn bytes_of(message: &OwnedMessage) -> Vec<u8> {
    let mut bytes = message.key().unwrap_or_default().to_vec();
    bytes.extend_from_slice(message.payload().unwrap_or_default());
    if let Some(headers) = message.headers() {
        use rdkafka::message::Headers;
        for header in headers.iter() {
            bytes.extend_from_slice(header.value.unwrap_or_default());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[actix_rt::test]
async fn no_record_the_services_produce_carries_a_password_or_a_hash() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let rich = shop.user(10_000).await;
    let poor = shop.user(1).await;
    let product = shop.product(250, 10).await;
    let paid = shop.order(rich, &[(product, 2)]).await;
    let unpaid = shop.order(poor, &[(product, 1)]).await;
    assert_eq!(shop.saga_end(paid).await, SagaEvent::Completed);
    assert!(matches!(
        shop.saga_end(unpaid).await,
        SagaEvent::Aborted { .. }
    ));
    // Everything the services decided is published before it is read.
    for service in &shop.services {
        let mut progress = service.relay_progress();
        while service.journal().outbox_len() > 0 {
            progress.changed().await.expect("the relay runs");
        }
    }

    let mut scanned = 0;
    for topic in all_topics() {
        if topic == USERS_COMMANDS {
            continue;
        }
        for message in read_to_end(&shop, &topic).await {
            let bytes = bytes_of(&message);
            assert!(!contains(&bytes, "$argon2"), "a hash on {topic}");
            assert!(!contains(&bytes, PASSWORD), "a password on {topic}");
            scanned += 1;
        }
    }
    // Two registrations, their deposits, a product, two orders and their
    // sagas: far more than this many records were read.
    assert!(scanned > 20, "only {scanned} records scanned");
    let users_events = read_to_end(&shop, Service::Users.events_topic()).await;
    assert!(users_events.len() >= 4, "the users' events were scanned");
    shop.stop().await;
}
