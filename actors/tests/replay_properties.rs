//! Model-based property test of the four services over real sled stores.
//!
//! Random sequences of commands (by hand, and the order saga's own) run
//! against the users, inventory, orders and saga services. A model that knows
//! the rules predicts every reply (accepted, or the exact rejection code)
//! from its own few maps, and the test asserts each reply matches, so it
//! checks that the right commands were accepted, not only that money and
//! stock add up. Along the way the actor system is restarted two ways:
//!
//! - gracefully: `shutdown`, then the stores are closed and reopened;
//! - by killing it: the system is dropped with commands in flight, some
//!   acknowledged and some not. After reopening, each is sent again with its
//!   command id, as a client would: an acknowledged one must get its reply
//!   back unchanged, an unacknowledged one was either applied whole or not
//!   at all, and the model (which takes them in the order they were sent)
//!   must still predict every answer.
//!
//! Sagas are started as the follower starts them (on an accepted place) and
//! driven as Kafka would: the commands a saga writes to the orders store's
//! outbox are relayed into per-aggregate FIFO queues, delivered with their
//! deterministic ids, and the replies come back to the saga in any order,
//! sometimes twice; time passes by explicit ticks. At the end everything is
//! drained, and every saga must have finished consistently.
//!
//! After every restart or kill, and at the end, the live state must equal a
//! replay of the store and a recovery from snapshot, the archive of closed
//! reservations and charges must match, and balances and stock must agree
//! with the model and with sums over the stored events.
//!
//! `PROPTEST_CASES` overrides the case count; `--nocapture` prints what the
//! runs reached.

#[path = "replay_properties/checks.rs"]
mod checks;
#[path = "replay_properties/model.rs"]
mod model;
#[path = "replay_properties/ops.rs"]
mod ops;
#[path = "replay_properties/wire.rs"]
mod wire;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use model::{saga_order, Cmd, Expect, Model, ORDERS, SAGAS};
use ops::Op;
use ordersaga_events::order::OrderStatus;
use ordersaga_events::saga::{SagaCommand, SagaPhase, SagaPolicy};
use ordersaga_events::{CommandEnvelope, CommandId, Outcome, Reply, SagaId};
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use wire::{Envelope, Ids, Journals, Sent, Services, Target};

/// Cases per run: each opens and closes the stores a few times, so this
/// many still finish in well under a minute on two cores in debug.
const CASES: u32 = 128;
/// Drain rounds before the sagas are declared never to finish.
const MAX_DRAIN_ROUNDS: usize = 80;
/// Short waits and few attempts, so that ticks reach retries, compensation
/// after a timeout and stuck sagas.
const POLICY: SagaPolicy = SagaPolicy {
    step_timeout_ms: 1_000,
    max_attempts: 2,
};
/// The unit price manual orders are priced at.
const MANUAL_PRICE: u64 = 250;

/// What reaches a saga, in no particular order.
#[derive(Clone, Debug)]
enum Input {
    Reply(Reply),
    /// Saga `s`'s order was cancelled from `previous`.
    Cancelled {
        s: usize,
        previous: OrderStatus,
    },
}

/// What the runs reached, printed with `--nocapture`.
#[derive(Debug, Default)]
struct Stats {
    accepted: usize,
    rejected: BTreeMap<&'static str, usize>,
    saga_inputs: usize,
    restarts: usize,
    kills: usize,
    in_flight_acknowledged: usize,
    in_flight_applied_unacknowledged: usize,
    in_flight_not_applied: usize,
    saga_endings: BTreeMap<String, usize>,
    /// Sagas whose stream holds each kind of event.
    saga_paths: BTreeMap<String, usize>,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.accepted += other.accepted;
        for (code, n) in other.rejected {
            *self.rejected.entry(code).or_default() += n;
        }
        self.saga_inputs += other.saga_inputs;
        self.restarts += other.restarts;
        self.kills += other.kills;
        self.in_flight_acknowledged += other.in_flight_acknowledged;
        self.in_flight_applied_unacknowledged += other.in_flight_applied_unacknowledged;
        self.in_flight_not_applied += other.in_flight_not_applied;
        for (ending, n) in other.saga_endings {
            *self.saga_endings.entry(ending).or_default() += n;
        }
        for (kind, n) in other.saga_paths {
            *self.saga_paths.entry(kind).or_default() += n;
        }
    }
}

