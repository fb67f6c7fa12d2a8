//! The user aggregate: an account, its money, and the charges made per order.

use crate::aggregate::{Aggregate, UniqueChange};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ordersaga_events::topics::Service;
use ordersaga_events::user::{Password, UserCommand, UserEvent, UserRejection};
use ordersaga_events::CommandResult;
use ordersaga_events::{Cents, OrderId, StreamKind, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The name of the secret holding an account's argon2id password hash.
pub const PASSWORD_SECRET: &str = "password";

/// Whether `plaintext` matches `hash` (an argon2 PHC string). `false` for a
/// hash that cannot be parsed, so a damaged record can never be logged into.
/// Slow by design: call it on a blocking thread.
pub fn verify_password(hash: &str, plaintext: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(plaintext.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The uniqueness index that keeps one account per email address.
pub const EMAIL_INDEX: &str = "user-email";

/// Longest accepted email address (the SMTP path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// Longest accepted display name.
const MAX_USERNAME_CHARS: usize = 64;
/// Shortest accepted password.
const MIN_PASSWORD_CHARS: usize = 8;

/// Where an account is in its life. Only forward moves exist: a deleted
/// account never comes back, so its id cannot be reused by accident.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// No `Registered` event yet.
    #[default]
    Unregistered,
    /// Can deposit and be charged.
    Active,
    /// Frozen: no deposits or charges, but refunds are still paid out.
    Deactivated,
    /// Gone; the email is free again. Refunds are still paid out.
    Deleted,
}

/// What one order was charged. A charge leaves the live state once made (the
/// journal's archive remembers it), so the state's size does not grow with
/// orders; it is recalled for a decision about its order, so a refund returns
/// exactly that and a second charge for the same order is refused even after
/// a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRecord {
    /// The amount taken.
    pub amount: Cents,
    /// Whether it has been given back.
    pub refunded: bool,
}

/// A user account.
///
/// Money invariant (checked by the tests):
/// `balance = total_deposited − total_charged + total_refunded`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    // `Option` rather than `UserId`: `UserId::default()` is random, which
    // would make two fresh aggregates unequal.
    user_id: Option<UserId>,
    status: UserStatus,
    email: String,
    username: String,
    balance: Cents,
    total_deposited: Cents,
    total_charged: Cents,
    total_refunded: Cents,
    /// Only the charge recalled from the archive for the decision at hand;
    /// empty in the live state (see [`Aggregate::recall`]).
    charges: BTreeMap<OrderId, ChargeRecord>,
}

