//! Rebuilding the processed-command table of an imported or restored store
//! from its events.
//!
//! A service remembers every command it decided, by command id, with its
//! reply, so that a command delivered again is answered with its first
//! reply and not applied twice. An export or an events topic does not carry
//! that table, but every event names the command that caused it
//! (`causation_id`), and the reply to an accepted command is a function of
//! its events: the command id, the correlation id, the stream, the events'
//! sequences and [`Aggregate::result`]. So the entry of every accepted
//! command is written again here, exactly as the service wrote it. A
//! rejected command left no event, and is not remembered: delivered again,
//! it is decided again, against the restored state.

use super::{Journal, JournalError};
use crate::aggregate::Aggregate;
use crate::migrations::once_per_store_by_stream;
use crate::recovery::decode_stored;
use ordersaga_events::codec::{encode, Format};
use ordersaga_events::{CommandId, CorrelationId, Outcome, Reply, StreamId};

/// The marker of a store whose processed table was rebuilt from the events
/// of one kind of stream (the orders store holds two: orders and sagas),
/// followed by the kind's tag.
const COMMANDS_REMEMBERED: &str = "commands-remembered-v1";

/// One accepted command's events, as they follow each other in a stream.
struct Accepted<E> {
    command_id: CommandId,
    correlation_id: CorrelationId,
    sequences: Vec<u64>,
    events: Vec<E>,
}

/// Writes the processed entry of every accepted command of every `A` stream
/// that has none, from the stream's events, and sets a marker (once per
/// store). Returns the entries written.
pub fn remember_imported_commands<A: Aggregate>(journal: &Journal) -> Result<usize, JournalError> {
    let marker = format!("{COMMANDS_REMEMBERED}-{}", A::KIND.tag());
    once_per_store_by_stream::<A>(journal, true, &marker, |stream| {
        let mut written = 0;
        let mut open: Option<Accepted<A::Event>> = None;
        for item in journal.read_stream(stream, 1) {
            let (sequence, bytes) = item?;
            let envelope = decode_stored::<A>(stream, sequence, &bytes)?;
            // A command's events are one batch: consecutive, one cause.
            if let Some(command) = open
                .as_mut()
                .filter(|c| c.command_id == envelope.causation_id)
            {
                command.sequences.push(sequence);
                command.events.push(envelope.payload);
                continue;
            }
            if let Some(done) = open.take() {
                written += remember::<A>(journal, stream, done)?;
            }
            open = Some(Accepted {
                command_id: envelope.causation_id,
                correlation_id: envelope.correlation_id,
                sequences: vec![sequence],
                events: vec![envelope.payload],
            });
        }
        if let Some(done) = open {
            written += remember::<A>(journal, stream, done)?;
        }
        Ok(written)
    })
}

/// Writes `command`'s entry unless its id is remembered already (a command
/// id names one command: the first entry stays). Returns 1 if written.
fn remember<A: Aggregate>(
    journal: &Journal,
    stream: &StreamId,
    command: Accepted<A::Event>,
) -> Result<usize, JournalError> {
    let reply = Reply {
        command_id: command.command_id,
        correlation_id: command.correlation_id,
        stream: *stream,
        result: A::result(&command.events),
        outcome: Outcome::Accepted {
            sequences: command.sequences,
        },
    };
    let bytes = encode(Format::Bincode, &reply).map_err(|err| JournalError::Corrupt {
        what: format!("the reply of command {} on {stream}", command.command_id),
        detail: err.to_string(),
    })?;
    let key = command.command_id.as_uuid().into_bytes();
    let swapped =
        journal
            .trees()
            .processed
            .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))?;
    Ok(usize::from(swapped.is_ok()))
}
