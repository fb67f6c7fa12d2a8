//! Driving a phase: requests through Kafka with bounded concurrency, a
//! watcher of the topic their ends appear on, and what the phase measured.

use super::cpu::{cpu_since, per_request, process_cpu};
use super::*;

/// One request of a phase: a record to send and the id its end carries.
pub(super) struct Request {
    pub(super) id: Uuid,
    pub(super) topic: String,
    pub(super) key: String,
    pub(super) payload: Vec<u8>,
}

/// How a request ended: accepted/completed, or rejected/aborted with a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum End {
    Ok,
    Failed(String),
}

/// What a record on the watched topic says about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Signal {
    /// The request passed a milestone on its way (an order's `Confirmed`):
    /// its latency is recorded apart, and the request stays in flight.
    Milestone(Uuid),
    /// The request ended.
    End(Uuid, End),
}

impl From<(Uuid, End)> for Signal {
    fn from((id, end): (Uuid, End)) -> Signal {
        Signal::End(id, end)
    }
}

/// What a phase measured.
pub(super) struct Phase {
    pub(super) sent: usize,
    /// Send → end.
    pub(super) latencies: Histogram<u64>,
    /// Send → milestone, for the requests that passed one.
    pub(super) milestones: Histogram<u64>,
    pub(super) elapsed: Duration,
    pub(super) ends: HashMap<Uuid, End>,
    pub(super) unfinished: usize,
    /// CPU time of the whole process from the first send to the last end
    /// (`None` when unmeasured).
    pub(super) cpu: Option<Duration>,
}

impl Phase {
    pub(super) fn stats(&self) -> PhaseStats {
        let ended = self.ends.len();
        let seconds = self.elapsed.as_secs_f64();
        let (cpu_us_per_request, cores_busy) = per_request(self.cpu, self.sent, seconds);
        PhaseStats {
            sent: self.sent,
            ended,
            seconds,
            per_sec: if seconds > 0.0 {
                ended as f64 / seconds
            } else {
                0.0
            },
            latency: LatencyStats::of(&self.latencies),
            cpu_us_per_request,
            cores_busy,
        }
    }
}

pub(super) fn request<C: Serialize>(
    kafka: &KafkaConfig,
    service: ServiceName,
    key: Uuid,
    id: Uuid,
    envelope: &CommandEnvelope<C>,
) -> Result<Request, BenchError> {
    Ok(Request {
        id,
        topic: kafka.name(service.commands_topic()),
        key: key.to_string(),
        payload: encode(Format::Bincode, envelope)?,
    })
}

/// A command with a reply on [`REPLIES`], identified by its command id.
pub(super) fn with_reply<C: Serialize>(
    kafka: &KafkaConfig,
    service: ServiceName,
    key: Uuid,
    command: C,
) -> Result<Request, BenchError> {
    let envelope = CommandEnvelope::new(command).reply_to(REPLIES);
    request(
        kafka,
        service,
        key,
        envelope.command_id.as_uuid(),
        &envelope,
    )
}

/// The id a reply answers and how.
pub(super) fn reply_end(message: &BorrowedMessage<'_>) -> Option<(Uuid, End)> {
    let reply: Reply = decode(message.payload()?).ok()?;
    let end = match reply.outcome.rejection_code() {
        None => End::Ok,
        Some(code) => End::Failed(code.to_string()),
    };
    Some((reply.command_id.as_uuid(), end))
}

/// The stream a record on an event topic belongs to, from its `stream`
/// header: which records matter is known before any payload is decoded.
fn stream_of(message: &BorrowedMessage<'_>) -> Option<StreamId> {
    let stream = message
        .headers()?
        .iter()
        .find(|h| h.key == header::STREAM)
        .and_then(|h| h.value)?;
    std::str::from_utf8(stream).ok()?.parse().ok()
}

