//! `ordersaga journal-load` (hidden): appends to a store under load and prints
//! one line per durable append, so a crash test can kill it mid-write and check
//! that every acknowledged append survived.
//!
//! What it writes, so a checker can verify a store it left behind:
//! - streams: `--streams` user streams with ids `Uuid::new_v5(NAMESPACE_OID,
//!   "ordersaga/journal-load/<index>")`; stream `i` belongs to writer
//!   `i % --writers`, so each stream has one appender at a time;
//! - each append is what a user command makes: 1-3 encoded
//!   [`UserEvent`] envelopes (the first event of a stream is `Registered`,
//!   claiming its email in the `user-email` index, later ones `Deposited`)
//!   whose `causation_id` is the command id, one outbox record per event
//!   (payload: the stored envelope bytes), the command id with an encoded
//!   [`Reply`] whose outcome is `Accepted { sequences }`, and a consumed
//!   offset on [`USERS_COMMANDS`] partition = writer index whose
//!   `next_offset` counts that partition's appends;
//! - after each acknowledged (durable) append, one stdout line
//!   `ack <stream> <last-sequence> <command-id>`, stream written `user:<uuid>`.
//!
//! On start it resumes from the stored stream versions and offsets, so it can
//! be restarted on a store it was killed writing.

use super::CliError;
use chrono::Utc;
use clap::Args;
use ordersaga_actors::aggregates::EMAIL_INDEX;
use ordersaga_actors::journal::{AppendBatch, ConsumedOffset, OutboxRecord, StreamAppend};
use ordersaga_actors::{Journal, JournalConfig, UniqueChange};
use ordersaga_events::codec::{encode, encode_event, Format};
use ordersaga_events::topics::{header, Service, USERS_COMMANDS};
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, Outcome, Reply, StreamId, StreamKind,
    UserId, Versioned,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// Arguments of `journal-load`.
#[derive(Debug, Args)]
pub struct JournalLoadArgs {
    /// The store directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Distinct streams written.
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// Appends in total; 0 runs until killed.
    #[arg(long, default_value_t = 0)]
    pub appends: u64,
}

/// The consumer cluster id recorded with every offset.
const CLUSTER_ID: &str = "journal-load";

/// The deterministic id of load stream `index` (stable across restarts).
fn stream_id(index: usize) -> StreamId {
    let name = format!("ordersaga/journal-load/{index}");
    StreamId::new(
        StreamKind::User,
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
    )
}

/// Runs the load.
pub fn run(args: JournalLoadArgs) -> Result<(), CliError> {
    if args.writers == 0 || args.streams == 0 {
        return Err("--writers and --streams must be at least 1".into());
    }
    let journal = Journal::open(JournalConfig::new(&args.data))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(load(journal.clone(), &args));
    // Tasks aborted after an error hold journal handles until the runtime
    // goes; the last handle to drop then joins the writer after a final flush.
    drop(runtime);
    drop(journal);
    result
}

/// One stream owned by a writer and its version as this writer knows it.
struct Slot {
    stream: StreamId,
    version: u64,
}

async fn load(journal: Journal, args: &JournalLoadArgs) -> Result<(), CliError> {
    // Shared budget of appends; each writer takes one ticket per append.
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..args.writers {
        let mut slots = Vec::new();
        for index in (writer..args.streams).step_by(args.writers) {
            let stream = stream_id(index);
            let version = journal.version(&stream)?;
            slots.push(Slot { stream, version });
        }
        if slots.is_empty() {
            continue;
        }
        let partition = i32::try_from(writer)?;
        let next_offset = journal
            .offset(USERS_COMMANDS, partition)?
            .map_or(0, |o| o.next_offset);
        let journal = journal.clone();
        let issued = issued.clone();
        let limit = args.appends;
        tasks.spawn(async move {
            append_loop(journal, slots, partition, next_offset, issued, limit).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        // The first failure ends the run; dropping the set aborts the others.
        joined??;
    }
    Ok(())
}

async fn append_loop(
    journal: Journal,
    mut slots: Vec<Slot>,
    partition: i32,
    mut next_offset: i64,
    issued: Arc<AtomicU64>,
    limit: u64,
) -> Result<(), CliError> {
    let mut turn = 0usize;
    let len = slots.len();
    loop {
        if limit != 0 && issued.fetch_add(1, Ordering::Relaxed) >= limit {
            return Ok(());
        }
        let slot = &mut slots[turn % len];
        turn += 1;
        // 1-3 events, varied deterministically so batches differ in size.
        let count = 1 + (next_offset.unsigned_abs() % 3);
        let command_id = CommandId::new();
        let batch = command_batch(slot, command_id, count, partition, next_offset + 1)?;
        journal.append(batch).await?;
        slot.version += count;
        next_offset += 1;
        // Printed only once the append is durable: the crash test treats
        // every line it reads as a promise.
        let line = format!("ack {} {} {}\n", slot.stream, slot.version, command_id);
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())?;
        out.flush()?;
    }
}

/// The batch a user command appending `count` events to `slot` would write.
fn command_batch(
    slot: &Slot,
    command_id: CommandId,
    count: u64,
    partition: i32,
    next_offset: i64,
) -> Result<AppendBatch, CliError> {
    let correlation_id = CorrelationId::new();
    let mut events = Vec::new();
    let mut outbox = Vec::new();
    let mut unique = Vec::new();
    let sequences: Vec<u64> = (slot.version + 1..=slot.version + count).collect();
    for &sequence in &sequences {
        let payload = if sequence == 1 {
            let email = format!("load-{}@example.invalid", slot.stream.id);
            unique.push(UniqueChange::Claim {
                index: EMAIL_INDEX,
                key: email.clone(),
            });
            UserEvent::Registered {
                user_id: UserId::from_uuid(slot.stream.id),
                email,
                username: "load".into(),
            }
        } else {
            UserEvent::Deposited {
                amount: Cents(sequence * 100),
            }
        };
        let envelope = Envelope {
            event_id: EventId::new(),
            stream: slot.stream,
            sequence,
            recorded_at: Utc::now(),
            correlation_id,
            causation_id: command_id,
            schema_version: UserEvent::SCHEMA_VERSION,
            payload,
        };
        let bytes = encode_event(Format::Bincode, &envelope)?;
        outbox.push(OutboxRecord {
            topic: Service::Users.events_topic().to_string(),
            key: Some(slot.stream.id.to_string().into_bytes()),
            payload: Some(bytes.clone()),
            headers: vec![(
                header::CONTENT_TYPE.to_string(),
                Format::Bincode.content_type().as_bytes().to_vec(),
            )],
        });
        events.push(bytes);
    }
    let reply = Reply {
        command_id,
        correlation_id,
        stream: slot.stream,
        outcome: Outcome::Accepted { sequences },
        result: None,
    };
    Ok(AppendBatch {
        events: Some(StreamAppend {
            stream: slot.stream,
            expected_version: slot.version,
            events,
            unique,
        }),
        outbox,
        processed: Some((command_id, encode(Format::Bincode, &reply)?)),
        offset: Some(ConsumedOffset {
            topic: USERS_COMMANDS.to_string(),
            partition,
            cluster_id: CLUSTER_ID.to_string(),
            next_offset,
        }),
        schedule: None,
        archive: Vec::new(),
        secrets: Vec::new(),
        lists: Vec::new(),
    })
}
