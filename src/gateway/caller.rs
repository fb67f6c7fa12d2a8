//! Who is calling: the bearer token of a request, checked, as an extractor
//! handlers take as an argument.
//!
//! No token, a malformed header, a bad signature, a wrong issuer and an
//! expired token are each a 401 with their own code and a
//! `WWW-Authenticate: Bearer` challenge; the token itself is never echoed.

use super::jwt::{Claims, TokenKeys, ADMIN};
use crate::http::problem::Problem;
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};
use uuid::Uuid;

/// An authenticated user.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user id (the token's subject).
    pub user_id: Uuid,
    /// The token's claims.
    pub claims: Claims,
}

impl Caller {
    /// Whether the caller has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.claims.has_role(ADMIN)
    }

    /// 403 unless the caller is an administrator.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "changing products needs the admin role",
            ))
        }
    }

    /// 403 unless the caller is `owner` or an administrator.
    pub fn require_owner(&self, owner: Uuid, what: &str) -> Result<(), Problem> {
        if self.user_id == owner || self.is_admin() {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{what} belongs to another user"),
            ))
        }
    }
}

/// Claims the rate limiter already verified for this request (it must know
/// the user to count against), kept in the request's extensions so the
/// token's signature is checked once.
#[derive(Clone, Debug)]
pub struct Verified(pub Claims);

/// A 401 with `code` and a bearer challenge.
pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, code, detail).challenge()
}

/// The bearer token of `req`, if its `Authorization` header has one.
pub fn bearer(req: &HttpRequest) -> Result<Option<&str>, Problem> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        unauthorized(
            "invalid_token",
            "the Authorization header is not visible ASCII",
        )
    })?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(unauthorized(
            "invalid_token",
            "the Authorization header must be `Bearer TOKEN`",
        )),
    }
}

/// The checked caller of `req` under `keys`.
pub fn authenticate(req: &HttpRequest, keys: &TokenKeys) -> Result<Caller, Problem> {
    let verified = req.extensions().get::<Verified>().map(|v| v.0.clone());
    if let Some(claims) = verified {
        if let Some(user_id) = claims.user_id() {
            return Ok(Caller { user_id, claims });
        }
    }
    let token = bearer(req)?.ok_or_else(|| {
        unauthorized(
            "missing_token",
            "this needs a bearer token: POST /auth/token with your email and password",
        )
    })?;
    let claims = keys
        .verify(token)
        .map_err(|err| unauthorized(err.code(), err.to_string()))?;
    let user_id = claims
        .user_id()
        .ok_or_else(|| unauthorized("invalid_token", "the token's subject is not a user id"))?;
    Ok(Caller { user_id, claims })
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let keys = req.app_data::<web::Data<TokenKeys>>();
        ready(match keys {
            Some(keys) => authenticate(req, keys),
            None => Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the gateway has no token keys",
            )),
        })
    }
}
