//! The whole shop for saga tests: the three services on one broker, a
//! producer, and a probe on `orders.events` to wait for sagas to end.

use super::{header_text, Probe, TestBroker};
use ordersaga::kafka::topics::all_topics;
use ordersaga::kafka::KafkaConfig;
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga_actors::Journal;
use ordersaga_events::codec::{decode_event, encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::{saga_of, SagaEvent, SagaPolicy};
use ordersaga_events::topics::{Service, ORDERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, OrderId, ProductId, StreamId, StreamKind, UserId};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use std::time::Duration;

/// Short saga timeouts, so timeout paths run in seconds, with room for a
/// slow start on a busy machine (3 attempts: 0.8 + 1.6 + 3.2 s).
pub fn fast_sagas() -> SagaPolicy {
    SagaPolicy {
        step_timeout_ms: 800,
        max_attempts: 3,
    }
}

/// A running shop.
pub struct Shop {
    /// Topic layout (its own namespace).
    pub kafka: KafkaConfig,
    /// How the services were started.
    pub options: NodeOptions,
    /// The running services, by [`Service`].
    pub services: Vec<RunningService>,
    producer: FutureProducer,
    events: Probe,
    _dir: tempfile::TempDir,
}

impl Shop {
    /// Creates the topics and starts the three services.
    pub async fn start(broker: &TestBroker) -> Shop {
        Self::start_with(broker, fast_sagas()).await
    }

    /// [`Shop::start`] with a saga policy of the test's choosing.
    pub async fn start_with(broker: &TestBroker, saga: SagaPolicy) -> Shop {
        let kafka = broker.kafka();
        let topics = all_topics();
        let topics: Vec<&str> = topics.iter().map(|t| t.as_str()).collect();
        broker.create_topics(&kafka, &topics).await;
        let dir = tempfile::tempdir().unwrap();
        let mut options = NodeOptions::new(kafka.clone(), dir.path());
        options.saga = saga;
        options.saga_tick = Duration::from_millis(50);
        let mut services = Vec::new();
        for name in Service::ALL {
            services.push(node::start(name, &options).await.expect("start a service"));
        }
        Shop {
            producer: super::producer(&kafka),
            events: Probe::new(&kafka, ORDERS_EVENTS),
            kafka,
            options,
            services,
            _dir: dir,
        }
    }

    /// A service's store.
    pub fn journal(&self, name: Service) -> &Journal {
        self.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.journal())
            .unwrap_or_else(|| panic!("{} is not running", name.name()))
    }

    /// Sends a command (bincode) to `service`, keyed by `key`.
    pub async fn send<C: Serialize>(&self, service: Service, key: &str, command: C) {
        let envelope = CommandEnvelope::new(command);
        let payload = encode(Format::Bincode, &envelope).unwrap();
        super::send_raw(
            &self.producer,
            &self.kafka,
            service.commands_topic(),
            key,
            &payload,
            Some(Format::Bincode),
        )
        .await;
    }

    /// Registers a user with `funds`.
    pub async fn user(&self, funds: u64) -> UserId {
        let user_id = UserId::new();
        self.send(
            Service::Users,
            &user_id.to_string(),
            UserCommand::Register {
                user_id,
                email: format!("{user_id}@example.com"),
                username: "shopper".into(),
                password: Password::new("a long password"),
            },
        )
        .await;
        if funds > 0 {
            self.send(
                Service::Users,
                &user_id.to_string(),
                UserCommand::Deposit {
                    user_id,
                    amount: Cents(funds),
                },
            )
            .await;
        }
        user_id
    }

    /// Adds a product.
    pub async fn product(&self, price: u64, stock: u64) -> ProductId {
        let product_id = ProductId::new();
        self.send(
            Service::Inventory,
            &product_id.to_string(),
            InventoryCommand::AddProduct {
                product_id,
                sku: format!("SKU-{}", &product_id.to_string()[..8]),
                name: "thing".into(),
                unit_price: Cents(price),
                stock,
            },
        )
        .await;
        product_id
    }

    /// Places an order.
    pub async fn order(&self, user_id: UserId, lines: &[(ProductId, u64)]) -> OrderId {
        let order_id = OrderId::new();
        let lines = lines
            .iter()
            .map(|&(product_id, quantity)| OrderLine {
                product_id,
                quantity,
            })
            .collect();
        self.send(
            Service::Orders,
            &order_id.to_string(),
            OrderCommand::Place {
                order_id,
                user_id,
                lines,
            },
        )
        .await;
        order_id
    }

    /// Waits until the events of `order_id`'s saga seen so far (in order,
    /// duplicates included) satisfy `done`; returns them.
    pub async fn saga_events_until(
        &mut self,
        order_id: OrderId,
        what: &str,
        done: impl Fn(&[SagaEvent]) -> bool,
    ) -> Vec<SagaEvent> {
        let stream = StreamId::new(StreamKind::Saga, saga_of(order_id).as_uuid()).to_string();
        let events_of = |seen: &[rdkafka::message::OwnedMessage]| -> Vec<SagaEvent> {
            seen.iter()
                .filter(|m| {
                    header_text(m, ordersaga_events::topics::header::STREAM).as_deref()
                        == Some(stream.as_str())
                })
                .filter_map(|m| decode_event::<SagaEvent>(m.payload()?).ok())
                .map(|e| e.payload)
                .collect()
        };
        self.events.until(what, |seen| done(&events_of(seen))).await;
        events_of(&self.events.seen)
    }

    /// Waits for a saga event of `order_id`'s saga that `wanted` accepts.
    pub async fn saga_event(
        &mut self,
        order_id: OrderId,
        what: &str,
        wanted: impl Fn(&SagaEvent) -> bool,
    ) -> SagaEvent {
        let events = self
            .saga_events_until(order_id, what, |events| events.iter().any(&wanted))
            .await;
        events.into_iter().find(|e| wanted(e)).unwrap()
    }

    /// Waits for the saga of `order_id` to complete or abort.
    pub async fn saga_end(&mut self, order_id: OrderId) -> SagaEvent {
        self.saga_event(order_id, "the saga to end", |e| {
            matches!(e, SagaEvent::Completed | SagaEvent::Aborted { .. })
        })
        .await
    }

    /// The directory holding the three stores.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Stops every service, keeping the stores.
    pub async fn stop_all(&mut self) {
        for service in self.services.drain(..) {
            service.stop().await;
        }
    }

    /// Starts every service again on its store.
    pub async fn start_all(&mut self) {
        for name in Service::ALL {
            self.start_service(name).await;
        }
    }

    /// Stops one service.
    pub async fn stop_service(&mut self, name: Service) {
        let index = self
            .services
            .iter()
            .position(|s| s.name == name)
            .expect("running");
        self.services.remove(index).stop().await;
    }

    /// Starts a stopped service again on its store.
    pub async fn start_service(&mut self, name: Service) {
        self.services.push(
            node::start(name, &self.options)
                .await
                .expect("restart a service"),
        );
    }

    /// Checks the invariants across the three stores, all sagas finished.
    pub fn verify(&self) {
        let report = ordersaga::verify::check(
            self.journal(Service::Users),
            self.journal(Service::Inventory),
            self.journal(Service::Orders),
            true,
        )
        .unwrap();
        assert!(
            report.is_ok(),
            "invariants broken: {:#?}",
            report.violations
        );
    }

    /// Stops every service.
    pub async fn stop(self) {
        for service in self.services {
            service.stop().await;
        }
    }
}
