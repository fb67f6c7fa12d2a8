//! Running services on Kafka: one [`RunningService`] per service, each with its
//! own store, command consumer and outbox relay. The same code runs all three
//! in one process (`ordersaga run`) or one per process (`ordersaga serve`).

use crate::kafka::clients::{self, CONNECT_TIMEOUT};
use crate::kafka::consumer::{self, ConsumerSettings, JournalOffsets};
use crate::kafka::relay::{self, RelayProgress};
use crate::kafka::topics::{ensure_topics, topics_of};
use crate::kafka::{KafkaConfig, TransportError};
use ordersaga_actors::aggregates::{Order, Product, User};
use ordersaga_actors::{Aggregate, Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::topics::Service as ServiceName;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to run services.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The cluster.
    pub kafka: KafkaConfig,
    /// Parent of the per-service store directories (`DATA/users`, …).
    pub data_dir: PathBuf,
    /// Actor settings (snapshots, mailboxes, passivation, event format).
    pub service: ServiceConfig,
    /// Consumer settings.
    pub consumer: ConsumerSettings,
    /// How long a stop keeps publishing the outbox. Default 10 s.
    pub publish_grace: Duration,
}

impl NodeOptions {
    /// Defaults for `kafka` with stores under `data_dir`.
    pub fn new(kafka: KafkaConfig, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            kafka,
            data_dir: data_dir.into(),
            service: ServiceConfig::default(),
            consumer: ConsumerSettings::default(),
            publish_grace: Duration::from_secs(10),
        }
    }
}

/// A service running on Kafka. Call [`RunningService::stop`] to stop it
/// cleanly.
pub struct RunningService {
    /// Which service.
    pub name: ServiceName,
    journal: Journal,
    stop_consumer: watch::Sender<bool>,
    stop_relay: watch::Sender<bool>,
    consumer: JoinHandle<()>,
    relay: JoinHandle<()>,
    progress: watch::Receiver<RelayProgress>,
}

impl RunningService {
    /// The service's store.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// What the relay has published so far.
    pub fn relay_progress(&self) -> watch::Receiver<RelayProgress> {
        self.progress.clone()
    }

    /// Stops consuming, finishes the commands in flight, publishes what is
    /// left in the outbox (within the grace period) and flushes the store.
    pub async fn stop(self) {
        let _ = self.stop_consumer.send(true);
        let _ = self.consumer.await;
        let _ = self.stop_relay.send(true);
        let _ = self.relay.await;
        if let Err(err) = self.journal.flush() {
            tracing::error!(service = self.name.name(), cause = %err, "final flush failed");
        }
    }
}

/// Starts one service: creates its topics, opens its store, starts its actors,
/// its outbox relay and its command consumer. Must run inside an actix system.
pub async fn start(
    name: ServiceName,
    options: &NodeOptions,
) -> Result<RunningService, TransportError> {
    match name {
        ServiceName::Users => start_as::<User>(options).await,
        ServiceName::Orders => start_as::<Order>(options).await,
        ServiceName::Inventory => start_as::<Product>(options).await,
    }
}

async fn start_as<A: Aggregate>(options: &NodeOptions) -> Result<RunningService, TransportError>
where
    A::Command: DeserializeOwned,
{
    let name = A::SERVICE;
    let kafka = &options.kafka;
    ensure_topics(kafka, &topics_of(name)).await?;
    let journal = Journal::open(JournalConfig::new(options.data_dir.join(name.name())))?;
    let client_id = format!("ordersaga-{}", name.name());
    let producer = clients::producer(kafka, &client_id)?;
    let cluster_id = fetch_cluster_id(&producer).await?;
    let mut service_config = options.service.clone();
    // The consumer alone must never overfill an entity mailbox.
    service_config.entity_mailbox = service_config.entity_mailbox.max(options.consumer.window);
    let service = Service::<A>::start(journal.clone(), service_config);

    let group = kafka.name(&format!("ordersaga-{}", name.name()));
    let context = JournalOffsets::new(journal.clone(), cluster_id.clone(), name.name());
    let consumer = clients::consumer(kafka, &client_id, &group, context)?;
    consumer.subscribe(&[&kafka.name(name.commands_topic())])?;

    let (stop_relay, relay_stop) = watch::channel(false);
    let (progress_tx, progress) = watch::channel(RelayProgress::default());
    let relay = actix::spawn(relay::run(
        journal.clone(),
        producer,
        kafka.clone(),
        name.name(),
        relay_stop,
        options.publish_grace,
        progress_tx,
    ));
    let (stop_consumer, consumer_stop) = watch::channel(false);
    let consumer = actix::spawn(consumer::run(
        service,
        consumer,
        kafka.clone(),
        cluster_id,
        options.consumer.clone(),
        consumer_stop,
    ));
    tracing::info!(service = name.name(), "started");
    Ok(RunningService {
        name,
        journal,
        stop_consumer,
        stop_relay,
        consumer,
        relay,
        progress,
    })
}

/// The cluster id: stored offsets are only valid on the cluster that issued
/// them. Asked off the async thread, since librdkafka blocks for it.
async fn fetch_cluster_id(
    producer: &rdkafka::producer::FutureProducer,
) -> Result<String, TransportError> {
    let client = producer.clone();
    let id = tokio::task::spawn_blocking(move || client.client().fetch_cluster_id(CONNECT_TIMEOUT))
        .await
        .ok()
        .flatten();
    id.ok_or_else(|| {
        TransportError::Kafka(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
        ))
    })
}
