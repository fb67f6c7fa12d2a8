//! The order saga contract: what drives a saga and what it records.
//!
//! One saga runs per order, in the orders service, as its own event-sourced
//! stream (kind `saga`, id = the order id). It reserves every line, prices the
//! order from the reservations, charges the user, confirms the order and
//! commits the stock; when a step is rejected or times out it compensates in
//! reverse: refund, release, cancel. Saga events are published on
//! `orders.events` like every other event of the orders service.
//!
//! The commands a saga sends carry deterministic ids
//! ([`saga_command_id`]), so resending one after a crash or a timeout is
//! recognised by its receiver; their replies come back on
//! [`SAGA_REPLIES`](crate::topics::SAGA_REPLIES) with the saga id as
//! correlation id.

use crate::codec::Versioned;
use crate::ids::{CommandId, OrderId, ProductId, SagaId, UserId};
use crate::money::Cents;
use crate::order::{OrderLine, OrderStatus, PricedLine};
use crate::reply::{ReasonCode, Reply};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The saga of an order has the order's id.
pub fn saga_of(order_id: OrderId) -> SagaId {
    SagaId::from_uuid(order_id.as_uuid())
}

/// The id of the command a saga sends for `step`: stable across resends.
pub fn saga_command_id(saga_id: SagaId, step: &SagaStep) -> CommandId {
    CommandId::derived(saga_id.as_uuid(), &step.label())
}

/// One command a saga sends. Its label makes the command id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    /// Reserve a line's product (inventory).
    Reserve(ProductId),
    /// Price the order from the reservations (orders).
    Price,
    /// Charge the user the priced total (users).
    Charge,
    /// Confirm the order (orders).
    Confirm,
    /// Commit a line's reserved stock (inventory).
    Commit(ProductId),
    /// Compensation: release a line's reservation (inventory).
    Release(ProductId),
    /// Compensation: return a committed line to stock (inventory).
    Return(ProductId),
    /// Compensation: give the charge back (users).
    Refund,
    /// Compensation: cancel the order (orders).
    Cancel,
    /// A reservation that arrived after compensation had released the line:
    /// release it again (inventory).
    ReleaseLate(ProductId),
    /// A charge that arrived after compensation had refunded: refund again
    /// (users).
    RefundLate,
}

impl SagaStep {
    /// A stable text label, e.g. `reserve/<product id>`.
    pub fn label(&self) -> String {
        match self {
            SagaStep::Reserve(p) => format!("reserve/{p}"),
            SagaStep::Price => "price".into(),
            SagaStep::Charge => "charge".into(),
            SagaStep::Confirm => "confirm".into(),
            SagaStep::Commit(p) => format!("commit/{p}"),
            SagaStep::Release(p) => format!("release/{p}"),
            SagaStep::Return(p) => format!("return/{p}"),
            SagaStep::Refund => "refund".into(),
            SagaStep::Cancel => "cancel".into(),
            SagaStep::ReleaseLate(p) => format!("release-late/{p}"),
            SagaStep::RefundLate => "refund-late".into(),
        }
    }

    /// Whether this step undoes another.
    pub fn is_compensation(&self) -> bool {
        matches!(
            self,
            SagaStep::Release(_)
                | SagaStep::Return(_)
                | SagaStep::Refund
                | SagaStep::Cancel
                | SagaStep::ReleaseLate(_)
                | SagaStep::RefundLate
        )
    }
}

/// How long a saga waits for replies and how often it retries; fixed per saga
/// when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SagaPolicy {
    /// How long a step may wait for its replies before it is retried, in
    /// milliseconds. Each retry waits twice as long as the one before, up to
    /// [`SagaPolicy::MAX_BACKOFF`] times this.
    pub step_timeout_ms: u64,
    /// Attempts per step (the first send included) before a forward step
    /// gives up and compensates, or a compensation parks the saga as stuck.
    pub max_attempts: u32,
}

impl SagaPolicy {
    /// The longest wait of one attempt, as a multiple of the step timeout:
    /// waits double from attempt to attempt until they reach it, then stay.
    pub const MAX_BACKOFF: u64 = 4;

    /// The default step timeout: long enough that a busy broker's slow
    /// replies do not cause resends.
    pub const DEFAULT_STEP_TIMEOUT_MS: u64 = 10_000;

    /// The default step budget: a forward step rides out a downstream outage
    /// of this long (a restart, a broker failover) before it compensates.
    pub const DEFAULT_BUDGET_MS: u64 = 90_000;

    /// The smallest policy with waits starting at `step_timeout_ms` whose
    /// attempts together wait at least `budget_ms`.
    pub fn with_budget(step_timeout_ms: u64, budget_ms: u64) -> Self {
        let mut policy = Self {
            step_timeout_ms: step_timeout_ms.max(1),
            max_attempts: 1,
        };
        // The doubling attempts one by one, then as many of the longest
        // wait as the rest of the budget needs.
        while policy.budget_ms() < budget_ms
            && u64::from(policy.max_attempts) <= Self::MAX_BACKOFF.ilog2().into()
        {
            policy.max_attempts += 1;
        }
        let missing = budget_ms.saturating_sub(policy.budget_ms());
        let longest = policy.wait_ms(policy.max_attempts);
        let more = missing.div_ceil(longest);
        policy.max_attempts = policy
            .max_attempts
            .saturating_add(u32::try_from(more).unwrap_or(u32::MAX));
        policy
    }

