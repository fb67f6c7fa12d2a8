//! Errors as `application/problem+json` (RFC 9457): a stable `code` for
//! programs, a `title` and `detail` for people. Every error a handler
//! returns is one of these, so a client parses one shape.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::borrow::Cow;

/// One problem: the HTTP status, a stable snake_case code, and what went
/// wrong. Boxed, so a `Result<_, Problem>` stays one pointer wide.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", .0.code, .0.detail)]
pub struct Problem(Box<ProblemBody>);

/// The body of a [`Problem`] as it goes on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
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
    #[schema(value_type = String)]
    pub code: Cow<'static, str>,
    /// What exactly went wrong, for people.
    pub detail: String,
    /// Headers the answer carries besides the body (`Retry-After`,
    /// `WWW-Authenticate`).
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(&'static str, String)>,
}

impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <ProblemBody as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        let code = code.into();
        Self(Box::new(ProblemBody {
            status,
            kind: format!("urn:ordersaga:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status_code: status.as_u16(),
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }))
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// What went wrong, for people.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The same problem, telling the client to retry after `after` (rounded
    /// up to whole seconds, at least 1).
    pub fn retry_after(self, after: std::time::Duration) -> Self {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.header("retry-after", seconds.max(1).to_string())
    }

    /// The same problem with a bearer-token challenge (for 401s).
    pub fn challenge(self) -> Self {
        self.header("www-authenticate", "Bearer".to_string())
    }

    /// The same problem with one more header.
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
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
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.0.status);
        response.content_type("application/problem+json");
        for (name, value) in &self.0.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.json(self)
    }
}