/// Everything that outlives one actor system: the stores' directory, the
/// model, and what the "broker" holds (saga commands and inputs in flight).
struct World {
    dir: PathBuf,
    ids: Ids,
    model: Model,
    now: DateTime<Utc>,
    /// Saga commands relayed and not yet delivered: FIFO per aggregate, as
    /// on a Kafka partition.
    queues: BTreeMap<Target, VecDeque<Sent>>,
    inputs: Vec<Input>,
    /// Commands sent before a kill, with their reply if one came.
    in_flight: Vec<(Sent, Option<Reply>)>,
    /// What [`Op::Send`] and [`Op::Price`] sent (never a saga order), for
    /// [`Op::Again`].
    history: Vec<Cmd>,
    stats: Stats,
}

/// One running actor system over the stores.
struct Live<'a> {
    services: Services,
    journals: &'a Journals,
}

fn check_reply(cmd: &Cmd, expect: Expect, reply: &Reply) {
    let matches = match (expect, &reply.outcome) {
        (Expect::Accepted { changed }, Outcome::Accepted { sequences }) => {
            changed != sequences.is_empty()
        }
        (Expect::AcceptedSaga, Outcome::Accepted { .. }) => true,
        (Expect::Rejected(code), Outcome::Rejected(rejection)) => code == rejection.code,
        _ => false,
    };
    assert!(
        matches,
        "{cmd:?}: the model expects {expect:?}, the service answered {:?}",
        reply.outcome
    );
}

impl World {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            ids: Ids::new(),
            model: Model::default(),
            now: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            queues: BTreeMap::new(),
            inputs: Vec::new(),
            in_flight: Vec::new(),
            history: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Sends one command, asserts its reply is the model's prediction, and
    /// passes on what the saga must hear of it.
    async fn send(&mut self, live: &Live<'_>, sent: Sent) -> Reply {
        let previous = match sent.cmd {
            Cmd::Cancel { o } => self.model.orders[o].status,
            _ => None,
        };
        let expect = self.model.step(sent.envelope.command_id(), &sent.cmd);
        let reply = live
            .services
            .submit(&sent.envelope)
            .await
            .unwrap_or_else(|e| panic!("{:?} got no business answer: {e}", sent.cmd));
        check_reply(&sent.cmd, expect, &reply);
        // While commands from before a kill are resolved, the state may
        // already hold later ones of them: the full check follows.
        if self.in_flight.is_empty() {
            checks::check_addressed(&self.model, &self.ids, &live.services, &sent.cmd).await;
        }
        match expect {
            Expect::Accepted { .. } => self.stats.accepted += 1,
            Expect::AcceptedSaga => self.stats.saga_inputs += 1,
            Expect::Rejected(code) => *self.stats.rejected.entry(code).or_default() += 1,
        }
        if sent.from_saga {
            self.inputs.push(Input::Reply(reply.clone()));
        }
        if let (Cmd::Cancel { o }, Some(previous)) = (&sent.cmd, previous) {
            // As the follower does on a saga order's `Cancelled` event.
            if *o >= ORDERS && reply.outcome.is_accepted() {
                let s = o - ORDERS;
                self.inputs.push(Input::Cancelled { s, previous });
            }
        }
        reply
    }

    /// Moves the saga commands written to the outbox into their queues.
    fn relay(&mut self, live: &Live<'_>) {
        for (target, sent) in live.journals.take_outbox(&self.ids) {
            self.queues.entry(target).or_default().push_back(sent);
        }
    }