impl User {
    /// The account's id, once registered.
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }

    /// Where the account is in its life.
    pub fn status(&self) -> UserStatus {
        self.status
    }

    /// `true` once a `Registered` event has been applied (even if since deleted).
    pub fn is_registered(&self) -> bool {
        self.status != UserStatus::Unregistered
    }

    /// The normalised (trimmed, lower-case) email; empty when unregistered.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The display name; empty when unregistered.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Money available to charge.
    pub fn balance(&self) -> Cents {
        self.balance
    }

    /// Sum of every deposit.
    pub fn total_deposited(&self) -> Cents {
        self.total_deposited
    }

    /// Sum of every charge, refunded or not.
    pub fn total_charged(&self) -> Cents {
        self.total_charged
    }

    /// Sum of every refund.
    pub fn total_refunded(&self) -> Cents {
        self.total_refunded
    }

    /// The charge made for `order_id`, if it has been recalled into this
    /// copy of the state (charges live in the journal's archive).
    pub fn charge(&self, order_id: OrderId) -> Option<&ChargeRecord> {
        self.charges.get(&order_id)
    }

    /// The refusal for an account that cannot take deposits or charges now.
    fn require_active(&self) -> Result<(), UserRejection> {
        match self.status {
            UserStatus::Active => Ok(()),
            UserStatus::Unregistered => Err(UserRejection::UnknownUser),
            UserStatus::Deactivated => Err(UserRejection::Inactive),
            UserStatus::Deleted => Err(UserRejection::Deleted),
        }
    }

    fn decide_register(
        &self,
        user_id: UserId,
        email: &str,
        username: &str,
        password: &Password,
    ) -> Result<Vec<UserEvent>, UserRejection> {
        if self.is_registered() {
            return Err(UserRejection::AlreadyRegistered);
        }
        let (email, username) = validate_identity(email, username)?;
        // `prepare` checked the plaintext before it replaced it with a hash.
        if password.hash().is_none() {
            check_password(password.plaintext())?;
        }
        // The hash itself is stored as a secret, never in the event
        // (`Aggregate::secrets`); without one there would be no way to log in.
        if password.hash().is_none() {
            return Err(UserRejection::Hashing(
                "the password was not hashed before deciding".into(),
            ));
        }
        Ok(vec![UserEvent::Registered {
            user_id,
            email,
            username,
        }])
    }

    fn decide_deposit(&self, amount: Cents) -> Result<Vec<UserEvent>, UserRejection> {
        self.require_active()?;
        if amount == Cents::ZERO {
            return Err(UserRejection::InvalidAmount);
        }
        // Both counters must stay exact, or the money invariant breaks.
        self.balance
            .checked_add(amount)
            .and(self.total_deposited.checked_add(amount))
            .ok_or(UserRejection::Overflow)?;
        Ok(vec![UserEvent::Deposited { amount }])
    }

    fn decide_charge(
        &self,
        order_id: OrderId,
        amount: Cents,
    ) -> Result<Vec<UserEvent>, UserRejection> {
        self.require_active()?;
        if amount == Cents::ZERO {
            return Err(UserRejection::InvalidAmount);
        }
        // Once per order, refunded or not: a retried saga step must never
        // take the money twice.
        if self.charges.contains_key(&order_id) {
            return Err(UserRejection::AlreadyCharged(order_id));
        }
        if amount > self.balance {
            return Err(UserRejection::InsufficientFunds {
                balance: self.balance,
                required: amount,
            });
        }
        // Refunds never exceed charges, so checking this total here keeps the
        // refund total exact too, and a refund never has to be refused.
        self.total_charged
            .checked_add(amount)
            .ok_or(UserRejection::Overflow)?;
        Ok(vec![UserEvent::Charged { order_id, amount }])
    }

    fn decide_refund(&self, order_id: OrderId) -> Result<Vec<UserEvent>, UserRejection> {
        // Deactivated and deleted accounts still get their money back.
        if !self.is_registered() {
            return Err(UserRejection::UnknownUser);
        }
        match self.charges.get(&order_id) {
            None => Err(UserRejection::NoCharge(order_id)),
            Some(charge) if charge.refunded => Err(UserRejection::AlreadyRefunded(order_id)),
            Some(charge) => Ok(vec![UserEvent::Refunded {
                order_id,
                amount: charge.amount,
            }]),
        }
    }

    fn decide_deactivate(&self) -> Result<Vec<UserEvent>, UserRejection> {
        self.require_active()?;
        Ok(vec![UserEvent::Deactivated])
    }

    fn decide_delete(&self) -> Result<Vec<UserEvent>, UserRejection> {
        match self.status {
            UserStatus::Unregistered => Err(UserRejection::UnknownUser),
            UserStatus::Deleted => Err(UserRejection::Deleted),
            UserStatus::Active | UserStatus::Deactivated => Ok(vec![UserEvent::Deleted {
                email: self.email.clone(),
            }]),
        }
    }
}

/// The normalised email and trimmed username of a registration, or why it
/// is refused (email first, as a client reads its mistakes).
fn validate_identity(email: &str, username: &str) -> Result<(String, String), UserRejection> {
    let email = normalise_email(email)?;
    let username = username.trim();
    let username_chars = username.chars().count();
    if username_chars == 0
        || username_chars > MAX_USERNAME_CHARS
        || username.chars().any(char::is_control)
    {
        return Err(UserRejection::InvalidUsername);
    }
    Ok((email, username.to_owned()))
}

/// Refuses a password that is too short.
fn check_password(plaintext: &str) -> Result<(), UserRejection> {
    if plaintext.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserRejection::WeakPassword);
    }
    Ok(())
}

