//! Commands over Kafka, answered: the gateway sends a command naming its own
//! reply topic and waits, with a timeout, for the reply that carries the
//! command's id.
//!
//! Each gateway has its own reply topic, so several gateways never read each
//! other's replies. The reply consumer reads every partition of it by
//! assignment from the end as it was at start: replies to commands of an
//! earlier run of this gateway have nobody waiting for them.
//!
//! A command sent twice with the same id (a client's retried
//! `Idempotency-Key`) is applied once by the service, which answers the
//! second with the stored reply; both waiters get it.

use crate::kafka::resume::ResumePoints;
use crate::kafka::{clients, KafkaConfig, TransportError};
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::reply::Reply;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::{CommandEnvelope, CommandId};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Why a command got no reply.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No reply within the timeout. The command may still be applied later:
    /// it is on its topic.
    #[error("no reply from the {service} service within {waited:?}")]
    Timeout {
        /// The service addressed.
        service: &'static str,
        /// How long the gateway waited.
        waited: Duration,
    },
    /// The command could not be handed to Kafka.
    #[error("cannot send the command to {topic}: {cause}")]
    Send {
        /// The commands topic.
        topic: String,
        /// The producer's error.
        cause: String,
    },
    /// The command could not be encoded (a bug, never a client's fault).
    #[error("cannot encode the command: {0}")]
    Encode(String),
}

type Waiters = Arc<Mutex<HashMap<Uuid, Vec<oneshot::Sender<Reply>>>>>;

/// Sends commands and hands each reply to whoever waits for it. Cheap to
/// clone.
#[derive(Clone)]
pub struct Requester {
    kafka: KafkaConfig,
    producer: FutureProducer,
    reply_topic: String,
    waiters: Waiters,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Requester {
    /// Starts the reply consumer on the logical `reply_topic` (which must
    /// exist) and returns a requester sending with its own producer.
    pub async fn start(kafka: &KafkaConfig, reply_topic: &str) -> Result<Self, TransportError> {
        let producer = clients::simple_producer(kafka, "ordersaga-gateway")?;
        let consumer = clients::reader(kafka, "ordersaga-gateway-replies")?;
        let physical = kafka.name(reply_topic);
        let consumer = tokio::task::spawn_blocking(move || {
            assign_at_the_end(&consumer, &physical).map(|()| consumer)
        })
        .await
        .map_err(|join| TransportError::Topic {
            topic: kafka.name(reply_topic),
            reason: format!("assigning the reply topic failed: {join}"),
        })??;
        let waiters: Waiters = Arc::default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        actix::spawn(deliver(consumer, waiters.clone(), stopped));
        Ok(Self {
            kafka: kafka.clone(),
            producer,
            reply_topic: reply_topic.to_string(),
            waiters,
            stop: Arc::new(stop),
        })
    }

    /// The logical reply topic.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Sends `command` to `service` under `command_id`, keyed by
    /// `aggregate`, and waits at most `timeout` for its reply.
    pub async fn request<C: Serialize>(
        &self,
        service: ServiceName,
        aggregate: Uuid,
        command_id: CommandId,
        command: C,
        timeout: Duration,
    ) -> Result<Reply, RequestError> {
        let envelope = CommandEnvelope::new(command)
            .with_id(command_id)
            .reply_to(self.reply_topic.clone());
        let payload =
            encode(Format::Json, &envelope).map_err(|e| RequestError::Encode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        let id = command_id.as_uuid();
        self.lock().entry(id).or_default().push(tx);
        let answered = async {
            let topic = self.kafka.name(service.commands_topic());
            let key = aggregate.to_string();
            self.producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    timeout,
                )
                .await
                .map_err(|(err, _)| RequestError::Send {
                    topic: topic.clone(),
                    cause: err.to_string(),
                })?;
            rx.await.map_err(|_| RequestError::Timeout {
                service: service.name(),
                waited: timeout,
            })
        };
        let result = match tokio::time::timeout(timeout, answered).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::Timeout {
                service: service.name(),
                waited: timeout,
            }),
        };
        if result.is_err() {
            // Nobody waits any more: drop closed senders so the table only
            // holds live waiters.
            let mut waiters = self.lock();
            if let Some(list) = waiters.get_mut(&id) {
                list.retain(|tx| !tx.is_closed());
                if list.is_empty() {
                    waiters.remove(&id);
                }
            }
        }
        result
    }

    /// How many commands wait for replies.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Stops the reply consumer; waiters get timeouts.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<Reply>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Assigns `consumer` every partition of `topic` at its current end.
/// librdkafka blocks for metadata and offsets: call off the async thread.
fn assign_at_the_end(consumer: &StreamConsumer, topic: &str) -> Result<(), TransportError> {
    let metadata = consumer.fetch_metadata(Some(topic), clients::CONNECT_TIMEOUT)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if partitions == 0 {
        return Err(TransportError::Topic {
            topic: topic.to_string(),
            reason: "the reply topic has no partitions (does it exist?)".into(),
        });
    }
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        // An explicit offset, not `Offset::End`: librdkafka resolves `End`
        // when it first fetches, and a reply published before that would be
        // skipped.
        let (_, high) = consumer.fetch_watermarks(topic, partition, clients::CONNECT_TIMEOUT)?;
        list.add_partition_offset(topic, partition, Offset::Offset(high))?;
    }
    consumer.assign(&list)?;
    Ok(())
}

/// Reads replies and hands each to its waiters until told to stop. A
/// reply after a hole in a partition's offsets is read again from the hole
/// (see `kafka/resume.rs`): a reply left out would time its request out.
async fn deliver(
    consumer: StreamConsumer,
    waiters: Waiters,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let holes = ResumePoints::default();
    loop {
        let message = tokio::select! {
            _ = stopped.changed() => return,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                // The client reconnects by itself; report and go on.
                tracing::warn!(cause = %err, "gateway reply consumer");
                continue;
            }
        };
        let at = (message.topic(), message.partition(), message.offset());
        if !holes.admit(&consumer, "gateway replies", at, || {}) {
            continue;
        }
        let Some(payload) = message.payload() else {
            continue;
        };
        let reply: Reply = match decode(payload) {
            Ok(reply) => reply,
            Err(err) => {
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    cause = %err,
                    "an unreadable record on the gateway's reply topic"
                );
                continue;
            }
        };
        let taken = waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&reply.command_id.as_uuid());
        for waiter in taken.into_iter().flatten() {
            let _ = waiter.send(reply.clone());
        }
    }
}
