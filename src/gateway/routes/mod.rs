//! The gateway's routes, and the answers they share.

pub mod orders;
pub mod products;
pub mod system;
pub mod users;

use super::answers::{Accepted, Position, IDEMPOTENCY_HEADER, POSITION_HEADER, STALE_HEADER};
use super::coalesce::Coalescer;
use super::readmodel::{ReadModel, ReadModelError};
use super::state::{GatewayState, Idempotency, Sent};
use crate::http::problem::Problem;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ordersaga_events::topics::Service as ServiceName;
use serde::Serialize;

/// The HTTP client of one server worker (awc's client is not `Send`, so
/// each worker makes its own), and the worker's coalesced reads.
pub struct Client {
    /// The client.
    pub http: awc::Client,
    /// Single-entity reads waiting for a call in flight to their instance.
    pub reads: Coalescer,
}

impl Client {
    /// A worker's client, each call at most `timeout`.
    pub fn new(timeout: std::time::Duration) -> Self {
        Self {
            http: awc::Client::builder().timeout(timeout).finish(),
            reads: Coalescer::default(),
        }
    }
}

/// Every route.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(system::health))
        .route("/ready", web::get().to(system::ready))
        .route("/metrics", web::get().to(system::metrics))
        .route("/openapi.json", web::get().to(system::openapi))
        .route("/services", web::get().to(system::services))
        .route("/users", web::post().to(users::register))
        .route("/auth/token", web::post().to(users::token))
        .route("/users/me", web::get().to(users::me))
        .route("/users/me/deposits", web::post().to(users::deposit))
        .route("/users/me/orders", web::get().to(orders::mine))
        .route("/orders", web::post().to(orders::place))
        .route("/orders/{id}", web::get().to(orders::get))
        .route("/orders/{id}/cancel", web::post().to(orders::cancel))
        .route("/products", web::get().to(products::list))
        .route("/products", web::post().to(products::add))
        .route("/products/{id}", web::get().to(products::get))
        .route("/products/{id}/restock", web::post().to(products::restock))
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(Problem::not_found(format!(
                "no route {} {}",
                req.method(),
                req.path()
            )))
        }));
}

/// The OpenAPI document of the gateway, generated from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ordersaga gateway",
        description = "The public HTTP API of the shop. Commands go to the services through Kafka and are answered from their replies; single reads come from the owning service (or the gateway's read model, marked `Ordersaga-Stale: true`, while that service is unavailable); lists come from the read model. Errors are application/problem+json with a stable `code`."
    ),
    paths(
        users::register,
        users::token,
        users::me,
        users::deposit,
        orders::place,
        orders::get,
        orders::mine,
        orders::cancel,
        products::list,
        products::get,
        products::add,
        products::restock,
        system::services,
        system::health,
        system::ready,
        system::metrics
    ),
    components(schemas(
        Problem,
        Accepted,
        users::Registration,
        users::Login,
        users::Token,
        users::Deposit,
        orders::Place,
        orders::Line,
        orders::Cancel,
        products::NewProduct,
        products::Restock
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme the secured routes name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answer to an applied command: `extra` with the position, and the
/// position, idempotency key and location headers.
pub fn accepted_response(
    status: StatusCode,
    idempotency: &Idempotency,
    position: Position,
    location: Option<&str>,
    extra: serde_json::Value,
) -> HttpResponse {
    let mut body = extra;
    if let (Some(map), Ok(serde_json::Value::Object(accepted))) = (
        body.as_object_mut(),
        serde_json::to_value(Accepted::of(position)),
    ) {
        map.extend(accepted);
    }
    let mut response = HttpResponse::build(status);
    response
        .insert_header((POSITION_HEADER, position.to_string()))
        .insert_header((IDEMPOTENCY_HEADER, idempotency.key.clone()));
    if let Some(location) = location {
        response.insert_header(("location", location));
    }
    response.json(body)
}

/// 202: the command is on its topic but no reply came in time. The client
/// looks at `location`, or retries with the same idempotency key to learn
/// the outcome (the command is applied once either way).
pub fn pending_response(idempotency: &Idempotency, location: &str) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header(("location", location))
        .insert_header((IDEMPOTENCY_HEADER, idempotency.key.clone()))
        .json(serde_json::json!({
            "status": "pending",
            "location": location,
            "idempotency_key": idempotency.key,
            "detail": "the command was sent but its reply did not come in time; it may still be applied: look at the location, or retry with the same Idempotency-Key to learn its outcome",
        }))
}

/// A service's answer passed on as it came: JSON when it succeeded, its
/// problem otherwise.
pub fn passthrough(status: StatusCode, body: actix_web::web::Bytes) -> HttpResponse {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    HttpResponse::build(status)
        .content_type(content_type)
        .body(body)
}

/// The query of single reads: read-your-writes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// `kind:uuid:sequence` from a command's answer.
    pub min_position: Option<String>,
}

/// The query of the lists.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// `kind:uuid:sequence` from a command's answer: wait until it shows.
    pub min_position: Option<String>,
}

/// A single read of the `what` `id`: `GET path` on the service that owns
/// it, passed on as it answers; while that service cannot be asked, the
/// read model's row (`row`), marked stale, once it holds `position`.
#[allow(clippy::too_many_arguments)]
pub async fn read_one<T: Serialize>(
    state: &GatewayState,
    client: &Client,
    service: ServiceName,
    what: &str,
    id: uuid::Uuid,
    path: &str,
    position: Option<Position>,
    row: impl FnOnce(&ReadModel) -> Result<Option<T>, ReadModelError>,
) -> Result<HttpResponse, Problem> {
    if let Some((status, body)) = state.read_from_service(client, service, id, path).await {
        return Ok(passthrough(status, body));
    }
    state.reach(position).await?;
    match row(&state.model).map_err(model_problem)? {
        Some(row) => Ok(Stale::json(&row)),
        None => Err(Problem::not_found(format!("no {what} {id}"))),
    }
}

/// The answer to a sent command: [`accepted_response`] (with `location`
/// when the command created something there) once applied, or
/// [`pending_response`] pointing at `look_at` when no reply came in time.
pub fn answer(
    sent: Sent,
    status: StatusCode,
    idempotency: &Idempotency,
    location: Option<&str>,
    look_at: &str,
    extra: serde_json::Value,
) -> HttpResponse {
    match sent {
        Sent::Applied(position) => {
            accepted_response(status, idempotency, position, location, extra)
        }
        Sent::Pending => pending_response(idempotency, look_at),
    }
}

/// Answers from the read model while the owning service is unavailable.
pub struct Stale;

impl Stale {
    /// 200 with `row` and `Ordersaga-Stale: true`.
    pub fn json<T: Serialize>(row: &T) -> HttpResponse {
        HttpResponse::Ok()
            .insert_header((STALE_HEADER, "true"))
            .json(row)
    }
}

/// The problem of a read model that cannot answer.
pub fn model_problem(err: ReadModelError) -> Problem {
    match err {
        ReadModelError::InvalidCursor(_) => Problem::bad_request("invalid_cursor", err.to_string()),
        other => Problem::unavailable(format!("the read model cannot be read: {other}")),
    }
}

/// Page size of the lists: 1 to 100, default 20.
pub fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(
            "invalid_limit",
            format!("limit must be 1 to 100, not {n}"),
        )),
    }
}
