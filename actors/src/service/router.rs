//! The router actor: owns one entity actor per aggregate id, spawns them on
//! demand (recovering from the journal) and passivates idle ones so memory
//! stays bounded however many aggregates the store holds.
//!
//! Recovery reads the journal, and a cold aggregate with a long history can
//! take a while: it runs on the blocking pool, never on the router's thread,
//! so every other aggregate's commands keep flowing. Commands for an
//! aggregate being recovered wait, in order, until its entity exists (or all
//! get the recovery's error).

use super::config::ServiceConfig;
use super::core::{EntityCore, Execute};
use super::entity::{Deliver, Entity, Inspect, Passivate, Respond};
use super::error::ServiceError;
use super::mailbox::{Mailbox, Ticket};
use super::views::Views;
use crate::aggregate::Aggregate;
use crate::journal::{Journal, JournalError};
use crate::recovery::Recovered;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
// tokio's clock, so tests can pause and advance time instead of sleeping.
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

/// Route a command to its entity.
pub(crate) struct Route<A: Aggregate> {
    pub exec: Execute<A>,
    pub respond: Respond,
    /// The command's place in the router mailbox, freed once routed.
    pub ticket: Ticket,
}

impl<A: Aggregate> Message for Route<A> {
    type Result = ();
}

/// Read one aggregate's state through its entity.
pub(crate) struct InspectEntity<A: Aggregate> {
    pub id: Uuid,
    pub respond: oneshot::Sender<Result<Recovered<A>, ServiceError>>,
}

impl<A: Aggregate> Message for InspectEntity<A> {
    type Result = ();
}

/// Stop every entity (after the commands already queued) and the router.
pub(crate) struct Shutdown {
    pub done: oneshot::Sender<()>,
}

impl Message for Shutdown {
    type Result = ();
}

/// How many entities are in memory.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CountEntities;

struct Slot<A: Aggregate> {
    addr: Addr<Entity<A>>,
    mailbox: Mailbox,
    last_used: Instant,
    /// Which start of this aggregate's entity it is (see `views`).
    incarnation: u64,
}

/// Work for an entity that is still being recovered.
enum Parked<A: Aggregate> {
    Route(Route<A>),
    Inspect(InspectEntity<A>),
}

impl<A: Aggregate> Parked<A> {
    fn fail(self, err: ServiceError) {
        match self {
            Parked::Route(route) => {
                let _ = route.respond.send(Err(err));
            }
            Parked::Inspect(inspect) => {
                let _ = inspect.respond.send(Err(err));
            }
        }
    }
}

/// What a recovery on the blocking pool came back with.
type Recovery<A> = Result<Result<EntityCore<A>, JournalError>, tokio::task::JoinError>;

/// What the router counts for the metrics and the benchmarks, shared with
/// the [`Service`](super::Service) handles.
#[derive(Debug, Default)]
pub(crate) struct EntityCounters {
    /// Entities passivated so far (idle or evicted).
    pub passivated: AtomicU64,
    /// Entities recovered from the journal so far (cold starts): one per
    /// entity started, whether its stream was empty, replayed or restored
    /// from a snapshot.
    pub recovered: AtomicU64,
    /// Queries answered from an entity's view, with no message.
    pub queries_from_views: AtomicU64,
    /// Queries answered by the entity (or its recovery).
    pub queries_from_entities: AtomicU64,
}

pub(crate) struct Router<A: Aggregate> {
    journal: Journal,
    config: Arc<ServiceConfig>,
    entities: HashMap<Uuid, Slot<A>>,
    /// Aggregates being recovered, with the work waiting for them in order
    /// (boxed: an actor must be `Unpin`, and a command need not be).
    recovering: HashMap<Uuid, Vec<Box<Parked<A>>>>,
    /// Passivations and recoveries so far.
    counters: Arc<EntityCounters>,
    /// The live entities' views, shared with the service's handles.
    views: Arc<Views<A>>,
    /// The last incarnation number given to an entity.
    incarnations: u64,
}

