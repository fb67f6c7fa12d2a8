//! The raw broker baseline, measured in the same run through the same
//! broker: records of an order command's size produced and consumed with
//! no service in between, and a ping-pong through an echo task that reads
//! and writes with the services' client settings.
//!
//! - **raw**: the bench's producer sends a record to `bench.raw`; it ends
//!   when the bench's reader consumes it (one hop).
//! - **ping-pong**: the bench's producer sends to `bench.ping`; the echo
//!   task reads it with a reader fetching as the services' consumers do
//!   (`--fetch-wait-ms`) and sends it on to `bench.pong` with the outbox
//!   relay's producer (idempotent, `acks=all`, `linger.ms=2`); it ends when
//!   the bench reads it there. Two hops, as a single command and its reply,
//!   without the service's work.

use super::drive::{watcher, Request, Signal};
use super::{BenchError, End};
use crate::kafka::{clients, KafkaConfig};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The logical topic of the raw throughput records.
pub const RAW: &str = "bench.raw";
/// The logical topic the echo task reads.
pub const PING: &str = "bench.ping";
/// The logical topic the echo task writes.
pub const PONG: &str = "bench.pong";

/// One record per payload to the logical `topic`, each keyed by a fresh id
/// that its end carries back.
pub(super) fn requests<'a>(
    kafka: &KafkaConfig,
    topic: &str,
    payloads: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Request> {
    let topic = kafka.name(topic);
    payloads
        .into_iter()
        .map(|payload| {
            let id = Uuid::new_v4();
            Request {
                id,
                topic: topic.clone(),
                key: id.to_string(),
                payload: payload.to_vec(),
            }
        })
        .collect()
}

/// A raw record or echo ends the request its key names.
pub(super) fn key_signal(message: &BorrowedMessage<'_>) -> Option<Signal> {
    let key = std::str::from_utf8(message.key()?).ok()?;
    Some(Signal::End(key.parse().ok()?, End::Ok))
}

/// The running echo task: `bench.ping` → `bench.pong`.
pub(super) struct Echo {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

impl Echo {
    /// Starts echoing every record of `bench.ping` (from its beginning) to
    /// `bench.pong`, same key, same payload.
    pub(super) async fn start(
        kafka: &KafkaConfig,
        producer: &FutureProducer,
    ) -> Result<Echo, BenchError> {
        let consumer: StreamConsumer = watcher(kafka, producer, PING).await?;
        let echo = clients::producer(kafka, "ordersaga-bench-echo")?;
        let pong = kafka.name(PONG);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut echoed = 0u64;
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(echoed),
                    received = consumer.recv() => match received {
                        Ok(message) => {
                            let key = message.key().unwrap_or_default();
                            let payload = message.payload().unwrap_or_default();
                            let record = FutureRecord::to(&pong).key(key).payload(payload);
                            // The delivery report is not awaited, so the next
                            // ping is read at once; a lost pong shows up as a
                            // missing answer of the ping-pong phase.
                            echo.send_result(record).map_err(|(err, _)| {
                                format!("the echo task cannot send to {pong}: {err}")
                            })?;
                            echoed += 1;
                        }
                        Err(err) => {
                            tracing::warn!(cause = %err, "bench echo consumer error");
                            // Let a broken connection recover instead of spinning.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        });
        Ok(Echo { stop, task })
    }

    /// Stops the task; returns how many records it echoed.
    pub(super) async fn stop(self) -> Result<u64, BenchError> {
        // The task may have ended on an error already: then the send fails
        // and the join below says why.
        let _ = self.stop.send(());
        Ok(self
            .task
            .await
            .map_err(|err| format!("the echo task failed: {err}"))??)
    }
}
