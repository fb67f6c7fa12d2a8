//! The order saga as a pure aggregate: one per order, in the orders service.
//!
//! It reserves every line, prices the order from the reservations and charges
//! the user, confirms the order and commits the stock. A rejection or an
//! exhausted timeout compensates: release, refund, cancel. Every rule lives in
//! [`Saga::decide`]; time comes only from the commands' `now`. The commands the
//! saga sends leave through [`Aggregate::commands`], written to the outbox in
//! the same transaction as the events that cause them.
//!
//! This file holds the state and how events change it; `rules.rs` what each
//! input leads to; `outgoing.rs` the commands the saga sends.
//!
//! Delivery assumptions (those of Kafka): commands for one aggregate are
//! handled in the order they were sent (one partition per key), every command
//! is idempotent by its deterministic id ([`saga_command_id`]), and replies may
//! arrive late, twice or out of order. Compensations are therefore sent after
//! the forward commands they undo on the same partition, and any business
//! answer to a compensation counts as done: a rejection means there is nothing
//! left to undo.

use crate::aggregate::Aggregate;
use crate::outgoing::{Outgoing, OutgoingCommand};
use chrono::{DateTime, TimeDelta, Utc};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine, OrderStatus, PricedLine};
use ordersaga_events::saga::{
    saga_command_id, saga_of, SagaCommand, SagaEvent, SagaPhase, SagaPolicy, SagaRejection,
    SagaStep,
};
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserCommand;
use ordersaga_events::{
    Cents, CommandId, CommandResult, CorrelationId, OrderId, Outcome, ProductId, Reply, SagaId,
    StreamKind, UserId,
};
use serde::{Deserialize, Serialize};

mod outgoing;
mod rules;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Reason of a compensation the user caused by cancelling the order.
const CANCELLED_BY_USER: &str = "cancelled_by_user";
/// Reason of a compensation after a forward step ran out of attempts.
const STEP_TIMEOUT: &str = "step_timeout";
/// Stuck reason: the commits ran out of attempts.
const COMMIT_TIMEOUT: &str = "commit_timeout";
/// Stuck reason: the compensations ran out of attempts.
const COMPENSATION_TIMEOUT: &str = "compensation_timeout";
/// Reservation code when an accepted reservation reply carries no result.
const MISSING_RESULT: &str = "missing_result";
/// Compensation reason when the priced total overflows.
const AMOUNT_OVERFLOW: &str = "amount_overflow";

/// Longest cancellation reason the order accepts.
const MAX_CANCEL_REASON_CHARS: usize = 200;
/// Cancellation reason used when the saga has none that the order accepts.
const FALLBACK_CANCEL_REASON: &str = "saga_aborted";

/// Where one line's reservation is, as far as the saga knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineReservation {
    /// Asked for; no answer recorded yet.
    Pending,
    /// Held by the inventory.
    Reserved {
        /// Units held.
        quantity: u64,
        /// Price of one unit at reservation time.
        unit_price: Cents,
    },
    /// Refused by the inventory.
    Rejected {
        /// The inventory's rejection code.
        code: String,
    },
}

/// One order saga.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    // `Option`s: the id types' `Default` is random.
    saga_id: Option<SagaId>,
    order_id: Option<OrderId>,
    user_id: Option<UserId>,
    phase: SagaPhase,
    policy: SagaPolicy,
    lines: Vec<OrderLine>,
    reservations: BTreeMap<ProductId, LineReservation>,
    /// The code of the first line rejection, in the order they arrived.
    first_rejection: Option<String>,
    priced_lines: Vec<PricedLine>,
    total: Option<Cents>,
    order_priced: bool,
    charged: Option<Cents>,
    charge_declined: Option<String>,
    order_confirmed: bool,
    committed: BTreeSet<ProductId>,
    /// Why the saga compensates (and, once aborted, why it aborted).
    reason: Option<String>,
    /// The compensations issued by `CompensationStarted`, in order.
    compensations: Vec<SagaStep>,
    /// Compensations answered, the late ones included.
    compensations_done: BTreeSet<SagaStep>,
    /// Forward steps whose accepted reply arrived after compensation began
    /// and were undone by a late compensation.
    late_replies: BTreeSet<SagaStep>,
    /// The late compensations sent (`ReleaseLate`, `RefundLate`).
    late_compensations: BTreeSet<SagaStep>,
    stuck_reason: Option<String>,
    /// The phase a stuck saga returns to on retry.
    stuck_in: Option<SagaPhase>,
    attempt: u32,
    deadline: Option<DateTime<Utc>>,
}

