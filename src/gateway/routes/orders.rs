//! Orders: place (optionally waiting for the outcome), read, list, cancel.

use super::{
    accepted_response, answer, model_problem, page_limit, pending_response, Client, ListQuery,
    ReadQuery, Stale,
};
use crate::gateway::answers::{Accepted, Position};
use crate::gateway::caller::Caller;
use crate::gateway::state::{min_position, GatewayState, Idempotency, Sent};
use crate::http::ids::parse_id;
use crate::http::problem::Problem;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ordersaga_events::order::{OrderCommand, OrderLine, OrderStatus, MAX_LINES};
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::{OrderId, ProductId, UserId};
use serde::Deserialize;
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /orders`: what to order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// 1 to 100 lines, each product once.
    pub lines: Vec<Line>,
}

/// One line of an order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The product.
    pub product_id: Uuid,
    /// Units, more than zero.
    pub quantity: u64,
}

/// `POST /orders/{id}/cancel`: why (optional; the body may be empty).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// A reason code, 1 to 200 characters. Default `cancelled_by_user`.
    pub reason: Option<String>,
}

/// `POST /orders` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceQuery {
    /// Wait up to this long for the outcome (`5s`, `500ms`, `2`).
    pub wait: Option<String>,
}

/// Parses `5s`, `500ms`, `2` (seconds) into a duration.
pub fn parse_wait(text: &str) -> Result<Duration, Problem> {
    let bad = || {
        Problem::bad_request(
            "invalid_wait",
            format!("wait {text:?} is not a duration like 5s, 500ms or 2"),
        )
    };
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

/// Checks the lines before anything is sent: a request that can never
/// succeed is refused here, with nothing written anywhere.
fn lines_of(place: Place) -> Result<Vec<OrderLine>, Problem> {
    let unprocessable = |code: &'static str, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    };
    if place.lines.is_empty() {
        return Err(unprocessable(
            "empty_order",
            "an order needs at least one line".into(),
        ));
    }
    if place.lines.len() > MAX_LINES {
        return Err(unprocessable(
            "too_many_lines",
            format!("an order has at most {MAX_LINES} lines"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut lines = Vec::with_capacity(place.lines.len());
    for line in place.lines {
        if line.quantity == 0 {
            return Err(unprocessable(
                "invalid_quantity",
                format!("product {} has quantity 0", line.product_id),
            ));
        }
        if !seen.insert(line.product_id) {
            return Err(unprocessable(
                "duplicate_product",
                format!("product {} is on two lines", line.product_id),
            ));
        }
        lines.push(OrderLine {
            product_id: ProductId::from(line.product_id),
            quantity: line.quantity,
        });
    }
    Ok(lines)
}

/// Whether an order's status is final for the saga (`confirmed` or
/// `cancelled`; shipping is a later, separate step).
fn settled(status: OrderStatus) -> bool {
    !matches!(status, OrderStatus::Pending)
}

/// `POST /orders`: places an order; its saga reserves stock, charges you
/// and confirms it, or cancels it. 202 with `Location` at once, or with
/// `?wait=5s` the settled order (200) if it settles in time.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = Place,
    params(
        ("wait" = Option<String>, Query, description = "Wait up to this long (`5s`, at most 60s) for the order to be confirmed or cancelled"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key place one order")),
    responses(
        (status = 200, description = "Settled within the wait: the order", body = Object),
        (status = 202, description = "Placed; see `Location`", body = Accepted),
        (status = 422, description = "`empty_order`, `invalid_quantity`, `duplicate_product`, `too_many_lines`", body = Problem)),
    security(("bearer" = [])))]
pub async fn place(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    query: web::Query<PlaceQuery>,
    body: web::Json<Place>,
) -> Result<HttpResponse, Problem> {
    let wait = match query.wait.as_deref() {
        Some(text) => parse_wait(text)?.min(state.limits.max_wait),
        None => Duration::ZERO,
    };
    let started = Instant::now();
    let idempotency = Idempotency::of(&req, &caller.user_id.to_string())?;
    let lines = lines_of(body.into_inner())?;
    let order_id = OrderId::from(idempotency.derive("order"));
    let location = format!("/orders/{}", order_id.as_uuid());
    let command = OrderCommand::Place {
        order_id,
        user_id: UserId::from(caller.user_id),
        lines,
    };
    let position = match state
        .command(
            ServiceName::Orders,
            order_id.as_uuid(),
            idempotency.command_id("place"),
            command,
        )
        .await?
    {
        Sent::Applied(position) => position,
        Sent::Pending => return Ok(pending_response(&idempotency, &location)),
    };
    if !wait.is_zero() {
        let deadline = started + wait;
        if let Some(row) = settle(&state, position, deadline).await? {
            return Ok(HttpResponse::Ok()
                .insert_header(("location", location.as_str()))
                .insert_header((
                    crate::gateway::answers::POSITION_HEADER,
                    format!("{}:{}", position.stream, row.version),
                ))
                .insert_header((
                    crate::gateway::answers::IDEMPOTENCY_HEADER,
                    idempotency.key.clone(),
                ))
                .json(row));
        }
    }
    Ok(accepted_response(
        StatusCode::ACCEPTED,
        &idempotency,
        position,
        Some(&location),
        serde_json::json!({"order_id": order_id.as_uuid(), "status": "pending"}),
    ))
}

/// Waits, until `deadline`, for the read model to show the order settled.
async fn settle(
    state: &GatewayState,
    position: Position,
    deadline: Instant,
) -> Result<Option<crate::gateway::readmodel::OrderRow>, Problem> {
    let mut seen = position.sequence;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        // Woken by the projection as soon as the order's next event lands.
        if !state
            .model
            .wait_for(&position.stream, seen + 1, deadline - now)
            .await
        {
            return Ok(None);
        }
        let Some(row) = state
            .model
            .order(position.stream.id)
            .map_err(model_problem)?
        else {
            continue;
        };
        if settled(row.status) {
            return Ok(Some(row));
        }
        seen = seen.max(row.version);
    }
}

/// The owner of order `id` as the orders service (or, while it is
/// unavailable, the read model) knows it, with the order's JSON.
async fn order_of(
    state: &GatewayState,
    client: &Client,
    id: Uuid,
    position: Option<Position>,
) -> Result<(Uuid, serde_json::Value, bool), Problem> {
    if let Some((status, body)) = state
        .read_from_service(client, ServiceName::Orders, id, &format!("/orders/{id}"))
        .await
    {
        if status == StatusCode::NOT_FOUND {
            return Err(Problem::not_found(format!("no order {id}")));
        }
        if status.is_success() {
            let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "service_failed",
                    format!("the orders service answered an unreadable order: {e}"),
                )
            })?;
            let owner = json
                .get("user_id")
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "service_failed",
                        "the orders service answered an order without its user",
                    )
                })?;
            return Ok((owner, json, false));
        }
    }
    state.reach(position).await?;
    let row = state
        .model
        .order(id)
        .map_err(model_problem)?
        .ok_or_else(|| Problem::not_found(format!("no order {id}")))?;
    let json = serde_json::to_value(&row)
        .map_err(|e| Problem::unavailable(format!("cannot show the order: {e}")))?;
    Ok((row.user_id, json, true))
}

/// `GET /orders/{id}`: one of your orders, with its saga.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order"),
        ("min_position" = Option<String>, Query, description = "Wait until this write is visible")),
    responses(
        (status = 200, description = "The order (`Ordersaga-Stale: true` when from the read model)", body = Object),
        (status = 403, description = "Another user's order", body = Problem),
        (status = 404, description = "No such order", body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    client: web::Data<Client>,
    path: web::Path<String>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, Problem> {
    let id = parse_id("order", &path)?;
    let position = min_position(&req, query.min_position.as_deref())?;
    let (owner, json, stale) = order_of(&state, &client, id, position).await?;
    caller.require_owner(owner, "this order")?;
    Ok(if stale {
        Stale::json(&json)
    } else {
        HttpResponse::Ok().json(json)
    })
}

/// `GET /users/me/orders`: your orders, newest first, from the read model.
#[utoipa::path(get, path = "/users/me/orders", tag = "orders",
    params(("limit" = Option<usize>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
        ("min_position" = Option<String>, Query, description = "Wait until this write is visible")),
    responses((status = 200, description = "`{items, next}`", body = Object)),
    security(("bearer" = [])))]
pub async fn mine(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let limit = page_limit(query.limit)?;
    let position = min_position(&req, query.min_position.as_deref())?;
    state.reach(position).await?;
    let page = state
        .model
        .user_orders_json(caller.user_id, query.cursor.as_deref(), limit)
        .map_err(model_problem)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(page))
}

/// `POST /orders/{id}/cancel`: cancels one of your orders. A confirmed
/// order is refunded and restocked by its saga.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", request_body(content = Cancel, description = "Optional"),
    params(("id" = Uuid, Path, description = "The order"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key cancel once")),
    responses(
        (status = 200, description = "Cancelled", body = Accepted),
        (status = 403, description = "Another user's order", body = Problem),
        (status = 404, description = "No such order", body = Problem),
        (status = 409, description = "`invalid_transition`: already cancelled, shipped or delivered", body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    client: web::Data<Client>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let id = parse_id("order", &path)?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let cancel: Cancel = serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_request("invalid_body", e.to_string()))?;
        cancel.reason
    };
    let idempotency = Idempotency::of(&req, &caller.user_id.to_string())?;
    let (owner, _, _) = order_of(&state, &client, id, None).await?;
    caller.require_owner(owner, "this order")?;
    let order_id = OrderId::from(id);
    let command = OrderCommand::Cancel {
        order_id,
        reason: reason.unwrap_or_else(|| "cancelled_by_user".to_string()),
    };
    let location = format!("/orders/{id}");
    let sent = state
        .command(
            ServiceName::Orders,
            id,
            idempotency.command_id(&format!("cancel:{id}")),
            command,
        )
        .await?;
    Ok(answer(
        sent,
        StatusCode::OK,
        &idempotency,
        Some(&location),
        &location,
        serde_json::json!({"order_id": id, "status": "cancelled"}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_in_seconds_and_milliseconds() {
        assert_eq!(parse_wait("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_wait("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_wait("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_wait("1m").unwrap(), Duration::from_secs(60));
        for bad in ["", "s", "5h", "-1s", "1.5s"] {
            assert_eq!(
                parse_wait(bad).unwrap_err().code(),
                "invalid_wait",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn impossible_orders_are_refused_before_sending() {
        let p = Uuid::new_v4();
        let line = |quantity| Line {
            product_id: p,
            quantity,
        };
        let code = |lines| lines_of(Place { lines }).unwrap_err().code().to_string();
        assert_eq!(code(vec![]), "empty_order");
        assert_eq!(code(vec![line(0)]), "invalid_quantity");
        assert_eq!(code(vec![line(1), line(2)]), "duplicate_product");
        assert_eq!(
            lines_of(Place {
                lines: vec![line(3)]
            })
            .unwrap()
            .len(),
            1
        );
    }
}
