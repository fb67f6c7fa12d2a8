//! The first administrator, from configuration: registered at start if the
//! account does not exist, and granted the `admin` role at login.
//!
//! The account's id is derived from its email, so every gateway of a
//! cluster, and every restart, names the same account and sends the same
//! registration (the users service applies it once). If someone else
//! registered that email first, the registration is refused and nobody
//! gets the role: the derived id belongs to no account.

use super::requester::Requester;
use ordersaga_events::reply::Outcome;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{CommandId, UserId};
use std::time::Duration;
use uuid::Uuid;

/// The namespace of administrator ids.
const ADMIN_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7273_6167_615f_6164_6d69_6e73);

/// The configured administrator. `Debug` shows no password.
#[derive(Clone)]
pub struct AdminAccount {
    /// Its email (the login).
    pub email: String,
    /// Its password, from a file or the environment; never logged.
    pub password: String,
}

impl std::fmt::Debug for AdminAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccount")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl AdminAccount {
    /// The account's user id, derived from the (case-folded) email.
    pub fn user_id(&self) -> Uuid {
        Uuid::new_v5(
            &ADMIN_NAMESPACE,
            self.email.trim().to_lowercase().as_bytes(),
        )
    }

    fn command_id(&self) -> CommandId {
        CommandId::from(Uuid::new_v5(&ADMIN_NAMESPACE, self.user_id().as_bytes()))
    }
}

/// Registers `account` unless it exists, waiting at most `timeout` for the
/// users service. Failures are logged, not fatal: the gateway serves
/// everything but product changes without an administrator.
pub async fn ensure(requester: &Requester, account: &AdminAccount, timeout: Duration) {
    let user_id = UserId::from(account.user_id());
    let command = UserCommand::Register {
        user_id,
        email: account.email.clone(),
        username: "admin".into(),
        password: Password::new(account.password.clone()),
    };
    let reply = requester
        .request(
            ServiceName::Users,
            account.user_id(),
            account.command_id(),
            command,
            timeout,
        )
        .await;
    match reply.map(|r| r.outcome) {
        Ok(Outcome::Accepted { .. }) => {
            tracing::info!(email = %account.email, %user_id, "administrator account ready")
        }
        Ok(Outcome::Rejected(rejection)) if rejection.code == "already_registered" => {
            tracing::info!(email = %account.email, %user_id, "administrator account exists")
        }
        Ok(Outcome::Rejected(rejection)) => tracing::warn!(
            email = %account.email,
            code = %rejection.code,
            "the administrator account cannot be registered; nobody has the admin role"
        ),
        Err(err) => tracing::warn!(
            email = %account.email,
            cause = %err,
            "the administrator account is not confirmed; it is registered when the users service reads the command"
        ),
    }
}
