//! The single writer of one aggregate, without the actor around it: decide,
//! append atomically, then apply. Kept apart from actix so the rules of
//! command handling read top to bottom.

use super::config::ServiceConfig;
use super::error::ServiceError;
use super::records::{
    encode_error, encode_for_store_and_topic, event_record, outbox_record, reply_record,
};
use crate::aggregate::{Aggregate, UniqueChange};
use crate::journal::{AppendBatch, ConsumedOffset, Journal, JournalError, Schedule, StreamAppend};
use crate::recovery::{encode_snapshot, recalled, recover, stream_of, Recovered};
use chrono::Utc;
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::reply::ReasonCode;
use ordersaga_events::topics::replies_topic;
use ordersaga_events::{CommandEnvelope, Envelope, EventId, Outcome, Reply, StreamId, Versioned};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use uuid::Uuid;

/// A command to execute, with what the transport needs done alongside it.
#[derive(Debug)]
pub struct Execute<A: Aggregate> {
    /// The command.
    pub command: CommandEnvelope<A::Command>,
    /// Encoding of the reply record (the command's own format, by convention).
    pub reply_format: Format,
    /// The consumer position to store in the same transaction, if the command
    /// came from a topic.
    pub offset: Option<ConsumedOffset>,
    /// Record the reply under the command id even when the command changed
    /// nothing (true by default). Periodic commands such as timer ticks set
    /// it false, so that one that finds nothing to do writes nothing.
    pub remember: bool,
    /// The span the command is handled in, from the transport through the
    /// entity to the journal: it carries the command and correlation ids,
    /// so one order can be followed in the logs. A command span by default.
    pub span: tracing::Span,
}

/// The span of one command: its ids, so that every log line about it (the
/// entity's decision, the journal append, a failure) names them.
pub fn command_span<C>(command: &CommandEnvelope<C>) -> tracing::Span {
    tracing::info_span!(
        "command",
        command_id = %command.command_id,
        correlation_id = %command.correlation_id,
    )
}

impl<A: Aggregate> Execute<A> {
    /// A command from no topic, answered in bincode.
    pub fn new(command: CommandEnvelope<A::Command>) -> Self {
        Self {
            span: command_span(&command),
            command,
            reply_format: Format::Bincode,
            offset: None,
            remember: true,
        }
    }

    /// A command that writes nothing when it changes nothing (see
    /// [`Execute::remember`]).
    pub fn ephemeral(command: CommandEnvelope<A::Command>) -> Self {
        Self {
            remember: false,
            ..Self::new(command)
        }
    }
}

/// How many times a command is re-decided after an optimistic-concurrency
/// conflict before giving up. A conflict means another writer touched the
/// stream, which only happens briefly while an entity is being replaced.
const CONFLICT_RETRIES: usize = 3;

pub(crate) struct EntityCore<A: Aggregate> {
    id: Uuid,
    stream: StreamId,
    journal: Journal,
    config: Arc<ServiceConfig>,
    state: A,
    version: u64,
    snapshot_version: u64,
}

impl<A: Aggregate> EntityCore<A> {
    pub fn recover(
        journal: Journal,
        config: Arc<ServiceConfig>,
        id: Uuid,
    ) -> Result<Self, JournalError> {
        let Recovered { state, version } = recover::<A>(&journal, id)?;
        Ok(Self {
            id,
            stream: stream_of::<A>(id),
            journal,
            config,
            state,
            version,
            snapshot_version: version,
        })
    }

    pub fn snapshot(&self) -> Recovered<A> {
        Recovered {
            state: self.state.clone(),
            version: self.version,
        }
    }

    fn reload(&mut self) -> Result<(), JournalError> {
        let Recovered { state, version } = recover::<A>(&self.journal, self.id)?;
        self.state = state;
        self.version = version;
        Ok(())
    }

