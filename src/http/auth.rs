//! `POST /users/authenticate`: the login backend. Email and password in,
//! the user's id and roles out, or 401.
//!
//! The password is checked with argon2 on the blocking pool. An unknown
//! email is checked against a fixed dummy hash of the same parameters, so a
//! wrong password and an unknown account cost the same time and answer the
//! same 401: nobody learns which addresses have accounts.

use super::problem::Problem;
use super::{ApiState, Backend};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use ordersaga_actors::aggregates::{verify_password, UserStatus, EMAIL_INDEX, PASSWORD_SECRET};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The body of a login.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The account's email (compared as the service stores it: trimmed,
    /// lower case).
    pub email: String,
    /// The password.
    pub password: String,
}

/// A successful login.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Authenticated {
    /// The user.
    pub user_id: uuid::Uuid,
    /// What the user may do. Every account is a `customer`; other roles
    /// (`admin`) are granted by the gateway's configuration.
    pub roles: Vec<&'static str>,
}

/// A hash of a random password with the service's parameters, made once:
/// what an unknown email is checked against.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let secret = uuid::Uuid::new_v4().to_string();
        argon2::Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

fn refused() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the email or the password is wrong",
    )
}

/// The handler.
#[utoipa::path(
    post,
    path = "/users/authenticate",
    tag = "users",
    request_body = Credentials,
    responses(
        (status = 200, description = "The right password of an active account", body = Authenticated),
        (status = 401, description = "A wrong password or an unknown email, alike", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The right password of a deactivated account", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A body that is not the credentials", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn authenticate(
    state: web::Data<ApiState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, Problem> {
    let Backend::Users(users) = &state.backend else {
        return Err(Problem::not_found("only the users service authenticates"));
    };
    let Credentials { email, password } = body.into_inner();
    let email = email.trim().to_lowercase();
    let journal = state.journal.clone();
    let holder = journal.unique_holder(EMAIL_INDEX, &email)?;
    let hash = match &holder {
        Some(stream) => journal
            .secret(stream, PASSWORD_SECRET)?
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => None,
    };
    let known = hash.is_some();
    let checks = &crate::metrics::metrics().password_checks;
    let checked = hash.unwrap_or_else(|| dummy_hash().to_owned());
    let matches = web::block(move || verify_password(&checked, &password))
        .await
        .map_err(|err| Problem::unavailable(format!("cannot check the password: {err}")))?;
    let result = if known && matches { "match" } else { "refused" };
    checks.with_label_values(&[result]).inc();
    let (true, true, Some(stream)) = (known, matches, holder) else {
        return Err(refused());
    };
    let user = users.state(stream.id).await?;
    if user.state.status() != UserStatus::Active {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "account_inactive",
            "the account is deactivated",
        ));
    }
    Ok(HttpResponse::Ok().json(Authenticated {
        user_id: stream.id,
        roles: vec!["customer"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHash;

    /// An unknown account is checked against the dummy hash: with the same
    /// algorithm and cost parameters as a real one, the check takes the same
    /// work, so timing tells nobody whether the address has an account.
    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let salt = SaltString::generate(&mut OsRng);
        let real = argon2::Argon2::default()
            .hash_password(b"a real password", &salt)
            .unwrap()
            .to_string();
        let (real, dummy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(dummy_hash()).unwrap(),
        );
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(real.version, dummy.version);
        assert_eq!(real.params, dummy.params);
        assert_eq!(real.hash.map(|h| h.len()), dummy.hash.map(|h| h.len()));
    }
}
