//! A service: a router actor, its entity actors and the journal they write.
//!
//! [`Service`] is the handle callers use. It must be started inside an actix
//! system. Commands are answered with a [`Reply`] (accepted or rejected) or a
//! [`ServiceError`] when no business answer could be given.

mod config;
mod core;
mod entity;
mod error;
mod mailbox;
mod records;
mod router;
mod views;

pub use self::core::{command_span, Execute};
pub use config::ServiceConfig;
pub use error::ServiceError;
pub use records::{outbox_record, reply_record, traceparent};

use crate::aggregate::Aggregate;
use crate::aggregates::{Order, Product, User};
use crate::journal::Journal;
use crate::migrations::{index_archive, index_lists, move_legacy_secrets};
use crate::recovery::{stream_of, Recovered};
use actix::prelude::*;
use actix::ArbiterHandle;
use mailbox::Mailbox;
use ordersaga_events::{CommandEnvelope, Reply, StreamId};
use router::{CountEntities, EntityCounters, InspectEntity, Route, Router, Shutdown};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;
use uuid::Uuid;
use views::Views;

/// The users service.
pub type UserService = Service<User>;
/// The inventory service (one aggregate per product).
pub type InventoryService = Service<Product>;
/// The orders service.
pub type OrderService = Service<Order>;

/// How a service's queries ([`Service::state`]) were answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryCounts {
    /// From the state an entity last gave out, with no message to it.
    pub from_views: u64,
    /// By the entity, recovered first if it was not in memory.
    pub from_entities: u64,
}

impl std::ops::Add for QueryCounts {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            from_views: self.from_views + other.from_views,
            from_entities: self.from_entities + other.from_entities,
        }
    }
}

/// A handle to a running service. Cheap to clone.
pub struct Service<A: Aggregate> {
    router: Addr<Router<A>>,
    mailbox: Mailbox,
    journal: Journal,
    counters: Arc<EntityCounters>,
    /// The states the live entities last gave out (see `views`).
    views: Arc<Views<A>>,
}

impl<A: Aggregate> Clone for Service<A> {
    fn clone(&self) -> Self {
        Self {
            router: self.router.clone(),
            mailbox: self.mailbox.clone(),
            journal: self.journal.clone(),
            counters: self.counters.clone(),
            views: self.views.clone(),
        }
    }
}

/// A command the service could not queue; the command is handed back.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError<A: Aggregate> {
    /// The router's mailbox is full. Back off and resubmit.
    #[error("overloaded: the router mailbox is full")]
    Overloaded(Box<Execute<A>>),
    /// The service has stopped.
    #[error("service is stopping")]
    Stopped(Box<Execute<A>>),
}

impl<A: Aggregate> SubmitError<A> {
    /// The command that was not queued.
    pub fn into_inner(self) -> Execute<A> {
        match self {
            SubmitError::Overloaded(exec) | SubmitError::Stopped(exec) => *exec,
        }
    }
}

impl<A: Aggregate> From<SubmitError<A>> for ServiceError {
    fn from(err: SubmitError<A>) -> Self {
        match err {
            SubmitError::Overloaded(_) => ServiceError::Overloaded("router"),
            SubmitError::Stopped(_) => ServiceError::Stopped,
        }
    }
}

/// The answer to a queued command, when it comes.
pub struct PendingReply {
    stream: StreamId,
    rx: oneshot::Receiver<Result<Reply, ServiceError>>,
}

impl Future for PendingReply {
    type Output = Result<Reply, ServiceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stream = self.stream;
        Pin::new(&mut self.rx)
            .poll(cx)
            // The entity died with the command in flight: still an answer.
            .map(|r| r.unwrap_or(Err(ServiceError::EntityCrashed(stream))))
    }
}

impl<A: Aggregate> Service<A> {
    /// Starts the router on the current actix arbiter. A store written
    /// before the archive index existed gets it built first (once).
    pub fn start(journal: Journal, config: ServiceConfig) -> Self {
        Self::start_with(journal, config, |router| router.start())
    }

    /// Starts the router, and with it every entity of the service, on
    /// `arbiter`: a thread of its own, so that one busy service (a hot
    /// aggregate, argon2 hashing a burst of registrations) does not hold up
    /// the other services or the transport of the same process.
    pub fn start_on(journal: Journal, config: ServiceConfig, arbiter: &ArbiterHandle) -> Self {
        Self::start_with(journal, config, |router| {
            Router::start_in_arbiter(arbiter, move |_| router)
        })
    }

