//! Between the model's index space and the real services: ids, envelopes,
//! the stores and the four services, and the saga commands read back from
//! the orders store's outbox (where the saga writes what it sends).

use super::model::{saga_order, Cmd, ORDERS, PRODUCTS, SAGAS, USERS};
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::journal::OutboxRecord;
use ordersaga_actors::service::PendingReply;
use ordersaga_actors::Execute;
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::codec;
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine, PricedLine};
use ordersaga_events::saga::{saga_of, SagaCommand};
use ordersaga_events::topics::{local_of, INVENTORY_COMMANDS, ORDERS_COMMANDS, USERS_COMMANDS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, CommandId, OrderId, ProductId, SagaId, UserId};
use std::path::Path;
use std::time::{Duration, Instant};

/// The real ids behind the model's indices.
pub struct Ids {
    pub users: Vec<UserId>,
    pub products: Vec<ProductId>,
    pub orders: Vec<OrderId>,
}

fn index_of<T: PartialEq + std::fmt::Debug>(all: &[T], id: &T) -> usize {
    all.iter()
        .position(|x| x == id)
        .unwrap_or_else(|| panic!("{id:?} is none of the test's ids"))
}

impl Ids {
    pub fn new() -> Self {
        Self {
            users: (0..USERS).map(|_| UserId::new()).collect(),
            products: (0..PRODUCTS).map(|_| ProductId::new()).collect(),
            orders: (0..ORDERS + SAGAS).map(|_| OrderId::new()).collect(),
        }
    }

    pub fn saga(&self, s: usize) -> SagaId {
        saga_of(self.orders[saga_order(s)])
    }

    pub fn saga_index(&self, saga: SagaId) -> usize {
        (0..SAGAS)
            .find(|&s| self.saga(s) == saga)
            .unwrap_or_else(|| panic!("{saga} is none of the test's sagas"))
    }

    /// Order lines from (product, quantity) pairs.
    pub fn lines(&self, lines: &[(usize, u64)]) -> Vec<OrderLine> {
        lines
            .iter()
            .map(|&(p, quantity)| OrderLine {
                product_id: self.products[p],
                quantity,
            })
            .collect()
    }

    /// A command sent by hand, with fresh ids.
    pub fn envelope(&self, cmd: &Cmd) -> Envelope {
        use Envelope::{Inventory, Orders, Users};
        let user = |u: usize| self.users[u];
        let product = |p: usize| self.products[p];
        let order = |o: usize| self.orders[o];
        match *cmd {
            Cmd::Register { u, email, weak } => {
                Users(CommandEnvelope::new(UserCommand::Register {
                    user_id: user(u),
                    email: format!("person{email}@example.com"),
                    username: format!("person {u}"),
                    password: Password::new(if weak { "short" } else { "long enough secret" }),
                }))
            }
            Cmd::Deposit { u, amount } => Users(CommandEnvelope::new(UserCommand::Deposit {
                user_id: user(u),
                amount: Cents(amount),
            })),
            Cmd::Charge { u, o, amount } => Users(CommandEnvelope::new(UserCommand::Charge {
                user_id: user(u),
                order_id: order(o),
                amount: Cents(amount),
            })),
            Cmd::Refund { u, o } => Users(CommandEnvelope::new(UserCommand::Refund {
                user_id: user(u),
                order_id: order(o),
            })),
            Cmd::Deactivate { u } => Users(CommandEnvelope::new(UserCommand::Deactivate {
                user_id: user(u),
            })),
            Cmd::Delete { u } => Users(CommandEnvelope::new(UserCommand::Delete {
                user_id: user(u),
            })),
            Cmd::AddProduct { p, stock } => {
                Inventory(CommandEnvelope::new(InventoryCommand::AddProduct {
                    product_id: product(p),
                    sku: format!("SKU-{p}"),
                    name: format!("product {p}"),
                    unit_price: Cents(super::model::unit_price(p)),
                    stock,
                }))
            }
            Cmd::Restock { p, quantity } => {
                Inventory(CommandEnvelope::new(InventoryCommand::Restock {
                    product_id: product(p),
                    quantity,
                }))
            }
            Cmd::Reserve { p, o, quantity } => {
                Inventory(CommandEnvelope::new(InventoryCommand::Reserve {
                    product_id: product(p),
                    order_id: order(o),
                    quantity,
                }))
            }
            Cmd::Release { p, o } => Inventory(CommandEnvelope::new(InventoryCommand::Release {
                product_id: product(p),
                order_id: order(o),
            })),
            Cmd::Commit { p, o } => Inventory(CommandEnvelope::new(InventoryCommand::Commit {
                product_id: product(p),
                order_id: order(o),
            })),
            Cmd::Return { p, o } => Inventory(CommandEnvelope::new(InventoryCommand::Return {
                product_id: product(p),
                order_id: order(o),
            })),
            Cmd::Place { o, u, ref lines } => Orders(CommandEnvelope::new(OrderCommand::Place {
                order_id: order(o),
                user_id: user(u),
                lines: self.lines(lines),
            })),
            Cmd::Price { o, ref lines } => Orders(CommandEnvelope::new(OrderCommand::Price {
                order_id: order(o),
                lines: lines
                    .iter()
                    .map(|&(p, quantity, price)| PricedLine {
                        product_id: product(p),
                        quantity,
                        unit_price: Cents(price),
                    })
                    .collect(),
            })),
            Cmd::Confirm { o } => Orders(CommandEnvelope::new(OrderCommand::Confirm {
                order_id: order(o),
            })),
            Cmd::Cancel { o } => Orders(CommandEnvelope::new(OrderCommand::Cancel {
                order_id: order(o),
                reason: "changed_mind".into(),
            })),
            Cmd::Ship { o } => Orders(CommandEnvelope::new(OrderCommand::Ship {
                order_id: order(o),
            })),
            Cmd::StartSaga { .. } | Cmd::SagaInput { .. } => {
                unreachable!("saga inputs are built by the driver")
            }
        }
    }

