//! The whole shop for saga tests: the three services on one broker, a
//! producer, and a probe on `orders.events` to wait for sagas to end.
//!
//! The orders service runs on a manual saga clock: time stands still unless
//! a test moves it, and the saga timer ticks only when a test asks. A saga
//! therefore never times out because the machine was slow; a test that
//! wants a timeout moves the clock past the step's attempts and ticks
//! ([`Shop::outlast_the_step`]).

use super::{header_text, Probe, TestBroker, PATIENCE};
use ordersaga::kafka::topics::all_topics;
use ordersaga::kafka::KafkaConfig;
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga::saga::clock::{Clock, ManualClock};
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::recovery::replay;
use ordersaga_actors::Journal;
use ordersaga_events::codec::{decode_event, encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::{saga_of, SagaEvent};
use ordersaga_events::topics::{Service, ORDERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, OrderId, ProductId, StreamId, StreamKind, UserId};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use std::time::Duration;

/// A running shop.
pub struct Shop {
    /// Topic layout (its own namespace).
    pub kafka: KafkaConfig,
    /// How the services were started: the default saga policy, on
    /// [`Shop::clock`].
    pub options: NodeOptions,
    /// The orders service's saga clock; restarts keep it.
    pub clock: ManualClock,
    /// The running services, by [`Service`].
    pub services: Vec<RunningService>,
    producer: FutureProducer,
    events: Probe,
    _dir: tempfile::TempDir,
}

impl Shop {
    /// Creates the topics and starts the three services.
    pub async fn start(broker: &TestBroker) -> Shop {
        let kafka = broker.kafka();
        let topics = all_topics();
        let topics: Vec<&str> = topics.iter().map(|t| t.as_str()).collect();
        broker.create_topics(&kafka, &topics).await;
        let dir = tempfile::tempdir().unwrap();
        let mut options = NodeOptions::new(kafka.clone(), dir.path());
        let clock = ManualClock::new(chrono::Utc::now());
        options.saga_clock = Clock::Manual(clock.clone());
        let mut services = Vec::new();
        for name in Service::ALL {
            services.push(node::start(name, &options).await.expect("start a service"));
        }
        Shop {
            producer: super::producer(&kafka),
            events: Probe::new(&kafka, ORDERS_EVENTS),
            kafka,
            options,
            clock,
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

    /// Ticks the orders service's saga timer once, at the clock's time, and
    /// waits until every saga due was ticked; returns how many were due.
    pub async fn tick(&self) -> usize {
        tokio::time::timeout(PATIENCE, self.clock.tick())
            .await
            .expect("the saga timer ticked (is the orders service running?)")
            .expect("the saga timer read its deadline index")
    }

    /// Moves the clock by attempt `attempt`'s wait and ticks: a saga that
    /// started that attempt at the clock's last time is due. Returns how
    /// many sagas were due.
    pub async fn outlast_attempt(&self, attempt: u32) -> usize {
        let wait = self.options.saga.wait_ms(attempt);
        self.clock.advance(Duration::from_millis(wait));
        self.tick().await
    }

    /// Runs a step out of time: moves the clock past each of its attempts
    /// in turn, ticking after each, so a saga that entered the step at the
    /// clock's time resends until its attempts are spent and then gives up
    /// (compensates, or gets stuck if it was compensating).
    pub async fn outlast_the_step(&self) {
        for attempt in 1..=self.options.saga.max_attempts {
            self.outlast_attempt(attempt).await;
        }
    }

    /// The state of `order_id`'s saga, as its store has it.
    pub fn saga(&self, order_id: OrderId) -> Saga {
        replay::<Saga>(self.journal(Service::Orders), order_id.as_uuid(), None)
            .unwrap()
            .state
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