/// The order whose saga a record on `orders.events` ends, if it does.
pub(super) fn saga_end(message: &BorrowedMessage<'_>) -> Option<(Uuid, End)> {
    let stream = stream_of(message)?;
    if stream.kind != StreamKind::Saga {
        return None;
    }
    saga_end_of(message, stream)
}

/// The end a record of saga `stream` says its saga reached, if it does.
fn saga_end_of(message: &BorrowedMessage<'_>, stream: StreamId) -> Option<(Uuid, End)> {
    let end = match decode_event::<SagaEvent>(message.payload()?).ok()?.payload {
        SagaEvent::Completed => End::Ok,
        SagaEvent::Aborted { reason } => End::Failed(reason),
        _ => return None,
    };
    // A saga's id is its order's id.
    Some((stream.id, end))
}

/// What a record on `orders.events` says about an order: its order's
/// `Confirmed` (what a user waits for) is a milestone, its saga's
/// `Completed`/`Aborted` the end.
pub(super) fn saga_signal(message: &BorrowedMessage<'_>) -> Option<Signal> {
    let stream = stream_of(message)?;
    match stream.kind {
        StreamKind::Order => match decode_event::<OrderEvent>(message.payload()?).ok()?.payload {
            OrderEvent::Confirmed => Some(Signal::Milestone(stream.id)),
            _ => None,
        },
        StreamKind::Saga => saga_end_of(message, stream).map(Signal::from),
        _ => None,
    }
}

