//! Topic and header names: the addresses of the contract.
//!
//! Records on command and event topics are keyed by the aggregate id (its UUID
//! string), so one aggregate stays in one partition, in order. Replies are keyed
//! by correlation id.

/// The three services that own aggregates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Service {
    /// Users: accounts and money.
    Users,
    /// Orders: orders and the order saga.
    Orders,
    /// Inventory: products and stock.
    Inventory,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 3] = [Service::Users, Service::Orders, Service::Inventory];

    /// The service name (`users`, `orders`, `inventory`).
    pub const fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Orders => "orders",
            Service::Inventory => "inventory",
        }
    }

    /// The topic this service consumes commands from.
    pub const fn commands_topic(self) -> &'static str {
        match self {
            Service::Users => USERS_COMMANDS,
            Service::Orders => ORDERS_COMMANDS,
            Service::Inventory => INVENTORY_COMMANDS,
        }
    }

    /// The topic this service publishes every persisted event to.
    pub const fn events_topic(self) -> &'static str {
        match self {
            Service::Users => USERS_EVENTS,
            Service::Orders => ORDERS_EVENTS,
            Service::Inventory => INVENTORY_EVENTS,
        }
    }
}

/// Commands for the users service.
pub const USERS_COMMANDS: &str = "users.commands";
/// Commands for the orders service.
pub const ORDERS_COMMANDS: &str = "orders.commands";
/// Commands for the inventory service.
pub const INVENTORY_COMMANDS: &str = "inventory.commands";
/// Every event the users service persists.
pub const USERS_EVENTS: &str = "users.events";
/// Every event the orders service persists (orders and sagas).
pub const ORDERS_EVENTS: &str = "orders.events";
/// Every event the inventory service persists.
pub const INVENTORY_EVENTS: &str = "inventory.events";
/// Commands for the order saga itself (operator retries of stuck sagas).
pub const SAGA_COMMANDS: &str = "orders.saga.commands";
/// Replies to the commands the order saga sends.
pub const SAGA_REPLIES: &str = "orders.saga.replies";
/// Records no service could decode or handle; the reason is in headers.
pub const DEADLETTER: &str = "ordersaga.deadletter";
/// Live service instances.
pub const HEARTBEATS: &str = "services.heartbeats";

/// Marks an outbox row that is delivered inside its own service instead of
/// being published: a command for an aggregate of the service that decided
/// it (the saga's price, confirm and cancel of its own order). The row keeps
/// the topic it would have had after this prefix. A colon is not allowed in
/// a Kafka topic name, so such a row can never be published by mistake.
pub const LOCAL_PREFIX: &str = "local:";

/// The outbox topic of a command delivered in process that would otherwise
/// go to `topic`.
pub fn local(topic: &str) -> String {
    format!("{LOCAL_PREFIX}{topic}")
}

/// The topic a row delivered in process stands for, or `None` for a row to
/// publish.
pub fn local_of(topic: &str) -> Option<&str> {
    topic.strip_prefix(LOCAL_PREFIX)
}

/// The topic that replies to the commands an aggregate of `kind` sends go
/// to. Only the order saga sends commands.
pub const fn replies_topic(kind: crate::StreamKind) -> Option<&'static str> {
    match kind {
        crate::StreamKind::Saga => Some(SAGA_REPLIES),
        _ => None,
    }
}

/// Kafka header names.
pub mod header {
    /// The payload encoding: [`crate::Format::content_type`].
    pub const CONTENT_TYPE: &str = "content-type";
    /// On event records: the event id, for consumers that drop duplicates
    /// without decoding the payload.
    pub const EVENT_ID: &str = "event-id";
    /// On event records: the stream, `kind:uuid` (e.g. `saga:…`), so that a
    /// consumer of a topic carrying several event types (`orders.events`
    /// carries order and saga events) knows the payload type before decoding.
    pub const STREAM: &str = "stream";
    /// On every record the services produce: the W3C trace context,
    /// `00-{trace id}-{parent id}-01`. The trace id is the correlation id
    /// (one order's saga and every command, reply and event it causes share
    /// it); the parent id is the first eight bytes of the command or event
    /// id the record carries.
    pub const TRACEPARENT: &str = "traceparent";
    /// On dead letters: why the record could not be handled.
    pub const DEADLETTER_REASON: &str = "deadletter-reason";
    /// On dead letters: a stable code for the reason (e.g. `undecodable`).
    pub const DEADLETTER_CODE: &str = "deadletter-code";
    /// On dead letters: the topic the record came from.
    pub const DEADLETTER_TOPIC: &str = "deadletter-topic";
    /// On dead letters: the partition the record came from.
    pub const DEADLETTER_PARTITION: &str = "deadletter-partition";
    /// On dead letters: the record's offset in that partition.
    pub const DEADLETTER_OFFSET: &str = "deadletter-offset";
    /// On dead letters: the service that gave up on the record.
    pub const DEADLETTER_SERVICE: &str = "deadletter-service";
}
