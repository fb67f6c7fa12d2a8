//! The command consumer of one service.
//!
//! Delivery guarantee: **at least once in, exactly once in effect.** Each
//! record is decoded (bincode or JSON, told apart by its first byte; the
//! `content-type` header says the same), routed to its entity actor, and its
//! offset is stored in the same journal transaction as its effects. On
//! assignment the consumer seeks to the journal's offsets, so a restart
//! resumes exactly after the last durable command; a command seen again is
//! recognised by its id and answered with its first reply.
//!
//! Records run concurrently across aggregates, and one at a time per
//! aggregate in arrival order ([`super::key_order`]), so a later command
//! never overtakes an earlier one, not even while that one waits to be
//! retried. A `reply_to` must name a reply topic of the documented form
//! ([`super::reply_topics`]); a record naming anything else is dead-lettered
//! unapplied. Because they finish out of
//! order, the offset stored with a command is the partition's low-water mark:
//! the oldest offset still in flight, so nothing unfinished is ever skipped.
//! A record that cannot be decoded, or whose command keeps failing, goes to
//! the dead-letter topic with the reason, in the same transaction as its
//! offset, and consumption continues.
//!
//! At most `window` commands run at once. After a rebalance the records
//! still running are delivered again, and skipped ([`InFlight::begin`]).

use super::deadletter;
pub use super::decode::{command_decoder, decode_command, Decoder, Refusal};
use super::key_order::KeyOrder;
pub use super::offsets::JournalOffsets;
use super::offsets::{InFlight, Partition};
use super::reply_topics::{logical_reply_topic, ReplyTopics, INVALID_REPLY_TO};
use super::KafkaConfig;
use ordersaga_actors::journal::OutboxRecord;
use ordersaga_actors::journal::{AppendBatch, ConsumedOffset};
use ordersaga_actors::service::{command_span, reply_record};
use ordersaga_actors::{Aggregate, Execute, Journal, Service, ServiceError};
use ordersaga_events::{Outcome, Rejection, Reply, StreamId};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How a consumer behaves. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    /// Most commands in flight at once. Keep it at most the entity mailbox
    /// size, so the consumer alone can never overload an entity. Default 64.
    pub window: usize,
    /// Attempts at a command that fails without a business answer (storage
    /// error, crashed entity) before it is dead-lettered. Default 5.
    pub attempts: u32,
    /// How long a stop waits for commands in flight. Default 5 s: what is
    /// not finished by then is consumed again on the next start.
    pub drain_timeout: Duration,
    /// The group session timeout: how long the broker keeps a silent
    /// member's partitions. With static membership a restarted instance takes
    /// them back at once; an instance that never returns holds them this
    /// long. Default 30 s.
    pub session_timeout: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            window: 64,
            attempts: 5,
            drain_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(30),
        }
    }
}

/// A finished record.
struct Done {
    partition: Partition,
    offset: i64,
    /// The aggregate of a command that ran (none for a dead letter).
    key: Option<uuid::Uuid>,
}

/// A decoded command waiting for its aggregate's earlier commands.
struct Work<A: Aggregate> {
    exec: Execute<A>,
    message: OwnedMessage,
    partition: Partition,
    offset: i64,
}

/// Runs `work` for aggregate `key` in the background; reports when done.
fn start<A: Aggregate>(ctx: &Context<A>, key: uuid::Uuid, work: Work<A>) {
    let ctx = ctx.clone();
    actix::spawn(async move {
        execute(&ctx, work.exec, &work.message).await;
        let _ = ctx.done.send(Done {
            partition: work.partition,
            offset: work.offset,
            key: Some(key),
        });
    });
}

/// Everything a command task needs.
struct Context<A: Aggregate> {
    service: Service<A>,
    journal: Journal,
    kafka: KafkaConfig,
    cluster_id: String,
    name: &'static str,
    settings: ConsumerSettings,
    reply_topics: ReplyTopics,
    done: mpsc::UnboundedSender<Done>,
    /// This consumer's `ordersaga_consumer_in_flight`, looked up once: it
    /// is set on every command's start and finish.
    in_flight_gauge: prometheus::IntGauge,
    /// This consumer's `ordersaga_consumer_redelivered_in_flight_total`.
    redelivered: prometheus::IntCounter,
    /// This consumer's `ordersaga_consumer_resume_rewinds_total`.
    rewinds: prometheus::IntCounter,
}