    fn by_hand(&self, cmd: Cmd) -> Sent {
        let envelope = self.ids.envelope(&cmd);
        let from_saga = false;
        Sent {
            cmd,
            envelope,
            from_saga,
        }
    }

    fn saga_command(&self, s: usize, command: SagaCommand, id: Option<CommandId>) -> Sent {
        let ephemeral = matches!(command, SagaCommand::Tick { .. });
        let mut envelope = CommandEnvelope::new(command);
        if let Some(id) = id {
            envelope.command_id = id;
        }
        let cmd = match &envelope.command {
            SagaCommand::Start { lines, .. } => Cmd::StartSaga {
                s,
                empty: lines.is_empty(),
            },
            _ => Cmd::SagaInput { s },
        };
        Sent {
            cmd,
            envelope: Envelope::Sagas(envelope, ephemeral),
            from_saga: false,
        }
    }

    /// A saga input as its consumer builds it: a reply's id derives from the
    /// replied command, so one delivered twice reaches the saga once.
    fn saga_input(&self, input: Input) -> Sent {
        let now = self.now;
        match input {
            Input::Reply(reply) => {
                let saga_id = SagaId::from_uuid(reply.correlation_id.as_uuid());
                let id = CommandId::derived(reply.command_id.as_uuid(), "saga-reply");
                let s = self.ids.saga_index(saga_id);
                let reply = SagaCommand::Reply {
                    saga_id,
                    reply,
                    now,
                };
                self.saga_command(s, reply, Some(id))
            }
            Input::Cancelled { s, previous } => {
                let saga_id = self.ids.saga(s);
                let id = CommandId::derived(saga_id.as_uuid(), "order-cancelled");
                let cancelled = SagaCommand::OrderCancelled {
                    saga_id,
                    previous,
                    now,
                };
                self.saga_command(s, cancelled, Some(id))
            }
        }
    }

