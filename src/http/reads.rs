//! `POST /reads`: several single-entity reads in one request.
//!
//! The gateway's proxied reads (`GET /products/{id}` and the like) cost two
//! HTTP exchanges each, and the second one costs as much as the first. When
//! reads for one instance pile up while a call to it is in flight, the
//! gateway sends them together here (see `gateway/coalesce.rs`): each is
//! answered exactly as its `GET` would be, from the live aggregate, in the
//! order asked. The users and inventory faces ask their entities for all of
//! a request's aggregates in one message ([`Service::states`]): one
//! hand-off each way between this worker's thread and the actors', however
//! many reads.

use super::ids::parse_id;
use super::problem::Problem;
use super::routes::{order_json, product_answer, product_json, user_answer, user_json};
use super::{ApiState, Backend};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use ordersaga_actors::recovery::Recovered;
use ordersaga_actors::{Aggregate, Service, ServiceError};
use serde::Deserialize;
use uuid::Uuid;

/// Most reads one request may carry.
pub const MAX_READS: usize = 256;

/// The body of `POST /reads`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reads {
    /// `GET` paths: `/users/{id}`, `/products/{id}` or `/orders/{id}`, at
    /// most 256.
    pub paths: Vec<String>,
}

/// `POST /reads`: `{"answers": [{"status": …, "body": …}, …]}`, one per
/// path in order, each the status and body its `GET` answers (a problem
/// body for a 4xx or 5xx).
#[utoipa::path(post, path = "/reads", tag = "queries", request_body = Reads,
    responses(
        (status = 200, description = "One answer per path, in order", body = Object),
        (status = 400, description = "Not a list of paths, or more than 256", body = Problem, content_type = "application/problem+json")))]
pub async fn reads(
    state: web::Data<ApiState>,
    body: web::Json<Reads>,
) -> Result<HttpResponse, Problem> {
    let paths = body.into_inner().paths;
    if paths.len() > MAX_READS {
        return Err(Problem::bad_request(
            "too_many_reads",
            format!("{} paths; at most {MAX_READS}", paths.len()),
        ));
    }
    let answers = answer_all(&state, &paths).await;
    let size: usize = answers.iter().map(|(_, body)| body.len() + 24).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"answers\":[");
    for (i, (status, body)) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"status\":{},\"body\":", status.as_u16()).as_bytes());
        out.extend_from_slice(body);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

/// Renders an aggregate's state as its `GET` would.
type Render<A> = fn(Uuid, Result<Recovered<A>, ServiceError>) -> Result<Vec<u8>, Problem>;

/// One status and body per path, in order.
async fn answer_all(state: &ApiState, paths: &[String]) -> Vec<(StatusCode, Vec<u8>)> {
    match &state.backend {
        Backend::Users(users) => {
            batched(state, users, paths, "/users/", "user id", user_answer).await
        }
        Backend::Inventory(products) => {
            batched(
                state,
                products,
                paths,
                "/products/",
                "product id",
                product_answer,
            )
            .await
        }
        Backend::Orders { .. } => {
            let answers =
                futures_util::future::join_all(paths.iter().map(|path| read(state, path))).await;
            answers.into_iter().map(outcome).collect()
        }
    }
}

/// The reads of `service`'s own aggregates (`prefix` and a valid id) from
/// one [`Service::states`], each rendered by `answer`; any other path
/// (another service's, a bad id) is answered as its `GET` would be.
async fn batched<A: Aggregate>(
    state: &ApiState,
    service: &Service<A>,
    paths: &[String],
    prefix: &str,
    what: &'static str,
    answer: Render<A>,
) -> Vec<(StatusCode, Vec<u8>)> {
    let ids: Vec<Option<Uuid>> = paths
        .iter()
        .map(|path| {
            path.strip_prefix(prefix)
                .and_then(|id| parse_id(what, id).ok())
        })
        .collect();
    let wanted: Vec<Uuid> = ids.iter().flatten().copied().collect();
    // A stopped service answers every read as its `GET` would: stopped.
    let mut states = service.states(wanted).await.unwrap_or_default().into_iter();
    let mut answers = Vec::with_capacity(paths.len());
    for (path, id) in paths.iter().zip(ids) {
        let answered = match id {
            Some(id) => answer(id, states.next().unwrap_or(Err(ServiceError::Stopped))),
            None => read(state, path).await,
        };
        answers.push(outcome(answered));
    }
    answers
}

/// One path's JSON body, or its problem.
async fn read(state: &ApiState, path: &str) -> Result<Vec<u8>, Problem> {
    if let Some(id) = path.strip_prefix("/users/") {
        user_json(state, id).await
    } else if let Some(id) = path.strip_prefix("/products/") {
        product_json(state, id).await
    } else if let Some(id) = path.strip_prefix("/orders/") {
        order_json(state, id).await
    } else {
        Err(Problem::not_found(format!("no route GET {path}")))
    }
}

/// An answer as a status and body.
fn outcome(answer: Result<Vec<u8>, Problem>) -> (StatusCode, Vec<u8>) {
    match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(problem) => {
            let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
            (problem.status(), body)
        }
    }
}