    /// The saga command an outbox record carries, with the aggregate it
    /// addresses (its partition key); `None` for the other records (events,
    /// replies).
    pub fn decode(&self, record: &OutboxRecord) -> Option<(Target, Sent)> {
        let user = |id: &UserId| index_of(&self.users, id);
        let product = |id: &ProductId| index_of(&self.products, id);
        let order = |id: &OrderId| index_of(&self.orders, id);
        // The saga's commands to its own order are written for delivery in
        // process; the model delivers them like the others, in any order.
        let topic = local_of(&record.topic).unwrap_or(&record.topic);
        let (cmd, envelope) = match topic {
            USERS_COMMANDS => {
                let e: CommandEnvelope<UserCommand> =
                    codec::decode(record.payload.as_deref().unwrap_or_default())
                        .unwrap_or_else(undecodable);
                let cmd = match &e.command {
                    UserCommand::Charge {
                        user_id,
                        order_id,
                        amount,
                    } => Cmd::Charge {
                        u: user(user_id),
                        o: order(order_id),
                        amount: amount.0,
                    },
                    UserCommand::Refund { user_id, order_id } => Cmd::Refund {
                        u: user(user_id),
                        o: order(order_id),
                    },
                    other => panic!("a saga sent {other:?}"),
                };
                (cmd, Envelope::Users(e))
            }
            INVENTORY_COMMANDS => {
                let e: CommandEnvelope<InventoryCommand> =
                    codec::decode(record.payload.as_deref().unwrap_or_default())
                        .unwrap_or_else(undecodable);
                let cmd = match &e.command {
                    InventoryCommand::Reserve {
                        product_id,
                        order_id,
                        quantity,
                    } => Cmd::Reserve {
                        p: product(product_id),
                        o: order(order_id),
                        quantity: *quantity,
                    },
                    InventoryCommand::Release {
                        product_id,
                        order_id,
                    } => Cmd::Release {
                        p: product(product_id),
                        o: order(order_id),
                    },
                    InventoryCommand::Commit {
                        product_id,
                        order_id,
                    } => Cmd::Commit {
                        p: product(product_id),
                        o: order(order_id),
                    },
                    InventoryCommand::Return {
                        product_id,
                        order_id,
                    } => Cmd::Return {
                        p: product(product_id),
                        o: order(order_id),
                    },
                    other => panic!("a saga sent {other:?}"),
                };
                (cmd, Envelope::Inventory(e))
            }
            ORDERS_COMMANDS => {
                let e: CommandEnvelope<OrderCommand> =
                    codec::decode(record.payload.as_deref().unwrap_or_default())
                        .unwrap_or_else(undecodable);
                let cmd = match &e.command {
                    OrderCommand::Price { order_id, lines } => Cmd::Price {
                        o: order(order_id),
                        lines: lines
                            .iter()
                            .map(|l| (product(&l.product_id), l.quantity, l.unit_price.0))
                            .collect(),
                    },
                    OrderCommand::Confirm { order_id } => Cmd::Confirm { o: order(order_id) },
                    OrderCommand::Cancel { order_id, .. } => Cmd::Cancel { o: order(order_id) },
                    other => panic!("a saga sent {other:?}"),
                };
                (cmd, Envelope::Orders(e))
            }
            _ => return None,
        };
        let target = (record.topic.clone(), record.key.clone().unwrap_or_default());
        let from_saga = true;
        Some((
            target,
            Sent {
                cmd,
                envelope,
                from_saga,
            },
        ))
    }
}

fn undecodable<T>(error: codec::CodecError) -> T {
    panic!("undecodable saga command: {error}")
}

/// A topic and record key: one aggregate's partition.
pub type Target = (String, Vec<u8>);

