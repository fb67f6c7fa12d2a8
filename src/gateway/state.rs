//! What every gateway handler shares, and the two things most handlers do:
//! send a command and wait for its reply, and read one aggregate from its
//! owning service or, while that service's breaker is open, from the read
//! model.

use super::answers::{self, Position, IDEMPOTENCY_HEADER};
use super::downstream::{Downstream, DownstreamError, Target};
use super::readmodel::{Projector, ReadModel};
use super::requester::{RequestError, Requester};
use super::routes::Client;
use crate::http::problem::Problem;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::CommandId;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The namespace of every id the gateway derives from an idempotency key,
/// so the same key always names the same command and the same new
/// aggregate.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7273_6167_6167_6174_6577_6179);

/// The longest idempotency key accepted.
const MAX_KEY_LEN: usize = 200;

/// Timeouts and bounds of the gateway's calls.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a command waits for its reply before the answer is 202.
    pub command_timeout: Duration,
    /// The longest `?wait=` a client may ask for.
    pub max_wait: Duration,
    /// How long a read waits for the read model to reach a position.
    pub consistency_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
            consistency_wait: Duration::from_secs(5),
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    /// Commands and their replies.
    pub requester: Requester,
    /// The services' HTTP faces, behind their breakers.
    pub downstream: Downstream,
    /// The read models.
    pub model: ReadModel,
    /// The projection into them.
    pub projector: Arc<Projector>,
    /// The rate limits.
    pub limiter: Arc<super::ratelimit::Limiter>,
    /// Users with the `admin` role.
    pub admins: Arc<HashSet<Uuid>>,
    /// Timeouts and bounds.
    pub limits: Limits,
}

/// How a command ended for the client.
pub enum Sent {
    /// Applied: where it left its aggregate.
    Applied(Position),
    /// No reply in time: the command is on its topic and may still apply.
    Pending,
}

/// A command's idempotency: the key (the client's `Idempotency-Key`, or a
/// fresh one) and the ids it derives.
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// The key, echoed in the answer's `Idempotency-Key` header.
    pub key: String,
    scope: String,
}

impl Idempotency {
    /// The key of `req` for the caller `scope` (a user id, or `anonymous`),
    /// or a fresh one. A key is 1 to 200 visible ASCII characters.
    pub fn of(req: &HttpRequest, scope: &str) -> Result<Self, Problem> {
        let key = match req.headers().get(IDEMPOTENCY_HEADER) {
            None => Uuid::new_v4().to_string(),
            Some(value) => {
                let key = value.to_str().ok().map(str::trim).unwrap_or_default();
                if key.is_empty() || key.len() > MAX_KEY_LEN {
                    return Err(Problem::bad_request(
                        "invalid_idempotency_key",
                        format!(
                            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
                        ),
                    ));
                }
                key.to_string()
            }
        };
        Ok(Self {
            key,
            scope: scope.to_string(),
        })
    }

    /// The id `purpose` derives from the key: the same key, caller and
    /// purpose always give the same id, so a retried request addresses the
    /// same command and creates the same aggregate.
    pub fn derive(&self, purpose: &str) -> Uuid {
        let name = format!("{}\n{}\n{}", self.scope, purpose, self.key);
        Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
    }

    /// The command id of `purpose`.
    pub fn command_id(&self, purpose: &str) -> CommandId {
        CommandId::from(self.derive(&format!("command:{purpose}")))
    }
}