    fn pop(&mut self, target: &Target) -> Option<Sent> {
        let queue = self.queues.get_mut(target)?;
        let sent = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(target);
        }
        sent
    }

    /// The one command `op` sends, if it is one that can be in flight.
    fn command(&mut self, op: &Op) -> Option<Sent> {
        match op {
            Op::Send(cmd) => {
                self.history.push(cmd.clone());
                Some(self.by_hand(cmd.clone()))
            }
            &Op::Price { o, mismatch } => {
                let order = &self.model.orders[o];
                let mut lines: Vec<(usize, u64, u64)> = (order.lines.iter())
                    .map(|&(p, q)| (p, q, MANUAL_PRICE))
                    .collect();
                if mismatch {
                    match lines.first_mut() {
                        Some(line) => line.1 += 1,
                        None => lines.push((0, 1, MANUAL_PRICE)),
                    }
                }
                let cmd = Cmd::Price { o, lines };
                self.history.push(cmd.clone());
                Some(self.by_hand(cmd))
            }
            Op::Again(pick) if !self.history.is_empty() => {
                let cmd = pick.get(&self.history).clone();
                Some(self.by_hand(cmd))
            }
            Op::Deliver(pick) => {
                let targets: Vec<Target> = self.queues.keys().cloned().collect();
                if targets.is_empty() {
                    return None;
                }
                let target = pick.get(&targets).clone();
                self.pop(&target)
            }
            Op::Answer { pick, twice } => {
                if self.inputs.is_empty() {
                    return None;
                }
                let i = pick.index(self.inputs.len());
                let input = match twice {
                    true => self.inputs[i].clone(),
                    false => self.inputs.swap_remove(i),
                };
                Some(self.saga_input(input))
            }
            _ => None,
        }
    }

    async fn apply(&mut self, live: &Live<'_>, op: &Op) {
        match op {
            Op::Checkout { s, u, lines } => self.checkout(live, *s, *u, lines).await,
            Op::CancelCheckout(s) => {
                let cancel = self.by_hand(Cmd::Cancel { o: saga_order(*s) });
                self.send(live, cancel).await;
            }
            Op::Advance(ms) => {
                self.now += TimeDelta::milliseconds(*ms as i64);
                self.tick_all(live).await;
            }
            Op::Restart | Op::Kill { .. } => unreachable!("ends a segment"),
            _ => {
                if let Some(sent) = self.command(op) {
                    self.send(live, sent).await;
                }
            }
        }
        self.relay(live);
    }

    async fn checkout(&mut self, live: &Live<'_>, s: usize, u: usize, lines: &[(usize, u64)]) {
        let o = saga_order(s);
        let place = self.by_hand(Cmd::Place {
            o,
            u,
            lines: lines.to_vec(),
        });
        let reply = self.send(live, place).await;
        // The follower starts a saga on `Placed`; the other starts here are
        // only there to be refused (already started, no lines).
        let started = self.model.sagas.contains(&s);
        if reply.outcome.is_accepted() || started || lines.is_empty() {
            let start = SagaCommand::Start {
                saga_id: self.ids.saga(s),
                order_id: self.ids.orders[o],
                user_id: self.ids.users[u],
                lines: self.ids.lines(lines),
                policy: POLICY,
                now: self.now,
            };
            let start = self.saga_command(s, start, None);
            self.send(live, start).await;
        }
    }

    /// Ticks every saga, as the timer would (unstarted ones are refused).
    async fn tick_all(&mut self, live: &Live<'_>) {
        for s in 0..SAGAS {
            let saga_id = self.ids.saga(s);
            let now = self.now;
            let tick = self.saga_command(s, SagaCommand::Tick { saga_id, now }, None);
            self.send(live, tick).await;
        }
        self.relay(live);
    }

    /// Sends `flight` without waiting, waits for the first `acked` replies
    /// only, and returns: the caller then drops the actor system mid-flight.
    async fn kill(&mut self, live: &Live<'_>, flight: &[Op], acked: usize) {
        let mut queued = Vec::new();
        for op in flight {
            if let Some(sent) = self.command(op) {
                let reply = live.services.submit(&sent.envelope);
                queued.push((sent, reply));
            }
        }
        for (i, (sent, reply)) in queued.into_iter().enumerate() {
            let reply = match i < acked {
                true => Some(reply.await.expect("an answer before the kill")),
                false => None,
            };
            self.in_flight.push((sent, reply));
        }
    }

    /// After a kill. Given the commands that were in flight, when each is
    /// sent again with its id, in the order first sent, then an
    /// acknowledged one gets its first reply back unchanged, and every one
    /// gets the model's answer: a stored reply came with its events, a
    /// missing one with none (the check that follows compares the state).
    async fn resolve_in_flight(&mut self, live: &Live<'_>) {
        // Until all are resolved the live state may hold later ones already,
        // so `send` leaves the state to the full check after this.
        while !self.in_flight.is_empty() {
            let (sent, acked) = self.in_flight.remove(0);
            let id = sent.envelope.command_id();
            let journal = live.journals.of(&sent.envelope);
            let stored = journal.processed_reply(&id).unwrap().is_some();
            match (&acked, stored) {
                (Some(_), false) => panic!("acknowledged {:?} was lost in the kill", sent.cmd),
                (Some(_), true) => self.stats.in_flight_acknowledged += 1,
                (None, true) => self.stats.in_flight_applied_unacknowledged += 1,
                (None, false) => self.stats.in_flight_not_applied += 1,
            }
            let cmd = sent.cmd.clone();
            let reply = self.send(live, sent).await;
            if let Some(acked) = acked {
                assert_eq!(reply, acked, "{cmd:?} answered differently after the kill");
            }
        }
    }

    async fn sagas_finished(&self, live: &Live<'_>) -> bool {
        for s in (0..SAGAS).filter(|s| self.model.sagas.contains(s)) {
            let saga = live.services.sagas.state(self.ids.saga(s).as_uuid()).await;
            if !saga.unwrap().state.phase().is_terminal() {
                return false;
            }
        }
        true
    }

    /// Delivers everything in flight, one command per aggregate at a time,
    /// letting time pass when nothing is, until every saga has finished.
    async fn drain(&mut self, live: &Live<'_>) {
        for _ in 0..MAX_DRAIN_ROUNDS {
            self.relay(live);
            if !self.queues.is_empty() {
                let targets: Vec<Target> = self.queues.keys().cloned().collect();
                for target in targets {
                    let sent = self.pop(&target).expect("a queued command");
                    self.send(live, sent).await;
                }
            } else if !self.inputs.is_empty() {
                for input in std::mem::take(&mut self.inputs) {
                    let sent = self.saga_input(input);
                    self.send(live, sent).await;
                }
            } else if self.sagas_finished(live).await {
                return;
            } else {
                self.now += TimeDelta::seconds(5);
                self.tick_all(live).await;
            }
        }
        let mut phases: Vec<SagaPhase> = Vec::new();
        for s in 0..SAGAS {
            let saga = live.services.sagas.state(self.ids.saga(s).as_uuid()).await;
            phases.push(saga.unwrap().state.phase());
        }
        panic!("the sagas did not finish: {phases:?}");
    }

    async fn check(&self, live: &Live<'_>) {
        checks::check_all(&self.model, &self.ids, &live.services, live.journals).await;
    }
}