impl<A: Aggregate> Router<A> {
    pub fn new(
        journal: Journal,
        config: Arc<ServiceConfig>,
        counters: Arc<EntityCounters>,
        views: Arc<Views<A>>,
    ) -> Self {
        Self {
            journal,
            config,
            entities: HashMap::new(),
            recovering: HashMap::new(),
            counters,
            views,
            incarnations: 0,
        }
    }

    /// Counts one passivation (an idle or evicted entity stopped), and
    /// takes its view away at once: it may still finish queued commands.
    fn passivate(&self, id: &Uuid, slot: &Slot<A>) {
        self.views.close(id, slot.incarnation);
        slot.addr.do_send(Passivate);
        self.counters.passivated.fetch_add(1, Ordering::Relaxed);
    }

    /// The live entity for `id`, if there is one.
    fn live(&mut self, id: Uuid) -> Option<(Addr<Entity<A>>, Mailbox)> {
        let slot = self.entities.get_mut(&id)?;
        if !slot.addr.connected() {
            return None;
        }
        slot.last_used = Instant::now();
        Some((slot.addr.clone(), slot.mailbox.clone()))
    }

    /// Hands `work` to the entity of `id`, recovering it first (off this
    /// thread) if it is not live.
    fn with_entity(&mut self, id: Uuid, work: Parked<A>, ctx: &mut Context<Self>) {
        if let Some((addr, mailbox)) = self.live(id) {
            return deliver(&addr, &mailbox, work);
        }
        if let Some(waiting) = self.recovering.get_mut(&id) {
            return waiting.push(Box::new(work));
        }
        self.recovering.insert(id, vec![Box::new(work)]);
        let (journal, config) = (self.journal.clone(), self.config.clone());
        let recovery =
            tokio::task::spawn_blocking(move || EntityCore::<A>::recover(journal, config, id));
        ctx.spawn(
            recovery
                .into_actor(self)
                .map(move |recovered, router, _| router.recovered(id, recovered)),
        );
    }

    /// A recovery finished: start the entity and hand it the waiting work,
    /// or give every piece of it the error.
    fn recovered(&mut self, id: Uuid, recovered: Recovery<A>) {
        let waiting = self.recovering.remove(&id).unwrap_or_default();
        let core = match recovered {
            Ok(Ok(core)) => core,
            Ok(Err(err)) => {
                for work in waiting {
                    work.fail(ServiceError::Journal(copy_of(&err)));
                }
                return;
            }
            Err(join) => {
                let detail = format!("recovery did not finish: {join}");
                for work in waiting {
                    work.fail(ServiceError::Journal(JournalError::Corrupt {
                        what: format!("aggregate {id}"),
                        detail: detail.clone(),
                    }));
                }
                return;
            }
        };
        self.counters.recovered.fetch_add(1, Ordering::Relaxed);
        self.incarnations += 1;
        let incarnation = self.incarnations;
        self.views.open(id, incarnation);
        let addr = Entity::new(core, id, incarnation, self.views.clone()).start();
        let mailbox = Mailbox::new(self.config.entity_mailbox);
        self.entities.insert(
            id,
            Slot {
                addr: addr.clone(),
                mailbox: mailbox.clone(),
                last_used: Instant::now(),
                incarnation,
            },
        );
        for work in waiting {
            deliver(&addr, &mailbox, *work);
        }
        if self.entities.len() > self.config.max_entities {
            self.evict_least_recent();
        }
    }

    /// Passivates the least recently used tenth of the entities. Done in bulk
    /// so the sort is paid once per many spawns, not on every one.
    fn evict_least_recent(&mut self) {
        let mut by_age: Vec<(Instant, Uuid)> = self
            .entities
            .iter()
            .map(|(id, slot)| (slot.last_used, *id))
            .collect();
        by_age.sort_unstable();
        let count = (self.entities.len() / 10).max(1);
        for (_, id) in by_age.into_iter().take(count) {
            if let Some(slot) = self.entities.remove(&id) {
                self.passivate(&id, &slot);
            }
        }
    }

