//! `ordersaga bench`: drives N orders through the whole saga over Kafka at a
//! chosen concurrency and measures them against a baseline taken in the same
//! run.
//!
//! The run, against services already started by the caller's [`NodeOptions`]:
//! 1. **Setup** through Kafka commands with replies: users (most rich, a few
//!    poor) and products (most plentiful, a few scarce).
//! 2. **Baseline**: as many single-command round trips as there are orders
//!    (`UserCommand::Deposit` of 1 cent, latency = send → reply consumed), at
//!    the same concurrency: the cost of one service step through Kafka.
//! 3. **Saga load**: C orders kept in flight; latency = `OrderCommand::Place`
//!    sent → that saga's `Completed`/`Aborted` event consumed from
//!    `orders.events`.
//! 4. The services stop, the stores are reopened and
//!    [`verify::check`](crate::verify::check) runs with every saga required to
//!    have finished.
//!
//! The machines this runs on are shared and noisy, so the headline numbers are
//! the ratios of the saga load to the same-run baseline.

use crate::kafka::{clients, topics, KafkaConfig};
use crate::node::{self, NodeOptions, RunningService};
use crate::verify;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ordersaga_actors::Journal;
use ordersaga_events::codec::{decode, decode_event, encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::{header, Service as ServiceName, ORDERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{
    Cents, CommandEnvelope, OrderId, ProductId, Reply, StreamId, StreamKind, UserId,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Why a bench run could not finish.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The logical topic the bench's commands name as `reply_to`.
pub const REPLIES: &str = "bench.replies";

/// Every logical topic a bench run uses: the services' and [`REPLIES`].
pub fn topics() -> Vec<String> {
    let mut all = topics::all_topics();
    all.push(REPLIES.to_string());
    all
}

/// Most orders one run accepts: far beyond what fits in a bench run, low
/// enough that stock and deposits computed from it cannot overflow.
pub const MAX_ORDERS: usize = 10_000_000;

/// Units a plentiful order line asks for, at most.
const MAX_UNITS: u64 = 3;
/// Plentiful lines per order, at most.
const MAX_LINES: usize = 3;
/// Unit prices are drawn from 1.00 to this (in cents).
const MAX_PRICE: u64 = 50_00;
const MIN_PRICE: u64 = 1_00;
/// Stock of a scarce product; a stock-failing order asks for one more.
const SCARCE_STOCK: u64 = 1;
/// A poor user's whole balance: below any order's price.
const POOR_FUNDS: u64 = 1;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Orders placed.
    pub orders: usize,
    /// Orders (and baseline commands) in flight at once.
    pub concurrency: usize,
    /// Users created.
    pub users: usize,
    /// Products created.
    pub products: usize,
    /// Percentage of orders that ask for more than a scarce product's stock.
    pub fail_stock_pct: u8,
    /// Percentage of orders placed by users who cannot pay.
    pub fail_funds_pct: u8,
    /// How long any phase may go without a single command or saga ending
    /// before the run gives up on what is still in flight.
    pub stall_timeout: Duration,
    /// Seed of the order mix (users, products, lines), for reproducible mixes.
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl BenchConfig {
    /// Checks the numbers; every problem is an error, never a panic later.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.orders == 0 || self.orders > MAX_ORDERS {
            return Err(format!("--orders must be between 1 and {MAX_ORDERS}").into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.users == 0 || self.products == 0 {
            return Err("--users and --products must be at least 1".into());
        }
        if self.fail_stock_pct > 100 || self.fail_funds_pct > 100 {
            return Err("--fail-stock and --fail-funds are percentages (0 to 100)".into());
        }
        if u16::from(self.fail_stock_pct) + u16::from(self.fail_funds_pct) > 100 {
            return Err("--fail-stock plus --fail-funds must be at most 100".into());
        }
        if self.stall_timeout.is_zero() {
            return Err("the stall timeout must be more than zero".into());
        }
        let plan = Plan::new(self)?;
        if plan.rich.is_empty() {
            // The baseline deposits to users who can pay, so that its
            // deposits cannot turn a failing order into a paid one.
            return Err(
                "--fail-funds leaves no user who can pay, and the baseline needs one: lower it or add --users"
                    .into(),
            );
        }
        Ok(())
    }
}

/// How an order is expected to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Complete,
    StockFail,
    FundsFail,
}

impl Expect {
    /// The `Aborted` reason expected, or `None` for a completion.
    fn abort_reason(self) -> Option<&'static str> {
        match self {
            Expect::Complete => None,
            Expect::StockFail => Some("insufficient_stock"),
            Expect::FundsFail => Some("insufficient_funds"),
        }
    }
}

struct PlannedOrder {
    order_id: OrderId,
    user_id: UserId,
    lines: Vec<OrderLine>,
    expect: Expect,
}

struct PlannedUser {
    user_id: UserId,
    funds: u64,
}

struct PlannedProduct {
    product_id: ProductId,
    price: u64,
    stock: u64,
}

/// Everything created and placed in a run, decided up front from the seed.
struct Plan {
    users: Vec<PlannedUser>,
    /// Indexes into `users` of those who can pay for anything.
    rich: Vec<usize>,
    products: Vec<PlannedProduct>,
    orders: Vec<PlannedOrder>,
    expected: Expected,
}

/// SplitMix64: a tiny deterministic generator, enough to mix a workload.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must be more than zero.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `pct` percent of `n`, rounded to the nearest.
fn share(n: usize, pct: u8) -> usize {
    (n * usize::from(pct) + 50) / 100
}

/// How many of `n` entities serve the failing orders: `pct` percent of them,
/// at least one when any order fails, and never all of them when other orders
/// need the rest.
fn failing_group(
    n: usize,
    pct: u8,
    failing: usize,
    others: usize,
    what: &str,
) -> Result<usize, BenchError> {
    if failing == 0 {
        return Ok(0);
    }
    let group = share(n, pct).max(1);
    let group = if others > 0 { group.min(n - 1) } else { group };
    if group == 0 {
        return Err(format!(
            "too few {what}: the failure mix needs at least one for the failing orders and one for the others"
        )
        .into());
    }
    Ok(group)
}

impl Plan {
    fn new(config: &BenchConfig) -> Result<Plan, BenchError> {
        let n = config.orders;
        let stock_fail = share(n, config.fail_stock_pct);
        let funds_fail = share(n, config.fail_funds_pct).min(n - stock_fail);
        let complete = n - stock_fail - funds_fail;
        let poor = failing_group(
            config.users,
            config.fail_funds_pct,
            funds_fail,
            complete + stock_fail,
            "users",
        )?;
        let scarce = failing_group(
            config.products,
            config.fail_stock_pct,
            stock_fail,
            complete + funds_fail,
            "products",
        )?;
        let mut mix = Mix(config.seed);

        // Rich users can pay for every order of the run on their own, baseline
        // deposits aside; plentiful products can serve every order's lines.
        let max_order = (MAX_LINES as u64) * MAX_UNITS * MAX_PRICE;
        let rich_funds = max_order * n as u64;
        let plenty_stock = MAX_UNITS * n as u64;
        let users: Vec<PlannedUser> = (0..config.users)
            .map(|i| PlannedUser {
                user_id: UserId::new(),
                funds: if i < poor { POOR_FUNDS } else { rich_funds },
            })
            .collect();
        let rich: Vec<usize> = (poor..config.users).collect();
        let products: Vec<PlannedProduct> = (0..config.products)
            .map(|i| PlannedProduct {
                product_id: ProductId::new(),
                price: MIN_PRICE + (mix.next() % (MAX_PRICE - MIN_PRICE + 1)),
                stock: if i < scarce {
                    SCARCE_STOCK
                } else {
                    plenty_stock
                },
            })
            .collect();
        let plenty: Vec<ProductId> = products[scarce..].iter().map(|p| p.product_id).collect();

        let mut kinds: Vec<Expect> = std::iter::repeat_n(Expect::StockFail, stock_fail)
            .chain(std::iter::repeat_n(Expect::FundsFail, funds_fail))
            .chain(std::iter::repeat_n(Expect::Complete, complete))
            .collect();
        for i in (1..kinds.len()).rev() {
            let j = mix.below(i + 1);
            kinds.swap(i, j);
        }
        let plenty_lines = |mix: &mut Mix, count: usize| -> Vec<OrderLine> {
            // Consecutive products from a random start: distinct, as the
            // order aggregate requires.
            let start = mix.below(plenty.len().max(1));
            (0..count)
                .map(|j| OrderLine {
                    product_id: plenty[(start + j) % plenty.len()],
                    quantity: 1 + mix.next() % MAX_UNITS,
                })
                .collect()
        };
        let orders = kinds
            .into_iter()
            .map(|expect| {
                let most = MAX_LINES.min(plenty.len());
                let (user, lines) = match expect {
                    Expect::Complete | Expect::FundsFail => {
                        let count = 1 + mix.below(most);
                        let user = if expect == Expect::Complete {
                            rich[mix.below(rich.len())]
                        } else {
                            mix.below(poor)
                        };
                        (user, plenty_lines(&mut mix, count))
                    }
                    Expect::StockFail => {
                        // The scarce line next to some plentiful ones, so that
                        // compensation has reservations to release.
                        let count = mix.below(most.min(MAX_LINES - 1) + 1);
                        let mut lines = plenty_lines(&mut mix, count);
                        lines.push(OrderLine {
                            product_id: products[mix.below(scarce)].product_id,
                            quantity: SCARCE_STOCK + 1,
                        });
                        (rich[mix.below(rich.len())], lines)
                    }
                };
                PlannedOrder {
                    order_id: OrderId::new(),
                    user_id: users[user].user_id,
                    lines,
                    expect,
                }
            })
            .collect();
        Ok(Plan {
            users,
            rich,
            products,
            orders,
            expected: Expected {
                completed: complete,
                insufficient_stock: stock_fail,
                insufficient_funds: funds_fail,
            },
        })
    }
}

/// The outcome mix the plan asks for.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Expected {
    /// Orders meant to complete.
    pub completed: usize,
    /// Orders meant to abort for stock.
    pub insufficient_stock: usize,
    /// Orders meant to abort for funds.
    pub insufficient_funds: usize,
}

