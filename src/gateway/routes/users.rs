//! Accounts: register, log in, read your account, deposit.

use super::{answer, read_one, Client, ReadQuery};
use crate::gateway::answers::Accepted;
use crate::gateway::caller::Caller;
use crate::gateway::downstream::Target;
use crate::gateway::jwt::{TokenKeys, ADMIN};
use crate::gateway::readmodel::ReadModel;
use crate::gateway::state::{downstream_problem, min_position, GatewayState, Idempotency};
use crate::http::ids::parse_id;
use crate::http::problem::Problem;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /users`: a new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Email address, unique (case-insensitively).
    pub email: String,
    /// Display name, 1 to 64 characters.
    pub username: String,
    /// At least 8 characters. Stored only as an argon2 hash.
    pub password: String,
}

/// `POST /auth/token`: credentials.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// `POST /auth/token`: an access token.
#[derive(Serialize, ToSchema)]
pub struct Token {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The user it speaks for.
    pub user_id: String,
    /// Its roles.
    pub roles: Vec<String>,
}

/// `POST /users/me/deposits`: money in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    /// Cents, more than zero.
    pub amount: u64,
}

/// What the users service's login backend answers.
#[derive(Deserialize)]
struct Authenticated {
    user_id: String,
    roles: Vec<String>,
}

/// `POST /users`: opens an account. 201 with `Location: /users/me`.
#[utoipa::path(post, path = "/users", tag = "users", request_body = Registration,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key register once")),
    responses(
        (status = 201, description = "Registered", body = Accepted),
        (status = 202, description = "Sent; no reply in time"),
        (status = 409, description = "`email_taken`", body = Problem),
        (status = 422, description = "`invalid_email`, `invalid_username`, `weak_password`", body = Problem)))]
pub async fn register(
    req: HttpRequest,
    state: web::Data<GatewayState>,
    body: web::Json<Registration>,
) -> Result<HttpResponse, Problem> {
    let idempotency = Idempotency::of(&req, "anonymous")?;
    let Registration {
        email,
        username,
        password,
    } = body.into_inner();
    let user_id = UserId::from(idempotency.derive("user"));
    let command = UserCommand::Register {
        user_id,
        email,
        username,
        password: Password::new(password),
    };
    let location = "/users/me".to_string();
    let sent = state
        .command(
            ServiceName::Users,
            user_id.as_uuid(),
            idempotency.command_id("register"),
            command,
        )
        .await?;
    Ok(answer(
        sent,
        StatusCode::CREATED,
        &idempotency,
        Some(&location),
        &location,
        serde_json::json!({"user_id": user_id.as_uuid()}),
    ))
}

/// `POST /auth/token`: email and password for a bearer token.
#[utoipa::path(post, path = "/auth/token", tag = "users", request_body = Login, responses(
    (status = 200, description = "A token", body = Token),
    (status = 401, description = "`invalid_credentials` (the same for an unknown email)", body = Problem),
    (status = 403, description = "`account_inactive`", body = Problem)))]
pub async fn token(
    state: web::Data<GatewayState>,
    keys: web::Data<TokenKeys>,
    client: web::Data<Client>,
    body: web::Json<Login>,
) -> Result<HttpResponse, Problem> {
    let credentials = serde_json::to_value(body.into_inner())
        .map_err(|e| Problem::bad_request("invalid_body", e.to_string()))?;
    let answer = state
        .downstream
        .call(
            &client.http,
            ServiceName::Users,
            Target::Any,
            Method::POST,
            "/users/authenticate",
            Some(&credentials),
        )
        .await
        .map_err(downstream_problem)?;
    if !answer.status.is_success() {
        // The service's own problem (401 invalid_credentials, 403
        // account_inactive), passed on as it is.
        return Ok(HttpResponse::build(answer.status)
            .content_type("application/problem+json")
            .body(answer.body));
    }
    let who: Authenticated = serde_json::from_slice(&answer.body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "service_failed",
            format!("the users service answered a login unreadably: {e}"),
        )
    })?;
    let user_id = parse_id("user", &who.user_id)?;
    let mut roles = who.roles;
    if state.admins.contains(&user_id) && !roles.iter().any(|r| r == ADMIN) {
        roles.push(ADMIN.to_string());
    }
    let access_token = keys
        .issue(user_id, roles.clone(), Utc::now())
        .map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            )
        })?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(Token {
            access_token,
            token_type: "Bearer",
            expires_in: keys.lifetime().as_secs(),
            user_id: user_id.to_string(),
            roles,
        }))
}

/// `GET /users/me`: your account, from the users service (or the read
/// model, marked stale, while that service is unavailable).
#[utoipa::path(get, path = "/users/me", tag = "users",
    params(("min_position" = Option<String>, Query, description = "Wait until this write is visible")),
    responses(
        (status = 200, description = "The account (`Ordersaga-Stale: true` when from the read model)", body = Object),
        (status = 401, description = "No or bad token", body = Problem)),
    security(("bearer" = [])))]
pub async fn me(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    client: web::Data<Client>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, Problem> {
    let position = min_position(&req, query.min_position.as_deref())?;
    let id = caller.user_id;
    let path = format!("/users/{id}");
    let row = |model: &ReadModel| model.user(id);
    read_one(
        &state,
        &client,
        ServiceName::Users,
        "user",
        id,
        &path,
        position,
        row,
    )
    .await
}

/// `POST /users/me/deposits`: adds money to your account.
#[utoipa::path(post, path = "/users/me/deposits", tag = "users", request_body = Deposit,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key deposit once")),
    responses(
        (status = 200, description = "Deposited", body = Accepted),
        (status = 202, description = "Sent; no reply in time"),
        (status = 422, description = "`invalid_amount`", body = Problem)),
    security(("bearer" = [])))]
pub async fn deposit(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<GatewayState>,
    body: web::Json<Deposit>,
) -> Result<HttpResponse, Problem> {
    let idempotency = Idempotency::of(&req, &caller.user_id.to_string())?;
    if body.amount == 0 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "a deposit must be more than zero cents",
        ));
    }
    let user_id = UserId::from(caller.user_id);
    let command = UserCommand::Deposit {
        user_id,
        amount: Cents(body.amount),
    };
    let sent = state
        .command(
            ServiceName::Users,
            caller.user_id,
            idempotency.command_id("deposit"),
            command,
        )
        .await?;
    Ok(answer(
        sent,
        StatusCode::OK,
        &idempotency,
        None,
        "/users/me",
        serde_json::json!({"user_id": caller.user_id, "amount": body.amount}),
    ))
}
