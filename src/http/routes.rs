//! The routes of a service's HTTP face, and how bad requests are answered.

use super::auth::authenticate;
use super::ids::parse_id;
use super::lists;
use super::problem::Problem;
use super::reads;
use super::views::{OrderView, ProductView, UserView};
use super::{ApiState, Backend, MAX_BODY, OUTBOX_READY_BOUND};
use actix_web::error::{JsonPayloadError, PathError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// Every route. Each service answers the queries of its own aggregates;
/// another service's paths are 404.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi))
        .route("/users/authenticate", web::post().to(authenticate))
        .route("/users/{id}", web::get().to(user))
        .route("/products", web::get().to(lists::products))
        .route("/products/{id}", web::get().to(product))
        .route("/users/{id}/orders", web::get().to(lists::user_orders))
        .route("/orders/{id}", web::get().to(order))
        .route("/reads", web::post().to(reads::reads))
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(Problem::not_found(format!(
                "no route {} {}",
                req.method(),
                req.path()
            )))
        }));
}

/// The OpenAPI document of every route, generated from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ordersaga service",
        description = "The HTTP face of one ordersaga service instance: queries from its live aggregates, the login backend (users), health, readiness and metrics. Each service answers for its own aggregates only; errors are application/problem+json."
    ),
    paths(
        health,
        ready,
        metrics,
        user,
        product,
        order,
        super::lists::products,
        super::lists::user_orders,
        super::reads::reads,
        super::auth::authenticate
    ),
    components(schemas(
        UserView,
        ProductView,
        OrderView,
        super::views::SagaView,
        super::reads::Reads,
        Problem,
        super::auth::Credentials,
        super::auth::Authenticated
    ))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// JSON bodies: at most [`MAX_BODY`] bytes, `application/json`; anything
/// else a 400 (413 when too large) problem naming what was wrong.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY)
        .error_handler(|err, _| {
            let problem = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                ),
                JsonPayloadError::ContentType => Problem::bad_request(
                    "unsupported_content_type",
                    "the body must be application/json",
                ),
                other => Problem::bad_request("invalid_body", other.to_string()),
            };
            problem.into()
        })
}

/// Query strings that do not parse (or carry unknown parameters): a 400
/// problem.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| Problem::bad_request("invalid_query", err.to_string()).into())
}

/// Path segments that do not parse: a 400 problem.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _| {
        Problem::bad_request("invalid_path", err.to_string()).into()
    })
}

/// `GET /health`: alive while the process serves.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "alive"}))))]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

/// Ready when every consumer owns partitions and the outbox is not far
/// behind; otherwise 503 with the reasons.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready: {ready, reasons, outbox_backlog, consumers}", body = Object),
    (status = 503, description = "Not ready, with the reasons", body = Object)))]