    fn sweep(&mut self) {
        let idle = self.config.passivate_after;
        let now = Instant::now();
        let gone: Vec<(Uuid, Slot<A>)> = self
            .entities
            .extract_if(|_, slot| {
                !slot.addr.connected() || now.duration_since(slot.last_used) >= idle
            })
            .collect();
        // Queued commands run first; new ones go to a fresh entity, and the
        // journal's version check keeps the two from overwriting each other.
        for (id, slot) in gone {
            self.passivate(&id, &slot);
        }
    }
}

impl<A: Aggregate> Actor for Router<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded by tickets taken in `Service::submit`, not by actix.
        ctx.set_mailbox_capacity(0);
        let every = (self.config.passivate_after / 2)
            .clamp(Duration::from_millis(10), Duration::from_secs(30));
        ctx.run_interval(every, |router, _| router.sweep());
    }
}

impl<A: Aggregate> Handler<Route<A>> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: Route<A>, ctx: &mut Self::Context) {
        let id = A::aggregate_id(&msg.exec.command.command);
        self.with_entity(id, Parked::Route(msg), ctx);
    }
}

impl<A: Aggregate> Handler<InspectEntity<A>> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: InspectEntity<A>, ctx: &mut Self::Context) {
        self.with_entity(msg.id, Parked::Inspect(msg), ctx);
    }
}

/// Hands one piece of work to a live entity.
fn deliver<A: Aggregate>(addr: &Addr<Entity<A>>, mailbox: &Mailbox, work: Parked<A>) {
    match work {
        Parked::Route(Route {
            exec,
            respond,
            ticket: _router_place,
        }) => {
            let Some(ticket) = mailbox.try_reserve() else {
                let _ = respond.send(Err(ServiceError::Overloaded("entity")));
                return;
            };
            // The entity was connected a moment ago on this thread. Should it
            // die with the message queued, dropping the message drops
            // `respond`: the caller sees `EntityCrashed`, never silence, and
            // the next command gets a fresh entity.
            addr.do_send(Deliver {
                exec,
                respond,
                ticket,
            });
        }
        Parked::Inspect(msg) => {
            let (tx, rx) = oneshot::channel();
            let respond = msg.respond;
            addr.do_send(Inspect { respond: tx });
            actix::spawn(async move {
                let result = rx.await.map_err(|_| ServiceError::Stopped);
                let _ = respond.send(result);
            });
        }
    }
}

/// The same error again, for each command that waited for the recovery
/// (journal errors are not `Clone`: sled's are not).
fn copy_of(err: &JournalError) -> JournalError {
    match err {
        JournalError::Corrupt { what, detail } => JournalError::Corrupt {
            what: what.clone(),
            detail: detail.clone(),
        },
        JournalError::Closed => JournalError::Closed,
        other => JournalError::Storage(sled::Error::Io(std::io::Error::other(other.to_string()))),
    }
}

impl<A: Aggregate> Handler<Shutdown> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        for (id, slot) in self.entities.drain() {
            self.views.close(&id, slot.incarnation);
            slot.addr.do_send(Passivate);
        }
        for (_, waiting) in self.recovering.drain() {
            for work in waiting {
                work.fail(ServiceError::Stopped);
            }
        }
        ctx.stop();
        let _ = msg.done.send(());
    }
}

impl<A: Aggregate> Handler<CountEntities> for Router<A> {
    type Result = usize;

    fn handle(&mut self, _: CountEntities, _: &mut Self::Context) -> usize {
        self.entities
            .values()
            .filter(|s| s.addr.connected())
            .count()
    }
}
