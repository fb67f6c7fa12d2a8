//! Model test of the whole order saga against the real `Product`, `User` and
//! `Order` aggregates, with a random scheduler in place of Kafka.
//!
//! Pure `decide`/`apply` only: no store, no actors. The scheduler delivers the
//! saga's commands to their service (FIFO per target aggregate, like a Kafka
//! partition; targets interleaved at random), with the services' idempotency
//! (a repeated command id gets the stored reply), and delivers replies to the
//! saga in any order, late or twice. It also advances time and ticks, lets
//! the user cancel the order, and takes the inventory down for a while. Then
//! everything is brought up and drained, and the saga must have finished with
//! money and stock consistent with its outcome.
//!
//! Each of the two properties prints what its runs reached (outcomes, saga
//! event kinds, where the user's cancels landed) with `--nocapture`.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ordersaga_actors::aggregates::{Order, Product, ReservationState, Saga, User};
use ordersaga_actors::journal::OutboxRecord;
use ordersaga_actors::service::outbox_record;
use ordersaga_actors::testing::decide_recalled;
use ordersaga_actors::Aggregate;
use ordersaga_events::codec;
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::order::{OrderCommand, OrderEvent, OrderLine, OrderStatus};
use ordersaga_events::reply::ReasonCode;
use ordersaga_events::saga::{
    saga_of, SagaCommand, SagaEvent, SagaPhase, SagaPolicy, SagaRejection,
};
use ordersaga_events::topics::{INVENTORY_COMMANDS, ORDERS_COMMANDS, SAGA_REPLIES, USERS_COMMANDS};
use ordersaga_events::user::{UserCommand, UserEvent};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, OrderId, Outcome, ProductId, Reply, SagaId, StreamId, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use uuid::Uuid;

const CASES: u32 = 128;
const MAX_STEPS: usize = 200;
/// Drain rounds before the saga is declared to never finish.
const MAX_DRAIN_ROUNDS: usize = 40;

// ---------------------------------------------------------------- inputs

#[derive(Clone, Debug)]
struct Setup {
    /// `false`: the user does not exist (the charge is refused).
    registered: bool,
    balance: u64,
    /// Per product: stock and unit price.
    products: Vec<(u64, u64)>,
    /// Quantity of the line of product `i` (one line per product, the first
    /// `quantities.len()` products).
    quantities: Vec<u64>,
    /// Whether the user may cancel the order during the run.
    user_may_cancel: bool,
    policy: SagaPolicy,
    /// Before the random schedule, deliver everything in order until the
    /// saga reaches this phase (or cannot): so that the later phases meet
    /// timeouts, outages and cancels as often as the early ones.
    warm_up: Option<SagaPhase>,
}

#[derive(Clone, Debug)]
enum Action {
    /// Deliver the oldest command of one target aggregate.
    DeliverCommand(Index),
    /// Deliver one reply (or user cancellation) to the saga; with
    /// `duplicate`, a copy stays in flight.
    DeliverReply { pick: Index, duplicate: bool },
    /// Nothing happens.
    Delay,
    /// Time passes by this many milliseconds; the saga is ticked.
    Tick(u64),
    /// The user cancels the order.
    UserCancel,
    /// The inventory stops taking commands for this many steps.
    InventoryDown(u8),
    /// An operator retries the saga (refused unless it is stuck).
    OperatorRetry,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::bool::weighted(0.9),
        0u64..4_000,
        prop::collection::vec((0u64..10, 1u64..600), 1..=3),
        prop::bool::weighted(0.5),
        1u32..=3,
        prop_oneof![
            4 => Just(None),
            1 => Just(Some(SagaPhase::Paying)),
            2 => Just(Some(SagaPhase::Confirming)),
            2 => Just(Some(SagaPhase::Committing)),
            1 => Just(Some(SagaPhase::Completed)),
        ],
    )
        .prop_flat_map(
            |(registered, balance, products, user_may_cancel, attempts, warm_up)| {
                let count = products.len();
                (
                    Just(registered),
                    Just(balance),
                    Just(products),
                    prop::collection::vec(1u64..=4, 1..=count),
                    Just(user_may_cancel),
                    Just(attempts),
                    Just(warm_up),
                )
            },
        )
        .prop_map(
            |(
                registered,
                balance,
                products,
                quantities,
                user_may_cancel,
                max_attempts,
                warm_up,
            )| {
                Setup {
                    registered,
                    balance,
                    products,
                    quantities,
                    user_may_cancel,
                    policy: SagaPolicy {
                        step_timeout_ms: 1_000,
                        max_attempts,
                    },
                    warm_up,
                }
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => any::<Index>().prop_map(Action::DeliverCommand),
        6 => (any::<Index>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, duplicate)| Action::DeliverReply { pick, duplicate }),
        1 => Just(Action::Delay),
        2 => (0u64..2_500).prop_map(Action::Tick),
        2 => Just(Action::UserCancel),
        1 => (1u8..30).prop_map(Action::InventoryDown),
        1 => Just(Action::OperatorRetry),
    ]
}

