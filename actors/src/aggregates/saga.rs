//! The order saga as a pure aggregate: one per order, in the orders service.
//!
//! It reserves every line, prices the order from the reservations and charges
//! the user, confirms the order and commits the stock. A rejection or an
//! exhausted timeout compensates: release, refund, cancel. Every rule lives in
//! [`Saga::decide`]; time comes only from the commands' `now`. The commands the
//! saga sends leave through [`Aggregate::commands`], written to the outbox in
//! the same transaction as the events that cause them.
//!
//! Delivery assumptions (those of Kafka): commands for one aggregate are
//! handled in the order they were sent (one partition per key), every command
//! is idempotent by its deterministic id ([`saga_command_id`]), and replies may
//! arrive late, twice or out of order. Compensations are therefore sent after
//! the forward commands they undo on the same partition, and any business
//! answer to a compensation counts as done: a rejection means there is nothing
//! left to undo.

use crate::aggregate::Aggregate;
use crate::journal::OutboxRecord;
use chrono::{DateTime, TimeDelta, Utc};
use ordersaga_events::codec::{self, CodecError, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine, OrderStatus, PricedLine};
use ordersaga_events::saga::{
    saga_command_id, saga_of, SagaCommand, SagaEvent, SagaPhase, SagaPolicy, SagaRejection,
    SagaStep,
};
use ordersaga_events::topics::{header, Service, SAGA_REPLIES};
use ordersaga_events::user::UserCommand;
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, CommandResult, CorrelationId, OrderId, Outcome, ProductId,
    Reply, SagaId, StreamKind, UserId,
};
use serde::{Deserialize, Serialize};
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

    /// The state after `events`, to decide what they lead to.
    fn after(&self, events: &[SagaEvent]) -> Saga {
        let mut next = self.clone();
        for event in events {
            next.apply(event);
        }
        next
    }

    /// The step a command id belongs to, among every step this saga can send.
    fn step_of(&self, command_id: CommandId) -> Option<SagaStep> {
        let saga_id = self.saga_id?;
        let fixed = [
            SagaStep::Price,
            SagaStep::Charge,
            SagaStep::Confirm,
            SagaStep::Refund,
            SagaStep::Cancel,
            SagaStep::RefundLate,
        ];
        let per_line = self.products().into_iter().flat_map(|p| {
            [
                SagaStep::Reserve(p),
                SagaStep::Commit(p),
                SagaStep::Release(p),
                SagaStep::Return(p),
                SagaStep::ReleaseLate(p),
            ]
        });
        fixed
            .into_iter()
            .chain(per_line)
            .find(|step| saga_command_id(saga_id, step) == command_id)
    }

    /// The deadline of attempt `attempt` started at `now`: `now` plus the
    /// policy's wait for that attempt, saturating.
    fn deadline_for(policy: SagaPolicy, now: DateTime<Utc>, attempt: u32) -> DateTime<Utc> {
        let millis = i64::try_from(policy.wait_ms(attempt)).unwrap_or(i64::MAX);
        let delta = TimeDelta::try_milliseconds(millis).unwrap_or(TimeDelta::MAX);
        now.checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Enters `phase` with a fresh attempt budget.
    fn enter(&mut self, phase: SagaPhase, deadline: DateTime<Utc>) {
        self.phase = phase;
        self.attempt = 1;
        self.deadline = Some(deadline);
    }

    fn first_deadline(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        Self::deadline_for(self.policy, now, 1)
    }

    /// Release every line.
    fn release_all(&self) -> impl Iterator<Item = SagaStep> {
        self.products().into_iter().map(SagaStep::Release)
    }

    /// Return every line.
    fn return_all(&self) -> impl Iterator<Item = SagaStep> {
        self.products().into_iter().map(SagaStep::Return)
    }

    fn compensate(
        &self,
        reason: impl Into<String>,
        steps: Vec<SagaStep>,
        now: DateTime<Utc>,
    ) -> SagaEvent {
        SagaEvent::CompensationStarted {
            reason: reason.into(),
            steps,
            deadline: self.first_deadline(now),
        }
    }

    /// Compensation of a reservation step that failed: release, cancel.
    fn reserving_compensation(&self) -> Vec<SagaStep> {
        self.release_all()
            .chain([SagaStep::Cancel])
            .collect::<Vec<_>>()
    }

    /// Compensation of a paying or confirming step that failed: release,
    /// refund (a charge may be on its way), cancel.
    fn paying_compensation(&self) -> Vec<SagaStep> {
        self.release_all()
            .chain([SagaStep::Refund, SagaStep::Cancel])
            .collect()
    }

    /// Compensation of a confirmed order the user cancelled: refund, return.
    fn confirmed_compensation(&self) -> Vec<SagaStep> {
        std::iter::once(SagaStep::Refund)
            .chain(self.return_all())
            .collect()
    }

    fn decide_start(
        &self,
        saga_id: SagaId,
        order_id: OrderId,
        user_id: UserId,
        lines: &[OrderLine],
        policy: SagaPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<SagaEvent>, SagaRejection> {
        if self.phase != SagaPhase::NotStarted {
            return Err(SagaRejection::AlreadyStarted);
        }
        // The `Started` event does not carry the saga id: the state derives
        // it from the order, so any other id names no saga.
        if saga_id != saga_of(order_id) {
            return Err(SagaRejection::UnknownSaga);
        }
        if lines.is_empty() {
            return Err(SagaRejection::EmptyOrder);
        }
        Ok(vec![SagaEvent::Started {
            order_id,
            user_id,
            lines: lines.to_vec(),
            policy,
            deadline: Self::deadline_for(policy, now, 1),
        }])
    }

    fn decide_reply(&self, reply: &Reply, now: DateTime<Utc>) -> Vec<SagaEvent> {
        let Some(step) = self.step_of(reply.command_id) else {
            return Vec::new();
        };
        match self.phase {
            SagaPhase::Reserving => self.reply_reserving(step, reply, now),
            SagaPhase::Paying => self.reply_paying(step, reply, now),
            SagaPhase::Confirming => self.reply_confirming(step, &reply.outcome, now),
            SagaPhase::Committing => self.reply_committing(step, &reply.outcome),
            SagaPhase::Stuck if self.stuck_in == Some(SagaPhase::Committing) => {
                self.reply_committing(step, &reply.outcome)
            }
            SagaPhase::Compensating | SagaPhase::Stuck => self.reply_compensating(step, reply),
            SagaPhase::Aborted => self.late_reply(step, reply),
            SagaPhase::NotStarted | SagaPhase::Completed => Vec::new(),
        }
    }

    fn reply_reserving(&self, step: SagaStep, reply: &Reply, now: DateTime<Utc>) -> Vec<SagaEvent> {
        let SagaStep::Reserve(product_id) = step else {
            return Vec::new();
        };
        if !matches!(
            self.reservations.get(&product_id),
            Some(LineReservation::Pending)
        ) {
            return Vec::new();
        }
        let answer = match (&reply.outcome, &reply.result) {
            (
                Outcome::Accepted { .. },
                Some(CommandResult::Reserved {
                    quantity,
                    unit_price,
                }),
            ) => SagaEvent::LineReserved {
                product_id,
                quantity: *quantity,
                unit_price: *unit_price,
            },
            (Outcome::Accepted { .. }, _) => SagaEvent::LineRejected {
                product_id,
                code: MISSING_RESULT.to_owned(),
            },
            (Outcome::Rejected(rejection), _) => SagaEvent::LineRejected {
                product_id,
                code: rejection.code.clone(),
            },
        };
        let mut events = vec![answer];
        let next = self.after(&events);
        if !next.all_reservations_answered() {
            return events;
        }
        if let Some(code) = next.first_rejection.clone() {
            events.push(self.compensate(code, self.reserving_compensation(), now));
            return events;
        }
        let mut lines = Vec::new();
        for product_id in self.products() {
            if let Some(LineReservation::Reserved {
                quantity,
                unit_price,
            }) = next.reservations.get(&product_id)
            {
                lines.push(PricedLine {
                    product_id,
                    quantity: *quantity,
                    unit_price: *unit_price,
                });
            }
        }
        let total = lines.iter().try_fold(Cents::ZERO, |sum, line| {
            line.unit_price
                .checked_mul(line.quantity)
                .and_then(|amount| sum.checked_add(amount))
        });
        match total {
            Some(total) => events.push(SagaEvent::Priced {
                lines,
                total,
                deadline: self.first_deadline(now),
            }),
            None => {
                events.push(self.compensate(AMOUNT_OVERFLOW, self.reserving_compensation(), now))
            }
        }
        events
    }

    fn reply_paying(&self, step: SagaStep, reply: &Reply, now: DateTime<Utc>) -> Vec<SagaEvent> {
        match (step, &reply.outcome) {
            (SagaStep::Price, _) if self.order_priced => Vec::new(),
            (SagaStep::Price, Outcome::Accepted { .. }) => {
                let mut events = vec![SagaEvent::OrderPriced];
                if self.charged.is_some() {
                    events.push(SagaEvent::ConfirmRequested {
                        deadline: self.first_deadline(now),
                    });
                }
                events
            }
            (SagaStep::Price, Outcome::Rejected(rejection)) => vec![self.compensate(
                format!("order_{}", rejection.code),
                self.paying_compensation(),
                now,
            )],
            (SagaStep::Charge, _) if self.charged.is_some() || self.charge_declined.is_some() => {
                Vec::new()
            }
            (SagaStep::Charge, Outcome::Accepted { .. }) => {
                let amount = match reply.result {
                    Some(CommandResult::Charged { amount }) => amount,
                    _ => self.total.unwrap_or(Cents::ZERO),
                };
                let mut events = vec![SagaEvent::Charged { amount }];
                if self.order_priced {
                    events.push(SagaEvent::ConfirmRequested {
                        deadline: self.first_deadline(now),
                    });
                }
                events
            }
            (SagaStep::Charge, Outcome::Rejected(rejection)) => vec![
                SagaEvent::ChargeDeclined {
                    code: rejection.code.clone(),
                },
                // Nothing was charged, and this charge can never succeed later:
                // a resend has the same id and gets this same answer.
                self.compensate(rejection.code.clone(), self.reserving_compensation(), now),
            ],
            _ => Vec::new(),
        }
    }

    fn reply_confirming(
        &self,
        step: SagaStep,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Vec<SagaEvent> {
        if step != SagaStep::Confirm || self.order_confirmed {
            return Vec::new();
        }
        match outcome {
            Outcome::Accepted { .. } => vec![SagaEvent::OrderConfirmed {
                deadline: self.first_deadline(now),
            }],
            // For example: the user cancelled the pending order meanwhile.
            // The cancel is harmless if the order is already cancelled.
            Outcome::Rejected(rejection) => vec![self.compensate(
                format!("order_{}", rejection.code),
                self.paying_compensation(),
                now,
            )],
        }
    }

    fn reply_committing(&self, step: SagaStep, outcome: &Outcome) -> Vec<SagaEvent> {
        let SagaStep::Commit(product_id) = step else {
            return Vec::new();
        };
        if self.committed.contains(&product_id) {
            return Vec::new();
        }
        match outcome {
            Outcome::Accepted { .. } => {
                let mut events = vec![SagaEvent::LineCommitted { product_id }];
                if self.after(&events).all_committed() {
                    events.push(SagaEvent::Completed);
                }
                events
            }
            // Already stuck: the operator knows.
            Outcome::Rejected(_) if self.phase == SagaPhase::Stuck => Vec::new(),
            Outcome::Rejected(rejection) => vec![SagaEvent::Stuck {
                reason: format!("commit_{}", rejection.code),
            }],
        }
    }

    fn reply_compensating(&self, step: SagaStep, reply: &Reply) -> Vec<SagaEvent> {
        if self.compensations_done.contains(&step) {
            return Vec::new();
        }
        if self.compensations.contains(&step) {
            // Accepted or rejected: either way there is nothing more to undo.
            let mut events = vec![SagaEvent::CompensationDone { step }];
            if self.after(&events).pending_compensations().is_empty() {
                events.push(SagaEvent::Aborted {
                    reason: self.reason.clone().unwrap_or_default(),
                });
            }
            return events;
        }
        if self.late_compensations.contains(&step) {
            return vec![SagaEvent::CompensationDone { step }];
        }
        self.late_reply(step, reply)
    }

    /// A forward step accepted after compensation began: undo it too.
    fn late_reply(&self, step: SagaStep, reply: &Reply) -> Vec<SagaEvent> {
        if !reply.outcome.is_accepted() || self.late_replies.contains(&step) {
            return Vec::new();
        }
        let compensation = match step {
            SagaStep::Reserve(product_id)
                if matches!(
                    self.reservations.get(&product_id),
                    Some(LineReservation::Pending)
                ) =>
            {
                SagaStep::ReleaseLate(product_id)
            }
            SagaStep::Charge if self.charged.is_none() && self.charge_declined.is_none() => {
                SagaStep::RefundLate
            }
            // A late price or confirmation is undone by the cancel; a reply
            // already recorded is a duplicate.
            _ => return Vec::new(),
        };
        vec![SagaEvent::LateReplyCompensated {
            late: step,
            compensation,
        }]
    }

    fn decide_order_cancelled(&self, previous: OrderStatus, now: DateTime<Utc>) -> Vec<SagaEvent> {
        let stuck_committing =
            self.phase == SagaPhase::Stuck && self.stuck_in == Some(SagaPhase::Committing);
        let steps = match (self.phase, previous) {
            // Confirmed and (being) committed: give everything back. Commits
            // already sent go first on the same partitions, so the returns
            // find them committed.
            (SagaPhase::Completed | SagaPhase::Committing, OrderStatus::Confirmed) => {
                self.confirmed_compensation()
            }
            (SagaPhase::Stuck, OrderStatus::Confirmed) if stuck_committing => {
                self.confirmed_compensation()
            }
            // The order is already cancelled: no cancel.
            (SagaPhase::Reserving, OrderStatus::Pending) => self.release_all().collect(),
            (SagaPhase::Paying, OrderStatus::Pending) => {
                self.release_all().chain([SagaStep::Refund]).collect()
            }
            // Confirmed but its reply not seen yet: nothing is committed.
            (SagaPhase::Confirming, OrderStatus::Pending | OrderStatus::Confirmed) => {
                self.release_all().chain([SagaStep::Refund]).collect()
            }
            _ => return Vec::new(),
        };
        vec![self.compensate(CANCELLED_BY_USER, steps, now)]
    }

    fn decide_tick(&self, now: DateTime<Utc>) -> Vec<SagaEvent> {
        if self.is_terminal() || self.phase == SagaPhase::Stuck {
            return Vec::new();
        }
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return Vec::new(),
        }
        if self.attempt < self.policy.max_attempts {
            let attempt = self.attempt.saturating_add(1);
            return vec![SagaEvent::StepRetried {
                attempt,
                deadline: Self::deadline_for(self.policy, now, attempt),
            }];
        }
        match self.phase {
            SagaPhase::Reserving => {
                vec![self.compensate(STEP_TIMEOUT, self.reserving_compensation(), now)]
            }
            SagaPhase::Paying | SagaPhase::Confirming => {
                vec![self.compensate(STEP_TIMEOUT, self.paying_compensation(), now)]
            }
            SagaPhase::Committing => vec![SagaEvent::Stuck {
                reason: COMMIT_TIMEOUT.to_owned(),
            }],
            SagaPhase::Compensating => vec![SagaEvent::Stuck {
                reason: COMPENSATION_TIMEOUT.to_owned(),
            }],
            _ => Vec::new(),
        }
    }

    /// The reason the cancel command carries: the saga's reason, trimmed to
    /// what the order accepts.
    fn cancel_reason(&self) -> String {
        let reason: String = self
            .reason
            .as_deref()
            .unwrap_or("")
            .trim()
            .chars()
            .take(MAX_CANCEL_REASON_CHARS)
            .collect();
        let reason = reason.trim();
        if reason.is_empty() {
            FALLBACK_CANCEL_REASON.to_owned()
        } else {
            reason.to_owned()
        }
    }

    /// The outbox record that sends `step`; `None` before start or when it
    /// cannot be encoded (logged).
    fn outbox_record(&self, step: SagaStep) -> Option<OutboxRecord> {
        let saga_id = self.saga_id?;
        let order_id = self.order_id?;
        let user_id = self.user_id?;
        let encoded = match step {
            SagaStep::Reserve(product_id) => {
                let quantity = self
                    .lines
                    .iter()
                    .find(|line| line.product_id == product_id)?
                    .quantity;
                let command = InventoryCommand::Reserve {
                    product_id,
                    order_id,
                    quantity,
                };
                (
                    Service::Inventory,
                    product_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Commit(product_id) => {
                let command = InventoryCommand::Commit {
                    product_id,
                    order_id,
                };
                (
                    Service::Inventory,
                    product_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Release(product_id) | SagaStep::ReleaseLate(product_id) => {
                let command = InventoryCommand::Release {
                    product_id,
                    order_id,
                };
                (
                    Service::Inventory,
                    product_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Return(product_id) => {
                let command = InventoryCommand::Return {
                    product_id,
                    order_id,
                };
                (
                    Service::Inventory,
                    product_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Price => {
                let command = OrderCommand::Price {
                    order_id,
                    lines: self.priced_lines.clone(),
                };
                (
                    Service::Orders,
                    order_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Confirm => {
                let command = OrderCommand::Confirm { order_id };
                (
                    Service::Orders,
                    order_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Cancel => {
                let command = OrderCommand::Cancel {
                    order_id,
                    reason: self.cancel_reason(),
                };
                (
                    Service::Orders,
                    order_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Charge => {
                let command = UserCommand::Charge {
                    user_id,
                    order_id,
                    amount: self.total.unwrap_or(Cents::ZERO),
                };
                (
                    Service::Users,
                    user_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
            SagaStep::Refund | SagaStep::RefundLate => {
                let command = UserCommand::Refund { user_id, order_id };
                (
                    Service::Users,
                    user_id.as_uuid(),
                    envelope(saga_id, step, command),
                )
            }
        };
        match encoded {
            (service, key, Ok(payload)) => Some(OutboxRecord {
                topic: service.commands_topic().to_owned(),
                key: key.to_string().into_bytes(),
                payload,
                headers: vec![(
                    header::CONTENT_TYPE.to_owned(),
                    Format::Bincode.content_type().as_bytes().to_vec(),
                )],
            }),
            (_, _, Err(error)) => {
                tracing::error!(
                    saga = %saga_id,
                    step = %step.label(),
                    cause = %error,
                    "cannot encode a saga command; not sent"
                );
                None
            }
        }
    }
}

/// A saga command in its envelope: deterministic id, the saga as correlation
/// id, replies to [`SAGA_REPLIES`].
fn envelope<C: Serialize>(
    saga_id: SagaId,
    step: SagaStep,
    command: C,
) -> Result<Vec<u8>, CodecError> {
    codec::encode(
        Format::Bincode,
        &CommandEnvelope {
            command_id: saga_command_id(saga_id, &step),
            correlation_id: CorrelationId::from_uuid(saga_id.as_uuid()),
            reply_to: Some(SAGA_REPLIES.into()),
            issued_at: Utc::now(),
            command,
        },
    )
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

    fn commands(before: &Saga, after: &Saga, events: &[SagaEvent]) -> Vec<OutboxRecord> {
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
            .filter_map(|step| after.outbox_record(step))
            .collect()
    }
}