/// A command for one of the services, in its envelope.
#[derive(Clone, Debug)]
pub enum Envelope {
    Users(CommandEnvelope<UserCommand>),
    Inventory(CommandEnvelope<InventoryCommand>),
    Orders(CommandEnvelope<OrderCommand>),
    /// With `true`: ephemeral, as the timer's ticks are.
    Sagas(CommandEnvelope<SagaCommand>, bool),
}

impl Envelope {
    pub fn command_id(&self) -> CommandId {
        match self {
            Envelope::Users(e) => e.command_id,
            Envelope::Inventory(e) => e.command_id,
            Envelope::Orders(e) => e.command_id,
            Envelope::Sagas(e, _) => e.command_id,
        }
    }
}

/// A command, what the model calls it, and whether a saga sent it (its
/// reply then goes back to the saga).
#[derive(Clone, Debug)]
pub struct Sent {
    pub cmd: Cmd,
    pub envelope: Envelope,
    pub from_saga: bool,
}

/// The three stores, as the nodes keep them: sagas live in the orders store.
pub struct Journals {
    pub users: Journal,
    pub inventory: Journal,
    pub orders: Journal,
}

impl Journals {
    pub fn open(dir: &Path) -> Self {
        let open = |name: &str| {
            Journal::open(JournalConfig::new(dir.join(name)))
                .unwrap_or_else(|e| panic!("cannot reopen the {name} store: {e}"))
        };
        Self {
            users: open("users"),
            inventory: open("inventory"),
            orders: open("orders"),
        }
    }

    /// The store that answers `envelope`.
    pub fn of(&self, envelope: &Envelope) -> &Journal {
        match envelope {
            Envelope::Users(_) => &self.users,
            Envelope::Inventory(_) => &self.inventory,
            Envelope::Orders(_) | Envelope::Sagas(..) => &self.orders,
        }
    }

    /// Closes the stores once the actor system that used them is gone.
    /// Waits for every other handle to drop first: a killed system that kept
    /// one would keep sled's file lock, and the reopen would fail.
    pub fn close(self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for journal in [&self.users, &self.inventory, &self.orders] {
            while journal.handles() > 1 {
                assert!(
                    Instant::now() < deadline,
                    "{} handles to {} outlived the actor system",
                    journal.handles() - 1,
                    journal.path().display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The saga commands waiting in the orders store's outbox, each with
    /// its target, taken out as a relay publishes them.
    pub fn take_outbox(&self, ids: &Ids) -> Vec<(Target, Sent)> {
        let mut taken = Vec::new();
        loop {
            let batch = self.orders.outbox_pending(0, 256).expect("read the outbox");
            if batch.is_empty() {
                return taken;
            }
            let positions: Vec<u64> = batch.iter().map(|(position, _)| *position).collect();
            taken.extend(batch.iter().filter_map(|(_, record)| ids.decode(record)));
            self.orders
                .outbox_remove(&positions)
                .expect("remove published records");
        }
    }
}

/// The four services of one actor system.
pub struct Services {
    pub users: Service<User>,
    pub inventory: Service<Product>,
    pub orders: Service<Order>,
    pub sagas: Service<Saga>,
}

impl Services {
    pub fn start(journals: &Journals) -> Self {
        // Snapshots often, so recovery from snapshot plus tail is exercised.
        let config = ServiceConfig {
            snapshot_every: 3,
            ..ServiceConfig::default()
        };
        Self {
            users: Service::start(journals.users.clone(), config.clone()),
            inventory: Service::start(journals.inventory.clone(), config.clone()),
            orders: Service::start(journals.orders.clone(), config.clone()),
            sagas: Service::start(journals.orders.clone(), config),
        }
    }

    /// Queues `envelope` with its own command id (so a resend is
    /// recognised) and returns the reply to come.
    pub fn submit(&self, envelope: &Envelope) -> PendingReply {
        let queued = match envelope.clone() {
            Envelope::Users(e) => self
                .users
                .submit(Execute::new(e))
                .map_err(|e| e.to_string()),
            Envelope::Inventory(e) => self
                .inventory
                .submit(Execute::new(e))
                .map_err(|e| e.to_string()),
            Envelope::Orders(e) => self
                .orders
                .submit(Execute::new(e))
                .map_err(|e| e.to_string()),
            Envelope::Sagas(e, true) => self
                .sagas
                .submit(Execute::ephemeral(e))
                .map_err(|e| e.to_string()),
            Envelope::Sagas(e, false) => self
                .sagas
                .submit(Execute::new(e))
                .map_err(|e| e.to_string()),
        };
        queued.unwrap_or_else(|e| panic!("cannot queue a command: {e}"))
    }

    /// A graceful stop: what is queued is answered, then every actor stops.
    pub async fn shutdown(&self) {
        self.users.shutdown().await;
        self.inventory.shutdown().await;
        self.orders.shutdown().await;
        self.sagas.shutdown().await;
    }
}