impl Saga {
    /// The saga's id (its order's saga id), once started.
    pub fn saga_id(&self) -> Option<SagaId> {
        self.saga_id
    }

    /// Where the saga is.
    pub fn phase(&self) -> SagaPhase {
        self.phase
    }

    /// The order, once started.
    pub fn order_id(&self) -> Option<OrderId> {
        self.order_id
    }

    /// Who ordered, once started.
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }

    /// The order's lines, as the saga was started with.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// Every line's reservation, by product.
    pub fn reservations(&self) -> &BTreeMap<ProductId, LineReservation> {
        &self.reservations
    }

    /// The reservation of one product, if it is one of the lines.
    pub fn reservation(&self, product_id: ProductId) -> Option<&LineReservation> {
        self.reservations.get(&product_id)
    }

    /// The lines with the unit prices they were reserved at; empty until
    /// priced.
    pub fn priced_lines(&self) -> &[PricedLine] {
        &self.priced_lines
    }

    /// The total to charge; `None` until priced.
    pub fn total(&self) -> Option<Cents> {
        self.total
    }

    /// Whether the order accepted its price.
    pub fn is_order_priced(&self) -> bool {
        self.order_priced
    }

    /// The amount the user was charged, once the charge was accepted (not
    /// counting a late charge, which is refunded).
    pub fn charged(&self) -> Option<Cents> {
        self.charged
    }

    /// The users service's code when it declined the charge.
    pub fn charge_declined(&self) -> Option<&str> {
        self.charge_declined.as_deref()
    }

    /// Whether the order accepted its confirmation.
    pub fn is_order_confirmed(&self) -> bool {
        self.order_confirmed
    }

    /// The products whose stock is committed.
    pub fn committed(&self) -> &BTreeSet<ProductId> {
        &self.committed
    }

    /// Why the saga compensates or aborted; `None` before any compensation.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Why the saga is (or last was) stuck.
    pub fn stuck_reason(&self) -> Option<&str> {
        self.stuck_reason.as_deref()
    }

    /// The compensations issued when compensation began, in order.
    pub fn compensations(&self) -> &[SagaStep] {
        &self.compensations
    }

    /// The compensations answered so far (late ones included).
    pub fn compensations_done(&self) -> &BTreeSet<SagaStep> {
        &self.compensations_done
    }

    /// Forward steps that were accepted after compensation began, each undone
    /// by a late compensation.
    pub fn late_replies(&self) -> &BTreeSet<SagaStep> {
        &self.late_replies
    }

    /// The late compensations sent (`ReleaseLate`, `RefundLate`).
    pub fn late_compensations(&self) -> &BTreeSet<SagaStep> {
        &self.late_compensations
    }

    /// The attempt of the current phase: 1 for the first send, 2 after the
    /// first retry.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the current phase's attempt times out; `None` before start.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }

    /// Timeouts and retries, fixed at start.
    pub fn policy(&self) -> SagaPolicy {
        self.policy
    }

    /// Completed or Aborted.
    pub fn is_terminal(&self) -> bool {
        self.phase.is_terminal()
    }

    /// The steps of the current phase still waiting for a reply; these are
    /// what a retry resends. For a stuck saga, the steps a retry would resend.
    /// Late compensations are sent once and never waited for.
    pub fn outstanding(&self) -> Vec<SagaStep> {
        match self.phase {
            SagaPhase::Reserving => self
                .products()
                .into_iter()
                .filter(|p| matches!(self.reservations.get(p), Some(LineReservation::Pending)))
                .map(SagaStep::Reserve)
                .collect(),
            SagaPhase::Paying => {
                let mut steps = Vec::new();
                if !self.order_priced {
                    steps.push(SagaStep::Price);
                }
                if self.charged.is_none() && self.charge_declined.is_none() {
                    steps.push(SagaStep::Charge);
                }
                steps
            }
            SagaPhase::Confirming if !self.order_confirmed => vec![SagaStep::Confirm],
            SagaPhase::Committing => self.pending_commits(),
            SagaPhase::Compensating => self.pending_compensations(),
            SagaPhase::Stuck if self.stuck_in == Some(SagaPhase::Committing) => {
                self.pending_commits()
            }
            SagaPhase::Stuck => self.pending_compensations(),
            _ => Vec::new(),
        }
    }

    /// The lines' products, each once, in line order.
    fn products(&self) -> Vec<ProductId> {
        let mut seen = BTreeSet::new();
        self.lines
            .iter()
            .map(|line| line.product_id)
            .filter(|p| seen.insert(*p))
            .collect()
    }

    fn pending_commits(&self) -> Vec<SagaStep> {
        self.products()
            .into_iter()
            .filter(|p| !self.committed.contains(p))
            .map(SagaStep::Commit)
            .collect()
    }

    fn pending_compensations(&self) -> Vec<SagaStep> {
        self.compensations
            .iter()
            .filter(|step| !self.compensations_done.contains(step))
            .copied()
            .collect()
    }

    fn all_reservations_answered(&self) -> bool {
        self.reservations
            .values()
            .all(|r| !matches!(r, LineReservation::Pending))
    }

    fn all_committed(&self) -> bool {
        self.products().iter().all(|p| self.committed.contains(p))
    }
}

