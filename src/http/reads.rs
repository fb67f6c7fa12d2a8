//! `POST /reads`: several single-entity reads in one request.
//!
//! The gateway's proxied reads (`GET /products/{id}` and the like) cost two
//! HTTP exchanges each, and the second one costs as much as the first. When
//! reads for one instance pile up while a call to it is in flight, the
//! gateway sends them together here (see `gateway/coalesce.rs`): each is
//! answered exactly as its `GET` would be, from the live aggregate, in the
//! order asked.

use super::problem::Problem;
use super::routes::{order_json, product_json, user_json};
use super::ApiState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

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
    let answers = futures_util::future::join_all(paths.iter().map(|path| read(&state, path))).await;
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

/// One path's status and JSON body.
async fn read(state: &ApiState, path: &str) -> (StatusCode, Vec<u8>) {
    let answer = if let Some(id) = path.strip_prefix("/users/") {
        user_json(state, id).await
    } else if let Some(id) = path.strip_prefix("/products/") {
        product_json(state, id).await
    } else if let Some(id) = path.strip_prefix("/orders/") {
        order_json(state, id).await
    } else {
        Err(Problem::not_found(format!("no route GET {path}")))
    };
    match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(problem) => {
            let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
            (problem.status(), body)
        }
    }
}
