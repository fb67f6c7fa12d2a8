//! Stuck sagas and the operator's tools: `ordersaga sagas list --stuck`,
//! `sagas show`, and `sagas retry`, on a stopped store and through Kafka to a
//! running orders service.
// Money is written as dollars_cents: 50_00 is 50.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use std::process::Command;
use support::shop::Shop;
use support::TestBroker;

fn ordersaga(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(args)
        .output()
        .expect("run ordersaga");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[actix_rt::test]
async fn a_stuck_saga_is_listed_shown_and_retried_until_it_aborts() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(50_00).await;
    let product = shop.product(10_00, 3).await;
    // Inventory goes away with the product still to be added: it is added
    // when inventory returns, before the (late) reservation, as both travel
    // in order on the product's partition.
    shop.stop_service(Service::Inventory).await;
    let order = shop.order(user, &[(product, 1)]).await;
    shop.saga_event(order, "the saga to start", |e| {
        matches!(e, SagaEvent::Started { .. })
    })
    .await;
    // With inventory away, the reservation runs out of time and so does the
    // release that compensates it.
    shop.outlast_the_step().await;
    shop.saga_event(order, "the saga to compensate", |e| {
        matches!(e, SagaEvent::CompensationStarted { .. })
    })
    .await;
    shop.outlast_the_step().await;
    let stuck = shop
        .saga_event(order, "the saga to get stuck", |e| {
            matches!(e, SagaEvent::Stuck { .. })
        })
        .await;
    assert_eq!(
        stuck,
        SagaEvent::Stuck {
            reason: "compensation_timeout".into()
        }
    );

    // Through Kafka, to the running orders service.
    let id = order.to_string();
    let brokers = shop.kafka.brokers.clone();
    let namespace = shop.kafka.namespace.clone().unwrap();
    let (ok, out) = ordersaga(&[
        "sagas",
        "retry",
        &id,
        "--brokers",
        &brokers,
        "--namespace",
        &namespace,
    ]);
    assert!(ok, "{out}");
    shop.saga_event(order, "the remote retry", |e| {
        matches!(e, SagaEvent::RetryRequested { .. })
    })
    .await;

    // Offline, on the stopped store. The retried saga gets stuck again first.
    shop.outlast_the_step().await;
    shop.saga_events_until(order, "the saga to get stuck again", |events| {
        let retried = events
            .iter()
            .position(|e| matches!(e, SagaEvent::RetryRequested { .. }));
        retried.is_some_and(|at| {
            events[at..]
                .iter()
                .any(|e| matches!(e, SagaEvent::Stuck { .. }))
        })
    })
    .await;
    shop.stop_all().await;
    let data = shop.data_dir().to_str().unwrap().to_string();
    let (ok, out) = ordersaga(&["sagas", "list", "--stuck", "--data", &data]);
    assert!(ok && out.contains(&id) && out.contains("stuck"), "{out}");
    // The list says why it is stuck, not why it began to compensate.
    assert!(out.contains("compensation_timeout"), "{out}");
    let (ok, out) = ordersaga(&["sagas", "show", &id, "--data", &data]);
    assert!(
        ok && out.contains("CompensationStarted") && out.contains("Stuck"),
        "{out}"
    );
    // Events read as they do on the topic, not as Rust debug text.
    assert!(
        !out.contains("ProductId(") && !out.contains("Cents("),
        "{out}"
    );
    assert!(out.contains("stuck because: compensation_timeout"), "{out}");
    let (ok, out) = ordersaga(&["sagas", "retry", &id, "--data", &data]);
    assert!(ok, "{out}");
    let (ok, out) = ordersaga(&["sagas", "list", "--stuck", "--data", &data]);
    assert!(ok && !out.contains(&id), "no longer stuck: {out}");
    let (ok, out) = ordersaga(&["sagas", "retry", &id, "--data", &data]);
    assert!(!ok && out.contains("not_stuck"), "{out}");

    // Everything back: the release goes through and the saga aborts.
    shop.start_all().await;
    let end = shop
        .saga_event(order, "the saga to abort", |e| {
            matches!(e, SagaEvent::Aborted { .. })
        })
        .await;
    assert_eq!(
        end,
        SagaEvent::Aborted {
            reason: "step_timeout".into()
        }
    );
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn forged_saga_input_on_the_operator_topic_is_dead_lettered_not_believed() {
    use ordersaga_actors::aggregates::Saga;
    use ordersaga_actors::recovery::replay;
    use ordersaga_events::codec::{encode, Format};
    use ordersaga_events::saga::{saga_of, SagaCommand, SagaPhase};
    use ordersaga_events::topics::{header, DEADLETTER, SAGA_COMMANDS};
    use ordersaga_events::CommandEnvelope;
    use support::{header_text, Probe};

    let broker = TestBroker::from_env();
    // The saga's clock stands still, so its own timer stays quiet during the
    // test, and one believed tick from the future would make it resend.
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(50_00).await;
    let product = shop.product(10_00, 3).await;
    // With inventory away the saga waits for its reservation.
    shop.stop_service(Service::Inventory).await;
    let order = shop.order(user, &[(product, 1)]).await;
    shop.saga_event(order, "the saga to start", |e| {
        matches!(e, SagaEvent::Started { .. })
    })
    .await;

    // A tick from the far future would make the saga give up at once.
    let saga_id = saga_of(order);
    let forged = CommandEnvelope::new(SagaCommand::Tick {
        saga_id,
        now: chrono::Utc::now() + chrono::TimeDelta::days(365),
    });
    let payload = encode(Format::Json, &forged).unwrap();
    let producer = support::producer(&shop.kafka);
    support::send_raw(
        &producer,
        &shop.kafka,
        SAGA_COMMANDS,
        &saga_id.to_string(),
        &payload,
        Some(Format::Json),
    )
    .await;
    let mut letters = Probe::new(&shop.kafka, DEADLETTER);
    letters
        .until("the forged tick's dead letter", |seen| {
            seen.iter().any(|m| {
                header_text(m, header::DEADLETTER_CODE).as_deref()
                    == Some("not_an_operator_command")
            })
        })
        .await;
    // The dead letter and its offset are one transaction: the tick was
    // refused, not applied.
    let saga = replay::<Saga>(shop.journal(Service::Orders), saga_id.as_uuid(), None).unwrap();
    assert_eq!(saga.state.phase(), SagaPhase::Reserving);
    assert_eq!(saga.state.attempt(), 1);
    shop.stop().await;
}