    /// How long attempt `attempt` (from 1) waits for its replies, in
    /// milliseconds: `step_timeout × 2^(attempt − 1)`, at most
    /// `step_timeout × MAX_BACKOFF`, saturating.
    pub fn wait_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(Self::MAX_BACKOFF.ilog2());
        self.step_timeout_ms.saturating_mul(1 << doublings)
    }

    /// How long a step waits, over all its attempts, before it gives up: the
    /// longest downstream outage it rides out.
    pub fn budget_ms(&self) -> u64 {
        let doubling = Self::MAX_BACKOFF.ilog2();
        let mut total: u64 = 0;
        for attempt in 1..=self.max_attempts {
            total = total.saturating_add(self.wait_ms(attempt));
            if attempt > doubling {
                // Every later wait is the same: add them at once.
                let rest = u64::from(self.max_attempts - attempt);
                return total.saturating_add(self.wait_ms(attempt).saturating_mul(rest));
            }
        }
        total
    }
}

impl Default for SagaPolicy {
    fn default() -> Self {
        Self::with_budget(Self::DEFAULT_STEP_TIMEOUT_MS, Self::DEFAULT_BUDGET_MS)
    }
}

/// Where a saga is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaPhase {
    /// No `Started` event yet.
    #[default]
    NotStarted,
    /// Waiting for every line's reservation.
    Reserving,
    /// Waiting for the order's price and the user's charge.
    Paying,
    /// Waiting for the order's confirmation.
    Confirming,
    /// Waiting for every line's stock to be committed.
    Committing,
    /// Undoing what was done; waiting for every compensation.
    Compensating,
    /// Done: order confirmed, stock committed, charged once. Terminal unless
    /// the user cancels the confirmed order.
    Completed,
    /// Done: order cancelled, nothing reserved, net charge zero. Terminal.
    Aborted,
    /// A compensation ran out of attempts: waiting for an operator
    /// (`ordersaga sagas retry`), or for the late replies that finish it.
    Stuck,
}

impl SagaPhase {
    /// Completed or Aborted.
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaPhase::Completed | SagaPhase::Aborted)
    }
}

/// Inputs of a saga (not published: they come from the orders service
/// itself). `now` is the time the driver observed, so that `decide` stays
/// pure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SagaCommand {
    /// An order was placed: start its saga.
    Start {
        /// The saga (= the order's saga id).
        saga_id: SagaId,
        /// The order.
        order_id: OrderId,
        /// Who ordered.
        user_id: UserId,
        /// What.
        lines: Vec<OrderLine>,
        /// Timeouts and retries for this saga.
        policy: SagaPolicy,
        /// Now.
        now: DateTime<Utc>,
    },
    /// A reply to one of the saga's commands arrived.
    Reply {
        /// The saga.
        saga_id: SagaId,
        /// The reply.
        reply: Reply,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The order was cancelled by someone other than the saga.
    OrderCancelled {
        /// The saga.
        saga_id: SagaId,
        /// The order's status before the cancellation.
        previous: OrderStatus,
        /// Now.
        now: DateTime<Utc>,
    },
    /// Time passed: retry or give up on a step whose deadline is over.
    Tick {
        /// The saga.
        saga_id: SagaId,
        /// Now.
        now: DateTime<Utc>,
    },
    /// An operator asks a stuck saga to try its compensations again, with a
    /// fresh attempt budget.
    Retry {
        /// The saga.
        saga_id: SagaId,
        /// Ignored on `orders.saga.commands`: the service uses its own clock.
        /// JSON senders may leave it out.
        #[serde(default)]
        now: DateTime<Utc>,
    },
}

impl SagaCommand {
    /// The saga addressed.
    pub fn saga_id(&self) -> SagaId {
        match self {
            SagaCommand::Start { saga_id, .. }
            | SagaCommand::Reply { saga_id, .. }
            | SagaCommand::OrderCancelled { saga_id, .. }
            | SagaCommand::Tick { saga_id, .. }
            | SagaCommand::Retry { saga_id, .. } => *saga_id,
        }
    }
}