    pub async fn execute(&mut self, mut exec: Execute<A>) -> Result<Reply, ServiceError> {
        if let Some(stored) = self.journal.processed_reply(&exec.command.command_id)? {
            return self.redelivered(&exec, &stored).await;
        }
        let mut forced = self.prepare(&mut exec.command.command).await?;
        for _ in 0..CONFLICT_RETRIES {
            let decided = match forced.take() {
                Some(rejection) => Err(rejection),
                None => self.decide(&exec.command.command)?,
            };
            let (batch, reply, events) = self.build(&exec, decided)?;
            if !exec.remember
                && batch.events.is_none()
                && batch.outbox.is_empty()
                && batch.offset.is_none()
            {
                return Ok(reply);
            }
            match self.journal.append(batch).await {
                Ok(receipt) => {
                    tracing::debug!(
                        stream = %self.stream,
                        events = events.len(),
                        log = ?receipt.log_positions,
                        outbox = ?receipt.outbox_positions,
                        "appended"
                    );
                    self.apply_committed(&events)?;
                    return Ok(reply);
                }
                Err(JournalError::DuplicateCommand { reply }) => {
                    return self.redelivered(&exec, &reply).await;
                }
                Err(JournalError::Conflict { .. }) => self.reload()?,
                Err(JournalError::UniqueViolation { index, key, holder }) => {
                    match A::unique_violation(&index, &key) {
                        Some(rejection) => forced = Some(rejection),
                        None => {
                            return Err(JournalError::UniqueViolation { index, key, holder }.into())
                        }
                    }
                }
                Err(err) => {
                    // A failed flush may leave the write in sled's memory: make
                    // the state match whatever the store now says.
                    if let Err(reload) = self.reload() {
                        tracing::error!(stream = %self.stream, cause = %reload, "reload after failed append");
                    }
                    return Err(err.into());
                }
            }
        }
        Err(ServiceError::Journal(JournalError::Conflict {
            stream: self.stream,
            expected: self.version,
            actual: self.journal.version(&self.stream)?,
        }))
    }

    /// Runs [`Aggregate::prepare`] on the blocking pool, so that costly work
    /// (a password hash) stalls neither this entity's arbiter nor its
    /// neighbours. Its rejection, if any, is the command's answer.
    async fn prepare(
        &self,
        command: &mut A::Command,
    ) -> Result<Option<A::Rejection>, ServiceError> {
        if !A::PREPARES {
            return Ok(None);
        }
        let mut owned = command.clone();
        let (owned, prepared) = tokio::task::spawn_blocking(move || {
            let prepared = catch_unwind(AssertUnwindSafe(|| A::prepare(&mut owned)));
            (owned, prepared)
        })
        .await
        .map_err(|_| ServiceError::EntityCrashed(self.stream))?;
        let Ok(prepared) = prepared else {
            tracing::error!(stream = %self.stream, "prepare panicked");
            return Err(ServiceError::EntityCrashed(self.stream));
        };
        *command = owned;
        Ok(prepared.err())
    }

    /// A copy of the state with the closed item `command` is about recalled
    /// from the archive, when the command needs one that exists.
    fn recalled(&self, command: &A::Command) -> Result<Option<A>, ServiceError> {
        if !A::ARCHIVES {
            return Ok(None);
        }
        let Some(key) = A::recall_key(command) else {
            return Ok(None);
        };
        Ok(recalled(&self.journal, &self.stream, &self.state, &key)?)
    }

    /// Runs `decide` (on the state with any recalled item), containing a
    /// panic: the state is rebuilt from the journal and the caller gets an
    /// error instead of silence.
    #[allow(clippy::type_complexity)]
    fn decide(
        &mut self,
        command: &A::Command,
    ) -> Result<Result<Vec<A::Event>, A::Rejection>, ServiceError> {
        let recalled = self.recalled(command)?;
        let view = recalled.as_ref().unwrap_or(&self.state);
        match catch_unwind(AssertUnwindSafe(|| view.decide(command))) {
            Ok(decided) => Ok(decided),
            Err(_) => {
                tracing::error!(stream = %self.stream, ?command, "decide panicked; restarting from the journal");
                self.reload()?;
                Err(ServiceError::EntityCrashed(self.stream))
            }
        }
    }

    fn apply_committed(&mut self, events: &[A::Event]) -> Result<(), ServiceError> {
        let applied = catch_unwind(AssertUnwindSafe(|| {
            for event in events {
                self.state.apply(event);
            }
        }));
        if applied.is_err() {
            tracing::error!(stream = %self.stream, "apply panicked; restarting from the journal");
            self.reload()?;
            return Err(ServiceError::EntityCrashed(self.stream));
        }
        self.version += events.len() as u64;
        self.maybe_snapshot();
        Ok(())
    }

    fn maybe_snapshot(&mut self) {
        let every = self.config.snapshot_every;
        if every == 0 || self.version - self.snapshot_version < every {
            return;
        }
        let saved = encode_snapshot(&self.state).and_then(|bytes| {
            self.journal
                .save_snapshot(&self.stream, self.version, &bytes)
        });
        match saved {
            Ok(()) => self.snapshot_version = self.version,
            // A missing snapshot only costs a longer replay.
            Err(err) => tracing::warn!(stream = %self.stream, cause = %err, "snapshot failed"),
        }
    }