impl<A: Aggregate> Clone for Context<A> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            journal: self.journal.clone(),
            kafka: self.kafka.clone(),
            cluster_id: self.cluster_id.clone(),
            name: self.name,
            settings: self.settings.clone(),
            reply_topics: self.reply_topics.clone(),
            done: self.done.clone(),
            in_flight_gauge: self.in_flight_gauge.clone(),
            redelivered: self.redelivered.clone(),
            rewinds: self.rewinds.clone(),
        }
    }
}

/// Consumes the service's command topic until `stop` becomes true, then waits
/// (bounded) for the commands in flight and stores the final offsets.
#[allow(clippy::too_many_arguments)]
pub async fn run<A: Aggregate>(
    service: Service<A>,
    consumer: StreamConsumer<JournalOffsets>,
    decode: Decoder<A::Command>,
    kafka: KafkaConfig,
    cluster_id: String,
    settings: ConsumerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let name = A::SERVICE.name();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let topic = consumer.context().topic().to_string();
    let metrics = crate::metrics::metrics();
    let ctx = Context {
        journal: service.journal().clone(),
        service,
        reply_topics: ReplyTopics::new(kafka.clone()),
        kafka,
        cluster_id,
        name,
        settings,
        done: done_tx,
        in_flight_gauge: metrics
            .consumer_in_flight
            .with_label_values(&[name, &topic]),
        redelivered: metrics
            .redelivered_in_flight
            .with_label_values(&[name, &topic]),
        rewinds: metrics.resume_rewinds.with_label_values(&[name, &topic]),
    };
    let mut in_flight = InFlight::default();
    let mut order: KeyOrder<uuid::Uuid, Work<A>> = KeyOrder::default();
    let window = ctx.settings.window.max(1);
    let mut commit = tokio::time::interval(COMMIT_INTERVAL);
    commit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            _ = commit.tick() => commit_group_offsets(&consumer, name),
            Some(done) = done_rx.recv() => {
                next_of_key(&ctx, &mut order, &done);
                finish(&ctx, &consumer, &mut in_flight, done).await;
            }
            received = consumer.recv(), if in_flight.count < window => {
                match received {
                    Ok(message) => {
                        let at = (message.topic(), message.partition(), message.offset());
                        let rewound = || ctx.rewinds.inc();
                        if consumer.context().resume.admit(&consumer, name, at, rewound) {
                            dispatch(&ctx, &decode, &mut in_flight, &mut order, message.detach()).await;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(service = name, cause = %err, "consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }
    let deadline = tokio::time::Instant::now() + ctx.settings.drain_timeout;
    while in_flight.count > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => {
                next_of_key(&ctx, &mut order, &done);
                finish(&ctx, &consumer, &mut in_flight, done).await
            }
            _ => {
                tracing::warn!(
                    service = name,
                    left = in_flight.count,
                    "stopping with commands in flight; they are consumed again on restart"
                );
                break;
            }
        }
    }
    close(consumer, name).await;
    tracing::info!(service = name, "consumer stopped");
}

/// How long a stop waits for librdkafka to close a consumer.
const CLOSE_BOUND: Duration = Duration::from_secs(3);

/// Closes the consumer on a thread of its own, waiting at most
/// [`CLOSE_BOUND`]: with the broker down, librdkafka's close waits for
/// requests that cannot complete, and a stop must not wait with it. (A
/// detached thread, not the runtime's blocking pool: the runtime waits for
/// its blocking tasks when it shuts down, and the process would hang on
/// exit.)
async fn close(consumer: StreamConsumer<JournalOffsets>, service: &'static str) {
    consumer.context().release();
    let (closed, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("{service}-consumer-close"))
        .spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
    if let Err(err) = spawned {
        tracing::warn!(service, cause = %err, "cannot start a thread to close the consumer");
        return;
    }
    if tokio::time::timeout(CLOSE_BOUND, done).await.is_err() {
        tracing::warn!(
            service,
            bound_ms = CLOSE_BOUND.as_millis() as u64,
            "the consumer did not close in time (is the broker down?); leaving it behind"
        );
    }
}

/// Starts the next command of the aggregate whose command is `done`.
fn next_of_key<A: Aggregate>(
    ctx: &Context<A>,
    order: &mut KeyOrder<uuid::Uuid, Work<A>>,
    done: &Done,
) {
    if let Some(key) = done.key {
        if let Some(next) = order.done(&key) {
            start(ctx, key, next);
        }
    }
}

/// How often the group's committed offsets catch up with the journal's.
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// Commits the offsets stored so far to the group, without waiting. They only
/// make lag visible to Kafka tooling; where to resume is the journal's.
fn commit_group_offsets(consumer: &StreamConsumer<JournalOffsets>, service: &'static str) {
    match consumer.commit_consumer_state(CommitMode::Async) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => tracing::debug!(service, cause = %err, "cannot commit group offsets"),
    }
}

/// A record finished: advance the partition's mark and, once nothing is in
/// flight there, store it (the commands stored an older mark with their
/// effects).
async fn finish<A: Aggregate>(
    ctx: &Context<A>,
    consumer: &StreamConsumer<JournalOffsets>,
    in_flight: &mut InFlight,
    done: Done,
) {
    let mark = in_flight.finish(&done.partition, done.offset);
    ctx.in_flight_gauge.set(in_flight.count as i64);
    let (topic, partition) = &done.partition;
    // Committed group offsets are informational (lag); the journal decides.
    let _ = consumer.store_offset(topic, *partition, mark - 1);
    let idle = in_flight
        .offsets
        .get(&done.partition)
        .is_none_or(|s| s.is_empty());
    let stored = in_flight.stored.get(&done.partition).copied().unwrap_or(-1);
    if idle && mark > stored {
        let batch = AppendBatch {
            offset: Some(ConsumedOffset {
                topic: topic.clone(),
                partition: *partition,
                cluster_id: ctx.cluster_id.clone(),
                next_offset: mark,
            }),
            ..AppendBatch::default()
        };
        match ctx.journal.append(batch).await {
            Ok(_) => {
                in_flight.stored.insert(done.partition.clone(), mark);
            }
            Err(err) => {
                tracing::warn!(service = ctx.name, cause = %err, "cannot store the consumer offset")
            }
        }
    }
}

async fn dispatch<A: Aggregate>(
    ctx: &Context<A>,
    decode: &Decoder<A::Command>,
    in_flight: &mut InFlight,
    order: &mut KeyOrder<uuid::Uuid, Work<A>>,
    message: OwnedMessage,
) {
    let partition = (message.topic().to_string(), message.partition());
    let offset = message.offset();
    let Some(mark) = in_flight.begin(&partition, offset) else {
        tracing::debug!(
            service = ctx.name,
            topic = %partition.0,
            partition = partition.1,
            offset,
            "delivered again while its first delivery runs (a rebalance); that one answers it"
        );
        ctx.redelivered.inc();
        return;
    };
    ctx.in_flight_gauge.set(in_flight.count as i64);
    let consumed = ConsumedOffset {
        topic: partition.0.clone(),
        partition: partition.1,
        cluster_id: ctx.cluster_id.clone(),
        next_offset: mark,
    };
    match decode(&message) {
        Err(refusal) => refuse(ctx, message, partition, consumed, refusal),
        Ok((mut command, format)) => {
            if let Some(reply_to) = command.reply_to.take() {
                match logical_reply_topic(&ctx.kafka, &reply_to) {
                    Ok(logical) => {
                        ctx.reply_topics.ensure(&logical);
                        command.reply_to = Some(logical);
                    }
                    Err(reason) => {
                        let refusal = Refusal::new(INVALID_REPLY_TO, reason);
                        return refuse(ctx, message, partition, consumed, refusal);
                    }
                }
            }
            let key = A::aggregate_id(&command.command);
            let span = command_span(&command);
            let work = Work {
                exec: Execute {
                    span: tracing::info_span!(
                        parent: &span,
                        "consumed",
                        service = ctx.name,
                        topic = %partition.0,
                        partition = partition.1,
                        offset,
                    ),
                    command,
                    reply_format: format,
                    offset: Some(consumed),
                    remember: true,
                },
                message,
                partition,
                offset,
            };
            if let Some(work) = order.arrive(key, work) {
                start(ctx, key, work);
            }
        }
    }
}

/// Dead-letters a record without applying it, in the background.
fn refuse<A: Aggregate>(
    ctx: &Context<A>,
    message: OwnedMessage,
    partition: Partition,
    consumed: ConsumedOffset,
    refusal: Refusal,
) {
    let ctx = ctx.clone();
    actix::spawn(async move {
        let journal = &ctx.journal;
        let answer = rejection_of_invalid::<A>(&ctx, &message, &refusal);
        deadletter::write(
            journal, &ctx.kafka, ctx.name, &message, consumed, refusal, answer,
        )
        .await;
        let offset = message.offset();
        let _ = ctx.done.send(Done {
            partition,
            offset,
            key: None,
        });
    });
}

/// The `invalid_command` rejection of a refused record whose envelope head
/// could be read, addressed to its `reply_to`: one reply per delivery, even
/// for a command that cannot be read. `None` when there is no one to answer
/// (no head, no `reply_to`, or one that names no reply topic).
fn rejection_of_invalid<A: Aggregate>(
    ctx: &Context<A>,
    message: &OwnedMessage,
    refusal: &Refusal,
) -> Option<OutboxRecord> {
    let (head, format) = refusal.head.as_ref()?;
    let logical = logical_reply_topic(&ctx.kafka, head.reply_to.as_deref()?).ok()?;
    ctx.reply_topics.ensure(&logical);
    // The aggregate the record was keyed by, if its key is an id.
    let id = message
        .key()
        .and_then(|key| std::str::from_utf8(key).ok())
        .and_then(|key| uuid::Uuid::parse_str(key).ok())
        .unwrap_or_default();
    let reply = Reply {
        command_id: head.command_id,
        correlation_id: head.correlation_id,
        stream: StreamId::new(A::KIND, id),
        outcome: Outcome::Rejected(Rejection {
            code: refusal.code.to_string(),
            message: refusal.reason.clone(),
        }),
        result: None,
    };
    match reply_record(&logical, &reply, *format) {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::error!(service = ctx.name, cause = %err, "cannot encode the rejection of an invalid command");
            None
        }
    }
}

/// Runs one command, retrying failures that carry no business answer, and
/// dead-letters it when its attempts run out.
async fn execute<A: Aggregate>(ctx: &Context<A>, exec: Execute<A>, message: &OwnedMessage) {
    let consumed = exec.offset.clone();
    let arrived = std::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut last: Option<ServiceError> = None;
    for attempt in 1..=ctx.settings.attempts.max(1) {
        let again = Execute {
            command: exec.command.clone(),
            reply_format: exec.reply_format,
            offset: exec.offset.clone(),
            remember: exec.remember,
            span: exec.span.clone(),
        };
        let outcome = match ctx.service.submit(again) {
            Ok(pending) => pending.await,
            Err(err) => Err(err.into()),
        };
        match outcome {
            Ok(reply) => {
                let metrics = crate::metrics::metrics();
                let outcome = reply.outcome.rejection_code().unwrap_or("accepted");
                metrics
                    .commands
                    .with_label_values(&[ctx.name, outcome])
                    .inc();
                metrics
                    .command_seconds
                    .with_label_values(&[ctx.name])
                    .observe(arrived.elapsed().as_secs_f64());
                return;
            }
            Err(err) => {
                tracing::warn!(parent: &exec.span, service = ctx.name, attempt, command_id = %exec.command.command_id, cause = %err, "command failed; retrying");
                last = Some(err);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    let err = last.map(|e| (e.code(), e.to_string()));
    let (code, reason) = err.unwrap_or(("internal_error", "no attempt made".into()));
    if let Some(consumed) = consumed {
        deadletter::write(
            &ctx.journal,
            &ctx.kafka,
            ctx.name,
            message,
            consumed,
            Refusal::new(
                if code == "overloaded" {
                    "overloaded"
                } else {
                    "command_failed"
                },
                format!("{code}: {reason}"),
            ),
            None,
        )
        .await;
    }
}
