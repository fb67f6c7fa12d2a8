//! The outside client of a chaos run: it sends commands as any producer
//! would, and follows its reply topic and `orders.events` to learn what
//! became of them.

use crate::support::from_the_beginning;
use ordersaga::kafka::{clients, KafkaConfig};
use ordersaga_events::codec::{decode, decode_event, encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::{header, ORDERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, OrderId, Outcome, ProductId, Reply, UserId,
};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The reply topic of the client (logical).
pub const REPLIES: &str = "chaos.replies";

/// How a saga ended, as its events say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Completed.
    Completed,
    /// Aborted with this reason.
    Aborted(String),
}

/// What the client has learnt so far.
#[derive(Default)]
pub struct Seen {
    /// The first reply to each command.
    pub replies: HashMap<CommandId, Outcome>,
    /// How each saga ended, by saga stream (`saga:<id>`).
    pub endings: HashMap<String, Ending>,
    /// Sagas seen parked as stuck.
    pub stuck: HashSet<String>,
    /// Saga steps resent because their replies were late (duplicates of a
    /// record included).
    pub resends: usize,
}

/// A producer plus followers of the replies and the saga events.
pub struct Client {
    kafka: KafkaConfig,
    producer: FutureProducer,
    /// Commands sent, by id, with what they were.
    pub sent: HashMap<CommandId, &'static str>,
    /// Orders placed, with their command ids.
    pub orders: Vec<(OrderId, CommandId)>,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    last_reply: watch::Receiver<Option<Instant>>,
}

fn header_text(message: &rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Client {
    /// A client of `kafka`, whose reply topic exists.
    pub fn new(kafka: &KafkaConfig) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(Notify::new());
        let replies = from_the_beginning(kafka, REPLIES, "chaos-client");
        let (s, c) = (seen.clone(), changed.clone());
        let (clock, last_reply) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                let Ok(message) = replies.recv().await else {
                    continue;
                };
                let Some(reply) = message.payload().and_then(|p| decode::<Reply>(p).ok()) else {
                    continue;
                };
                let mut seen = s.lock().unwrap();
                seen.replies
                    .entry(reply.command_id)
                    .or_insert(reply.outcome);
                drop(seen);
                clock.send_replace(Some(Instant::now()));
                c.notify_waiters();
            }
        });
        let events = from_the_beginning(kafka, ORDERS_EVENTS, "chaos-client");
        let (s, c) = (seen.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let Ok(message) = events.recv().await else {
                    continue;
                };
                let Some(stream) = header_text(&message, header::STREAM) else {
                    continue;
                };
                if !stream.starts_with("saga:") {
                    continue;
                }
                let Some(event) = message
                    .payload()
                    .and_then(|p| decode_event::<SagaEvent>(p).ok())
                else {
                    continue;
                };
                let mut seen = s.lock().unwrap();
                match event.payload {
                    SagaEvent::Completed => {
                        seen.endings.insert(stream, Ending::Completed);
                    }
                    SagaEvent::Aborted { reason } => {
                        seen.endings.insert(stream, Ending::Aborted(reason));
                    }
                    SagaEvent::Stuck { .. } => {
                        seen.stuck.insert(stream);
                    }
                    SagaEvent::StepRetried { .. } => seen.resends += 1,
                    _ => continue,
                }
                drop(seen);
                c.notify_waiters();
            }
        });
        Self {
            kafka: kafka.clone(),
            producer: clients::simple_producer(kafka, "chaos-client").unwrap(),
            sent: HashMap::new(),
            orders: Vec::new(),
            seen,
            changed,
            last_reply,
        }
    }

    /// When the last reply arrived; follows new replies.
    pub fn reply_clock(&self) -> watch::Receiver<Option<Instant>> {
        self.last_reply.clone()
    }

    async fn send<C: Serialize>(
        &mut self,
        topic: &str,
        key: String,
        what: &'static str,
        command: C,
    ) -> CommandId {
        let envelope = CommandEnvelope::new(command).reply_to(REPLIES);
        let command_id = envelope.command_id;
        self.sent.insert(command_id, what);
        let payload = encode(Format::Bincode, &envelope).unwrap();
        let physical = self.kafka.name(topic);
        let headers = OwnedHeaders::new().insert(Header {
            key: header::CONTENT_TYPE,
            value: Some(Format::Bincode.content_type()),
        });
        // A client resends what the broker did not acknowledge (through a
        // broker restart, say): the same command id makes that safe.
        let mut last = None;
        for _ in 0..5 {
            let record = FutureRecord::to(&physical)
                .key(&key)
                .payload(&payload)
                .headers(headers.clone());
            match self.producer.send(record, Duration::from_secs(60)).await {
                Ok(_) => return command_id,
                Err((err, _)) => last = Some(err),
            }
        }
        panic!("the chaos client could not send a command: {last:?}");
    }

    /// Registers a user and deposits `funds`.
    pub async fn user(&mut self, funds: u64) -> UserId {
        let user_id = UserId::new();
        let register = UserCommand::Register {
            user_id,
            email: format!("{user_id}@example.com"),
            username: "chaos".into(),
            password: Password::new("a long password"),
        };
        let topic = ordersaga_events::topics::USERS_COMMANDS;
        self.send(topic, user_id.to_string(), "register", register)
            .await;
        let deposit = UserCommand::Deposit {
            user_id,
            amount: Cents(funds),
        };
        self.send(topic, user_id.to_string(), "deposit", deposit)
            .await;
        user_id
    }

    /// Adds a product.
    pub async fn product(&mut self, price: u64, stock: u64) -> ProductId {
        let product_id = ProductId::new();
        let add = InventoryCommand::AddProduct {
            product_id,
            sku: format!("CHAOS-{}", &product_id.to_string()[..8]),
            name: "chaos thing".into(),
            unit_price: Cents(price),
            stock,
        };
        let topic = ordersaga_events::topics::INVENTORY_COMMANDS;
        self.send(topic, product_id.to_string(), "add product", add)
            .await;
        product_id
    }

    /// Places an order.
    pub async fn order(&mut self, user_id: UserId, lines: &[(ProductId, u64)]) {
        let order_id = OrderId::new();
        let lines = lines
            .iter()
            .map(|&(product_id, quantity)| OrderLine {
                product_id,
                quantity,
            })
            .collect();
        let place = OrderCommand::Place {
            order_id,
            user_id,
            lines,
        };
        let topic = ordersaga_events::topics::ORDERS_COMMANDS;
        let command_id = self
            .send(topic, order_id.to_string(), "place order", place)
            .await;
        self.orders.push((order_id, command_id));
    }

    /// Runs `f` on what was seen so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// Waits until `done` holds for what was seen, or `bound` passes;
    /// returns whether it held.
    pub async fn until(&self, bound: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.changed.notified();
            if self.seen(&done) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.seen(&done);
            }
        }
    }
}
