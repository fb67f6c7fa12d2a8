//! Queries of live aggregates: answered from the state the entity last gave
//! out while no command has run since, and never older than a durable
//! write.

use ordersaga_actors::aggregate::Aggregate;
use ordersaga_actors::{Execute, Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::reply::ReasonCode;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::{CommandEnvelope, StreamKind, Versioned};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{mpsc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Polls `future` once: its answer if it has one without waiting.
fn now<F: Future>(future: F) -> Option<F::Output> {
    now_pinned(pin!(future))
}

fn now_pinned<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn journal() -> Journal {
    Journal::open(JournalConfig::tmp()).expect("open temp journal")
}

/// A gate per aggregate: `Hold` tells `entered` it is running, then waits for
/// `release` (on the blocking pool, where `prepare` runs).
struct Gate {
    entered: oneshot::Sender<()>,
    release: mpsc::Receiver<()>,
}

static GATES: Mutex<Option<HashMap<Uuid, Gate>>> = Mutex::new(None);

/// Sets a gate for `id`; returns "it is running" and "let it go".
fn gate(id: Uuid) -> (oneshot::Receiver<()>, mpsc::Sender<()>) {
    let (entered, running) = oneshot::channel();
    let (release, held) = mpsc::channel();
    GATES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(
            id,
            Gate {
                entered,
                release: held,
            },
        );
    (running, release)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum TallyEvent {
    Added(u64),
}

impl Versioned for TallyEvent {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "TallyEvent";
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TallyCommand {
    Add(Uuid, u64),
    /// Adds 1, after waiting at the aggregate's gate.
    Hold(Uuid),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("never")]
struct Never;

impl ReasonCode for Never {
    fn code(&self) -> &'static str {
        "never"
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: u64,
}

impl Aggregate for Tally {
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Rejection = Never;
    const KIND: StreamKind = StreamKind::Product;
    const SERVICE: ServiceName = ServiceName::Inventory;
    const PREPARES: bool = true;

    fn aggregate_id(command: &TallyCommand) -> Uuid {
        match command {
            TallyCommand::Add(id, _) | TallyCommand::Hold(id) => *id,
        }
    }

    fn prepare(command: &mut TallyCommand) -> Result<(), Never> {
        if let TallyCommand::Hold(id) = command {
            let gate = GATES.lock().unwrap().as_mut().and_then(|g| g.remove(id));
            if let Some(gate) = gate {
                let _ = gate.entered.send(());
                let _ = gate.release.recv();
            }
        }
        Ok(())
    }

    fn decide(&self, command: &TallyCommand) -> Result<Vec<TallyEvent>, Never> {
        match command {
            TallyCommand::Add(_, n) => Ok(vec![TallyEvent::Added(*n)]),
            TallyCommand::Hold(_) => Ok(vec![TallyEvent::Added(1)]),
        }
    }

    fn apply(&mut self, event: &TallyEvent) {
        let TallyEvent::Added(n) = event;
        self.total += n;
    }
}

#[actix_rt::test]
async fn a_read_with_no_command_since_the_last_is_answered_without_the_entity() {
    let tallies: Service<Tally> = Service::start(journal(), ServiceConfig::default());
    let id = Uuid::new_v4();
    tallies.send(TallyCommand::Add(id, 5)).await.unwrap();

    // Given the entity was asked once since its command,
    let first = tallies.state(id).await.unwrap();
    assert_eq!((first.state.total, first.version), (5, 1));
    // when it is read again, the answer is ready at once: no message to the
    // router or the entity, nothing to wait for.
    let again = now(tallies.state(id)).expect("answered at once");
    assert_eq!(again.unwrap(), first);
    let counted = tallies.queries();
    assert_eq!((counted.from_entities, counted.from_views), (1, 1));
}

#[actix_rt::test]
async fn a_command_makes_the_next_read_ask_the_entity_and_see_it() {
    let tallies: Service<Tally> = Service::start(journal(), ServiceConfig::default());
    let id = Uuid::new_v4();
    tallies.send(TallyCommand::Add(id, 5)).await.unwrap();
    tallies.state(id).await.unwrap();

    // Given the view holds version 1, when another command is answered,
    tallies.send(TallyCommand::Add(id, 2)).await.unwrap();
    // then the view is gone, and the read that follows sees the command.
    assert!(now(tallies.state(id)).is_none(), "asks the entity");
    let after = tallies.state(id).await.unwrap();
    assert_eq!((after.state.total, after.version), (7, 2));
}

#[actix_rt::test]
async fn a_read_while_a_command_runs_waits_for_it_and_is_never_older() {
    let tallies: Service<Tally> = Service::start(journal(), ServiceConfig::default());
    let id = Uuid::new_v4();
    tallies.send(TallyCommand::Add(id, 5)).await.unwrap();
    tallies.state(id).await.unwrap();

    // Given a command is running (held at its gate, before its write),
    let (running, release) = gate(id);
    let held = tallies
        .submit(Execute::new(CommandEnvelope::new(TallyCommand::Hold(id))))
        .unwrap();
    running.await.expect("the command started");
    // when the aggregate is read, the read waits for the command;
    let mut read = Box::pin(tallies.state(id));
    assert!(now_pinned(read.as_mut()).is_none(), "no answer mid-command");
    // then, once the command is through, it sees the command's write.
    release.send(()).unwrap();
    assert!(held.await.unwrap().outcome.is_accepted());
    let seen = read.await.unwrap();
    assert_eq!((seen.state.total, seen.version), (6, 2));
}

#[actix_rt::test]
async fn a_passivated_entity_takes_its_view_with_it_and_comes_back_current() {
    let config = ServiceConfig {
        passivate_after: Duration::from_secs(60),
        ..ServiceConfig::default()
    };
    let tallies: Service<Tally> = Service::start(journal(), config);
    let id = Uuid::new_v4();
    tallies.send(TallyCommand::Add(id, 5)).await.unwrap();
    tallies.state(id).await.unwrap();
    assert!(now(tallies.state(id)).is_some());

    // Given the entity was passivated while idle,
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(181)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(tallies.live_entities().await.unwrap(), 0);
    // then a read asks for it again (from the journal) and sees its state.
    assert!(now(tallies.state(id)).is_none(), "no view left");
    let back = tallies.state(id).await.unwrap();
    assert_eq!((back.state.total, back.version), (5, 1));
}