/// Throughput and latency of one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseStats {
    /// Requests sent.
    pub sent: usize,
    /// Requests that ended (reply consumed, saga ended).
    pub ended: usize,
    /// From the first send to the last end.
    pub seconds: f64,
    /// Ended requests per second.
    pub per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// Mean latency, milliseconds.
    pub mean_ms: f64,
}

/// The saga load against the baseline; `None` when the baseline measured
/// nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratios {
    /// Saga orders/s ÷ baseline commands/s.
    pub throughput: Option<f64>,
    /// Saga p50 ÷ baseline p50.
    pub p50: Option<f64>,
}

/// Everything a run measured and checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    /// `bootstrap.servers` used.
    pub brokers: String,
    /// Whether the broker was the embedded mock cluster (set by the caller).
    pub embedded_broker: bool,
    /// The topic namespace, if any.
    pub namespace: Option<String>,
    /// Seed of the order mix.
    pub seed: u64,
    /// Orders placed.
    pub orders: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Users created.
    pub users: usize,
    /// Products created.
    pub products: usize,
    /// Stock-failing share requested, percent.
    pub fail_stock_pct: u8,
    /// Funds-failing share requested, percent.
    pub fail_funds_pct: u8,
    /// Users, deposits and products created through Kafka.
    pub setup_commands: usize,
    /// How long the setup took.
    pub setup_seconds: f64,
    /// Single-command round trips (`Deposit` → reply).
    pub baseline: PhaseStats,
    /// Whole sagas (`Place` → `Completed`/`Aborted`).
    pub saga: PhaseStats,
    /// Saga load ÷ baseline: the headline on noisy machines.
    pub ratios: Ratios,
    /// Sagas that completed.
    pub completed: usize,
    /// Sagas that aborted.
    pub aborted: usize,
    /// Aborted sagas by reason.
    pub abort_reasons: BTreeMap<String, usize>,
    /// Orders whose saga did not end before the stall timeout.
    pub unfinished: usize,
    /// The mix the plan asked for.
    pub expected: Expected,
    /// Orders that ended otherwise than planned (e.g. `step_timeout` under
    /// load): reported, not an error.
    pub unexpected_outcomes: usize,
    /// Whether every invariant held across the three stores.
    pub invariants_ok: bool,
    /// Sagas by phase, from the stores.
    pub sagas_by_phase: BTreeMap<String, usize>,
    /// Broken invariants, one sentence each.
    pub violations: Vec<String>,
}