impl Aggregate for Saga {
    type Command = SagaCommand;
    type Event = SagaEvent;
    type Rejection = SagaRejection;

    const KIND: StreamKind = StreamKind::Saga;
    const SERVICE: Service = Service::Orders;
    const SENDS_COMMANDS: bool = true;
    const WAKES: bool = true;

    /// A saga waiting for replies wants its deadline; a finished or stuck
    /// one (which only an operator or a late reply moves) wants nothing.
    fn wake_at(&self) -> Option<i64> {
        if self.is_terminal() || self.phase == SagaPhase::Stuck {
            return None;
        }
        self.deadline.map(|d| d.timestamp_millis())
    }

    fn aggregate_id(command: &SagaCommand) -> Uuid {
        command.saga_id().as_uuid()
    }

    fn decide(&self, command: &SagaCommand) -> Result<Vec<SagaEvent>, SagaRejection> {
        if let SagaCommand::Start {
            saga_id,
            order_id,
            user_id,
            lines,
            policy,
            now,
        } = command
        {
            return self.decide_start(*saga_id, *order_id, *user_id, lines, *policy, *now);
        }
        if self.phase == SagaPhase::NotStarted || self.saga_id != Some(command.saga_id()) {
            return Err(SagaRejection::UnknownSaga);
        }
        match command {
            SagaCommand::Reply { reply, now, .. } => Ok(self.decide_reply(reply, *now)),
            SagaCommand::OrderCancelled { previous, now, .. } => {
                Ok(self.decide_order_cancelled(*previous, *now))
            }
            SagaCommand::Tick { now, .. } => Ok(self.decide_tick(*now)),
            SagaCommand::Retry { now, .. } => {
                if self.phase != SagaPhase::Stuck {
                    return Err(SagaRejection::NotStuck);
                }
                Ok(vec![SagaEvent::RetryRequested {
                    deadline: self.first_deadline(*now),
                }])
            }
            SagaCommand::Start { .. } => Err(SagaRejection::AlreadyStarted),
        }
    }

