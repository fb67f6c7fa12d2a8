//! Errors as `application/problem+json` (RFC 9457): a stable `code` for
//! programs, a `title` and `detail` for people. Every error a handler
//! returns is one of these, so a client parses one shape.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// One problem: the HTTP status, a stable snake_case code, and what went
/// wrong.
#[derive(Debug, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{code}: {detail}")]
pub struct Problem {
    #[serde(skip)]
    #[schema(ignore)]
    status: StatusCode,
    /// `about:blank` style type URI: the code under this API's namespace.
    #[serde(rename = "type")]
    kind: String,
    /// A short summary of the status.
    title: String,
    /// The HTTP status, repeated in the body as RFC 9457 suggests.
    #[serde(rename = "status")]
    status_code: u16,
    /// A stable code programs branch on (`not_found`, `invalid_id`, …).
    pub code: &'static str,
    /// What exactly went wrong, for people.
    pub detail: String,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind: format!("urn:ordersaga:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status_code: status.as_u16(),
            code,
            detail: detail.into(),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 503 `unavailable`: the service cannot answer now (stopping, overloaded).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

/// A service that could not answer (stopping, overloaded, its store
/// failing): the request may succeed later.
impl From<ordersaga_actors::ServiceError> for Problem {
    fn from(err: ordersaga_actors::ServiceError) -> Self {
        Self::unavailable(err.to_string())
    }
}

/// A store that cannot be read now.
impl From<ordersaga_actors::JournalError> for Problem {
    fn from(err: ordersaga_actors::JournalError) -> Self {
        Self::unavailable(format!("the store cannot be read: {err}"))
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type("application/problem+json")
            .json(self)
    }
}