/// Events of a saga stream (published on `orders.events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SagaEvent {
    /// The saga started; reservations are requested.
    Started {
        /// The order.
        order_id: OrderId,
        /// Who ordered.
        user_id: UserId,
        /// What.
        lines: Vec<OrderLine>,
        /// Timeouts and retries.
        policy: SagaPolicy,
        /// When the reservations time out.
        deadline: DateTime<Utc>,
    },
    /// A line's stock is reserved at a unit price.
    LineReserved {
        /// The product.
        product_id: ProductId,
        /// Units.
        quantity: u64,
        /// Price of one unit.
        unit_price: Cents,
    },
    /// A line could not be reserved.
    LineRejected {
        /// The product.
        product_id: ProductId,
        /// The inventory's rejection code.
        code: String,
    },
    /// Every line is reserved; the order is priced and the user charged.
    Priced {
        /// Lines with their unit prices.
        lines: Vec<PricedLine>,
        /// The total to charge.
        total: Cents,
        /// When pricing and charging time out.
        deadline: DateTime<Utc>,
    },
    /// The order accepted its price.
    OrderPriced,
    /// The user was charged.
    Charged {
        /// The amount.
        amount: Cents,
    },
    /// The user could not be charged.
    ChargeDeclined {
        /// The users service's rejection code.
        code: String,
    },
    /// Priced and paid: the order is being confirmed.
    ConfirmRequested {
        /// When the confirmation times out.
        deadline: DateTime<Utc>,
    },
    /// The order is confirmed; the reserved stock is being committed.
    OrderConfirmed {
        /// When the commits time out.
        deadline: DateTime<Utc>,
    },
    /// A line's stock is committed.
    LineCommitted {
        /// The product.
        product_id: ProductId,
    },
    /// Done: confirmed, committed, charged once.
    Completed,
    /// Compensation began; `steps` are the compensations issued.
    CompensationStarted {
        /// A reason code (a rejection code, `step_timeout`, `cancelled_by_user`).
        reason: String,
        /// The compensating commands sent.
        steps: Vec<SagaStep>,
        /// When the compensations time out.
        deadline: DateTime<Utc>,
    },
    /// A compensation was answered.
    CompensationDone {
        /// Which.
        step: SagaStep,
    },
    /// A forward reply arrived after compensation began and was undone too.
    LateReplyCompensated {
        /// The forward step that answered late.
        late: SagaStep,
        /// The compensation sent for it.
        compensation: SagaStep,
    },
    /// The current step's deadline passed: its unanswered commands were sent
    /// again.
    StepRetried {
        /// The attempt now running (2 for the first retry).
        attempt: u32,
        /// The new deadline.
        deadline: DateTime<Utc>,
    },
    /// Done: cancelled, released, refunded.
    Aborted {
        /// The reason code.
        reason: String,
    },
    /// A compensation ran out of attempts.
    Stuck {
        /// Why.
        reason: String,
    },
    /// An operator asked a stuck saga to retry its compensations.
    RetryRequested {
        /// The new deadline.
        deadline: DateTime<Utc>,
    },
}

impl Versioned for SagaEvent {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "SagaEvent";
}

/// Why a saga command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SagaRejection {
    /// `unknown_saga`
    #[error("no such saga")]
    UnknownSaga,
    /// `already_started`
    #[error("saga already started")]
    AlreadyStarted,
    /// `not_stuck`
    #[error("only a stuck saga can be retried")]
    NotStuck,
    /// `empty_order`
    #[error("a saga needs at least one line")]
    EmptyOrder,
}

impl ReasonCode for SagaRejection {
    fn code(&self) -> &'static str {
        match self {
            SagaRejection::UnknownSaga => "unknown_saga",
            SagaRejection::AlreadyStarted => "already_started",
            SagaRejection::NotStuck => "not_stuck",
            SagaRejection::EmptyOrder => "empty_order",
        }
    }
}

#[cfg(test)]
mod policy_tests {
    use super::SagaPolicy;

    #[test]
    fn waits_double_up_to_the_cap_and_then_stay() {
        let p = SagaPolicy {
            step_timeout_ms: 10,
            max_attempts: 6,
        };
        let waits: Vec<u64> = (1..=6).map(|a| p.wait_ms(a)).collect();
        assert_eq!(waits, [10, 20, 40, 40, 40, 40]);
        assert_eq!(p.budget_ms(), 190);
    }

    #[test]
    fn a_budget_buys_the_fewest_attempts_that_cover_it() {
        for (timeout, budget, attempts) in [
            (10_000, 90_000, 4),
            (10_000, 70_000, 3),
            (10_000, 70_001, 4),
            (10_000, 1, 1),
            (1_000, 60_000, 17),
        ] {
            let p = SagaPolicy::with_budget(timeout, budget);
            assert_eq!(
                p.max_attempts, attempts,
                "{timeout} ms steps, {budget} ms budget"
            );
            assert!(p.budget_ms() >= budget);
        }
    }

    #[test]
    fn the_default_rides_out_a_minute_of_outage() {
        assert!(SagaPolicy::default().budget_ms() >= 60_000);
    }

    #[test]
    fn huge_budgets_saturate() {
        let p = SagaPolicy::with_budget(1, u64::MAX);
        assert_eq!(p.max_attempts, u32::MAX);
        assert_eq!(
            SagaPolicy {
                step_timeout_ms: u64::MAX,
                max_attempts: u32::MAX
            }
            .budget_ms(),
            u64::MAX
        );
    }
}
