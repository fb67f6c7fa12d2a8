//! The model: the answer every command must get, predicted from a few maps.
//!
//! It states the business rules the way a user of the system would, in index
//! space (user 0, product 2, order 5), and never calls the aggregates. So a
//! rule broken in the product, or one forgotten across a restart (closed
//! reservations and charges live in the journal's archive, not in the
//! state), shows up as a reply that differs from the prediction.
//!
//! Rejection codes are checked in the order the services check them, because
//! a client sees the first one only.

use ordersaga_events::order::OrderStatus;
use ordersaga_events::CommandId;
use std::collections::{BTreeMap, HashMap, HashSet};

pub const USERS: usize = 3;
pub const PRODUCTS: usize = 3;
/// Orders driven by hand, command by command.
pub const ORDERS: usize = 3;
/// Orders placed through a saga; their indices follow the manual ones, so
/// hand-driven commands never interfere with a saga's own order.
pub const SAGAS: usize = 3;

/// The order index of saga `s`.
pub fn saga_order(s: usize) -> usize {
    ORDERS + s
}

/// The unit price product `p` is added at (and so reserved at).
pub fn unit_price(p: usize) -> u64 {
    100 + p as u64
}

/// A command, as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Register {
        u: usize,
        email: usize,
        weak: bool,
    },
    Deposit {
        u: usize,
        amount: u64,
    },
    Charge {
        u: usize,
        o: usize,
        amount: u64,
    },
    Refund {
        u: usize,
        o: usize,
    },
    Deactivate {
        u: usize,
    },
    Delete {
        u: usize,
    },
    AddProduct {
        p: usize,
        stock: u64,
    },
    Restock {
        p: usize,
        quantity: u64,
    },
    Reserve {
        p: usize,
        o: usize,
        quantity: u64,
    },
    Release {
        p: usize,
        o: usize,
    },
    Commit {
        p: usize,
        o: usize,
    },
    Return {
        p: usize,
        o: usize,
    },
    Place {
        o: usize,
        u: usize,
        lines: Vec<(usize, u64)>,
    },
    /// Lines as (product, quantity, unit price).
    Price {
        o: usize,
        lines: Vec<(usize, u64, u64)>,
    },
    Confirm {
        o: usize,
    },
    Cancel {
        o: usize,
    },
    Ship {
        o: usize,
    },
    /// Start saga `s`; `empty` when it has no lines.
    StartSaga {
        s: usize,
        empty: bool,
    },
    /// Any other input of saga `s`: a reply, a tick, an order cancellation.
    /// What the saga does with it is checked by the saga's own invariants.
    SagaInput {
        s: usize,
    },
}

/// The predicted answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Accepted; `changed` says whether it caused events (a release of
    /// nothing is accepted and changes nothing).
    Accepted { changed: bool },
    /// A saga input: accepted, with whatever events the saga decides.
    AcceptedSaga,
    /// Refused with this code.
    Rejected(&'static str),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Account {
    #[default]
    Unregistered,
    Active,
    Deactivated,
    Deleted,
}

/// What one order was charged; kept forever, so a second charge for the
/// order is refused even after a refund and a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub amount: u64,
    pub refunded: bool,
}

#[derive(Clone, Debug, Default)]
pub struct UserModel {
    pub account: Account,
    pub balance: u64,
    email: Option<usize>,
    pub charges: BTreeMap<usize, Charge>,
}

/// One order's reservation of one product. Every state but `Held` is closed
/// and kept forever: an order reserves a product once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    Held(u64),
    Released(u64),
    Committed(u64),
    Returned(u64),
}

#[derive(Clone, Debug, Default)]
pub struct ProductModel {
    pub exists: bool,
    pub on_hand: u64,
    pub holds: BTreeMap<usize, Hold>,
}

impl ProductModel {
    /// Units held, per order.
    pub fn held(&self) -> BTreeMap<usize, u64> {
        self.holds
            .iter()
            .filter_map(|(&o, hold)| match *hold {
                Hold::Held(q) => Some((o, q)),
                _ => None,
            })
            .collect()
    }

    pub fn reserved(&self) -> u64 {
        self.held().values().sum()
    }
}

#[derive(Clone, Debug, Default)]
pub struct OrderModel {
    pub status: Option<OrderStatus>,
    pub user: usize,
    pub lines: Vec<(usize, u64)>,
    pub priced: bool,
}

#[derive(Debug, Default)]
pub struct Model {
    pub users: [UserModel; USERS],
    /// Email index → the user holding it (until deleted).
    emails: HashMap<usize, usize>,
    pub products: [ProductModel; PRODUCTS],
    pub orders: [OrderModel; ORDERS + SAGAS],
    pub sagas: HashSet<usize>,
    /// The services' idempotency: a command id answered before gets the
    /// same answer again and changes nothing.
    answered: HashMap<CommandId, Expect>,
}