// ---------------------------------------------------------------- the world

fn user_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(2))
}

fn saga_id() -> SagaId {
    saga_of(order_id())
}

fn product_id(i: usize) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(100 + i as u128))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// What the saga receives.
#[derive(Clone, Debug)]
enum Input {
    Reply(Reply),
    OrderCancelled(OrderStatus),
}

/// A command waiting on its target's partition.
type Target = (String, Vec<u8>);

struct World {
    now: DateTime<Utc>,
    saga: Saga,
    saga_events: Vec<SagaEvent>,
    order: Order,
    user: User,
    products: BTreeMap<ProductId, Product>,
    /// Each aggregate's archive of closed items (the latest event per item),
    /// as the journal keeps it.
    user_archive: HashMap<String, UserEvent>,
    product_archives: BTreeMap<ProductId, HashMap<String, InventoryEvent>>,
    initial_balance: u64,
    initial_stock: BTreeMap<ProductId, u64>,
    /// In-flight commands, FIFO per target aggregate.
    commands: BTreeMap<Target, VecDeque<OutboxRecord>>,
    /// In-flight replies and cancellations, in no particular order.
    inputs: Vec<Input>,
    /// The services' idempotency: command id → the reply it got.
    processed: HashMap<CommandId, Reply>,
    /// Steps left while the inventory takes no commands.
    inventory_down: u8,
    user_may_cancel: bool,
    /// What happened besides the saga's events, for the statistics.
    notes: Vec<String>,
}

/// One service handling one command exactly like the real one: a repeated
/// command id gets the first reply and changes nothing.
fn execute<A: Aggregate>(
    state: &mut A,
    archive: &mut HashMap<String, A::Event>,
    processed: &mut HashMap<CommandId, Reply>,
    mut envelope: CommandEnvelope<A::Command>,
) -> (Reply, Vec<A::Event>) {
    if let Some(reply) = processed.get(&envelope.command_id) {
        return (reply.clone(), Vec::new());
    }
    let stream = StreamId::new(A::KIND, A::aggregate_id(&envelope.command));
    let decided = A::prepare(&mut envelope.command)
        .and_then(|()| decide_recalled(state, archive, &envelope.command));
    let (outcome, result, events) = match decided {
        Ok(events) => {
            for event in &events {
                state.apply(event);
                if let Some(key) = A::archive_key(event) {
                    archive.insert(key, event.clone());
                }
            }
            let result = A::result(&events);
            (Outcome::Accepted { sequences: vec![] }, result, events)
        }
        Err(rejection) => (
            Outcome::Rejected(rejection.to_rejection()),
            None,
            Vec::new(),
        ),
    };
    let reply = Reply {
        command_id: envelope.command_id,
        correlation_id: envelope.correlation_id,
        stream,
        outcome,
        result,
    };
    processed.insert(envelope.command_id, reply.clone());
    (reply, events)
}