    fn start_with(
        journal: Journal,
        config: ServiceConfig,
        start: impl FnOnce(Router<A>) -> Addr<Router<A>>,
    ) -> Self {
        match index_archive::<A>(&journal) {
            Ok(0) => {}
            Ok(entries) => tracing::info!(
                service = A::SERVICE.name(),
                entries,
                "built the archive index of closed items from the log"
            ),
            // Not fatal: the store stays as it was, and the next start tries
            // again. Until then a closed order may be recalled wrongly.
            Err(err) => tracing::error!(
                service = A::SERVICE.name(),
                store = %journal.path().display(),
                cause = %err,
                "cannot build the archive index; closed orders are not remembered"
            ),
        }
        match index_lists::<A>(&journal) {
            Ok(0) => {}
            Ok(entries) => tracing::info!(
                service = A::SERVICE.name(),
                entries,
                "built the list indexes from the log"
            ),
            Err(err) => tracing::error!(
                service = A::SERVICE.name(),
                store = %journal.path().display(),
                cause = %err,
                "cannot build the list indexes; lists miss what was stored before them"
            ),
        }
        match move_legacy_secrets::<A>(&journal) {
            Ok(0) => {}
            Ok(moved) => tracing::info!(
                service = A::SERVICE.name(),
                moved,
                "moved credentials out of old events into the store's secrets"
            ),
            Err(err) => tracing::error!(
                service = A::SERVICE.name(),
                store = %journal.path().display(),
                cause = %err,
                "cannot move credentials out of old events; accounts registered before may not log in"
            ),
        }
        let mailbox = Mailbox::new(config.router_mailbox);
        let counters = Arc::new(EntityCounters::default());
        let views = Arc::new(Views::new());
        let router = start(Router::<A>::new(
            journal.clone(),
            Arc::new(config),
            counters.clone(),
            views.clone(),
        ));
        Self {
            router,
            mailbox,
            journal,
            counters,
            views,
        }
    }

    /// The service's journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Queues a command without waiting for room: a full mailbox hands the
    /// command back at once.
    pub fn submit(&self, exec: Execute<A>) -> Result<PendingReply, SubmitError<A>> {
        let stream = stream_of::<A>(A::aggregate_id(&exec.command.command));
        let Some(ticket) = self.mailbox.try_reserve() else {
            return Err(SubmitError::Overloaded(Box::new(exec)));
        };
        if !self.router.connected() {
            return Err(SubmitError::Stopped(Box::new(exec)));
        }
        let (respond, rx) = oneshot::channel();
        self.router.do_send(Route {
            exec,
            respond,
            ticket,
        });
        Ok(PendingReply { stream, rx })
    }

    /// Executes a command and waits for its reply.
    pub async fn execute(&self, exec: Execute<A>) -> Result<Reply, ServiceError> {
        self.submit(exec)?.await
    }

    /// Executes a bare command (fresh ids, no reply topic).
    pub async fn send(&self, command: A::Command) -> Result<Reply, ServiceError> {
        self.execute(Execute::new(CommandEnvelope::new(command)))
            .await
    }

    /// The live state of aggregate `id`, as its entity holds it: from the
    /// state the entity last gave out when no command has run since (no
    /// message, no wait), else from the entity, after the command it is
    /// running (see `views`).
    pub async fn state(&self, id: Uuid) -> Result<Recovered<A>, ServiceError> {
        if let Some(current) = self.views.get(&id) {
            self.counters
                .queries_from_views
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(current);
        }
        self.counters
            .queries_from_entities
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (respond, rx) = oneshot::channel();
        if !self.router.connected() {
            return Err(ServiceError::Stopped);
        }
        self.router.do_send(InspectEntity { id, respond });
        rx.await.map_err(|_| ServiceError::Stopped)?
    }

    /// Stops the router and its entities; commands already queued are
    /// answered first, later ones get [`ServiceError::Stopped`]. The journal
    /// closes once every handle to it is gone.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.router.connected() {
            self.router.do_send(Shutdown { done });
            let _ = stopped.await;
        }
    }

    /// How many entities were passivated (stopped when idle or evicted) since
    /// the service started.
    pub fn passivations(&self) -> u64 {
        self.counters
            .passivated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many entities were started since the service started, each
    /// recovered from the journal (its snapshot and the events after it):
    /// the cold starts.
    pub fn recoveries(&self) -> u64 {
        self.counters
            .recovered
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How the queries since the service started were answered.
    pub fn queries(&self) -> QueryCounts {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        QueryCounts {
            from_views: load(&self.counters.queries_from_views),
            from_entities: load(&self.counters.queries_from_entities),
        }
    }

    /// How many entities are in memory now.
    pub async fn live_entities(&self) -> Result<usize, ServiceError> {
        self.router
            .send(CountEntities)
            .await
            .map_err(|_| ServiceError::Stopped)
    }
}