/// Trims and lower-cases `raw` and checks it is a plausible address. This is
/// deliberately not full RFC 5322: it refuses what is surely wrong and leaves
/// deliverability to the mail server.
fn normalise_email(raw: &str) -> Result<String, UserRejection> {
    let invalid = || UserRejection::InvalidEmail(raw.to_owned());
    let email = raw.trim().to_lowercase();
    if email.chars().count() > MAX_EMAIL_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if local.is_empty() || !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.')
    {
        return Err(invalid());
    }
    Ok(email)
}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type Rejection = UserRejection;

    const KIND: StreamKind = StreamKind::User;
    const SERVICE: Service = Service::Users;

    fn aggregate_id(command: &UserCommand) -> Uuid {
        command.user_id().as_uuid()
    }

    fn decide(&self, command: &UserCommand) -> Result<Vec<UserEvent>, UserRejection> {
        match command {
            UserCommand::Register {
                user_id,
                email,
                username,
                password,
            } => self.decide_register(*user_id, email, username, password),
            UserCommand::Deposit { amount, .. } => self.decide_deposit(*amount),
            UserCommand::Charge {
                order_id, amount, ..
            } => self.decide_charge(*order_id, *amount),
            UserCommand::Refund { order_id, .. } => self.decide_refund(*order_id),
            UserCommand::Deactivate { .. } => self.decide_deactivate(),
            UserCommand::Delete { .. } => self.decide_delete(),
        }
    }

    /// Hashes a registration's password (argon2id, tens of milliseconds by
    /// design) away from the actors. An invalid registration is left as it
    /// is, for `decide` to refuse without paying for a hash.
    fn prepare(command: &mut UserCommand) -> Result<(), UserRejection> {
        let UserCommand::Register {
            email,
            username,
            password,
            ..
        } = command
        else {
            return Ok(());
        };
        if password.hash().is_some()
            || validate_identity(email, username).is_err()
            || check_password(password.plaintext()).is_err()
        {
            return Ok(());
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.plaintext().as_bytes(), &salt)
            .map_err(|e| UserRejection::Hashing(e.to_string()))?
            .to_string();
        password.set_hash(hash);
        Ok(())
    }

    const PREPARES: bool = true;

    fn secrets(
        command: &UserCommand,
        events: &[UserEvent],
    ) -> Vec<(&'static str, Option<Vec<u8>>)> {
        events
            .iter()
            .filter_map(|event| match (event, command) {
                (UserEvent::Registered { .. }, UserCommand::Register { password, .. }) => password
                    .hash()
                    .map(|hash| (PASSWORD_SECRET, Some(hash.as_bytes().to_vec()))),
                // A deleted account can never log in again.
                (UserEvent::Deleted { .. }, _) => Some((PASSWORD_SECRET, None)),
                _ => None,
            })
            .collect()
    }

    fn legacy_secrets(stored_event: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        match ordersaga_events::user::v1_password_hash_of_event(stored_event) {
            Ok(Some(hash)) => vec![(PASSWORD_SECRET, hash.into_bytes())],
            _ => Vec::new(),
        }
    }

    const LEGACY_SECRETS: bool = true;

    fn archive_key(event: &UserEvent) -> Option<String> {
        match event {
            UserEvent::Charged { order_id, .. } | UserEvent::Refunded { order_id, .. } => {
                Some(order_id.to_string())
            }
            _ => None,
        }
    }

    fn recall_key(command: &UserCommand) -> Option<String> {
        match command {
            UserCommand::Charge { order_id, .. } | UserCommand::Refund { order_id, .. } => {
                Some(order_id.to_string())
            }
            _ => None,
        }
    }

    fn recall(&mut self, event: &UserEvent) {
        let (order_id, record) = match event {
            UserEvent::Charged { order_id, amount } => (
                order_id,
                ChargeRecord {
                    amount: *amount,
                    refunded: false,
                },
            ),
            UserEvent::Refunded { order_id, amount } => (
                order_id,
                ChargeRecord {
                    amount: *amount,
                    refunded: true,
                },
            ),
            _ => return,
        };
        self.charges.insert(*order_id, record);
    }

    const ARCHIVES: bool = true;
    // 1: charges left the state for the archive.
    const STATE_VERSION: u8 = 1;

    fn result(events: &[UserEvent]) -> Option<CommandResult> {
        events.iter().find_map(|event| match event {
            UserEvent::Charged { amount, .. } => Some(CommandResult::Charged { amount: *amount }),
            _ => None,
        })
    }

    fn apply(&mut self, event: &UserEvent) {
        // `decide` never emits an event its state machine forbids; the guards
        // below only keep replay of a damaged stream from moving status
        // backwards. Counters saturate for the same reason.
        match event {
            UserEvent::Registered {
                user_id,
                email,
                username,
            } => {
                if !self.is_registered() {
                    self.user_id = Some(*user_id);
                    self.email.clone_from(email);
                    self.username.clone_from(username);
                    self.status = UserStatus::Active;
                }
            }
            UserEvent::Deposited { amount } => {
                self.balance = saturating_add(self.balance, *amount);
                self.total_deposited = saturating_add(self.total_deposited, *amount);
            }
            UserEvent::Charged { order_id, amount } => {
                self.balance = Cents(self.balance.0.saturating_sub(amount.0));
                self.total_charged = saturating_add(self.total_charged, *amount);
                // The charge lives in the archive from now on.
                self.charges.remove(order_id);
            }
            UserEvent::Refunded { order_id, amount } => {
                self.balance = saturating_add(self.balance, *amount);
                self.total_refunded = saturating_add(self.total_refunded, *amount);
                self.charges.remove(order_id);
            }
            UserEvent::Deactivated => {
                if self.status == UserStatus::Active {
                    self.status = UserStatus::Deactivated;
                }
            }
            UserEvent::Deleted { .. } => {
                if self.is_registered() {
                    self.status = UserStatus::Deleted;
                }
            }
        }
    }

    fn unique_changes(event: &UserEvent) -> Vec<UniqueChange> {
        match event {
            UserEvent::Registered { email, .. } => vec![UniqueChange::Claim {
                index: EMAIL_INDEX,
                key: email.clone(),
            }],
            UserEvent::Deleted { email } => vec![UniqueChange::Release {
                index: EMAIL_INDEX,
                key: email.clone(),
            }],
            _ => Vec::new(),
        }
    }

    fn unique_violation(index: &str, key: &str) -> Option<UserRejection> {
        (index == EMAIL_INDEX).then(|| UserRejection::EmailTaken(key.to_owned()))
    }
}

fn saturating_add(a: Cents, b: Cents) -> Cents {
    Cents(a.0.saturating_add(b.0))
}