impl World {
    fn new(setup: &Setup) -> Result<Self, TestCaseError> {
        let mut products = BTreeMap::new();
        let mut initial_stock = BTreeMap::new();
        for (i, (stock, price)) in setup.products.iter().enumerate() {
            let id = product_id(i);
            let product = Product::from_events(&[InventoryEvent::ProductAdded {
                product_id: id,
                sku: format!("SKU-{i}"),
                name: format!("product {i}"),
                unit_price: Cents(*price),
                stock: *stock,
            }]);
            products.insert(id, product);
            initial_stock.insert(id, *stock);
        }
        // Built from events: registering would hash a password (slow).
        let mut user_events = Vec::new();
        if setup.registered {
            user_events.push(UserEvent::Registered {
                user_id: user_id(),
                email: "buyer@example.com".into(),
                username: "buyer".into(),
            });
            if setup.balance > 0 {
                user_events.push(UserEvent::Deposited {
                    amount: Cents(setup.balance),
                });
            }
        }
        let user = User::from_events(&user_events);
        let initial_balance = user.balance().0;

        let lines: Vec<OrderLine> = setup
            .quantities
            .iter()
            .enumerate()
            .map(|(i, quantity)| OrderLine {
                product_id: product_id(i),
                quantity: *quantity,
            })
            .collect();
        let mut order = Order::default();
        let placed = order
            .decide(&OrderCommand::Place {
                order_id: order_id(),
                user_id: user_id(),
                lines: lines.clone(),
            })
            .map_err(|r| TestCaseError::fail(format!("place refused: {r}")))?;
        for event in &placed {
            order.apply(event);
        }

        let mut world = World {
            now: t0(),
            saga: Saga::default(),
            saga_events: Vec::new(),
            order,
            user,
            products,
            user_archive: HashMap::new(),
            product_archives: BTreeMap::new(),
            initial_balance,
            initial_stock,
            commands: BTreeMap::new(),
            inputs: Vec::new(),
            processed: HashMap::new(),
            inventory_down: 0,
            user_may_cancel: setup.user_may_cancel,
            notes: Vec::new(),
        };
        world.saga_command(SagaCommand::Start {
            saga_id: saga_id(),
            order_id: order_id(),
            user_id: user_id(),
            lines,
            policy: setup.policy,
            now: t0(),
        })?;
        Ok(world)
    }

    /// Decides a saga command, applies its events and puts the commands it
    /// sends in flight.
    fn saga_command(&mut self, command: SagaCommand) -> Result<(), TestCaseError> {
        let events = self
            .saga
            .decide(&command)
            .map_err(|r| TestCaseError::fail(format!("saga refused {command:?}: {}", r.code())))?;
        let before = self.saga.clone();
        for event in &events {
            self.saga.apply(event);
        }
        for outgoing in Saga::commands(&before, &self.saga, &events) {
            // Addressed and encoded as the service layer does.
            let record = outbox_record(&outgoing, Some(SAGA_REPLIES), self.now)
                .map_err(|e| TestCaseError::fail(format!("unencodable: {e}")))?;
            self.commands
                .entry((record.topic.clone(), record.key.clone().unwrap_or_default()))
                .or_default()
                .push_back(record);
        }
        self.saga_events.extend(events);
        Ok(())
    }

    fn deliverable_targets(&self) -> Vec<Target> {
        self.commands
            .iter()
            .filter(|(target, queue)| {
                let down = self.inventory_down > 0 && target.0 == INVENTORY_COMMANDS;
                !queue.is_empty() && !down
            })
            .map(|(target, _)| target.clone())
            .collect()
    }

