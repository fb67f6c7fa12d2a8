//! The router actor: owns one entity actor per aggregate id, spawns them on
//! demand (recovering from the journal) and passivates idle ones so memory
//! stays bounded however many aggregates the store holds.

use super::config::ServiceConfig;
use super::core::{EntityCore, Execute};
use super::entity::{Deliver, Entity, Inspect, Passivate, Respond};
use super::error::ServiceError;
use super::mailbox::{Mailbox, Ticket};
use crate::aggregate::Aggregate;
use crate::journal::Journal;
use crate::recovery::Recovered;
use actix::prelude::*;
use std::collections::HashMap;
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
}

pub(crate) struct Router<A: Aggregate> {
    journal: Journal,
    config: Arc<ServiceConfig>,
    entities: HashMap<Uuid, Slot<A>>,
}

impl<A: Aggregate> Router<A> {
    pub fn new(journal: Journal, config: Arc<ServiceConfig>) -> Self {
        Self {
            journal,
            config,
            entities: HashMap::new(),
        }
    }

    /// The live entity for `id`, spawned from the journal if there is none.
    fn entity(&mut self, id: Uuid) -> Result<(Addr<Entity<A>>, Mailbox), ServiceError> {
        if let Some(slot) = self.entities.get_mut(&id) {
            if slot.addr.connected() {
                slot.last_used = Instant::now();
                return Ok((slot.addr.clone(), slot.mailbox.clone()));
            }
        }
        let core = EntityCore::<A>::recover(self.journal.clone(), self.config.clone(), id)?;
        let addr = Entity::new(core).start();
        let mailbox = Mailbox::new(self.config.entity_mailbox);
        self.entities.insert(
            id,
            Slot {
                addr: addr.clone(),
                mailbox: mailbox.clone(),
                last_used: Instant::now(),
            },
        );
        if self.entities.len() > self.config.max_entities {
            self.evict_least_recent();
        }
        Ok((addr, mailbox))
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
                slot.addr.do_send(Passivate);
            }
        }
    }

    fn sweep(&mut self) {
        let idle = self.config.passivate_after;
        let now = Instant::now();
        self.entities.retain(|_, slot| {
            let keep = slot.addr.connected() && now.duration_since(slot.last_used) < idle;
            if !keep {
                // Queued commands run first; new ones go to a fresh entity,
                // and the journal's version check keeps the two from
                // overwriting each other.
                slot.addr.do_send(Passivate);
            }
            keep
        });
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

    fn handle(&mut self, msg: Route<A>, _: &mut Self::Context) {
        let Route {
            exec,
            respond,
            ticket: _router_place,
        } = msg;
        let id = A::aggregate_id(&exec.command.command);
        let (addr, mailbox) = match self.entity(id) {
            Ok(found) => found,
            Err(err) => {
                let _ = respond.send(Err(err));
                return;
            }
        };
        let Some(ticket) = mailbox.try_reserve() else {
            let _ = respond.send(Err(ServiceError::Overloaded("entity")));
            return;
        };
        let deliver = Deliver {
            exec,
            respond,
            ticket,
        };
        // `entity()` returned a connected actor and nothing runs in between
        // on this thread. Should it die with the message queued, dropping the
        // message drops `respond`: the caller sees `EntityCrashed`, never
        // silence, and the next command gets a fresh entity.
        addr.do_send(deliver);
    }
}

impl<A: Aggregate> Handler<InspectEntity<A>> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: InspectEntity<A>, _: &mut Self::Context) {
        let addr = match self.entity(msg.id) {
            Ok((addr, _)) => addr,
            Err(err) => {
                let _ = msg.respond.send(Err(err));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        let respond = msg.respond;
        addr.do_send(Inspect { respond: tx });
        actix::spawn(async move {
            let result = rx.await.map_err(|_| ServiceError::Stopped);
            let _ = respond.send(result);
        });
    }
}

impl<A: Aggregate> Handler<Shutdown> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        for (_, slot) in self.entities.drain() {
            slot.addr.do_send(Passivate);
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