    fn apply(&mut self, event: &SagaEvent) {
        // `decide` only emits legal moves; the guards here only keep replay of
        // a damaged stream from moving a finished saga or panicking.
        match event {
            SagaEvent::Started {
                order_id,
                user_id,
                lines,
                policy,
                deadline,
            } => {
                if self.phase == SagaPhase::NotStarted {
                    self.saga_id = Some(saga_of(*order_id));
                    self.order_id = Some(*order_id);
                    self.user_id = Some(*user_id);
                    self.lines.clone_from(lines);
                    self.policy = *policy;
                    self.reservations = lines
                        .iter()
                        .map(|line| (line.product_id, LineReservation::Pending))
                        .collect();
                    self.enter(SagaPhase::Reserving, *deadline);
                }
            }
            SagaEvent::LineReserved {
                product_id,
                quantity,
                unit_price,
            } => {
                self.reservations.insert(
                    *product_id,
                    LineReservation::Reserved {
                        quantity: *quantity,
                        unit_price: *unit_price,
                    },
                );
            }
            SagaEvent::LineRejected { product_id, code } => {
                self.reservations.insert(
                    *product_id,
                    LineReservation::Rejected { code: code.clone() },
                );
                if self.first_rejection.is_none() {
                    self.first_rejection = Some(code.clone());
                }
            }
            SagaEvent::Priced {
                lines,
                total,
                deadline,
            } => {
                self.priced_lines.clone_from(lines);
                self.total = Some(*total);
                self.enter(SagaPhase::Paying, *deadline);
            }
            SagaEvent::OrderPriced => self.order_priced = true,
            SagaEvent::Charged { amount } => self.charged = Some(*amount),
            SagaEvent::ChargeDeclined { code } => self.charge_declined = Some(code.clone()),
            SagaEvent::ConfirmRequested { deadline } => {
                self.enter(SagaPhase::Confirming, *deadline);
            }
            SagaEvent::OrderConfirmed { deadline } => {
                self.order_confirmed = true;
                self.enter(SagaPhase::Committing, *deadline);
            }
            SagaEvent::LineCommitted { product_id } => {
                self.committed.insert(*product_id);
            }
            SagaEvent::Completed => {
                self.phase = SagaPhase::Completed;
                self.stuck_in = None;
            }
            SagaEvent::CompensationStarted {
                reason,
                steps,
                deadline,
            } => {
                if self.phase != SagaPhase::Aborted {
                    self.reason = Some(reason.clone());
                    self.compensations.clone_from(steps);
                    self.stuck_in = None;
                    self.enter(SagaPhase::Compensating, *deadline);
                }
            }
            SagaEvent::CompensationDone { step } => {
                self.compensations_done.insert(*step);
            }
            SagaEvent::LateReplyCompensated { late, compensation } => {
                self.late_replies.insert(*late);
                self.late_compensations.insert(*compensation);
            }
            SagaEvent::StepRetried { attempt, deadline } => {
                self.attempt = *attempt;
                self.deadline = Some(*deadline);
            }
            SagaEvent::Aborted { reason } => {
                self.phase = SagaPhase::Aborted;
                self.reason = Some(reason.clone());
                self.stuck_in = None;
            }
            SagaEvent::Stuck { reason } => {
                if !self.is_terminal() {
                    if self.phase != SagaPhase::Stuck {
                        self.stuck_in = Some(self.phase);
                    }
                    self.phase = SagaPhase::Stuck;
                    self.stuck_reason = Some(reason.clone());
                }
            }
            SagaEvent::RetryRequested { deadline } => {
                if self.phase == SagaPhase::Stuck {
                    let back = match self.stuck_in.take() {
                        Some(SagaPhase::Committing) => SagaPhase::Committing,
                        _ => SagaPhase::Compensating,
                    };
                    self.enter(back, *deadline);
                }
            }
        }
    }

    fn commands(before: &Saga, after: &Saga, events: &[SagaEvent]) -> Vec<Outgoing> {
        let resend = events.iter().any(|event| {
            matches!(
                event,
                SagaEvent::StepRetried { .. } | SagaEvent::RetryRequested { .. }
            )
        });
        // Getting stuck sends nothing: it waits for an operator.
        let entered = before.phase != after.phase && after.phase != SagaPhase::Stuck;
        let mut steps = if resend || entered {
            after.outstanding()
        } else {
            Vec::new()
        };
        steps.extend(events.iter().filter_map(|event| match event {
            SagaEvent::LateReplyCompensated { compensation, .. } => Some(*compensation),
            _ => None,
        }));
        steps
            .into_iter()
            .filter_map(|step| after.outgoing(step))
            .collect()
    }
}
