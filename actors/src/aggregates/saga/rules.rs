//! The saga's rules: what each input leads to, as events. Pure: time comes
//! only from the inputs' `now`.

use super::*;

impl Saga {
    /// The state after `events`, to decide what they lead to.
    pub(super) fn after(&self, events: &[SagaEvent]) -> Saga {
        let mut next = self.clone();
        for event in events {
            next.apply(event);
        }
        next
    }

    /// The step a command id belongs to, among every step this saga can send.
    pub(super) fn step_of(&self, command_id: CommandId) -> Option<SagaStep> {
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
    pub(super) fn deadline_for(
        policy: SagaPolicy,
        now: DateTime<Utc>,
        attempt: u32,
    ) -> DateTime<Utc> {
        let millis = i64::try_from(policy.wait_ms(attempt)).unwrap_or(i64::MAX);
        let delta = TimeDelta::try_milliseconds(millis).unwrap_or(TimeDelta::MAX);
        now.checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Enters `phase` with a fresh attempt budget.
    pub(super) fn enter(&mut self, phase: SagaPhase, deadline: DateTime<Utc>) {
        self.phase = phase;
        self.attempt = 1;
        self.deadline = Some(deadline);
    }

    pub(super) fn first_deadline(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        Self::deadline_for(self.policy, now, 1)
    }

    /// Release every line.
    pub(super) fn release_all(&self) -> impl Iterator<Item = SagaStep> {
        self.products().into_iter().map(SagaStep::Release)
    }

    /// Return every line.
    pub(super) fn return_all(&self) -> impl Iterator<Item = SagaStep> {
        self.products().into_iter().map(SagaStep::Return)
    }

    pub(super) fn compensate(
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
    pub(super) fn reserving_compensation(&self) -> Vec<SagaStep> {
        self.release_all()
            .chain([SagaStep::Cancel])
            .collect::<Vec<_>>()
    }

    /// Compensation of a paying or confirming step that failed: release,
    /// refund (a charge may be on its way), cancel.
    pub(super) fn paying_compensation(&self) -> Vec<SagaStep> {
        self.release_all()
            .chain([SagaStep::Refund, SagaStep::Cancel])
            .collect()
    }

    /// Compensation of a confirmed order the user cancelled: refund, return.
    pub(super) fn confirmed_compensation(&self) -> Vec<SagaStep> {
        std::iter::once(SagaStep::Refund)
            .chain(self.return_all())
            .collect()
    }

    pub(super) fn decide_start(
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

    pub(super) fn decide_reply(&self, reply: &Reply, now: DateTime<Utc>) -> Vec<SagaEvent> {
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

    pub(super) fn reply_reserving(
        &self,
        step: SagaStep,
        reply: &Reply,
        now: DateTime<Utc>,
    ) -> Vec<SagaEvent> {
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

    pub(super) fn reply_paying(
        &self,
        step: SagaStep,
        reply: &Reply,
        now: DateTime<Utc>,
    ) -> Vec<SagaEvent> {
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

    pub(super) fn reply_confirming(
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

    pub(super) fn reply_committing(&self, step: SagaStep, outcome: &Outcome) -> Vec<SagaEvent> {
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

    pub(super) fn reply_compensating(&self, step: SagaStep, reply: &Reply) -> Vec<SagaEvent> {
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
    pub(super) fn late_reply(&self, step: SagaStep, reply: &Reply) -> Vec<SagaEvent> {
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

    pub(super) fn decide_order_cancelled(
        &self,
        previous: OrderStatus,
        now: DateTime<Utc>,
    ) -> Vec<SagaEvent> {
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

    pub(super) fn decide_tick(&self, now: DateTime<Utc>) -> Vec<SagaEvent> {
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
    pub(super) fn cancel_reason(&self) -> String {
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
}
