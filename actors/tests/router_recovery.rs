//! A cold aggregate with a long history is recovered off the router's
//! thread: while it replays, the router goes on serving every other
//! aggregate, and the commands waiting for it are answered in order once it
//! is back.

use ordersaga_actors::aggregates::User;
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::{Execute, Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::user::{UserCommand, UserEvent};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, CorrelationId, Envelope, EventId, Outcome, StreamId,
    StreamKind, UserId, Versioned,
};

/// Events of a long-lived user: registered, then `deposits` deposits of 1.
async fn long_history(journal: &Journal, user_id: UserId, deposits: u64) {
    let stream = StreamId::new(StreamKind::User, user_id.as_uuid());
    let envelope = |sequence: u64, payload: UserEvent| {
        encode_event(
            Format::Bincode,
            &Envelope {
                event_id: EventId::new(),
                stream,
                sequence,
                recorded_at: chrono::Utc::now(),
                correlation_id: CorrelationId::new(),
                causation_id: CommandId::new(),
                schema_version: UserEvent::SCHEMA_VERSION,
                payload,
            },
        )
        .unwrap()
    };
    let mut events = vec![envelope(
        1,
        UserEvent::Registered {
            user_id,
            email: format!("{user_id}@example.com"),
            username: "long-lived".into(),
        },
    )];
    let mut version = 0;
    for sequence in 2..=deposits + 1 {
        events.push(envelope(
            sequence,
            UserEvent::Deposited { amount: Cents(1) },
        ));
        if events.len() == 5_000 || sequence == deposits + 1 {
            let count = events.len() as u64;
            journal
                .append(AppendBatch {
                    events: Some(StreamAppend {
                        stream,
                        expected_version: version,
                        events: std::mem::take(&mut events),
                        unique: Vec::new(),
                    }),
                    ..AppendBatch::default()
                })
                .await
                .unwrap();
            version += count;
        }
    }
}

fn deposit(user_id: UserId) -> Execute<User> {
    Execute::new(CommandEnvelope::new(UserCommand::Deposit {
        user_id,
        amount: Cents(5),
    }))
}

#[actix_rt::test]
async fn the_router_serves_others_while_a_long_history_replays() {
    let journal = Journal::open(JournalConfig::tmp()).unwrap();
    let cold = UserId::new();
    long_history(&journal, cold, 100_000).await;
    // No snapshots: the cold user replays all of its history.
    let config = ServiceConfig {
        snapshot_every: 0,
        ..ServiceConfig::default()
    };
    let users = Service::<User>::start(journal.clone(), config);

    let first = users.submit(deposit(cold)).ok().unwrap();
    let second = users.submit(deposit(cold)).ok().unwrap();
    // The router answers at once: the replay is not on its thread. (Had it
    // replayed in line, the cold user would be live by the time the router
    // read this question.)
    assert_eq!(users.live_entities().await.unwrap(), 0);

    // The waiting commands are answered in order once the replay is done.
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert_eq!(
        first.outcome,
        Outcome::Accepted {
            sequences: vec![100_002]
        }
    );
    assert_eq!(
        second.outcome,
        Outcome::Accepted {
            sequences: vec![100_003]
        }
    );
    assert_eq!(users.live_entities().await.unwrap(), 1);
    users.shutdown().await;
}