impl GatewayState {
    /// Sends `command` to `service` for `aggregate` and waits for the reply:
    /// the position it left, a problem for a rejection or an open breaker,
    /// or [`Sent::Pending`] when no reply came in time.
    pub async fn command<C: Serialize>(
        &self,
        service: ServiceName,
        aggregate: Uuid,
        command_id: CommandId,
        command: C,
    ) -> Result<Sent, Problem> {
        let permit = self.downstream.admit(service).map_err(downstream_problem)?;
        let replied = self
            .requester
            .request(
                service,
                aggregate,
                command_id,
                command,
                self.limits.command_timeout,
            )
            .await;
        match replied {
            Ok(reply) => {
                permit.success();
                answers::outcome(&reply).map(Sent::Applied)
            }
            Err(err @ RequestError::Timeout { .. }) => {
                permit.failure(&err.to_string());
                Ok(Sent::Pending)
            }
            Err(err) => {
                permit.failure(&err.to_string());
                Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kafka_unavailable",
                    err.to_string(),
                )
                .retry_after(Duration::from_secs(1)))
            }
        }
    }

    /// `GET path` on the owner of `id` in `service`: its status and body
    /// (JSON, passed on unparsed where the gateway needs nothing from it),
    /// or `None` when the breaker is open or the call failed, so the caller
    /// falls back to the read model. Coalesced with the worker's other
    /// reads for that instance (see `coalesce.rs`).
    pub async fn read_from_service(
        &self,
        client: &Client,
        service: ServiceName,
        id: Uuid,
        path: &str,
    ) -> Option<(StatusCode, actix_web::web::Bytes)> {
        let answer = self
            .downstream
            .read(
                &client.http,
                &client.reads,
                service,
                Target::Owner(id),
                path,
            )
            .await;
        match answer {
            Ok(answer) => Some((answer.status, answer.body)),
            Err(err) => {
                tracing::debug!(cause = %err, "reading from the read model instead");
                None
            }
        }
    }

    /// Waits until the read model holds `position`, at most the configured
    /// bound: 503 `read_model_behind` if it does not get there.
    pub async fn reach(&self, position: Option<Position>) -> Result<(), Problem> {
        let Some(position) = position else {
            return Ok(());
        };
        let bound = self.limits.consistency_wait;
        if self
            .model
            .wait_for(&position.stream, position.sequence, bound)
            .await
        {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "read_model_behind",
                format!("the read model did not reach {position} within {bound:?}"),
            )
            .retry_after(Duration::from_secs(1)))
        }
    }
}

/// The problem of a downstream that was not called or failed.
pub fn downstream_problem(err: DownstreamError) -> Problem {
    match err {
        DownstreamError::Open { retry_after, .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            err.to_string(),
        )
        .retry_after(retry_after),
        DownstreamError::Failed { .. } => {
            Problem::new(StatusCode::BAD_GATEWAY, "service_failed", err.to_string())
        }
    }
}

/// The read-your-writes position a read asks for: the
/// `Ordersaga-Min-Position` header or the `min_position` query parameter.
pub fn min_position(req: &HttpRequest, query: Option<&str>) -> Result<Option<Position>, Problem> {
    let header = req
        .headers()
        .get(answers::MIN_POSITION_HEADER)
        .map(|v| v.to_str().unwrap_or("<not ASCII>").to_string());
    match header.as_deref().or(query) {
        None => Ok(None),
        Some(text) => text
            .parse::<Position>()
            .map(Some)
            .map_err(|reason| Problem::bad_request("invalid_position", reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn keyed(key: Option<&str>, scope: &str) -> Result<Idempotency, Problem> {
        let mut req = TestRequest::default();
        if let Some(key) = key {
            req = req.insert_header((IDEMPOTENCY_HEADER, key));
        }
        Idempotency::of(&req.to_http_request(), scope)
    }

    #[test]
    fn the_same_key_caller_and_purpose_name_the_same_ids() {
        let a = keyed(Some("k-1"), "alice").unwrap();
        let again = keyed(Some("k-1"), "alice").unwrap();
        assert_eq!(a.derive("order"), again.derive("order"));
        assert_eq!(a.command_id("place"), again.command_id("place"));
        assert_ne!(a.derive("order"), a.derive("user"), "purposes differ");
        let bob = keyed(Some("k-1"), "bob").unwrap();
        assert_ne!(
            a.derive("order"),
            bob.derive("order"),
            "callers never share ids"
        );
        assert_ne!(a.command_id("place"), CommandId::from(a.derive("order")));
    }

    #[test]
    fn without_a_key_every_request_is_new_and_bad_keys_are_refused() {
        let (a, b) = (keyed(None, "x").unwrap(), keyed(None, "x").unwrap());
        assert_ne!(a.key, b.key);
        assert_ne!(a.derive("order"), b.derive("order"));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            keyed(Some(&long), "x").unwrap_err().code(),
            "invalid_idempotency_key"
        );
        assert_eq!(
            keyed(Some("  "), "x").unwrap_err().code(),
            "invalid_idempotency_key"
        );
    }
}
