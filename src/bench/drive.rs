//! Driving a run: requests through Kafka, a watcher of their ends, phases
//! with bounded concurrency, and the measurement of setup, baseline and
//! saga.

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

/// What a phase measured.
pub(super) struct Phase {
    pub(super) sent: usize,
    pub(super) latencies: Histogram<u64>,
    pub(super) elapsed: Duration,
    pub(super) ends: HashMap<Uuid, End>,
    pub(super) unfinished: usize,
}

impl Phase {
    pub(super) fn stats(&self) -> PhaseStats {
        let h = &self.latencies;
        let ms = |us: u64| us as f64 / 1000.0;
        let ended = self.ends.len();
        let seconds = self.elapsed.as_secs_f64();
        PhaseStats {
            sent: self.sent,
            ended,
            seconds,
            per_sec: if seconds > 0.0 {
                ended as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
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

/// The order whose saga a record on `orders.events` ends, if it does. The
/// `stream` header says which records are saga events before decoding.
pub(super) fn saga_end(message: &BorrowedMessage<'_>) -> Option<(Uuid, End)> {
    let stream = message
        .headers()?
        .iter()
        .find(|h| h.key == header::STREAM)
        .and_then(|h| h.value)?;
    let stream: StreamId = std::str::from_utf8(stream).ok()?.parse().ok()?;
    if stream.kind != StreamKind::Saga {
        return None;
    }
    let end = match decode_event::<SagaEvent>(message.payload()?).ok()?.payload {
        SagaEvent::Completed => End::Ok,
        SagaEvent::Aborted { reason } => End::Failed(reason),
        _ => return None,
    };
    // A saga's id is its order's id.
    Some((stream.id, end))
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
/// until every request has ended (`end_of` recognises an end) or nothing has
/// ended for `stall`.
pub(super) async fn drive(
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    requests: Vec<Request>,
    concurrency: usize,
    stall: Duration,
    bar: &ProgressBar,
    end_of: fn(&BorrowedMessage<'_>) -> Option<(Uuid, End)>,
) -> Result<Phase, BenchError> {
    let sent = requests.len();
    let mut queue = requests.into_iter();
    let mut pending: HashMap<Uuid, Instant> = HashMap::with_capacity(concurrency);
    let mut ends: HashMap<Uuid, End> = HashMap::with_capacity(sent);
    // 1 µs to 1 hour at 3 significant digits; slower ends saturate.
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut deliveries = tokio::task::JoinSet::new();
    let start = Instant::now();
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
                        let Some((id, end)) = end_of(&message) else { continue };
                        // Only the first end counts: redelivered replies and
                        // republished events carry the same id.
                        if let Some(sent_at) = pending.remove(&id) {
                            let now = Instant::now();
                            let micros = now.duration_since(sent_at).as_micros();
                            latencies.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
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
    // What is still unsent after a stall was never in flight.
    let unfinished = pending.len() + queue.len();
    bar.finish_and_clear();
    Ok(Phase {
        sent,
        latencies,
        elapsed: last_end.duration_since(start),
        ends,
        unfinished,
    })
}

/// Drives request/reply commands; every one of them must get its reply.
pub(super) async fn replied_phase(
    producer: &FutureProducer,
    replies: &StreamConsumer,
    requests: Vec<Request>,
    config: &BenchConfig,
    what: &'static str,
) -> Result<Phase, BenchError> {
    let bar = progress_bar(config.progress, requests.len(), what);
    let phase = drive(
        producer,
        replies,
        requests,
        config.concurrency,
        config.stall_timeout,
        &bar,
        reply_end,
    )
    .await?;
    if phase.unfinished > 0 {
        return Err(format!(
            "{what}: {} commands got no reply within {:?}",
            phase.unfinished, config.stall_timeout
        )
        .into());
    }
    Ok(phase)
}

/// Runs a setup phase: every command must be accepted.
pub(super) async fn setup_phase(
    producer: &FutureProducer,
    replies: &StreamConsumer,
    requests: Vec<Request>,
    config: &BenchConfig,
    what: &'static str,
) -> Result<usize, BenchError> {
    let phase = replied_phase(producer, replies, requests, config, what).await?;
    if let Some(End::Failed(code)) = phase.ends.values().find(|e| **e != End::Ok) {
        return Err(format!("setup ({what}): a command was rejected: {code}").into());
    }
    Ok(phase.sent)
}

/// The measurements of a run, before the stores are checked.
pub(super) struct Measured {
    pub(super) setup_commands: usize,
    pub(super) setup: Duration,
    pub(super) baseline: Phase,
    pub(super) saga: Phase,
    pub(super) plan: Plan,
}

pub(super) async fn measure(
    kafka: &KafkaConfig,
    config: &BenchConfig,
    plan: Plan,
) -> Result<Measured, BenchError> {
    let producer = clients::simple_producer(kafka, "ordersaga-bench")?;
    topics::ensure_topics(kafka, &[REPLIES.to_string()]).await?;
    let replies = watcher(kafka, &producer, REPLIES).await?;
    let events = watcher(kafka, &producer, ORDERS_EVENTS).await?;
    let tag = &Uuid::new_v4().simple().to_string()[..8];

    // Setup: accounts and products first, deposits after, so that a deposit
    // never races its account's registration.
    let setup_start = Instant::now();
    let mut first = Vec::with_capacity(plan.users.len() + plan.products.len());
    for (i, user) in plan.users.iter().enumerate() {
        let user_id = user.user_id;
        first.push(with_reply(
            kafka,
            ServiceName::Users,
            user_id.as_uuid(),
            UserCommand::Register {
                user_id,
                email: format!("bench-{tag}-{i}@example.com"),
                username: format!("bench user {i}"),
                password: Password::new(format!("bench password {tag}")),
            },
        )?);
    }
    for (i, product) in plan.products.iter().enumerate() {
        let product_id = product.product_id;
        first.push(with_reply(
            kafka,
            ServiceName::Inventory,
            product_id.as_uuid(),
            InventoryCommand::AddProduct {
                product_id,
                sku: format!("BENCH-{tag}-{i}"),
                name: format!("bench product {i}"),
                unit_price: Cents(product.price),
                stock: product.stock,
            },
        )?);
    }
    let mut setup_commands = setup_phase(&producer, &replies, first, config, "setup").await?;
    let deposits = plan
        .users
        .iter()
        .map(|user| {
            with_reply(
                kafka,
                ServiceName::Users,
                user.user_id.as_uuid(),
                UserCommand::Deposit {
                    user_id: user.user_id,
                    amount: Cents(user.funds),
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    setup_commands += setup_phase(&producer, &replies, deposits, config, "funds").await?;
    let setup = setup_start.elapsed();

    // Baseline: one step through Kafka, as many as there are orders, on the
    // rich users only so that the failure mix stays as planned.
    let baseline_requests = (0..config.orders)
        .map(|i| {
            let user_id = plan.users[plan.rich[i % plan.rich.len()]].user_id;
            with_reply(
                kafka,
                ServiceName::Users,
                user_id.as_uuid(),
                UserCommand::Deposit {
                    user_id,
                    amount: Cents(1),
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let baseline =
        replied_phase(&producer, &replies, baseline_requests, config, "baseline").await?;

    // The saga load: a saga's end is identified by its order id.
    let orders = plan
        .orders
        .iter()
        .map(|order| {
            let envelope = CommandEnvelope::new(OrderCommand::Place {
                order_id: order.order_id,
                user_id: order.user_id,
                lines: order.lines.clone(),
            });
            let id = order.order_id.as_uuid();
            request(kafka, ServiceName::Orders, id, id, &envelope)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bar = progress_bar(config.progress, config.orders, "sagas");
    let saga = drive(
        &producer,
        &events,
        orders,
        config.concurrency,
        config.stall_timeout,
        &bar,
        saga_end,
    )
    .await?;
    Ok(Measured {
        setup_commands,
        setup,
        baseline,
        saga,
        plan,
    })
}
