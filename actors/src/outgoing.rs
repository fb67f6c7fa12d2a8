//! Commands one aggregate sends to another, as the domain sees them: what to
//! ask, of which aggregate, with the ids that make the request idempotent and
//! traceable. No topic, no bytes, no clock: the service layer addresses and
//! encodes them ([`crate::service::outbox_record`]) and stamps the time.

use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::OrderCommand;
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserCommand;
use ordersaga_events::{CommandId, CorrelationId};
use uuid::Uuid;

/// A command for another aggregate, decided together with the events that
/// cause it (and so written to the outbox in the same transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Deterministic, so a re-sent command is recognised as the same one.
    pub command_id: CommandId,
    /// The conversation it belongs to (for the saga: the saga id); replies
    /// carry it back.
    pub correlation_id: CorrelationId,
    /// The command.
    pub command: OutgoingCommand,
}

/// A command and the service whose aggregate it addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutgoingCommand {
    /// For a user.
    User(UserCommand),
    /// For a product.
    Inventory(InventoryCommand),
    /// For an order.
    Order(OrderCommand),
}

impl OutgoingCommand {
    /// The service that owns the addressed aggregate.
    pub fn service(&self) -> Service {
        match self {
            OutgoingCommand::User(_) => Service::Users,
            OutgoingCommand::Inventory(_) => Service::Inventory,
            OutgoingCommand::Order(_) => Service::Orders,
        }
    }

    /// The id of the addressed aggregate.
    pub fn aggregate_id(&self) -> Uuid {
        match self {
            OutgoingCommand::User(command) => command.user_id().as_uuid(),
            OutgoingCommand::Inventory(command) => command.product_id().as_uuid(),
            OutgoingCommand::Order(command) => command.order_id().as_uuid(),
        }
    }
}
