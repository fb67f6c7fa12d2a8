//! The entity actor: the one writer of one aggregate.
//!
//! Commands are handled one at a time ([`AtomicResponse`]): the next command is
//! decided only after the previous one's events are durable and applied. The
//! mailbox is bounded (see `mailbox`); the router refuses work for a full one.
//!
//! Supervision: a panic in `decide` or `apply` is contained, the state is
//! rebuilt from the journal and the command is answered with
//! [`ServiceError::EntityCrashed`]. If the actor dies anyway, the reply channel
//! of the command in flight closes, which its caller also sees as
//! `EntityCrashed`; the router replaces the entity on the next command.
//!
//! Queries are answered from the entity's view (see `views`) when it is
//! current; the entity clears it when it takes up a command and fills it
//! when it is asked.

use super::core::{EntityCore, Execute};
use super::error::ServiceError;
use super::mailbox::Ticket;
use super::views::Views;
use crate::aggregate::Aggregate;
use crate::recovery::Recovered;
use actix::prelude::*;
use ordersaga_events::Reply;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::Instrument;

/// The caller's end of one command's answer.
pub(crate) type Respond = oneshot::Sender<Result<Reply, ServiceError>>;

/// Deliver a command; the answer goes to `respond`, so a full mailbox can be
/// refused without waiting (`try_send`).
pub(crate) struct Deliver<A: Aggregate> {
    pub exec: Execute<A>,
    pub respond: Respond,
    /// Held until the command is answered.
    pub ticket: Ticket,
}

impl<A: Aggregate> Message for Deliver<A> {
    type Result = ();
}

/// Read the entity's current state.
pub(crate) struct Inspect<A: Aggregate> {
    pub respond: oneshot::Sender<Recovered<A>>,
}

impl<A: Aggregate> Message for Inspect<A> {
    type Result = ();
}

/// Stop after the commands already queued.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Passivate;

pub(crate) struct Entity<A: Aggregate> {
    core: Option<EntityCore<A>>,
    /// The aggregate's id.
    id: uuid::Uuid,
    /// Which start of this aggregate's entity this is (see `views`).
    incarnation: u64,
    views: Arc<Views<A>>,
}

impl<A: Aggregate> Entity<A> {
    /// Incarnation `incarnation` of the entity of `id`, whose view the
    /// router has opened.
    pub fn new(
        core: EntityCore<A>,
        id: uuid::Uuid,
        incarnation: u64,
        views: Arc<Views<A>>,
    ) -> Self {
        Self {
            core: Some(core),
            id,
            incarnation,
            views,
        }
    }
}

impl<A: Aggregate> Actor for Entity<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded by tickets (see `mailbox`), not by actix's parking capacity.
        ctx.set_mailbox_capacity(0);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.views.close(&self.id, self.incarnation);
    }
}

impl<A: Aggregate> Handler<Deliver<A>> for Entity<A> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Deliver<A>, _: &mut Self::Context) -> Self::Result {
        // Before anything is written: from here until the next query, queries
        // wait for this entity (see `views`).
        self.views.clear(&self.id);
        // AtomicResponse runs one command at a time, so the core is always
        // here when a command arrives; its absence means a previous command's
        // future was dropped mid-flight, and the only safe answer is an error.
        let Some(mut core) = self.core.take() else {
            let _ = msg.respond.send(Err(ServiceError::Stopped));
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let Deliver {
            exec,
            respond,
            ticket,
        } = msg;
        AtomicResponse::new(Box::pin(
            async move {
                let span = exec.span.clone();
                let result = core.execute(exec).instrument(span).await;
                drop(ticket);
                (core, result)
            }
            .into_actor(self)
            .map(move |(core, result), act, _| {
                act.core = Some(core);
                // The caller may have stopped waiting; the outcome is durable.
                let _ = respond.send(result);
            }),
        ))
    }
}

impl<A: Aggregate> Handler<Inspect<A>> for Entity<A> {
    type Result = ();

    fn handle(&mut self, msg: Inspect<A>, _: &mut Self::Context) {
        if let Some(core) = &self.core {
            let state = core.snapshot();
            self.views.fill(self.id, self.incarnation, &state);
            let _ = msg.respond.send(state);
        }
    }
}

impl<A: Aggregate> Handler<Passivate> for Entity<A> {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
