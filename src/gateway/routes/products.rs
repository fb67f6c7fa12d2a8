//! Products: list and read for everyone; add and restock for admins.

use super::{answer, model_problem, page_limit, read_one, Client, ListQuery, ReadQuery};
use crate::gateway::answers::Accepted;
use crate::gateway::caller::Caller;
use crate::gateway::readmodel::ReadModel;
use crate::gateway::state::{min_position, GatewayState, Idempotency};
use crate::http::ids::parse_id;
use crate::http::problem::Problem;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::{Cents, ProductId};
use serde::Deserialize;
use utoipa::ToSchema;

/// `POST /products`: a new product.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Stock-keeping unit, 1 to 64 characters.
    pub sku: String,
    /// Name, 1 to 200 characters.
    pub name: String,
    /// Price of one unit in cents, more than zero.
    pub unit_price: u64,
    /// Units on hand.
    pub stock: u64,
}

/// `POST /products/{id}/restock`: units in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    /// Units, more than zero.
    pub quantity: u64,
}

/// `GET /products`: every product in id order, from the read model.
#[utoipa::path(get, path = "/products", tag = "products",
    params(("limit" = Option<usize>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
        ("min_position" = Option<String>, Query, description = "Wait until this write is visible")),
    responses((status = 200, description = "`{items, next}`", body = Object)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<GatewayState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let limit = page_limit(query.limit)?;
    state
        .reach(min_position(&req, query.min_position.as_deref())?)
        .await?;
    let page = state
        .model
        .products_json(query.cursor.as_deref(), limit)
        .map_err(model_problem)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(page))
}

/// `GET /products/{id}`: a product's price and stock, from the inventory
/// service (or the read model, marked stale, while it is unavailable).
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "The product"),
        ("min_position" = Option<String>, Query, description = "Wait until this write is visible")),
    responses(
        (status = 200, description = "The product (`Ordersaga-Stale: true` when from the read model)", body = Object),
        (status = 404, description = "No such product", body = Problem)))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<GatewayState>,
    client: web::Data<Client>,
    path: web::Path<String>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, Problem> {
    let id = parse_id("product", &path)?;
    let position = min_position(&req, query.min_position.as_deref())?;
    let path = format!("/products/{id}");
    let row = |model: &ReadModel| model.product(id);
    read_one(
        &state,
        &client,
        ServiceName::Inventory,
        "product",
        id,
        &path,
        position,
        row,
    )
    .await
}

/// `POST /products`: adds a product (admin only). 201 with `Location`.
#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProduct,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key add one product")),
    responses(
        (status = 201, description = "Added", body = Accepted),
        (status = 202, description = "Sent; no reply in time"),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 422, description = "`invalid_sku`, `invalid_name`, `invalid_price`", body = Problem)),
    security(("bearer" = [])))]
pub async fn add(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    body: web::Json<NewProduct>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    let idempotency = Idempotency::of(&req, &caller.user_id.to_string())?;
    let NewProduct {
        sku,
        name,
        unit_price,
        stock,
    } = body.into_inner();
    if unit_price == 0 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_price",
            "a unit price must be more than zero cents",
        ));
    }
    let product_id = ProductId::from(idempotency.derive("product"));
    let id = product_id.as_uuid();
    let location = format!("/products/{id}");
    let command = InventoryCommand::AddProduct {
        product_id,
        sku,
        name,
        unit_price: Cents(unit_price),
        stock,
    };
    let sent = state
        .command(
            ServiceName::Inventory,
            id,
            idempotency.command_id("add_product"),
            command,
        )
        .await?;
    Ok(answer(
        sent,
        StatusCode::CREATED,
        &idempotency,
        Some(&location),
        &location,
        serde_json::json!({"product_id": id}),
    ))
}

/// `POST /products/{id}/restock`: adds units (admin only).
#[utoipa::path(post, path = "/products/{id}/restock", tag = "products", request_body = Restock,
    params(("id" = Uuid, Path, description = "The product"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key restock once")),
    responses(
        (status = 200, description = "Restocked", body = Accepted),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "`unknown_product`", body = Problem),
        (status = 422, description = "`invalid_quantity`", body = Problem)),
    security(("bearer" = [])))]
pub async fn restock(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    path: web::Path<String>,
    body: web::Json<Restock>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    let id = parse_id("product", &path)?;
    if body.quantity == 0 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
            "a restock must add at least one unit",
        ));
    }
    let idempotency = Idempotency::of(&req, &caller.user_id.to_string())?;
    let command = InventoryCommand::Restock {
        product_id: ProductId::from(id),
        quantity: body.quantity,
    };
    let sent = state
        .command(
            ServiceName::Inventory,
            id,
            idempotency.command_id(&format!("restock:{id}")),
            command,
        )
        .await?;
    Ok(answer(
        sent,
        StatusCode::OK,
        &idempotency,
        None,
        &format!("/products/{id}"),
        serde_json::json!({"product_id": id, "quantity": body.quantity}),
    ))
}