type Decision = Result<bool, &'static str>;

impl Model {
    /// The answer to command `id`, and the model moved past it.
    pub fn step(&mut self, id: CommandId, cmd: &Cmd) -> Expect {
        if let Some(answer) = self.answered.get(&id) {
            return *answer;
        }
        let answer = match cmd {
            Cmd::SagaInput { s } if self.sagas.contains(s) => Expect::AcceptedSaga,
            Cmd::SagaInput { .. } => Expect::Rejected("unknown_saga"),
            _ => match self.decide(cmd) {
                Ok(changed) => Expect::Accepted { changed },
                Err(code) => Expect::Rejected(code),
            },
        };
        self.answered.insert(id, answer);
        answer
    }

    fn decide(&mut self, cmd: &Cmd) -> Decision {
        match *cmd {
            Cmd::Register { u, email, weak } => self.register(u, email, weak),
            Cmd::Deposit { u, amount } => {
                self.active(u)?;
                positive(amount, "invalid_amount")?;
                self.users[u].balance += amount;
                Ok(true)
            }
            Cmd::Charge { u, o, amount } => self.charge(u, o, amount),
            Cmd::Refund { u, o } => self.refund(u, o),
            Cmd::Deactivate { u } => {
                self.active(u)?;
                self.users[u].account = Account::Deactivated;
                Ok(true)
            }
            Cmd::Delete { u } => self.delete(u),
            Cmd::AddProduct { p, stock } => {
                let product = &mut self.products[p];
                if product.exists {
                    return Err("product_exists");
                }
                product.exists = true;
                product.on_hand = stock;
                Ok(true)
            }
            Cmd::Restock { p, quantity } => {
                self.product(p)?;
                positive(quantity, "invalid_quantity")?;
                self.products[p].on_hand += quantity;
                Ok(true)
            }
            Cmd::Reserve { p, o, quantity } => self.reserve(p, o, quantity),
            Cmd::Release { p, o } => self.close(p, o, "", |hold| match hold {
                Some(Hold::Held(q)) => Some(Hold::Released(q)),
                _ => None,
            }),
            Cmd::Commit { p, o } => self.close(p, o, "not_reserved", |hold| match hold {
                Some(Hold::Held(q)) => Some(Hold::Committed(q)),
                _ => None,
            }),
            Cmd::Return { p, o } => self.close(p, o, "not_committed", |hold| match hold {
                Some(Hold::Committed(q)) => Some(Hold::Returned(q)),
                _ => None,
            }),
            Cmd::Place { o, u, ref lines } => self.place(o, u, lines),
            Cmd::Price { o, ref lines } => self.price(o, lines),
            Cmd::Confirm { o } => match self.status(o)? {
                OrderStatus::Pending if !self.orders[o].priced => Err("not_priced"),
                OrderStatus::Pending => self.move_to(o, OrderStatus::Confirmed),
                _ => Err("invalid_transition"),
            },
            Cmd::Cancel { o } => match self.status(o)? {
                OrderStatus::Pending | OrderStatus::Confirmed => {
                    self.move_to(o, OrderStatus::Cancelled)
                }
                _ => Err("invalid_transition"),
            },
            Cmd::Ship { o } => match self.status(o)? {
                OrderStatus::Confirmed => self.move_to(o, OrderStatus::Shipped),
                _ => Err("invalid_transition"),
            },
            Cmd::StartSaga { s, empty } => {
                if self.sagas.contains(&s) {
                    return Err("already_started");
                }
                if empty {
                    return Err("empty_order");
                }
                self.sagas.insert(s);
                Ok(true)
            }
            Cmd::SagaInput { .. } => unreachable!("answered by `step`"),
        }
    }

    fn register(&mut self, u: usize, email: usize, weak: bool) -> Decision {
        if self.users[u].account != Account::Unregistered {
            return Err("already_registered");
        }
        if weak {
            return Err("weak_password");
        }
        // Checked last: the store-wide index is consulted when the event is
        // written, after every rule of the account itself passed.
        if self.emails.contains_key(&email) {
            return Err("email_taken");
        }
        self.emails.insert(email, u);
        let user = &mut self.users[u];
        user.account = Account::Active;
        user.email = Some(email);
        Ok(true)
    }