async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let readiness = state.readiness.borrow().clone();
    let backlog = state.journal.outbox_len();
    let mut reasons = readiness.reasons();
    if backlog >= OUTBOX_READY_BOUND {
        reasons.push(format!(
            "{backlog} records wait in the outbox (bound {OUTBOX_READY_BOUND})"
        ));
    }
    let body = json!({
        "ready": reasons.is_empty(),
        "reasons": reasons,
        "outbox_backlog": backlog,
        "consumers": readiness.consumers.iter().map(|c| json!({
            "group": c.group, "topic": c.topic, "partitions": c.partitions, "deaf": c.deaf,
        })).collect::<Vec<_>>(),
    });
    if reasons.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(state: web::Data<ApiState>) -> Result<HttpResponse, Problem> {
    let stats = state.journal.stats();
    let (service, live_entities, passivations, queries, sagas_waiting) = match &state.backend {
        Backend::Users(users) => (
            "users",
            users.live_entities().await,
            users.passivations(),
            users.queries(),
            None,
        ),
        Backend::Inventory(products) => (
            "inventory",
            products.live_entities().await,
            products.passivations(),
            products.queries(),
            None,
        ),
        Backend::Orders { orders, sagas } => {
            let live = match (orders.live_entities().await, sagas.live_entities().await) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(err), _) | (_, Err(err)) => Err(err),
            };
            let passivations = orders.passivations() + sagas.passivations();
            (
                "orders",
                live,
                passivations,
                orders.queries() + sagas.queries(),
                Some(state.journal.scheduled()),
            )
        }
    };
    let snapshot = crate::metrics::Snapshot {
        service,
        outbox_backlog: state.journal.outbox_len(),
        flushes: stats.flushes,
        commits: stats.commits,
        events: stats.events,
        flush_seconds: stats.flush_micros as f64 / 1e6,
        live_entities: live_entities?,
        passivations,
        queries_from_views: queries.from_views,
        queries_from_entities: queries.from_entities,
        sagas_waiting,
        ready: state.readiness.borrow().ready,
    };
    let text = crate::metrics::render(&snapshot)
        .map_err(|err| Problem::unavailable(format!("cannot render the metrics: {err}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// `GET /users/{id}`.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The user's profile and money", body = UserView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user here", body = Problem, content_type = "application/problem+json")))]
async fn user(state: web::Data<ApiState>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    json_answer(user_json(&state, &id).await?)
}

/// The body of `GET /users/{id}`.
pub(super) async fn user_json(state: &ApiState, id: &str) -> Result<Vec<u8>, Problem> {
    let Backend::Users(users) = &state.backend else {
        return Err(Problem::not_found("users live in the users service"));
    };
    let id = parse_id("user id", id)?;
    let found = users.state(id).await?;
    if !found.state.is_registered() {
        return Err(Problem::not_found(format!("no user {id}")));
    }
    to_json(&UserView::of(id, &found.state, found.version))
}

/// `GET /products/{id}`.
#[utoipa::path(get, path = "/products/{id}", tag = "inventory",
    params(("id" = Uuid, Path, description = "The product")),
    responses(
        (status = 200, description = "The product's price and stock", body = ProductView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product here", body = Problem, content_type = "application/problem+json")))]
async fn product(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    json_answer(product_json(&state, &id).await?)
}

/// The body of `GET /products/{id}`.
pub(super) async fn product_json(state: &ApiState, id: &str) -> Result<Vec<u8>, Problem> {
    let Backend::Inventory(products) = &state.backend else {
        return Err(Problem::not_found("products live in the inventory service"));
    };
    let id = parse_id("product id", id)?;
    let found = products.state(id).await?;
    if !found.state.exists() {
        return Err(Problem::not_found(format!("no product {id}")));
    }
    to_json(&ProductView::of(id, &found.state, found.version))
}

/// `GET /orders/{id}`.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order")),
    responses(
        (status = 200, description = "The order and its saga", body = OrderView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order here", body = Problem, content_type = "application/problem+json")))]
async fn order(state: web::Data<ApiState>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    json_answer(order_json(&state, &id).await?)
}

/// The body of `GET /orders/{id}`.
pub(super) async fn order_json(state: &ApiState, id: &str) -> Result<Vec<u8>, Problem> {
    let Backend::Orders { orders, sagas } = &state.backend else {
        return Err(Problem::not_found("orders live in the orders service"));
    };
    let id = parse_id("order id", id)?;
    let found = orders.state(id).await?;
    if !found.state.is_placed() {
        return Err(Problem::not_found(format!("no order {id}")));
    }
    let saga = sagas.state(id).await?;
    let saga = (saga.version > 0).then_some(&saga.state);
    to_json(&OrderView::of(id, &found.state, found.version, saga))
}

/// A view as JSON; a view that cannot be written is the service's fault.
fn to_json<T: serde::Serialize>(view: &T) -> Result<Vec<u8>, Problem> {
    serde_json::to_vec(view).map_err(|err| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unrenderable",
            format!("cannot write the view as JSON: {err}"),
        )
    })
}

/// 200 with a JSON body.
fn json_answer(body: Vec<u8>) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
