//! The gateway's downstream services: which instance to call (the
//! registry), whether to call at all (the service's circuit breaker), and
//! the call itself over HTTP.
//!
//! A breaker guards both ways the gateway reaches a service: HTTP reads and
//! Kafka commands. It opens after consecutive failures (a connection error,
//! a timeout, a 5xx) or at once when the registry knows no live instance;
//! while it is open the gateway answers 503 with `Retry-After` and calls
//! nobody. A 4xx is the service's answer, not its failure.

use super::breaker::{Breaker, BreakerConfig, Clock, Open, Permit};
use crate::registry::Registry;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use ordersaga_events::topics::Service as ServiceName;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The largest answer the gateway reads from a service: a `POST /reads`
/// of 256 orders of 100 lines each, with their sagas, stays well below it.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Which instance of a service to ask.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The instance that owns this aggregate (its partition's consumer).
    Owner(Uuid),
    /// Any live instance.
    Any,
}

/// A service's answer.
#[derive(Debug)]
pub struct Answer {
    /// Its HTTP status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

/// Why a service was not asked or did not answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DownstreamError {
    /// Its breaker is open: nobody was called.
    #[error("the {service} service is unavailable: {reason}")]
    Open {
        /// The service.
        service: &'static str,
        /// When to try again.
        retry_after: Duration,
        /// Why the breaker opened.
        reason: String,
    },
    /// The call failed (connection, timeout or a 5xx).
    #[error("the {service} service at {address} failed: {cause}")]
    Failed {
        /// The service.
        service: &'static str,
        /// The instance's address.
        address: String,
        /// Why.
        cause: String,
    },
}

impl DownstreamError {
    fn open(service: ServiceName, open: Open) -> Self {
        DownstreamError::Open {
            service: service.name(),
            retry_after: open.retry_after,
            reason: open.reason,
        }
    }
}

/// One breaker per downstream service.
#[derive(Clone)]
pub struct Breakers {
    users: Breaker,
    orders: Breaker,
    inventory: Breaker,
}

impl Breakers {
    /// Closed breakers with `config`, timed by `clock`.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            users: Breaker::new("users", config.clone(), clock.clone()),
            orders: Breaker::new("orders", config.clone(), clock.clone()),
            inventory: Breaker::new("inventory", config, clock),
        }
    }

    /// The breaker of `service`.
    pub fn of(&self, service: ServiceName) -> &Breaker {
        match service {
            ServiceName::Users => &self.users,
            ServiceName::Orders => &self.orders,
            ServiceName::Inventory => &self.inventory,
        }
    }
}

/// The registry, the breakers and the call timeout. Cheap to clone.
#[derive(Clone)]
pub struct Downstream {
    registry: Arc<Registry>,
    breakers: Breakers,
    timeout: Duration,
}

impl Downstream {
    /// Calls through `registry`, guarded by `breakers`, each at most
    /// `timeout`.
    pub fn new(registry: Arc<Registry>, breakers: Breakers, timeout: Duration) -> Self {
        Self {
            registry,
            breakers,
            timeout,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// A permit to reach `service` through Kafka: its breaker is closed (or
    /// admits a probe) and some instance is live. The caller reports the
    /// outcome on the permit.
    pub fn admit(&self, service: ServiceName) -> Result<Permit, DownstreamError> {
        let breaker = self.breakers.of(service);
        if self.registry.live(service).is_empty() {
            breaker.no_live_instance();
        }
        breaker
            .acquire()
            .map_err(|open| DownstreamError::open(service, open))
    }

    /// Calls `method path` on the `target` instance of `service` with a JSON
    /// `body`.
    pub async fn call(
        &self,
        client: &awc::Client,
        service: ServiceName,
        target: Target,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, DownstreamError> {
        let address = self.resolve(service, target)?;
        self.send(client, service, &address, method, path, body)
            .await
    }

    /// The HTTP address of the `target` instance of `service`. With none,
    /// the breaker learns there is no live instance and the answer is the
    /// open breaker, or a failure its permit reports.
    pub(super) fn resolve(
        &self,
        service: ServiceName,
        target: Target,
    ) -> Result<String, DownstreamError> {
        let breaker = self.breakers.of(service);
        let aggregate = match target {
            Target::Owner(id) => Some(id),
            Target::Any => None,
        };
        if let Some(address) = self.registry.http_for(service, aggregate) {
            return Ok(address);
        }
        breaker.no_live_instance();
        Err(match breaker.acquire() {
            Err(open) => DownstreamError::open(service, open),
            Ok(permit) => {
                permit.failure("no live instance answers HTTP");
                DownstreamError::Failed {
                    service: service.name(),
                    address: "none".into(),
                    cause: "no live instance answers HTTP".into(),
                }
            }
        })
    }

    /// Calls `method path` on the instance of `service` at `address`, with
    /// a permit of its breaker: a connection error, a timeout or a 5xx is a
    /// failure, any other answer a success.
    pub(super) async fn send(
        &self,
        client: &awc::Client,
        service: ServiceName,
        address: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, DownstreamError> {
        let permit = self.permit(service)?;
        let failed = |cause: String, permit: Permit| {
            permit.failure(&cause);
            self.failed(service, address, cause)
        };
        match self.exchange(client, address, method, path, body).await {
            Err(cause) => Err(failed(cause, permit)),
            Ok(answer) if answer.status.is_server_error() => {
                Err(failed(format!("answered {}", answer.status), permit))
            }
            Ok(answer) => {
                permit.success();
                Ok(answer)
            }
        }
    }

    /// A permit of `service`'s breaker, or the open breaker.
    pub(super) fn permit(&self, service: ServiceName) -> Result<Permit, DownstreamError> {
        self.breakers
            .of(service)
            .acquire()
            .map_err(|open| DownstreamError::open(service, open))
    }

    /// A failed call to `service` at `address`.
    pub(super) fn failed(
        &self,
        service: ServiceName,
        address: &str,
        cause: String,
    ) -> DownstreamError {
        DownstreamError::Failed {
            service: service.name(),
            address: address.to_owned(),
            cause,
        }
    }

    /// One HTTP exchange, within the call timeout, whatever its status;
    /// the error says what failed.
    pub(super) async fn exchange(
        &self,
        client: &awc::Client,
        address: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, String> {
        let url = format!("http://{address}{path}");
        let request = client
            .request(method, &url)
            .timeout(self.timeout)
            .insert_header(("accept", "application/json"));
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|err| err.to_string())?;
        let status = response.status();
        let body = response
            .body()
            .limit(MAX_ANSWER)
            .await
            .map_err(|err| format!("reading the answer: {err}"))?;
        Ok(Answer { status, body })
    }
}
