//! Shared helpers of the Kafka integration tests.
//!
//! The broker is chosen by `ORDERSAGA_TEST_BROKERS`: unset, each test starts
//! its own embedded (mock) broker; set to `host:port`, tests use that real
//! cluster (`scripts/kafka-broker.sh start` runs Tansu for it). Every test
//! works in its own namespace, so tests never see each other's topics.
#![allow(dead_code)]

pub mod cli;
pub mod gateway;
pub mod http;
pub mod remembered;
pub mod shop;

use ordersaga::kafka::embedded::EmbeddedBroker;
use ordersaga::kafka::{clients, topics, KafkaConfig};
use ordersaga_events::codec::{encode, Format};
use ordersaga_events::topics::header;
use ordersaga_events::CommandEnvelope;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::time::Duration;

/// How long any wait in these tests may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The broker under test.
pub enum TestBroker {
    /// An in-process mock cluster.
    Embedded(EmbeddedBroker),
    /// A real cluster.
    External(String),
}

impl TestBroker {
    /// The broker `ORDERSAGA_TEST_BROKERS` names, or a fresh embedded one.
    pub fn from_env() -> Self {
        match std::env::var("ORDERSAGA_TEST_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => TestBroker::External(brokers),
            _ => TestBroker::Embedded(EmbeddedBroker::start().expect("start the embedded broker")),
        }
    }

    /// Whether this is a real cluster.
    pub fn is_real(&self) -> bool {
        matches!(self, TestBroker::External(_))
    }

    /// A config in a fresh namespace.
    pub fn kafka(&self) -> KafkaConfig {
        let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let config = match self {
            TestBroker::Embedded(broker) => broker.config(),
            TestBroker::External(brokers) => KafkaConfig::new(brokers.clone()),
        };
        config.with_namespace(namespace)
    }

    /// A fresh namespace with the users service's topics (commands, events,
    /// dead letters) and `extra` created: what a users-only test needs.
    pub async fn users_topics(&self, extra: &[&str]) -> KafkaConfig {
        let kafka = self.kafka();
        let mut names = vec![
            ordersaga_events::topics::USERS_COMMANDS,
            ordersaga_events::topics::USERS_EVENTS,
            ordersaga_events::topics::DEADLETTER,
        ];
        names.extend_from_slice(extra);
        self.create_topics(&kafka, &names).await;
        kafka
    }

    /// Creates the logical topics `names`.
    pub async fn create_topics(&self, kafka: &KafkaConfig, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        match self {
            TestBroker::Embedded(broker) => broker.create_topics(kafka, &names).unwrap(),
            TestBroker::External(_) => topics::ensure_topics(kafka, &names).await.unwrap(),
        }
    }
}

/// Opens a store's raw sled files, as damage on disk would reach them. sled
/// lets go of a closed store's file lock a moment after the close (its
/// flusher thread ends on its own), so a lock still held is waited for,
/// briefly.
pub fn open_raw(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(err)
                if err.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("cannot open {}: {err}", path.display()),
        }
    }
}

/// Extra `serve` arguments for tests that kill and restart a service.
///
/// The embedded broker does not hand a restarted static member its
/// partitions: they wait until the killed member's session expires, so
/// there a short session keeps the wait short. Tansu does hand them back,
/// after pausing 3 s in the join and 3 s in the sync of a static member; a
/// session shorter than that pause never completes a rejoin, so a real
/// broker keeps the default.
pub fn restart_args() -> Vec<&'static str> {
    match std::env::var("ORDERSAGA_TEST_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => Vec::new(),
        _ => vec!["--session-timeout-ms", "6000"],
    }
}

/// A plain rdkafka producer, as any client would use.
pub fn producer(kafka: &KafkaConfig) -> FutureProducer {
    clients::simple_producer(kafka, "test-producer").unwrap()
}

/// Produces `command` to the logical `topic`, keyed by `key`, in `format`.
pub async fn send<C: Serialize>(
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    command: &CommandEnvelope<C>,
    format: Format,
) {
    let payload = encode(format, command).unwrap();
    send_raw(producer, kafka, topic, key, &payload, Some(format)).await;
}

/// Produces raw bytes to the logical `topic`.
pub async fn send_raw(
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    payload: &[u8],
    format: Option<Format>,
) {
    let physical = kafka.name(topic);
    let mut headers = OwnedHeaders::new();
    if let Some(format) = format {
        headers = headers.insert(Header {
            key: header::CONTENT_TYPE,
            value: Some(format.content_type()),
        });
    }
    let record = FutureRecord::to(&physical)
        .key(key)
        .payload(payload)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produce a test record");
}

