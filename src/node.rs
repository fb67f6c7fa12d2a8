//! Running services on Kafka: one [`RunningService`] per service, each with its
//! own store, command consumers and outbox relay. The same code runs all three
//! in one process (`ordersaga run`) or one per process (`ordersaga serve`).
//!
//! The orders service also runs the order saga: a saga service on the same
//! store, a consumer for the replies to saga commands, one for operator saga
//! commands, the follower that starts sagas for placed orders, and the timer.

use crate::http::{self, ApiState, Backend, HttpFace};
use crate::kafka::clients::{self, Membership, CONNECT_TIMEOUT};
use crate::kafka::consumer::{self, ConsumerSettings, Decoder, JournalOffsets};
use crate::kafka::heartbeat::{self, Beats, HeartbeatInfo};
use crate::kafka::liveness::{self, Ownership, Readiness};
use crate::kafka::reach::reach;
use crate::kafka::relay::{self, RelayProgress};
use crate::kafka::topics::{ensure_topics, topics_of};
use crate::kafka::{KafkaConfig, TransportError};
use crate::saga::clock::Clock;
use crate::saga::{follower, local, operator, replies, timer};
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::{Aggregate, Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::saga::SagaPolicy;
use ordersaga_events::topics::{Service as ServiceName, SAGA_COMMANDS, SAGA_REPLIES};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
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
    /// How long a stop keeps publishing the outbox. Default 5 s: what is left
    /// is published on the next start.
    pub publish_grace: Duration,
    /// Timeouts and retries of new sagas. Default: 10 s steps, a 90 s budget
    /// ([`SagaPolicy::default`]).
    pub saga: SagaPolicy,
    /// How often the saga timer looks for due sagas. Default 250 ms. Unused
    /// with a manual clock, whose timer ticks when the test asks.
    pub saga_tick: Duration,
    /// The time the orders service gives its sagas, and what drives the
    /// timer. Default [`Clock::System`]; tests pass a
    /// [`ManualClock`](crate::saga::clock::ManualClock) so that timeouts
    /// happen when they say.
    pub saga_clock: Clock,
    /// The static member id of this instance in its consumer groups. Default
    /// `None`: derived from the service and its store's id, so that the same
    /// store restarted is the same member.
    pub instance_id: Option<String>,
    /// How long a consumer may own no partition before the service counts
    /// as deaf and not ready. Default 15 s.
    pub deaf_after: Duration,
    /// How often the instance announces itself on `services.heartbeats`.
    /// Default 2 s; readers count it down after three silent periods.
    pub heartbeat_period: Duration,
    /// Where the instance's HTTP face listens (`host:port`; port 0 picks a
    /// free one). Default `127.0.0.1:0`; `None` serves no HTTP.
    pub http: Option<String>,
}

impl NodeOptions {
    /// Defaults for `kafka` with stores under `data_dir`.
    pub fn new(kafka: KafkaConfig, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            kafka,
            data_dir: data_dir.into(),
            service: ServiceConfig::default(),
            consumer: ConsumerSettings::default(),
            publish_grace: Duration::from_secs(5),
            saga: SagaPolicy::default(),
            saga_tick: Duration::from_millis(250),
            saga_clock: Clock::System,
            instance_id: None,
            deaf_after: Duration::from_secs(15),
            heartbeat_period: heartbeat::DEFAULT_PERIOD,
            http: Some("127.0.0.1:0".into()),
        }
    }
}

