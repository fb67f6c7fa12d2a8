//! The router actor: owns one entity actor per aggregate id, spawns them on
//! demand (recovering from the journal) and passivates idle ones so memory
//! stays bounded however many aggregates the store holds.

use super::config::ServiceConfig;
use super::core::{EntityCore, Execute};
use super::entity::{Deliver, Entity, Inspect, Passivate, Respond};
use super::error::ServiceError;
use crate::aggregate::Aggregate;
use crate::journal::Journal;
use crate::recovery::Recovered;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Route a command to its entity.
pub(crate) struct Route<A: Aggregate> {
    pub exec: Execute<A>,
    pub respond: Respond,
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

/// How many entities are in memory.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CountEntities;

struct Slot<A: Aggregate> {
    addr: Addr<Entity<A>>,
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
    fn entity(&mut self, id: Uuid) -> Result<Addr<Entity<A>>, ServiceError> {
        if let Some(slot) = self.entities.get_mut(&id) {
            if slot.addr.connected() {
                slot.last_used = Instant::now();
                return Ok(slot.addr.clone());
            }
        }
        let core = EntityCore::<A>::recover(self.journal.clone(), self.config.clone(), id)?;
        let addr = Entity::new(core, self.config.entity_mailbox.max(1)).start();
        self.entities.insert(
            id,
            Slot {
                addr: addr.clone(),
                last_used: Instant::now(),
            },
        );
        if self.entities.len() > self.config.max_entities {
            self.evict_least_recent();
        }
        Ok(addr)
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
        ctx.set_mailbox_capacity(self.config.router_mailbox.max(1));
        let every = (self.config.passivate_after / 2).clamp(Duration::from_millis(10), Duration::from_secs(30));
        ctx.run_interval(every, |router, _| router.sweep());
    }
}

impl<A: Aggregate> Handler<Route<A>> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: Route<A>, _: &mut Self::Context) {
        let id = A::aggregate_id(&msg.exec.command.command);
        let mut deliver = Deliver {
            exec: msg.exec,
            respond: msg.respond,
        };
        // Two tries: the first may hit an entity that just stopped.
        for _ in 0..2 {
            let addr = match self.entity(id) {
                Ok(addr) => addr,
                Err(err) => {
                    let _ = deliver.respond.send(Err(err));
                    return;
                }
            };
            match addr.try_send(deliver) {
                Ok(()) => return,
                Err(SendError::Full(back)) => {
                    let _ = back.respond.send(Err(ServiceError::Overloaded("entity")));
                    return;
                }
                Err(SendError::Closed(back)) => {
                    self.entities.remove(&id);
                    deliver = back;
                }
            }
        }
        let _ = deliver.respond.send(Err(ServiceError::Stopped));
    }
}

impl<A: Aggregate> Handler<InspectEntity<A>> for Router<A> {
    type Result = ();

    fn handle(&mut self, msg: InspectEntity<A>, _: &mut Self::Context) {
        let addr = match self.entity(msg.id) {
            Ok(addr) => addr,
            Err(err) => {
                let _ = msg.respond.send(Err(err));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        let respond = msg.respond;
        if addr.try_send(Inspect { respond: tx }).is_err() {
            let _ = respond.send(Err(ServiceError::Overloaded("entity")));
            return;
        }
        actix::spawn(async move {
            let result = rx.await.map_err(|_| ServiceError::Stopped);
            let _ = respond.send(result);
        });
    }
}

impl<A: Aggregate> Handler<CountEntities> for Router<A> {
    type Result = usize;

    fn handle(&mut self, _: CountEntities, _: &mut Self::Context) -> usize {
        self.entities.values().filter(|s| s.addr.connected()).count()
    }
}
