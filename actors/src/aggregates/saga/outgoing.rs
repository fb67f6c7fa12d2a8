//! The commands a saga sends, as typed [`Outgoing`] commands: each step's
//! command to its aggregate, with a deterministic id and the saga as
//! correlation id. The service layer addresses and encodes them.

use super::*;

impl Saga {
    /// The command that sends `step`; `None` before start.
    pub(super) fn outgoing(&self, step: SagaStep) -> Option<Outgoing> {
        let saga_id = self.saga_id?;
        let order_id = self.order_id?;
        let user_id = self.user_id?;
        let command = match step {
            SagaStep::Reserve(product_id) => {
                let quantity = self
                    .lines
                    .iter()
                    .find(|line| line.product_id == product_id)?
                    .quantity;
                OutgoingCommand::Inventory(InventoryCommand::Reserve {
                    product_id,
                    order_id,
                    quantity,
                })
            }
            SagaStep::Commit(product_id) => OutgoingCommand::Inventory(InventoryCommand::Commit {
                product_id,
                order_id,
            }),
            SagaStep::Release(product_id) | SagaStep::ReleaseLate(product_id) => {
                OutgoingCommand::Inventory(InventoryCommand::Release {
                    product_id,
                    order_id,
                })
            }
            SagaStep::Return(product_id) => OutgoingCommand::Inventory(InventoryCommand::Return {
                product_id,
                order_id,
            }),
            SagaStep::Price => OutgoingCommand::Order(OrderCommand::Price {
                order_id,
                lines: self.priced_lines.clone(),
            }),
            SagaStep::Confirm => OutgoingCommand::Order(OrderCommand::Confirm { order_id }),
            SagaStep::Cancel => OutgoingCommand::Order(OrderCommand::Cancel {
                order_id,
                reason: self.cancel_reason(),
            }),
            SagaStep::Charge => OutgoingCommand::User(UserCommand::Charge {
                user_id,
                order_id,
                amount: self.total.unwrap_or(Cents::ZERO),
            }),
            SagaStep::Refund | SagaStep::RefundLate => {
                OutgoingCommand::User(UserCommand::Refund { user_id, order_id })
            }
        };
        Some(Outgoing {
            command_id: saga_command_id(saga_id, &step),
            correlation_id: CorrelationId::from_uuid(saga_id.as_uuid()),
            command,
        })
    }
}