    /// Delivers the oldest command of `target` to its service.
    fn deliver_command(&mut self, target: &Target) -> Result<(), TestCaseError> {
        let Some(record) = self.commands.get_mut(target).and_then(VecDeque::pop_front) else {
            return Ok(());
        };
        if self.commands.get(target).is_some_and(VecDeque::is_empty) {
            self.commands.remove(target);
        }
        let undecodable = |e: codec::CodecError| TestCaseError::fail(format!("undecodable: {e}"));
        let reply = match record.topic.as_str() {
            INVENTORY_COMMANDS => {
                let envelope: CommandEnvelope<InventoryCommand> =
                    codec::decode(record.payload.as_deref().unwrap_or_default())
                        .map_err(undecodable)?;
                let product = self
                    .products
                    .get_mut(&envelope.command.product_id())
                    .ok_or_else(|| TestCaseError::fail("command for an unknown product"))?;
                let archive = self
                    .product_archives
                    .entry(envelope.command.product_id())
                    .or_default();
                execute(product, archive, &mut self.processed, envelope).0
            }
            USERS_COMMANDS => {
                let envelope: CommandEnvelope<UserCommand> =
                    codec::decode(record.payload.as_deref().unwrap_or_default())
                        .map_err(undecodable)?;
                execute(
                    &mut self.user,
                    &mut self.user_archive,
                    &mut self.processed,
                    envelope,
                )
                .0
            }
            ORDERS_COMMANDS => {
                let envelope: CommandEnvelope<OrderCommand> =
                    codec::decode(record.payload.as_deref().unwrap_or_default())
                        .map_err(undecodable)?;
                let (reply, events) = execute(
                    &mut self.order,
                    &mut HashMap::new(),
                    &mut self.processed,
                    envelope,
                );
                self.order_events(&events);
                reply
            }
            other => return Err(TestCaseError::fail(format!("unexpected topic {other}"))),
        };
        self.inputs.push(Input::Reply(reply));
        Ok(())
    }

    /// Every cancellation of the order, the saga's own included, reaches the
    /// saga (a saga that caused it ignores it).
    fn order_events(&mut self, events: &[OrderEvent]) {
        for event in events {
            if let OrderEvent::Cancelled { previous, .. } = event {
                self.inputs.push(Input::OrderCancelled(*previous));
            }
        }
    }

    fn deliver_input(&mut self, index: usize, duplicate: bool) -> Result<(), TestCaseError> {
        let input = if duplicate {
            self.inputs[index].clone()
        } else {
            self.inputs.swap_remove(index)
        };
        let command = match input {
            Input::Reply(reply) => SagaCommand::Reply {
                saga_id: saga_id(),
                reply,
                now: self.now,
            },
            Input::OrderCancelled(previous) => {
                self.notes.push(format!(
                    "cancel({previous:?}) reaches {}",
                    self.phase_detail()
                ));
                SagaCommand::OrderCancelled {
                    saga_id: saga_id(),
                    previous,
                    now: self.now,
                }
            }
        };
        self.saga_command(command)
    }

    fn tick(&mut self, millis: u64) -> Result<(), TestCaseError> {
        self.now += TimeDelta::milliseconds(millis as i64);
        self.saga_command(SagaCommand::Tick {
            saga_id: saga_id(),
            now: self.now,
        })
    }

    fn user_cancel(&mut self) {
        if !self.user_may_cancel {
            return;
        }
        let cancel = OrderCommand::Cancel {
            order_id: order_id(),
            reason: "changed_my_mind".into(),
        };
        if let Ok(events) = self.order.decide(&cancel) {
            for event in &events {
                self.order.apply(event);
            }
            self.order_events(&events);
        }
    }

    fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match action {
            Action::DeliverCommand(pick) => {
                let targets = self.deliverable_targets();
                if !targets.is_empty() {
                    let target = pick.get(&targets).clone();
                    self.deliver_command(&target)?;
                }
            }
            Action::DeliverReply { pick, duplicate } => {
                if !self.inputs.is_empty() {
                    let index = pick.index(self.inputs.len());
                    self.deliver_input(index, *duplicate)?;
                }
            }
            Action::Delay => {}
            Action::Tick(millis) => self.tick(*millis)?,
            Action::UserCancel => self.user_cancel(),
            Action::InventoryDown(steps) => self.inventory_down = *steps,
            Action::OperatorRetry => self.operator_retry()?,
        }
        if !matches!(action, Action::InventoryDown(_)) {
            self.inventory_down = self.inventory_down.saturating_sub(1);
        }
        Ok(())
    }

    /// The saga's phase, and for a stuck saga where it got stuck.
    fn phase_detail(&self) -> String {
        match (self.saga.phase(), self.saga.stuck_reason()) {
            (SagaPhase::Stuck, Some(reason)) => format!("Stuck({reason})"),
            (phase, _) => format!("{phase:?}"),
        }
    }

    fn operator_retry(&mut self) -> Result<(), TestCaseError> {
        let retry = SagaCommand::Retry {
            saga_id: saga_id(),
            now: self.now,
        };
        if self.saga.phase() == SagaPhase::Stuck {
            self.notes.push(format!("retry of {}", self.phase_detail()));
            self.saga_command(retry)
        } else {
            prop_assert_eq!(self.saga.decide(&retry), Err(SagaRejection::NotStuck));
            Ok(())
        }
    }

    /// Delivers everything in order until the saga reaches `phase`, or
    /// nothing is left to deliver.
    fn warm_up(&mut self, phase: SagaPhase) -> Result<(), TestCaseError> {
        while self.saga.phase() != phase {
            if let Some(target) = self.commands.keys().next().cloned() {
                self.deliver_command(&target)?;
            } else if !self.inputs.is_empty() {
                self.deliver_input(0, false)?;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Everything up; deliver everything until the saga finishes.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        self.inventory_down = 0;
        for _ in 0..MAX_DRAIN_ROUNDS {
            while let Some(target) = self.commands.keys().next().cloned() {
                self.deliver_command(&target)?;
            }
            if !self.inputs.is_empty() {
                while !self.inputs.is_empty() {
                    self.deliver_input(0, false)?;
                }
                continue;
            }
            // Nothing in flight.
            match self.saga.phase() {
                phase if phase.is_terminal() => return Ok(()),
                SagaPhase::Stuck => self.operator_retry()?,
                phase => {
                    return Err(TestCaseError::fail(format!(
                        "saga waits in {phase:?} for {:?} with nothing in flight",
                        self.saga.outstanding()
                    )))
                }
            }
        }
        Err(TestCaseError::fail(format!(
            "saga never finished: {:?}, {} commands and {} replies in flight",
            self.saga.phase(),
            self.commands.values().map(VecDeque::len).sum::<usize>(),
            self.inputs.len()
        )))
    }

    /// Product `id` with `key`'s closed reservation recalled, if archived.
    fn recalled_product(&self, id: ProductId, key: &str) -> Product {
        let empty = HashMap::new();
        let archive = self.product_archives.get(&id).unwrap_or(&empty);
        recalled(&self.products[&id], archive, key)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        // Replaying the saga's events yields the live state.
        prop_assert_eq!(&Saga::from_events(&self.saga_events), &self.saga);
        prop_assert!(self.commands.is_empty() && self.inputs.is_empty());

        // Stock, per product.
        for (id, product) in &self.products {
            let initial = self.initial_stock[id];
            prop_assert_eq!(
                product.on_hand() + product.total_committed(),
                initial + product.total_restocked() + product.total_returned(),
                "stock of {}",
                id
            );
            let held: u64 = product
                .reservations()
                .values()
                .filter(|r| r.state == ReservationState::Held)
                .map(|r| r.quantity)
                .sum();
            prop_assert_eq!(product.reserved(), held, "reserved of {}", id);
        }

        // Money. The order's charge and reservations are read as the
        // service reads them: held in the state, or recalled from the archive.
        let key = order_id().to_string();
        let user = recalled(&self.user, &self.user_archive, &key);
        let charge = user.charge(order_id());
        let net = self.user.total_charged().0 - self.user.total_refunded().0;
        prop_assert_eq!(self.user.balance().0 + net, self.initial_balance);

        let lines = self.order.lines();
        match self.saga.phase() {
            SagaPhase::Completed => {
                prop_assert!(matches!(
                    self.order.status(),
                    Some(OrderStatus::Confirmed | OrderStatus::Shipped)
                ));
                let total = self.saga.total();
                prop_assert!(total.is_some());
                prop_assert_eq!(self.order.total(), total);
                for line in lines {
                    let product = self.recalled_product(line.product_id, &key);
                    let reservation = product.reservation(order_id());
                    prop_assert!(
                        matches!(reservation, Some(r) if r.state == ReservationState::Committed
                            && r.quantity == line.quantity),
                        "line {:?} not committed: {:?}",
                        line,
                        reservation
                    );
                }
                prop_assert!(matches!(charge, Some(c) if !c.refunded && Some(c.amount) == total));
                prop_assert_eq!(Some(Cents(net)), total);
            }
            SagaPhase::Aborted => {
                prop_assert_eq!(self.order.status(), Some(OrderStatus::Cancelled));
                for line in lines {
                    let product = self.recalled_product(line.product_id, &key);
                    let reservation = product.reservation(order_id());
                    prop_assert!(
                        matches!(
                            reservation.map(|r| r.state),
                            None | Some(ReservationState::Released | ReservationState::Returned)
                        ),
                        "line {:?} still holds stock: {:?}",
                        line,
                        reservation
                    );
                }
                prop_assert!(charge.is_none_or(|c| c.refunded));
                prop_assert_eq!(net, 0);
            }
            other => prop_assert!(false, "saga ended {:?}", other),
        }
        Ok(())
    }
}

/// What one run did, for the statistics.
struct RunOutcome {
    phase: SagaPhase,
    reason: String,
    /// The kinds of saga events recorded, e.g. `StepRetried`.
    event_kinds: Vec<String>,
}

fn event_kind(event: &SagaEvent) -> String {
    let debug = format!("{event:?}");
    let end = debug.find([' ', '{', '(']).unwrap_or(debug.len());
    debug[..end].to_owned()
}

/// One run: setup, the random schedule, the drain, the invariants.
fn run(setup: &Setup, actions: &[Action]) -> Result<RunOutcome, TestCaseError> {
    let mut world = World::new(setup)?;
    if let Some(phase) = setup.warm_up {
        world.warm_up(phase)?;
    }
    for action in actions {
        world.step(action)?;
    }
    world.drain()?;
    world.check()?;
    let mut event_kinds: Vec<String> = world.saga_events.iter().map(event_kind).collect();
    event_kinds.extend(world.notes);
    event_kinds.sort();
    event_kinds.dedup();
    Ok(RunOutcome {
        phase: world.saga.phase(),
        reason: world.saga.reason().unwrap_or("").to_owned(),
        event_kinds,
    })
}

/// What a property run saw: outcomes (phase, reason) and, per saga event
/// kind or scheduler note, how many runs had it.
#[derive(Debug, Default)]
struct Stats {
    outcomes: BTreeMap<(String, String), usize>,
    kinds: BTreeMap<String, usize>,
}

impl Stats {
    fn ended(&self, phase: &str) -> usize {
        self.outcomes
            .iter()
            .filter(|((p, _), _)| p == phase)
            .map(|(_, n)| n)
            .sum()
    }

    fn runs_with(&self, prefix: &str) -> usize {
        self.kinds
            .iter()
            .filter(|(kind, _)| kind.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Runs [`CASES`] random schedules over `setups`; panics with the (shrunk)
/// failing case.
fn check_property(setups: impl Strategy<Value = Setup>) -> Stats {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let stats = RefCell::new(Stats::default());
    let strategy = (setups, prop::collection::vec(action(), 0..MAX_STEPS));
    let result = runner.run(&strategy, |(setup, actions)| {
        let outcome = run(&setup, &actions)?;
        let mut stats = stats.borrow_mut();
        *stats
            .outcomes
            .entry((format!("{:?}", outcome.phase), outcome.reason))
            .or_default() += 1;
        for kind in outcome.event_kinds {
            *stats.kinds.entry(kind).or_default() += 1;
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let stats = stats.into_inner();
    println!("{stats:#?}");
    stats
}

#[test]
fn the_saga_always_finishes_consistently() {
    let stats = check_property(setup());
    // The generator reaches both endings.
    assert!(stats.ended("Completed") > 0, "{stats:?}");
    assert!(stats.ended("Aborted") > 0, "{stats:?}");
}

/// Enough stock and money that the saga gets far; the user may always
/// cancel: the races between the user's cancel and the confirmation, the
/// commits and a stuck saga.
fn late_setup() -> impl Strategy<Value = Setup> {
    (
        prop::collection::vec((4u64..10, 1u64..600), 1..=3),
        1u32..=3,
        prop_oneof![
            Just(SagaPhase::Paying),
            Just(SagaPhase::Confirming),
            Just(SagaPhase::Committing),
            Just(SagaPhase::Completed),
        ],
    )
        .prop_flat_map(|(products, attempts, warm_up)| {
            let count = products.len();
            (
                Just(products),
                prop::collection::vec(1u64..=4, 1..=count),
                Just(attempts),
                Just(warm_up),
            )
        })
        .prop_map(|(products, quantities, max_attempts, warm_up)| Setup {
            registered: true,
            balance: 10_000,
            products,
            quantities,
            user_may_cancel: true,
            policy: SagaPolicy {
                step_timeout_ms: 1_000,
                max_attempts,
            },
            warm_up: Some(warm_up),
        })
}

#[test]
fn user_cancels_around_the_confirmation_are_compensated() {
    let stats = check_property(late_setup());
    assert!(stats.ended("Completed") > 0, "{stats:?}");
    assert!(stats.runs_with("cancel(Confirmed)") > 0, "{stats:?}");
}

/// A fixed schedule: everything delivered in order, nothing lost, no cancel.
#[test]
fn an_undisturbed_saga_completes() {
    let setup = Setup {
        registered: true,
        balance: 10_000,
        products: vec![(5, 250), (5, 1_000)],
        quantities: vec![2, 1],
        user_may_cancel: false,
        policy: SagaPolicy::default(),
        warm_up: None,
    };
    let outcome = run(&setup, &[]).unwrap();
    assert_eq!(outcome.phase, SagaPhase::Completed);
}

/// A fixed schedule: the user cancels after completion, everything comes back.
#[test]
fn a_completed_saga_cancelled_by_the_user_gives_everything_back() {
    let setup = Setup {
        registered: true,
        balance: 10_000,
        products: vec![(5, 250), (5, 1_000)],
        quantities: vec![2, 1],
        user_may_cancel: true,
        policy: SagaPolicy::default(),
        warm_up: None,
    };
    let mut world = World::new(&setup).unwrap();
    world.drain().unwrap();
    assert_eq!(world.saga.phase(), SagaPhase::Completed);
    world.user_cancel();
    world.drain().unwrap();
    world.check().unwrap();
    assert_eq!(world.saga.phase(), SagaPhase::Aborted);
    assert_eq!(world.saga.reason(), Some("cancelled_by_user"));
    assert_eq!(world.user.balance(), Cents(10_000));
}

/// `state` with item `key` recalled from `archive`, if it is there.
fn recalled<A: Aggregate>(state: &A, archive: &HashMap<String, A::Event>, key: &str) -> A {
    let mut view = state.clone();
    if let Some(event) = archive.get(key) {
        view.recall(event);
    }
    view
}