/// A reader of every partition of the logical `topic` (which must exist),
/// from the beginning, outside any consumer group.
pub fn from_the_beginning(kafka: &KafkaConfig, topic: &str, client_id: &str) -> StreamConsumer {
    let consumer = clients::reader(kafka, client_id).unwrap();
    let physical = kafka.name(topic);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..kafka.partitions {
        assignment
            .add_partition_offset(&physical, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

/// Reads a topic from the beginning of every partition.
pub struct Probe {
    consumer: StreamConsumer,
    /// Every record read so far.
    pub seen: Vec<OwnedMessage>,
}

impl Probe {
    /// A probe on the logical `topic`, which must exist.
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Self {
        Self {
            consumer: from_the_beginning(kafka, topic, "probe"),
            seen: Vec::new(),
        }
    }

    /// Reads until `done(seen)` holds; panics after [`PATIENCE`].
    pub async fn until(&mut self, what: &str, mut done: impl FnMut(&[OwnedMessage]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => self.seen.push(message.detach()),
                Ok(Err(err)) => eprintln!("probe: {err}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; saw {} records",
                    self.seen.len()
                ),
            }
        }
    }

    /// Reads until at least `n` records were seen.
    pub async fn at_least(&mut self, n: usize) {
        self.until(&format!("{n} records"), |seen| seen.len() >= n)
            .await
    }
}

/// The command ids answered by the replies among `seen` (records that
/// are not replies are passed over).
pub fn answered(seen: &[OwnedMessage]) -> std::collections::HashSet<uuid::Uuid> {
    seen.iter()
        .filter_map(|m| {
            ordersaga_events::codec::decode::<ordersaga_events::Reply>(m.payload()?).ok()
        })
        .map(|reply| reply.command_id.as_uuid())
        .collect()
}

/// A header's value as text.
pub fn header_text(message: &OwnedMessage, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// A Tansu broker owned by one test, with sqlite storage so that it can be
/// stopped and started again without losing its topics.
pub struct OwnTansu {
    child: Option<std::process::Child>,
    port: u16,
    db: std::path::PathBuf,
}

fn tansu_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("ORDERSAGA_TANSU") {
        return path.into();
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo")
        });
    let installed = cargo_home.join("bin/tansu");
    if installed.exists() {
        return installed;
    }
    panic!("tansu is not installed: run scripts/kafka-broker.sh install (or set ORDERSAGA_TANSU)");
}

impl OwnTansu {
    /// Starts Tansu on a free loopback port with its sqlite file in `dir`.
    pub fn start(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut tansu = Self {
            child: None,
            port,
            db: dir.join("tansu.db"),
        };
        tansu.up();
        tansu
    }

    /// The storage engine: sqlite in the test's directory, or the URL in
    /// `ORDERSAGA_TANSU_STORAGE` (a PostgreSQL database, say; it must hold
    /// Tansu's schema and nothing else).
    pub fn storage_engine(&self) -> String {
        match std::env::var("ORDERSAGA_TANSU_STORAGE") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => format!(
                "sqlite://{}",
                self.db.file_name().unwrap().to_string_lossy()
            ),
        }
    }

    /// `host:port` of the broker.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the broker on the same port and file, and waits
    /// until it accepts connections.
    pub fn up(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // Tansu resolves a sqlite path against its working directory.
        let child = std::process::Command::new(tansu_binary())
            .current_dir(self.db.parent().unwrap())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage_engine()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tansu did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnTansu {
    fn drop(&mut self) {
        self.down();
    }
}

/// A broker a test can take down and bring back: the embedded one, or (when
/// `ORDERSAGA_TEST_BROKERS` says a real broker is in use) the test's own
/// Tansu with sqlite storage, killed and started again on the same file.
pub enum Outage {
    Embedded(TestBroker),
    Real(OwnTansu),
}

impl Outage {
    /// The broker kind `ORDERSAGA_TEST_BROKERS` asks for; a real one keeps
    /// its storage in `dir`.
    pub fn from_env(dir: &std::path::Path) -> Self {
        match TestBroker::from_env() {
            TestBroker::External(_) => Outage::Real(OwnTansu::start(dir)),
            embedded => Outage::Embedded(embedded),
        }
    }

    /// A config in a fresh namespace (`namespace` on the test's own broker).
    pub fn kafka(&self, namespace: &str) -> KafkaConfig {
        match self {
            Outage::Embedded(broker) => broker.kafka(),
            Outage::Real(tansu) => KafkaConfig::new(tansu.brokers()).with_namespace(namespace),
        }
    }

    /// Takes the broker down.
    pub fn down(&mut self) {
        match self {
            Outage::Embedded(TestBroker::Embedded(broker)) => broker.down().unwrap(),
            Outage::Real(tansu) => tansu.down(),
            Outage::Embedded(TestBroker::External(_)) => unreachable!(),
        }
    }

    /// Brings it back.
    pub fn up(&mut self) {
        match self {
            Outage::Embedded(TestBroker::Embedded(broker)) => broker.up().unwrap(),
            Outage::Real(tansu) => tansu.up(),
            Outage::Embedded(TestBroker::External(_)) => unreachable!(),
        }
    }

    /// Creates the logical topics `names`.
    pub async fn create_topics(&self, kafka: &KafkaConfig, names: &[&str]) {
        match self {
            Outage::Embedded(broker) => broker.create_topics(kafka, names).await,
            Outage::Real(_) => {
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                topics::ensure_topics(kafka, &names).await.unwrap()
            }
        }
    }
}

/// Asserts that `user_id`'s stream in `journal` holds its registration and
/// then deposits of exactly 1, 2, … `deposits` cents, in that order.
pub fn assert_registered_then_deposits(
    journal: &ordersaga_actors::Journal,
    user_id: ordersaga_events::UserId,
    deposits: u64,
) {
    use ordersaga_actors::aggregates::User;
    use ordersaga_actors::recovery::decode_stored;
    use ordersaga_events::user::UserEvent;
    use ordersaga_events::{StreamId, StreamKind};
    let stream = StreamId::new(StreamKind::User, user_id.as_uuid());
    let events: Vec<UserEvent> = journal
        .read_stream(&stream, 1)
        .map(|item| {
            let (sequence, bytes) = item.expect("readable");
            decode_stored::<User>(&stream, sequence, &bytes)
                .expect("decodable")
                .payload
        })
        .collect();
    assert!(
        matches!(events.first(), Some(UserEvent::Registered { .. })),
        "{user_id}: {events:?}"
    );
    let amounts: Vec<u64> = events[1..]
        .iter()
        .map(|event| match event {
            UserEvent::Deposited { amount } => amount.0,
            other => panic!("{user_id}: unexpected {other:?}"),
        })
        .collect();
    assert_eq!(amounts, (1..=deposits).collect::<Vec<_>>(), "{user_id}");
}