/// How a segment of ops ends.
enum End<'a> {
    Restart,
    Kill(&'a [Op], usize),
    /// Drain, check, and check every saga's ending.
    Finish,
}

/// One actor system's life over freshly opened stores.
fn run_segment(world: &mut World, ops: &[Op], end: End<'_>) {
    let journals = Journals::open(&world.dir);
    actix_rt::System::new().block_on(async {
        let services = Services::start(&journals);
        let live = Live {
            services,
            journals: &journals,
        };
        world.resolve_in_flight(&live).await;
        world.relay(&live);
        world.check(&live).await;
        for op in ops {
            world.apply(&live, op).await;
        }
        match end {
            End::Restart => {
                world.check(&live).await;
                live.services.shutdown().await;
                world.stats.restarts += 1;
            }
            // No shutdown: returning drops the system with all in it.
            End::Kill(flight, acked) => {
                world.kill(&live, flight, acked).await;
                world.stats.kills += 1;
            }
            End::Finish => {
                world.drain(&live).await;
                world.check(&live).await;
                let (model, ids) = (&world.model, &world.ids);
                for ending in checks::check_finished_sagas(model, ids, &live.services).await {
                    *world.stats.saga_endings.entry(ending).or_default() += 1;
                }
                for kind in checks::saga_paths(ids, &journals.orders) {
                    *world.stats.saga_paths.entry(kind).or_default() += 1;
                }
            }
        }
    });
    journals.close();
}

fn run_case(ops: &[Op]) -> Stats {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(dir.path());
    let mut rest = ops;
    while let Some(i) = rest
        .iter()
        .position(|op| matches!(op, Op::Restart | Op::Kill { .. }))
    {
        let end = match &rest[i] {
            Op::Kill { flight, acked } => End::Kill(flight, *acked),
            _ => End::Restart,
        };
        run_segment(&mut world, &rest[..i], end);
        rest = &rest[i + 1..];
    }
    run_segment(&mut world, rest, End::Finish);
    world.stats
}

#[test]
fn the_model_predicts_every_reply_across_restarts_kills_and_sagas() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let total = RefCell::new(Stats::default());
    let result = runner.run(&ops::case(), |ops| {
        total.borrow_mut().add(run_case(&ops));
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let total = total.into_inner();
    println!("{total:#?}");
    // The generator reaches what the checks are about (given enough cases
    // for the odds to be overwhelming).
    if cases < CASES / 4 {
        return;
    }
    let ended = |prefix: &str| {
        (total.saga_endings.iter())
            .filter(|(ending, _)| ending.starts_with(prefix))
            .count()
    };
    assert!(ended("completed") > 0 && ended("aborted") > 0, "{total:?}");
    assert!(total.kills > 0 && total.restarts > 0, "{total:?}");
}
