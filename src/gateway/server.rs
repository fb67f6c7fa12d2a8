//! Starting and stopping a gateway: topics, read model and projection,
//! registry, reply consumer, the first admin, and the HTTP server with its
//! middleware.

use super::admin::{self, AdminAccount};
use super::breaker::{BreakerConfig, Clock as BreakerClock, SystemClock};
use super::caller::bearer;
use super::downstream::{Breakers, Downstream};
use super::jwt::TokenKeys;
use super::metrics::gateway_metrics;
use super::ratelimit::{self, Limiter, RateLimit, RateLimitConfig};
use super::readmodel::{self, Projector, ReadModel, ReadModelError};
use super::requester::Requester;
use super::routes::{self, Client};
use super::state::{GatewayState, Limits};
use crate::kafka::reply_topics::logical_reply_topic;
use crate::kafka::topics::ensure_topics;
use crate::kafka::{KafkaConfig, TransportError};
use crate::registry::{Registry, Since};
use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpServer};
use ordersaga_events::topics::{Service as ServiceName, HEARTBEATS};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a gateway runs.
#[derive(Clone)]
pub struct GatewayOptions {
    /// The cluster.
    pub kafka: KafkaConfig,
    /// Where to listen (`host:port`; port 0 picks one).
    pub http: String,
    /// Where the read-model store lives.
    pub data_dir: PathBuf,
    /// This gateway's name; its reply topic is `INSTANCE.replies`. Give
    /// each gateway of a cluster its own.
    pub instance_id: String,
    /// The token signing key and rules.
    pub keys: TokenKeys,
    /// The first administrator, registered at start if missing.
    pub admin: Option<AdminAccount>,
    /// Request rate limits.
    pub rate_limits: RateLimitConfig,
    /// When the downstream breakers open and recover.
    pub breaker: BreakerConfig,
    /// The breakers' clock (tests move it by hand).
    pub breaker_clock: Arc<dyn BreakerClock>,
    /// Command, wait and read-your-writes bounds.
    pub limits: Limits,
    /// How long a call to a service's HTTP face may take.
    pub call_timeout: Duration,
    /// Rebuild the read models from the topics before serving.
    pub rebuild: bool,
    /// Show a progress bar while rebuilding.
    pub progress: bool,
    /// HTTP worker threads.
    pub workers: usize,
}

impl GatewayOptions {
    /// Defaults for `kafka`, listening on `http`, storing under `data_dir`.
    pub fn new(
        kafka: KafkaConfig,
        http: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        keys: TokenKeys,
    ) -> Self {
        Self {
            kafka,
            http: http.into(),
            data_dir: data_dir.into(),
            instance_id: "gateway".into(),
            keys,
            admin: None,
            rate_limits: RateLimitConfig::default(),
            breaker: BreakerConfig::default(),
            breaker_clock: Arc::new(SystemClock),
            limits: Limits::default(),
            call_timeout: Duration::from_secs(5),
            rebuild: false,
            progress: false,
            workers: 2,
        }
    }

    /// The logical reply topic of this gateway.
    pub fn reply_topic(&self) -> String {
        reply_topic(&self.instance_id)
    }
}

/// The logical reply topic of the gateway `instance_id`.
pub fn reply_topic(instance_id: &str) -> String {
    format!("{instance_id}{}", crate::kafka::reply_topics::SUFFIX)
}

/// Every logical topic the gateway `instance_id` reads or writes.
pub fn topics(instance_id: &str) -> Vec<String> {
    let mut topics: Vec<String> = ServiceName::ALL
        .into_iter()
        .flat_map(|s| [s.commands_topic().to_string(), s.events_topic().to_string()])
        .collect();
    topics.push(HEARTBEATS.to_string());
    topics.push(reply_topic(instance_id));
    topics
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Kafka, a topic, or the HTTP listener.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The read-model store.
    #[error("gateway read model: {0}")]
    ReadModel(#[from] ReadModelError),
    /// The instance id makes no valid reply topic.
    #[error("gateway instance id {instance:?}: {reason}")]
    InstanceId {
        /// The id.
        instance: String,
        /// Why.
        reason: String,
    },
}

/// A running gateway.
pub struct RunningGateway {
    /// Where it listens.
    pub address: SocketAddr,
    /// What its handlers share (tests look at the registry and breakers).
    pub state: GatewayState,
    handle: ServerHandle,
    registry: Arc<Registry>,
}

impl RunningGateway {
    /// The heartbeat registry the gateway routes by.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Stops accepting requests, finishes those in flight (briefly), then
    /// stops the projection and the reply consumer.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.state.requester.stop();
        self.state.projector.stop().await;
    }
}

