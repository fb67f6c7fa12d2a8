//! Paginated lists: `GET /products` on inventory (by id) and
//! `GET /users/{id}/orders` on orders (newest first). Both read indexes the
//! service keeps in its own store, written with the events, and page with
//! an opaque cursor: the key of the last entry of the previous page, so a
//! page never repeats or skips an entry because others were added
//! meanwhile (new orders go before the first page).

use super::ids::parse_id;
use super::problem::Problem;
use super::views::{OrderView, ProductView};
use super::{ApiState, Backend};
use actix_web::{web, HttpResponse};
use ordersaga_actors::aggregates::USER_ORDERS;
use ordersaga_events::StreamKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most entries on one page.
pub const MAX_PAGE: usize = 100;
/// Entries on a page when the request does not say.
pub const DEFAULT_PAGE: usize = 20;

/// `?limit=N&cursor=…`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Entries wanted (1 to [`MAX_PAGE`]).
    pub limit: Option<usize>,
    /// Where the previous page ended (its `next`).
    pub cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> Result<usize, Problem> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(Problem::bad_request(
                "invalid_limit",
                format!("limit {n} is not between 1 and {MAX_PAGE}"),
            )),
        }
    }

    fn cursor(&self) -> Result<Option<Vec<u8>>, Problem> {
        let Some(text) = &self.cursor else {
            return Ok(None);
        };
        let bad = || {
            Problem::bad_request(
                "invalid_cursor",
                format!("cursor {text:?} is not one this service gave"),
            )
        };
        if text.len() % 2 != 0 {
            return Err(bad());
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| bad()))
            .collect::<Result<Vec<u8>, Problem>>()
            .map(Some)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// The cursor of the next page; absent on the last one.
    pub next: Option<String>,
}

/// `GET /products`.
#[utoipa::path(
    get,
    path = "/products",
    tag = "inventory",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of products, in id order", body = Page<ProductView>),
        (status = 400, description = "A bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn products(
    state: web::Data<ApiState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    let Backend::Inventory(products) = &state.backend else {
        return Err(Problem::not_found("products live in the inventory service"));
    };
    let limit = query.limit()?;
    let after = match query.cursor()? {
        Some(bytes) => Some(Uuid::from_slice(&bytes).map_err(|_| {
            Problem::bad_request("invalid_cursor", "the cursor is not a product id")
        })?),
        None => None,
    };
    let streams = state
        .journal
        .stream_page(StreamKind::Product, after, limit)?;
    let mut items = Vec::with_capacity(streams.len());
    for stream in &streams {
        let found = products.state(stream.id).await?;
        if found.state.exists() {
            items.push(ProductView::of(stream.id, &found.state, found.version));
        }
    }
    let next = (streams.len() == limit)
        .then(|| streams.last().map(|s| hex(s.id.as_bytes())))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { items, next }))
}

/// `GET /users/{id}/orders`, newest first.
#[utoipa::path(
    get,
    path = "/users/{id}/orders",
    tag = "orders",
    params(("id" = Uuid, Path, description = "The user"), PageQuery),
    responses(
        (status = 200, description = "A page of the user's orders, newest first", body = Page<OrderView>),
        (status = 400, description = "A bad id, limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn user_orders(
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    let Backend::Orders { orders, .. } = &state.backend else {
        return Err(Problem::not_found("orders live in the orders service"));
    };
    let user = parse_id("user id", &id)?;
    let limit = query.limit()?;
    let cursor = query.cursor()?;
    let entries = state
        .journal
        .list(USER_ORDERS, user.as_bytes(), cursor.as_deref(), limit)?;
    let mut items = Vec::with_capacity(entries.len());
    for entry in &entries {
        // An entry is the time counted down (8 bytes), then the order id.
        let order_id = entry
            .get(8..24)
            .and_then(|bytes| Uuid::from_slice(bytes).ok())
            .ok_or_else(|| Problem::unavailable("a damaged entry in the user's order list"))?;
        let found = orders.state(order_id).await?;
        items.push(OrderView::of(order_id, &found.state, found.version, None));
    }
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|entry| hex(entry)))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { items, next }))
}
