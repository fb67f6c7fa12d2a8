//! The commands a saga sends, as outbox records: each step's command to its
//! service, with a deterministic id, the saga as correlation id, and replies
//! to the saga's reply topic.

use super::*;

impl Saga {
    /// The outbox record that sends `step`; `None` before start or when it
    /// cannot be encoded (logged).
    pub(super) fn outbox_record(&self, step: SagaStep) -> Option<OutboxRecord> {
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