/// A consumer of every partition of the logical `topic` from the beginning
/// (the namespace is fresh, so the beginning is this run), in a group of its
/// own so that it never takes partitions from anyone.
pub(super) async fn watcher(
    kafka: &KafkaConfig,
    producer: &FutureProducer,
    topic: &str,
) -> Result<StreamConsumer, BenchError> {
    let physical = kafka.name(topic);
    // The partition count of the topic as it is, which may differ from
    // --partitions when the namespace is reused.
    // A topic created a moment ago may not be in the metadata yet: ask again
    // for a while.
    let deadline = Instant::now() + clients::CONNECT_TIMEOUT;
    let partitions = loop {
        let client = producer.clone();
        let name = physical.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&name), clients::CONNECT_TIMEOUT)
        })
        .await??;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == physical)
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if partitions > 0 {
            break partitions;
        }
        if Instant::now() > deadline {
            return Err(format!("topic {physical} has no partitions (does it exist?)").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The observer fetches as often as the services do, so it adds little to
    // what it measures.
    let consumer = clients::reader(kafka, "ordersaga-bench")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(&physical, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

pub(super) fn progress_bar(show: bool, total: usize, what: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(what);
    bar
}

/// Sends `requests` keeping `concurrency` in flight, and consumes `consumer`
/// until every request has ended (`signal_of` recognises ends and
/// milestones) or nothing has ended for `stall`.
pub(super) async fn drive(
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    requests: Vec<Request>,
    concurrency: usize,
    stall: Duration,
    bar: &ProgressBar,
    signal_of: impl Fn(&BorrowedMessage<'_>) -> Option<Signal>,
) -> Result<Phase, BenchError> {
    let sent = requests.len();
    let mut queue = requests.into_iter();
    let mut pending: HashMap<Uuid, Instant> = HashMap::with_capacity(concurrency);
    let mut passed: HashSet<Uuid> = HashSet::new();
    let mut ends: HashMap<Uuid, End> = HashMap::with_capacity(sent);
    let mut latencies = latency::new_histogram()?;
    let mut milestones = latency::new_histogram()?;
    let mut deliveries = tokio::task::JoinSet::new();
    let start = Instant::now();
    let cpu_at_start = process_cpu();
    let mut last_end = start;
    let mut last_progress = tokio::time::Instant::now();
    loop {
        while pending.len() < concurrency {
            let Some(req) = queue.next() else { break };
            let record = FutureRecord::to(&req.topic)
                .key(&req.key)
                .payload(&req.payload);
            let delivery = producer
                .send_result(record)
                .map_err(|(err, _)| format!("cannot send a command: {err}"))?;
            pending.insert(req.id, Instant::now());
            deliveries.spawn(delivery);
        }
        if pending.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = deliveries.join_next() => match joined {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((err, _)))) => return Err(format!("cannot send a command: {err}").into()),
                Ok(Err(_)) => return Err("the producer dropped a command".into()),
                Err(err) => return Err(err.into()),
            },
            received = tokio::time::timeout_at(last_progress + stall, consumer.recv()) => {
                match received {
                    Err(_) => break,
                    Ok(Err(err)) => {
                        tracing::warn!(cause = %err, "bench consumer error");
                        // Let a broken connection recover instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(Ok(message)) => {
                        let (id, end) = match signal_of(&message) {
                            None => continue,
                            Some(Signal::Milestone(id)) => {
                                // The first time only, and only while in flight.
                                if let Some(sent_at) = pending.get(&id) {
                                    if passed.insert(id) {
                                        latency::record(&mut milestones, sent_at.elapsed());
                                    }
                                }
                                continue;
                            }
                            Some(Signal::End(id, end)) => (id, end),
                        };
                        // Only the first end counts: redelivered replies and
                        // republished events carry the same id.
                        if let Some(sent_at) = pending.remove(&id) {
                            let now = Instant::now();
                            latency::record(&mut latencies, now.duration_since(sent_at));
                            passed.remove(&id);
                            ends.insert(id, end);
                            last_end = now;
                            last_progress = tokio::time::Instant::now();
                            bar.inc(1);
                        }
                    }
                }
            }
        }
    }
    // CPU up to now, not to the last end: the loop leaves as soon as the
    // last request ends (a stalled phase is reported as such anyway).
    let cpu = cpu_since(cpu_at_start);
    // What is still unsent after a stall was never in flight.
    let unfinished = pending.len() + queue.len();
    bar.finish_and_clear();
    Ok(Phase {
        sent,
        latencies,
        milestones,
        elapsed: last_end.duration_since(start),
        ends,
        unfinished,
        cpu,
    })
}

/// Drives a phase whose every request must end: a missing reply or echo
/// fails the run, naming the phase.
pub(super) async fn complete_phase(
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    requests: Vec<Request>,
    concurrency: usize,
    config: &BenchConfig,
    what: &'static str,
    signal_of: impl Fn(&BorrowedMessage<'_>) -> Option<Signal>,
) -> Result<Phase, BenchError> {
    let bar = progress_bar(config.progress, requests.len(), what);
    let phase = drive(
        producer,
        consumer,
        requests,
        concurrency,
        config.stall_timeout,
        &bar,
        signal_of,
    )
    .await?;
    if phase.unfinished > 0 {
        return Err(format!(
            "{what} at concurrency {concurrency}: {} of {} requests got no answer within {:?}",
            phase.unfinished, phase.sent, config.stall_timeout
        )
        .into());
    }
    Ok(phase)
}

/// Drives request/reply commands; every one of them must get its reply.
pub(super) async fn replied_phase(
    producer: &FutureProducer,
    replies: &StreamConsumer,
    requests: Vec<Request>,
    concurrency: usize,
    config: &BenchConfig,
    what: &'static str,
) -> Result<Phase, BenchError> {
    complete_phase(
        producer,
        replies,
        requests,
        concurrency,
        config,
        what,
        |m| reply_end(m).map(Signal::from),
    )
    .await
}

/// Runs a setup phase: every command must be accepted.
pub(super) async fn setup_phase(
    producer: &FutureProducer,
    replies: &StreamConsumer,
    requests: Vec<Request>,
    config: &BenchConfig,
    what: &'static str,
) -> Result<usize, BenchError> {
    let concurrency = config.max_concurrency();
    let phase = replied_phase(producer, replies, requests, concurrency, config, what).await?;
    if let Some(End::Failed(code)) = phase.ends.values().find(|e| **e != End::Ok) {
        return Err(format!("setup ({what}): a command was rejected: {code}").into());
    }
    Ok(phase.sent)
}