    /// A command id seen before: answer as the first time and change nothing
    /// but the consumer position (and a fresh copy of the reply record).
    async fn redelivered(&self, exec: &Execute<A>, stored: &[u8]) -> Result<Reply, ServiceError> {
        let reply: Reply = decode(stored).map_err(|e| {
            JournalError::corrupt(format!("stored reply of {}", exec.command.command_id), e)
        })?;
        let mut batch = AppendBatch {
            offset: exec.offset.clone(),
            ..AppendBatch::default()
        };
        if let Some(topic) = &exec.command.reply_to {
            batch
                .outbox
                .push(reply_record(topic, &reply, exec.reply_format)?);
        }
        if batch.offset.is_some() || !batch.outbox.is_empty() {
            self.journal.append(batch).await?;
        }
        Ok(reply)
    }

    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        exec: &Execute<A>,
        decided: Result<Vec<A::Event>, A::Rejection>,
    ) -> Result<(AppendBatch, Reply, Vec<A::Event>), ServiceError> {
        let cmd = &exec.command;
        let mut batch = AppendBatch {
            offset: exec.offset.clone(),
            ..AppendBatch::default()
        };
        let (outcome, events) = match decided {
            Err(rejection) => (Outcome::Rejected(rejection.to_rejection()), Vec::new()),
            Ok(events) => {
                let now = Utc::now();
                let mut stored = Vec::with_capacity(events.len());
                let mut unique: Vec<UniqueChange> = Vec::new();
                for (i, event) in events.iter().enumerate() {
                    let envelope = Envelope {
                        event_id: EventId::new(),
                        stream: self.stream,
                        sequence: self.version + 1 + i as u64,
                        recorded_at: now,
                        correlation_id: cmd.correlation_id,
                        causation_id: cmd.command_id,
                        schema_version: A::Event::SCHEMA_VERSION,
                        payload: event.clone(),
                    };
                    let (bytes, published) =
                        encode_for_store_and_topic(&envelope, self.config.event_format)?;
                    batch.outbox.push(event_record(
                        A::SERVICE,
                        self.id,
                        &envelope,
                        self.config.event_format,
                        published,
                    ));
                    unique.extend(A::unique_changes(event));
                    if A::LISTS {
                        batch.lists.extend(A::list_entries(event, now));
                    }
                    if A::ARCHIVES {
                        if let Some(item) = A::archive_key(event) {
                            batch.archive.push((item, envelope.sequence));
                        }
                    }
                    stored.push(bytes);
                }
                if (A::SENDS_COMMANDS || A::WAKES) && !events.is_empty() {
                    let mut after = self.state.clone();
                    for event in &events {
                        after.apply(event);
                    }
                    let reply_to = replies_topic(A::KIND);
                    for outgoing in A::commands(&self.state, &after, &events) {
                        let mut record =
                            outbox_record(&outgoing, reply_to, now).map_err(encode_error)?;
                        // A command for an aggregate of this same service (the
                        // saga's to its order) lives in this store: it is
                        // delivered in process, with the same id and
                        // durability, and never makes a Kafka round trip.
                        if outgoing.command.service() == A::SERVICE {
                            record.topic = ordersaga_events::topics::local(&record.topic);
                        }
                        batch.outbox.push(record);
                    }
                    if A::WAKES && after.wake_at() != self.state.wake_at() {
                        batch.schedule = Some(Schedule {
                            stream: self.stream,
                            wake_at: after.wake_at(),
                        });
                    }
                }
                if !events.is_empty() {
                    batch.secrets = A::secrets(&cmd.command, &events);
                }
                let sequences = (self.version + 1..=self.version + events.len() as u64).collect();
                if !stored.is_empty() {
                    batch.events = Some(StreamAppend {
                        stream: self.stream,
                        expected_version: self.version,
                        events: stored,
                        unique,
                    });
                }
                (Outcome::Accepted { sequences }, events)
            }
        };
        let reply = Reply {
            command_id: cmd.command_id,
            correlation_id: cmd.correlation_id,
            stream: self.stream,
            result: match &outcome {
                Outcome::Accepted { .. } => A::result(&events),
                Outcome::Rejected(_) => None,
            },
            outcome,
        };
        batch.processed = Some((
            cmd.command_id,
            encode(Format::Bincode, &reply).map_err(encode_error)?,
        ));
        if let Some(topic) = &cmd.reply_to {
            batch
                .outbox
                .push(reply_record(topic, &reply, exec.reply_format)?);
        }
        Ok((batch, reply, events))
    }
}