/// A background task and its stop switch.
struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Task {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// A service running on Kafka. Call [`RunningService::stop`] to stop it
/// cleanly.
pub struct RunningService {
    /// Which service.
    pub name: ServiceName,
    journal: Journal,
    /// Consumers and other feeders: stopped first.
    feeders: Vec<Task>,
    relay: Task,
    progress: watch::Receiver<RelayProgress>,
    readiness: watch::Receiver<Readiness>,
    instance_id: String,
    actors: Vec<Box<dyn ServiceActors>>,
    http: Option<HttpFace>,
}

/// The actors of one `Service`, whatever its aggregate: stopped last.
trait ServiceActors {
    fn shutdown(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>;
}

/// A service's actors on an arbiter (a thread) of their own: the process's
/// main thread keeps the consumers, relay and feeders, and each service's
/// entities run beside the others' instead of in turn with them. Before,
/// every actor of a process shared one thread, and it was the ceiling of
/// the saga's throughput (ARCHITECTURE.md, "Hops").
struct OnArbiter<A: Aggregate> {
    service: Service<A>,
    arbiter: actix::Arbiter,
}

impl<A: Aggregate> OnArbiter<A> {
    /// Starts `A`'s service on a new arbiter; returns a handle to send it
    /// commands and its actors, to stop last.
    fn start(journal: Journal, config: ServiceConfig) -> (Service<A>, Box<dyn ServiceActors>) {
        let arbiter = actix::Arbiter::new();
        let service = Service::<A>::start_on(journal, config, &arbiter.handle());
        (service.clone(), Box::new(OnArbiter { service, arbiter }))
    }
}

impl<A: Aggregate> ServiceActors for OnArbiter<A> {
    fn shutdown(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
        Box::pin(async move {
            self.service.shutdown().await;
            // Entities stopping now drop their store handles as the
            // arbiter's loop ends; `stop` waits for the handles.
            self.arbiter.stop();
        })
    }
}

/// How long a stop waits for the actors to let go of the store.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

impl RunningService {
    /// The service's store.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// What the relay has published so far.
    pub fn relay_progress(&self) -> watch::Receiver<RelayProgress> {
        self.progress.clone()
    }

    /// Whether every consumer of the service owns partitions; follows changes.
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.readiness.clone()
    }

    /// Where this instance's HTTP face listens, if it has one.
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|http| http.address)
    }

    /// This instance's static member id in its consumer groups.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// How many of the orders service's sagas are waiting for replies (are
    /// in the deadline index); `None` for other services.
    pub fn sagas_waiting(&self) -> Option<usize> {
        (self.name == ServiceName::Orders).then(|| self.journal.scheduled())
    }

    /// Stops consuming, finishes the commands in flight, publishes what is
    /// left in the outbox (within the grace period) and flushes the store.
    ///
    /// Every stage is bounded, so a stop ends in about the consumers' drain
    /// timeout plus the publish grace plus [`CLOSE_TIMEOUT`], even while the
    /// broker is down; what was not published stays in the outbox.
    pub async fn stop(self) {
        // All feeders drain at once, so their bounds do not add up. The
        // heartbeat is one: its `leaving` goes out now, before the HTTP
        // face closes, so the registry never routes to a closed port.
        for feeder in &self.feeders {
            let _ = feeder.stop.send(true);
        }
        // No new queries while the actors go away.
        if let Some(http) = &self.http {
            http.stop().await;
        }
        for feeder in self.feeders {
            let _ = feeder.handle.await;
        }
        self.relay.stop().await;
        for actors in &self.actors {
            actors.shutdown().await;
        }
        drop(self.actors);
        if let Err(err) = self.journal.flush() {
            tracing::error!(service = self.name.name(), cause = %err, "final flush failed");
        }
        // Entities stop asynchronously; the store closes with the last of
        // them, and a restart in this process must find it closed.
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        while self.journal.handles() > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.journal.handles() > 1 {
            tracing::warn!(
                service = self.name.name(),
                store = %self.journal.path().display(),
                handles = self.journal.handles() - 1,
                "the store is still open after the stop timeout; it closes when the last actor lets go"
            );
        }
    }
}

/// Starts one service: creates its topics, opens its store, starts its actors,
/// its outbox relay and its consumers. Must run inside an actix system.
pub async fn start(
    name: ServiceName,
    options: &NodeOptions,
) -> Result<RunningService, TransportError> {
    match name {
        ServiceName::Users => start_plain::<User>(options, Backend::Users).await,
        ServiceName::Inventory => start_plain::<Product>(options, Backend::Inventory).await,
        ServiceName::Orders => start_orders(options).await,
    }
}

/// What every service needs before its consumers start.
struct Base {
    journal: Journal,
    cluster_id: String,
    client_id: String,
    instance_id: String,
    relay: Task,
    progress: watch::Receiver<RelayProgress>,
    service_config: ServiceConfig,
    /// Ownership of every consumer started so far, for readiness.
    ownerships: Vec<Ownership>,
    ownership_changed: Arc<Notify>,
}

impl Base {
    /// The task that keeps the service's readiness, and its receiver.
    fn liveness(
        &self,
        name: ServiceName,
        options: &NodeOptions,
    ) -> (Task, watch::Receiver<Readiness>) {
        let (readiness_tx, readiness) = watch::channel(liveness::assess(
            &self.ownerships,
            options.deaf_after,
            std::time::Instant::now(),
        ));
        let (stop, stopped) = watch::channel(false);
        let handle = actix::spawn(liveness::watch(
            name.name(),
            self.ownerships.clone(),
            self.ownership_changed.clone(),
            options.deaf_after,
            readiness_tx,
            stopped,
        ));
        (Task { stop, handle }, readiness)
    }