impl BenchReport {
    /// Whether the run is a success: every order ended, every invariant holds.
    pub fn is_ok(&self) -> bool {
        self.unfinished == 0 && self.invariants_ok
    }
}

/// One request of a phase: a record to send and the id its end carries.
struct Request {
    id: Uuid,
    topic: String,
    key: String,
    payload: Vec<u8>,
}

/// How a request ended: accepted/completed, or rejected/aborted with a code.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    Ok,
    Failed(String),
}

/// What a phase measured.
struct Phase {
    sent: usize,
    latencies: Histogram<u64>,
    elapsed: Duration,
    ends: HashMap<Uuid, End>,
    unfinished: usize,
}

impl Phase {
    fn stats(&self) -> PhaseStats {
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

fn request<C: Serialize>(
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
fn with_reply<C: Serialize>(
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
fn reply_end(message: &BorrowedMessage<'_>) -> Option<(Uuid, End)> {
    let reply: Reply = decode(message.payload()?).ok()?;
    let end = match reply.outcome.rejection_code() {
        None => End::Ok,
        Some(code) => End::Failed(code.to_string()),
    };
    Some((reply.command_id.as_uuid(), end))
}

/// The order whose saga a record on `orders.events` ends, if it does. The
/// `stream` header says which records are saga events before decoding.
fn saga_end(message: &BorrowedMessage<'_>) -> Option<(Uuid, End)> {
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
async fn watcher(
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

fn progress_bar(show: bool, total: usize, what: &'static str) -> ProgressBar {
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
async fn drive(
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
async fn replied_phase(
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
async fn setup_phase(
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
struct Measured {
    setup_commands: usize,
    setup: Duration,
    baseline: Phase,
    saga: Phase,
    plan: Plan,
}

async fn measure(
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
                password: Password(format!("bench password {tag}")),
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

/// Runs the bench against the three services, which it starts from `options`
/// and stops before checking the stores. The topics must exist or be creatable
/// (on the embedded broker, create [`topics`] first).
pub async fn run(options: &NodeOptions, config: &BenchConfig) -> Result<BenchReport, BenchError> {
    config.validate()?;
    let plan = Plan::new(config)?;
    let mut running: Vec<RunningService> = Vec::new();
    for name in ServiceName::ALL {
        match node::start(name, options).await {
            Ok(service) => running.push(service),
            Err(err) => {
                for service in running {
                    service.stop().await;
                }
                return Err(err.into());
            }
        }
    }
    let measured = measure(&options.kafka, config, plan).await;
    // Stop whatever happened: the stores must close before they are checked,
    // and a failed run must not leave services behind.
    for service in running {
        service.stop().await;
    }
    let measured = measured?;

    let open = |name: ServiceName| Journal::open_path(options.data_dir.join(name.name()));
    let checked = verify::check(
        &open(ServiceName::Users)?,
        &open(ServiceName::Inventory)?,
        &open(ServiceName::Orders)?,
        true,
    )?;
    Ok(report(options, config, measured, checked))
}

fn report(
    options: &NodeOptions,
    config: &BenchConfig,
    measured: Measured,
    checked: verify::Report,
) -> BenchReport {
    let baseline = measured.baseline.stats();
    let saga = measured.saga.stats();
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let mut completed = 0;
    let mut aborted = 0;
    let mut abort_reasons = BTreeMap::new();
    let mut unexpected = 0;
    for order in &measured.plan.orders {
        let Some(end) = measured.saga.ends.get(&order.order_id.as_uuid()) else {
            continue;
        };
        let reason = match end {
            End::Ok => {
                completed += 1;
                None
            }
            End::Failed(reason) => {
                aborted += 1;
                *abort_reasons.entry(reason.clone()).or_insert(0) += 1;
                Some(reason.as_str())
            }
        };
        if reason != order.expect.abort_reason() {
            unexpected += 1;
        }
    }
    BenchReport {
        brokers: options.kafka.brokers.clone(),
        embedded_broker: false,
        namespace: options.kafka.namespace.clone(),
        seed: config.seed,
        orders: config.orders,
        concurrency: config.concurrency,
        users: config.users,
        products: config.products,
        fail_stock_pct: config.fail_stock_pct,
        fail_funds_pct: config.fail_funds_pct,
        setup_commands: measured.setup_commands,
        setup_seconds: measured.setup.as_secs_f64(),
        ratios: Ratios {
            throughput: ratio(saga.per_sec, baseline.per_sec),
            p50: ratio(saga.p50_ms, baseline.p50_ms),
        },
        baseline,
        saga,
        completed,
        aborted,
        abort_reasons,
        unfinished: measured.saga.unfinished,
        expected: measured.plan.expected,
        unexpected_outcomes: unexpected,
        invariants_ok: checked.is_ok(),
        sagas_by_phase: checked.sagas.into_iter().collect(),
        violations: checked.violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(orders: usize, users: usize, products: usize, stock: u8, funds: u8) -> BenchConfig {
        BenchConfig {
            orders,
            concurrency: 8,
            users,
            products,
            fail_stock_pct: stock,
            fail_funds_pct: funds,
            stall_timeout: Duration::from_secs(1),
            seed: 7,
            progress: false,
        }
    }

    #[test]
    fn the_plan_has_the_requested_mix_and_valid_orders() {
        let plan = Plan::new(&config(40, 10, 5, 10, 10)).unwrap();
        assert_eq!(plan.orders.len(), 40);
        let count = |e: Expect| plan.orders.iter().filter(|o| o.expect == e).count();
        assert_eq!(count(Expect::StockFail), 4);
        assert_eq!(count(Expect::FundsFail), 4);
        assert_eq!(count(Expect::Complete), 32);
        let funds: HashMap<UserId, u64> = plan.users.iter().map(|u| (u.user_id, u.funds)).collect();
        let stock: HashMap<ProductId, u64> = plan
            .products
            .iter()
            .map(|p| (p.product_id, p.stock))
            .collect();
        for order in &plan.orders {
            assert!(!order.lines.is_empty() && order.lines.len() <= MAX_LINES + 1);
            let mut products: Vec<_> = order.lines.iter().map(|l| l.product_id).collect();
            products.sort_by_key(|p| p.as_uuid());
            products.dedup();
            assert_eq!(products.len(), order.lines.len(), "distinct products");
            let short = order
                .lines
                .iter()
                .any(|l| l.quantity > stock[&l.product_id]);
            assert_eq!(short, order.expect == Expect::StockFail);
            let poor = funds[&order.user_id] == POOR_FUNDS;
            assert_eq!(poor, order.expect == Expect::FundsFail);
        }
    }

    #[test]
    fn impossible_mixes_are_refused_without_panicking() {
        assert!(
            config(10, 1, 5, 0, 10).validate().is_err(),
            "one user cannot be rich and poor"
        );
        assert!(
            config(10, 5, 1, 10, 0).validate().is_err(),
            "one product cannot be scarce and plentiful"
        );
        assert!(config(10, 5, 5, 60, 50).validate().is_err());
        assert!(config(0, 5, 5, 10, 10).validate().is_err());
        assert!(config(10, 1, 1, 0, 0).validate().is_ok());
        assert!(
            config(10, 1, 1, 100, 0).validate().is_ok(),
            "only scarce products needed"
        );
        assert!(config(10, 2, 2, 50, 50).validate().is_ok());
        assert!(
            config(10, 5, 5, 0, 100).validate().is_err(),
            "every user poor leaves the baseline nobody to deposit to"
        );
    }
}
