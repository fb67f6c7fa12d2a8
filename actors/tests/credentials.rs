//! Credentials never leave the users store: a registration's password hash
//! is a secret of the store, written with the event but never in it, so no
//! event, outbox record or snapshot carries it. Stores written when events
//! still carried the hash get it moved into their secrets once.

use ordersaga_actors::aggregates::{verify_password, User, PASSWORD_SECRET};
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::recovery::stream_of;
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::codec::{encode_event, Format, Versioned};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{CommandId, CorrelationId, Envelope, EventId, UserId};
use serde::Serialize;
use std::path::Path;

const PASSWORD: &str = "correct horse battery";

fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir)).expect("open store")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[actix_rt::test]
async fn a_registration_keeps_its_hash_in_the_store_and_out_of_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let users = Service::<User>::start(
        open(dir.path()),
        ServiceConfig {
            // Snapshot at once, so the snapshot is checked too.
            snapshot_every: 1,
            ..ServiceConfig::default()
        },
    );
    let u = UserId::new();
    let register = UserCommand::Register {
        user_id: u,
        email: "secret@example.com".into(),
        username: "keeper".into(),
        password: Password::new(PASSWORD),
    };
    assert!(users.send(register).await.unwrap().outcome.is_accepted());

    let journal = users.journal();
    let stream = stream_of::<User>(u.as_uuid());
    let hash = journal
        .secret(&stream, PASSWORD_SECRET)
        .unwrap()
        .expect("a secret");
    let hash = String::from_utf8(hash).unwrap();
    assert!(verify_password(&hash, PASSWORD));

    let mut records: Vec<Vec<u8>> = journal
        .read_stream(&stream, 1)
        .map(|item| item.unwrap().1)
        .collect();
    records.extend(
        journal
            .outbox_pending(0, 100)
            .unwrap()
            .into_iter()
            .filter_map(|(_, record)| record.payload),
    );
    records.push(journal.load_snapshot(&stream).unwrap().expect("snapshot").1);
    assert!(records.len() >= 3);
    for bytes in &records {
        assert!(!contains(bytes, "$argon2"), "a hash leaked");
        assert!(!contains(bytes, &hash[hash.len() - 16..]), "a hash leaked");
        assert!(!contains(bytes, PASSWORD), "the password leaked");
    }

    // A deleted account can never log in again.
    assert!(users
        .send(UserCommand::Delete { user_id: u })
        .await
        .unwrap()
        .outcome
        .is_accepted());
    assert_eq!(journal.secret(&stream, PASSWORD_SECRET).unwrap(), None);
    users.shutdown().await;
}

/// The first schema of a user event, as stores written before credentials
/// left the events hold it (only the variant this test writes).
#[derive(Serialize, serde::Deserialize)]
enum UserEventV1 {
    Registered {
        user_id: UserId,
        email: String,
        username: String,
        password_hash: String,
    },
}

impl Versioned for UserEventV1 {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "UserEvent";
}

#[actix_rt::test]
async fn an_older_store_moves_the_hash_out_of_its_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let u = UserId::new();
    let stream = stream_of::<User>(u.as_uuid());
    let hash = {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap()
            .to_string()
    };
    {
        let journal = open(dir.path());
        let old = Envelope {
            event_id: EventId::new(),
            stream,
            sequence: 1,
            recorded_at: chrono::Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version: 1,
            payload: UserEventV1::Registered {
                user_id: u,
                email: "old@example.com".into(),
                username: "old timer".into(),
                password_hash: hash.clone(),
            },
        };
        let batch = AppendBatch {
            events: Some(StreamAppend {
                stream,
                expected_version: 0,
                events: vec![encode_event(Format::Bincode, &old).unwrap()],
                unique: Vec::new(),
            }),
            ..AppendBatch::default()
        };
        journal.append(batch).await.unwrap();
        assert_eq!(journal.secret(&stream, PASSWORD_SECRET).unwrap(), None);
    }
    // Given the old store, when the users service starts on it,
    let users = Service::<User>::start(open(dir.path()), ServiceConfig::default());
    // then the hash is a secret, and the old event still replays (upcast).
    let moved = users.journal().secret(&stream, PASSWORD_SECRET).unwrap();
    assert_eq!(moved.as_deref(), Some(hash.as_bytes()));
    let state = users.state(u.as_uuid()).await.unwrap().state;
    assert!(state.is_registered());
    assert_eq!(state.email(), "old@example.com");
    users.shutdown().await;
}