    /// The task that announces the instance (answering HTTP at `http`) on
    /// the heartbeats topic, and says it is leaving when stopped. A feeder,
    /// so its farewell overlaps the consumers' drain.
    fn heartbeat(
        &self,
        name: ServiceName,
        options: &NodeOptions,
        readiness: &watch::Receiver<Readiness>,
        http: Option<String>,
    ) -> Result<Task, TransportError> {
        let info = HeartbeatInfo::new(name, &self.instance_id, http);
        let period = options.heartbeat_period;
        let beats = Beats::new(
            &options.kafka,
            info,
            period,
            &self.ownerships,
            readiness.clone(),
        )?;
        let (stop, stopped) = watch::channel(false);
        let handle = actix::spawn(beats.run(stopped));
        Ok(Task { stop, handle })
    }
}

async fn base(
    name: ServiceName,
    topics: Vec<String>,
    options: &NodeOptions,
) -> Result<Base, TransportError> {
    let kafka = &options.kafka;
    reach(&kafka.brokers).await?;
    ensure_topics(kafka, &topics).await?;
    let journal = Journal::open(JournalConfig::new(options.data_dir.join(name.name())))?;
    let client_id = format!("ordersaga-{}", name.name());
    let instance_id = options.instance_id.clone().unwrap_or_else(|| {
        format!(
            "ordersaga-{}-{}",
            name.name(),
            &journal.store_id().simple().to_string()[..12]
        )
    });
    let producer = clients::producer(kafka, &client_id)?;
    let cluster_id = fetch_cluster_id(&producer).await?;
    let (stop, relay_stop) = watch::channel(false);
    let (progress_tx, progress) = watch::channel(RelayProgress::default());
    let make_producer: relay::MakeProducer = {
        let (kafka, client_id) = (kafka.clone(), client_id.clone());
        Box::new(move || clients::producer(&kafka, &client_id))
    };
    let handle = actix::spawn(relay::run(
        journal.clone(),
        producer,
        make_producer,
        kafka.clone(),
        name.name(),
        relay_stop,
        options.publish_grace,
        progress_tx,
    ));
    let mut service_config = options.service.clone();
    // The consumer alone must never overfill an entity mailbox.
    service_config.entity_mailbox = service_config.entity_mailbox.max(options.consumer.window);
    Ok(Base {
        journal,
        cluster_id,
        client_id,
        instance_id,
        relay: Task { stop, handle },
        progress,
        service_config,
        ownerships: Vec::new(),
        ownership_changed: Arc::new(Notify::new()),
    })
}

/// A consumer of the logical `topic` in the logical `group`, feeding `service`.
fn consumer_task<A: Aggregate>(
    base: &mut Base,
    options: &NodeOptions,
    service: Service<A>,
    topic: &str,
    group: &str,
    decode: Decoder<A::Command>,
) -> Result<Task, TransportError> {
    let kafka = &options.kafka;
    let membership = Membership {
        group: kafka.name(group),
        instance_id: Some(base.instance_id.clone()),
        session_timeout: options.consumer.session_timeout,
    };
    let ownership = Ownership::signalling(
        membership.group.clone(),
        kafka.name(topic),
        base.ownership_changed.clone(),
    );
    base.ownerships.push(ownership.clone());
    let context = JournalOffsets::new(
        base.journal.clone(),
        base.cluster_id.clone(),
        A::SERVICE.name(),
        ownership,
    );
    let consumer = clients::consumer(kafka, &base.client_id, &membership, context)?;
    consumer.subscribe(&[&kafka.name(topic)])?;
    let (stop, stopped) = watch::channel(false);
    let handle = actix::spawn(consumer::run(
        service,
        consumer,
        decode,
        kafka.clone(),
        base.cluster_id.clone(),
        options.consumer.clone(),
        stopped,
    ));
    Ok(Task { stop, handle })
}

async fn start_plain<A: Aggregate>(
    options: &NodeOptions,
    backend: fn(Service<A>) -> Backend,
) -> Result<RunningService, TransportError>
where
    A::Command: DeserializeOwned,
{
    let name = A::SERVICE;
    let mut base = base(name, topics_of(name), options).await?;
    let (service, actors) =
        OnArbiter::<A>::start(base.journal.clone(), base.service_config.clone());
    let group = format!("ordersaga-{}", name.name());
    let commands = consumer_task(
        &mut base,
        options,
        service.clone(),
        name.commands_topic(),
        &group,
        consumer::command_decoder::<A::Command>(),
    )?;
    let (liveness, readiness) = base.liveness(name, options);
    let http = serve_http(options, backend(service.clone()), &base.journal, &readiness)?;
    let heartbeat = base.heartbeat(name, options, &readiness, http_text(&http))?;
    tracing::info!(
        service = name.name(),
        instance_id = %base.instance_id,
        http = ?http.as_ref().map(|h| h.address),
        "started"
    );
    Ok(RunningService {
        name,
        journal: base.journal,
        feeders: vec![commands, liveness, heartbeat],
        relay: base.relay,
        progress: base.progress,
        readiness,
        instance_id: base.instance_id,
        actors: vec![actors],
        http,
    })
}