/// Starts a gateway inside the current actix system.
pub async fn start(options: GatewayOptions) -> Result<RunningGateway, GatewayError> {
    let kafka = &options.kafka;
    let reply_topic = options.reply_topic();
    logical_reply_topic(kafka, &reply_topic).map_err(|reason| GatewayError::InstanceId {
        instance: options.instance_id.clone(),
        reason,
    })?;
    ensure_topics(kafka, &topics(&options.instance_id)).await?;
    let store = options.data_dir.join("readmodel");
    if options.rebuild {
        let report = readmodel::rebuild(kafka, &store, options.progress).await?;
        tracing::info!(%report, "read models rebuilt from the event topics");
    }
    let model = ReadModel::open(&store)?;
    let projector = Arc::new(Projector::start(kafka, model.clone()).await?);
    let registry = Arc::new(Registry::start(kafka, Since::Window(Duration::from_secs(60))).await?);
    if !registry.caught_up(Duration::from_secs(10)).await {
        tracing::warn!("the registry has not read every heartbeat yet; routing may start empty");
    }
    // A broker that cannot look offsets up by time (the embedded one) starts
    // the registry at the end: give the services one heartbeat period to be
    // heard before the breakers would open for want of a live instance.
    if !every_service_heard(&registry, HEARD_WITHIN).await {
        tracing::warn!(
            within_ms = HEARD_WITHIN.as_millis() as u64,
            "not every service has a live instance yet; their breakers open until one is heard"
        );
    }
    let requester = Requester::start(kafka, &reply_topic).await?;
    let breakers = Breakers::new(options.breaker.clone(), options.breaker_clock.clone());
    let downstream = Downstream::new(registry.clone(), breakers, options.call_timeout);
    let mut admins = HashSet::new();
    if let Some(account) = &options.admin {
        admins.insert(account.user_id());
        admin::ensure(&requester, account, options.limits.command_timeout).await;
    }
    let limiter = Arc::new(Limiter::new(options.rate_limits.clone()));
    let state = GatewayState {
        requester,
        downstream,
        model,
        projector,
        limiter: limiter.clone(),
        admins: Arc::new(admins),
        limits: options.limits.clone(),
    };
    let keys = options.keys.clone();
    let identify_keys = keys.clone();
    // Rate limits per user for a valid token, per client address otherwise
    // (a bad token is limited as its address: it cannot spend a user's
    // budget, nor escape a limit by changing).
    let identify: ratelimit::Identify = Arc::new(move |req: &ServiceRequest| {
        let user = bearer(req.request())
            .ok()
            .flatten()
            .and_then(|token| identify_keys.verify(token).ok());
        match user {
            Some(claims) => {
                let caller = ratelimit::Caller::User(claims.sub.clone());
                // Checked once per request: the handler's extractor takes
                // these claims instead of verifying the token again.
                req.extensions_mut().insert(super::caller::Verified(claims));
                caller
            }
            None => ratelimit::peer_ip(req),
        }
    });
    let timeout = options.call_timeout;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(app_state.clone()))
            .app_data(web::Data::new(keys.clone()))
            .app_data(web::Data::new(Client::new(timeout)))
            .app_data(crate::http::routes::json_config())
            .app_data(crate::http::routes::path_config())
            .app_data(crate::http::routes::query_config())
            .app_data(web::PayloadConfig::new(crate::http::MAX_BODY))
            .configure(routes::configure)
            .wrap(RateLimit::new(limiter.clone(), identify.clone()))
            .wrap(from_fn(observe))
    })
    .workers(options.workers.max(1))
    .shutdown_timeout(2)
    .disable_signals()
    .bind(&options.http)
    .map_err(|source| TransportError::Http {
        address: options.http.clone(),
        source,
    })?;
    let address = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| TransportError::Http {
            address: options.http.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                "bound to no address",
            ),
        })?;
    let server = server.run();
    let handle = server.handle();
    actix::spawn(server);
    tracing::info!(%address, instance = %options.instance_id, reply_topic, "gateway serving");
    Ok(RunningGateway {
        address,
        state,
        handle,
        registry,
    })
}

/// How long a starting gateway waits to hear every service.
const HEARD_WITHIN: Duration = Duration::from_secs(5);

/// Waits, at most `bound`, until the registry knows a live instance of
/// every service; woken by each heartbeat it reads, never by polling.
async fn every_service_heard(registry: &Registry, bound: Duration) -> bool {
    let mut observed = registry.observed();
    let all_live = || {
        ServiceName::ALL
            .into_iter()
            .all(|s| !registry.live(s).is_empty())
    };
    tokio::time::timeout(bound, async {
        while !all_live() {
            if observed.changed().await.is_err() {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}

/// Counts every answer by route pattern (bounded cardinality: never the
/// raw path) and times it.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let metrics = gateway_metrics();
    metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    metrics
        .request_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}
