//! Faults between a service and its broker:
//! - the producer hits a fatal error (the broker lost its idempotence
//!   state), and the relay makes a new producer and publishes again from the
//!   outbox;
//! - a stop while the broker is down ends within its bound, and what was not
//!   published stays in the outbox for the next start, which publishes it.

mod support;

use ordersaga::kafka::embedded::EmbeddedBroker;
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga_actors::journal::{AppendBatch, OutboxRecord};
use ordersaga_actors::Journal;
use ordersaga_events::topics::{Service, DEADLETTER, USERS_COMMANDS, USERS_EVENTS};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use std::collections::HashSet;
use std::time::Duration;
use support::{Outage, Probe, PATIENCE};

/// A record for the outbox, told apart by its key.
fn marker(n: usize) -> OutboxRecord {
    OutboxRecord {
        topic: USERS_EVENTS.to_string(),
        key: Some(format!("marker-{n}").into_bytes()),
        payload: Some(format!("{{\"marker\":{n}}}").into_bytes()),
        headers: Vec::new(),
    }
}

/// Puts `records` in the service's outbox, as a command's effects would be.
async fn put_in_outbox(journal: &Journal, records: Vec<OutboxRecord>) {
    journal
        .append(AppendBatch {
            outbox: records,
            ..AppendBatch::default()
        })
        .await
        .unwrap();
}

fn markers_seen(seen: &[rdkafka::message::OwnedMessage]) -> HashSet<Vec<u8>> {
    seen.iter()
        .filter_map(|m| m.key().map(<[u8]>::to_vec))
        .filter(|k| k.starts_with(b"marker-"))
        .collect()
}

/// Waits until every consumer of `service` owns partitions.
async fn ready(service: &RunningService) {
    let mut readiness = service.readiness();
    tokio::time::timeout(PATIENCE, readiness.wait_for(|r| r.ready))
        .await
        .expect("the service never owned its partitions")
        .unwrap();
}

#[actix_rt::test]
async fn a_fatal_producer_error_is_survived_by_a_new_producer() {
    // Fault injection needs the embedded broker, whatever the run's broker.
    let broker = EmbeddedBroker::start().unwrap();
    let kafka = broker.config().with_namespace(format!(
        "f{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let topics = [USERS_COMMANDS, USERS_EVENTS, DEADLETTER].map(String::from);
    broker.create_topics(&kafka, &topics).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = node::start(Service::Users, &NodeOptions::new(kafka.clone(), dir.path()))
        .await
        .unwrap();
    ready(&running).await;
    let mut events = Probe::new(&kafka, USERS_EVENTS);
    put_in_outbox(running.journal(), vec![marker(0)]).await;
    events
        .until("the first record", |seen| markers_seen(seen).len() == 1)
        .await;

    // The broker now answers the next produce request as one that lost the
    // producer's state: librdkafka declares the idempotent producer dead.
    broker.fail_produce_requests(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER]);
    put_in_outbox(running.journal(), (1..=20).map(marker).collect()).await;
    events
        .until("every record, through a new producer", |seen| {
            markers_seen(seen).len() == 21
        })
        .await;
    assert!(
        running.relay_progress().borrow().producers_rebuilt >= 1,
        "the fatal error was met by a new producer"
    );
    // A consumer can read a record before its producer hears the broker's
    // acknowledgement, and the relay deletes a row only then: wait for the
    // relay to count all 21 as published before looking at the outbox.
    let mut progress = running.relay_progress();
    tokio::time::timeout(PATIENCE, progress.wait_for(|p| p.published >= 21))
        .await
        .expect("the relay never acknowledged every record")
        .unwrap();
    assert_eq!(running.journal().outbox_len(), 0);
    running.stop().await;
}

#[actix_rt::test]
async fn a_stop_while_the_broker_is_down_is_bounded_and_keeps_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut outage = Outage::from_env(dir.path());
    let kafka = outage.kafka("stopdown");
    outage
        .create_topics(&kafka, &[USERS_COMMANDS, USERS_EVENTS, DEADLETTER])
        .await;
    let data = dir.path().join("data");
    let options = NodeOptions::new(kafka.clone(), &data);
    let running = node::start(Service::Users, &options).await.unwrap();
    ready(&running).await;

    outage.down();
    put_in_outbox(running.journal(), (0..10).map(marker).collect()).await;
    // The bound: the consumers' drain, the publish grace and the close
    // timeout, with room to spare; without the bound the stop waited for the
    // broker forever.
    let bound = options.consumer.drain_timeout + options.publish_grace + Duration::from_secs(15);
    tokio::time::timeout(bound, running.stop())
        .await
        .expect("a stop with the broker down ends within its bound");
    let journal = Journal::open_path(data.join("users")).unwrap();
    assert_eq!(
        journal.outbox_len(),
        10,
        "what was not published stays in the outbox"
    );
    drop(journal);

    outage.up();
    let running = node::start(Service::Users, &options).await.unwrap();
    let mut events = Probe::new(&kafka, USERS_EVENTS);
    events
        .until("the kept records, after the next start", |seen| {
            markers_seen(seen).len() == 10
        })
        .await;
    running.stop().await;
}

#[actix_rt::test]
async fn a_corrupt_outbox_row_is_quarantined_and_the_rest_still_published() {
    let broker = support::TestBroker::from_env();
    let kafka = broker.users_topics(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("users");
    {
        let journal = Journal::open_path(&store).unwrap();
        put_in_outbox(&journal, (0..3).map(marker).collect()).await;
    }
    // Damage the second row's bytes on disk.
    {
        let db = support::open_raw(&store);
        let outbox = db.open_tree("outbox").unwrap();
        outbox
            .insert(2u64.to_be_bytes(), &[0x01, 0xff, 0xff, 0xff][..])
            .unwrap();
        db.flush().unwrap();
    }

    let running = node::start(Service::Users, &NodeOptions::new(kafka.clone(), dir.path()))
        .await
        .unwrap();
    let mut events = Probe::new(&kafka, USERS_EVENTS);
    events
        .until("the readable rows", |seen| markers_seen(seen).len() == 2)
        .await;
    let mut letters = Probe::new(&kafka, DEADLETTER);
    letters
        .until("the corrupt row's dead letter", |seen| {
            seen.iter().any(|m| {
                support::header_text(m, ordersaga_events::topics::header::DEADLETTER_CODE)
                    .as_deref()
                    == Some("corrupt_outbox_record")
                    && m.payload() == Some(&[0x01, 0xff, 0xff, 0xff][..])
            })
        })
        .await;
    running.stop().await;

    let users = Journal::open_path(&store).unwrap();
    assert_eq!(users.outbox_len(), 0, "nothing left blocking the outbox");
    let empty = |name: &str| Journal::open_path(dir.path().join(name)).unwrap();
    let report =
        ordersaga::verify::check(&users, &empty("inventory"), &empty("orders"), true).unwrap();
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.starts_with("users store") && v.contains("outbox record 2 is quarantined")),
        "{:?}",
        report.violations
    );
}