async fn start_orders(options: &NodeOptions) -> Result<RunningService, TransportError> {
    let name = ServiceName::Orders;
    let mut base = base(name, topics_of(name), options).await?;
    let (orders, order_actors) =
        OnArbiter::<Order>::start(base.journal.clone(), base.service_config.clone());
    // The saga supervisor: its router owns one child actor per saga, on the
    // same store as the orders.
    let (sagas, saga_actors) =
        OnArbiter::<Saga>::start(base.journal.clone(), base.service_config.clone());
    let indexed = timer::index_existing(&base.journal).await?;
    if indexed > 0 {
        tracing::info!(
            service = name.name(),
            sagas = indexed,
            "indexed the deadlines of sagas stored before the deadline index"
        );
    }

    let mut feeders = vec![
        consumer_task(
            &mut base,
            options,
            orders.clone(),
            name.commands_topic(),
            "ordersaga-orders",
            consumer::command_decoder(),
        )?,
        consumer_task(
            &mut base,
            options,
            sagas.clone(),
            SAGA_REPLIES,
            "ordersaga-orders-saga-replies",
            replies::reply_decoder(options.saga_clock.clone()),
        )?,
        consumer_task(
            &mut base,
            options,
            sagas.clone(),
            SAGA_COMMANDS,
            "ordersaga-orders-saga-commands",
            operator::operator_decoder(options.saga_clock.clone()),
        )?,
    ];
    let (stop, stopped) = watch::channel(false);
    feeders.push(Task {
        stop,
        handle: actix::spawn(follower::run(
            base.journal.clone(),
            sagas.clone(),
            options.saga,
            options.saga_clock.clone(),
            stopped,
        )),
    });
    let (stop, stopped) = watch::channel(false);
    feeders.push(Task {
        stop,
        handle: actix::spawn(local::run(
            base.journal.clone(),
            orders.clone(),
            sagas.clone(),
            options.saga_clock.clone(),
            stopped,
        )),
    });
    let (stop, stopped) = watch::channel(false);
    feeders.push(Task {
        stop,
        handle: actix::spawn(timer::run(
            base.journal.clone(),
            sagas.clone(),
            options.saga_tick,
            options.saga_clock.clone(),
            stopped,
        )),
    });
    let (liveness, readiness) = base.liveness(name, options);
    feeders.push(liveness);
    let backend = Backend::Orders {
        orders: orders.clone(),
        sagas: sagas.clone(),
    };
    let http = serve_http(options, backend, &base.journal, &readiness)?;
    feeders.push(base.heartbeat(name, options, &readiness, http_text(&http))?);
    tracing::info!(
        service = name.name(),
        instance_id = %base.instance_id,
        waiting_sagas = base.journal.scheduled(),
        http = ?http.as_ref().map(|h| h.address),
        "started"
    );
    Ok(RunningService {
        name,
        journal: base.journal,
        feeders,
        relay: base.relay,
        progress: base.progress,
        readiness,
        instance_id: base.instance_id,
        actors: vec![order_actors, saga_actors],
        http,
    })
}

/// The address of an HTTP face as heartbeats give it.
fn http_text(http: &Option<HttpFace>) -> Option<String> {
    http.as_ref().map(|h| h.address.to_string())
}

/// Starts the instance's HTTP face on `options.http`, if it has one.
fn serve_http(
    options: &NodeOptions,
    backend: Backend,
    journal: &Journal,
    readiness: &watch::Receiver<Readiness>,
) -> Result<Option<HttpFace>, TransportError> {
    let Some(address) = options.http.as_deref() else {
        return Ok(None);
    };
    let state = ApiState {
        backend,
        journal: journal.clone(),
        readiness: readiness.clone(),
    };
    http::serve(address, state)
        .map(Some)
        .map_err(|source| TransportError::Http {
            address: address.to_owned(),
            source,
        })
}

/// The cluster id: stored offsets are only valid on the cluster that issued
/// them. Asked off the async thread, since librdkafka blocks for it.
async fn fetch_cluster_id(producer: &FutureProducer) -> Result<String, TransportError> {
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