    fn active(&self, u: usize) -> Result<(), &'static str> {
        match self.users[u].account {
            Account::Active => Ok(()),
            Account::Unregistered => Err("unknown_user"),
            Account::Deactivated => Err("user_inactive"),
            Account::Deleted => Err("user_deleted"),
        }
    }

    fn charge(&mut self, u: usize, o: usize, amount: u64) -> Decision {
        self.active(u)?;
        positive(amount, "invalid_amount")?;
        let user = &mut self.users[u];
        // Once per order, refunded or not.
        if user.charges.contains_key(&o) {
            return Err("already_charged");
        }
        if amount > user.balance {
            return Err("insufficient_funds");
        }
        user.balance -= amount;
        let refunded = false;
        user.charges.insert(o, Charge { amount, refunded });
        Ok(true)
    }

    fn refund(&mut self, u: usize, o: usize) -> Decision {
        let user = &mut self.users[u];
        // Deactivated and deleted accounts still get their money back.
        if user.account == Account::Unregistered {
            return Err("unknown_user");
        }
        match user.charges.get_mut(&o) {
            None => Err("no_charge"),
            Some(charge) if charge.refunded => Err("already_refunded"),
            Some(charge) => {
                charge.refunded = true;
                user.balance += charge.amount;
                Ok(true)
            }
        }
    }

    fn delete(&mut self, u: usize) -> Decision {
        match self.users[u].account {
            Account::Unregistered => Err("unknown_user"),
            Account::Deleted => Err("user_deleted"),
            Account::Active | Account::Deactivated => {
                let user = &mut self.users[u];
                user.account = Account::Deleted;
                if let Some(email) = user.email.take() {
                    self.emails.remove(&email);
                }
                Ok(true)
            }
        }
    }

    fn product(&self, p: usize) -> Result<(), &'static str> {
        if self.products[p].exists {
            Ok(())
        } else {
            Err("unknown_product")
        }
    }

    fn reserve(&mut self, p: usize, o: usize, quantity: u64) -> Decision {
        self.product(p)?;
        positive(quantity, "invalid_quantity")?;
        let product = &mut self.products[p];
        // Once per order, whatever became of the earlier reservation.
        if product.holds.contains_key(&o) {
            return Err("already_reserved");
        }
        if quantity > product.on_hand - product.reserved() {
            return Err("insufficient_stock");
        }
        product.holds.insert(o, Hold::Held(quantity));
        Ok(true)
    }

    /// Moves `o`'s reservation of `p` on as `next` says; `refused` is the
    /// code when it cannot move (empty: a valid no-op, as for a release).
    fn close(
        &mut self,
        p: usize,
        o: usize,
        refused: &'static str,
        next: impl FnOnce(Option<Hold>) -> Option<Hold>,
    ) -> Decision {
        self.product(p)?;
        let product = &mut self.products[p];
        let Some(hold) = next(product.holds.get(&o).copied()) else {
            return if refused.is_empty() {
                Ok(false)
            } else {
                Err(refused)
            };
        };
        match hold {
            Hold::Committed(q) => product.on_hand -= q,
            Hold::Returned(q) => product.on_hand += q,
            Hold::Held(_) | Hold::Released(_) => {}
        }
        product.holds.insert(o, hold);
        Ok(true)
    }

    fn place(&mut self, o: usize, u: usize, lines: &[(usize, u64)]) -> Decision {
        if self.orders[o].status.is_some() {
            return Err("already_placed");
        }
        if lines.is_empty() {
            return Err("empty_order");
        }
        if lines.iter().any(|&(_, q)| q == 0) {
            return Err("invalid_quantity");
        }
        let products: HashSet<usize> = lines.iter().map(|&(p, _)| p).collect();
        if products.len() != lines.len() {
            return Err("duplicate_product");
        }
        self.orders[o] = OrderModel {
            status: Some(OrderStatus::Pending),
            user: u,
            lines: lines.to_vec(),
            priced: false,
        };
        Ok(true)
    }

    fn price(&mut self, o: usize, lines: &[(usize, u64, u64)]) -> Decision {
        if self.status(o)? != OrderStatus::Pending {
            return Err("invalid_transition");
        }
        let order = &mut self.orders[o];
        if order.priced {
            return Err("already_priced");
        }
        // Compared as sets: prices arrive in whatever order.
        let mut placed = order.lines.clone();
        let mut priced: Vec<(usize, u64)> = lines.iter().map(|&(p, q, _)| (p, q)).collect();
        placed.sort_unstable();
        priced.sort_unstable();
        if placed != priced {
            return Err("lines_mismatch");
        }
        if lines.iter().any(|&(_, _, price)| price == 0) {
            return Err("invalid_price");
        }
        order.priced = true;
        Ok(true)
    }

    fn status(&self, o: usize) -> Result<OrderStatus, &'static str> {
        self.orders[o].status.ok_or("unknown_order")
    }

    fn move_to(&mut self, o: usize, status: OrderStatus) -> Decision {
        self.orders[o].status = Some(status);
        Ok(true)
    }
}

fn positive(value: u64, refused: &'static str) -> Result<(), &'static str> {
    if value == 0 {
        Err(refused)
    } else {
        Ok(())
    }
}
