//! The measurement of a run: setup once, then at each concurrency level the
//! raw broker baseline, the ping-pong, the single-command baseline and the
//! saga load, with the records every topic received during the saga load.

use super::raw::{self, Echo, PING, PONG, RAW};
use super::records::{read_ends, Ends};
use super::*;

/// What one level measured.
pub(super) struct LevelMeasured {
    pub(super) concurrency: usize,
    /// Where this level's orders are in the plan's orders.
    pub(super) orders: std::ops::Range<usize>,
    pub(super) raw: Phase,
    pub(super) ping_pong: Phase,
    pub(super) baseline: Phase,
    /// Ends are the sagas' ends; milestones their orders' `Confirmed`.
    pub(super) saga: Phase,
    /// Records each logical topic received during the saga load.
    pub(super) records: BTreeMap<String, u64>,
}

/// The measurements of a run, before the stores are checked.
pub(super) struct Measured {
    pub(super) setup_commands: usize,
    pub(super) setup: Duration,
    pub(super) levels: Vec<LevelMeasured>,
    pub(super) plan: Plan,
}

/// The place commands of `orders`, each identified by its order id (a
/// saga's id is its order's).
fn place_requests(
    kafka: &KafkaConfig,
    orders: &[PlannedOrder],
) -> Result<Vec<Request>, BenchError> {
    orders
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
        .collect()
}

/// Creates the users and products of the plan through Kafka; returns the
/// commands it took.
async fn setup(
    kafka: &KafkaConfig,
    config: &BenchConfig,
    plan: &Plan,
    producer: &FutureProducer,
    replies: &StreamConsumer,
) -> Result<usize, BenchError> {
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    // Accounts and products first, deposits after, so that a deposit never
    // races its account's registration.
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
    let mut commands = setup_phase(producer, replies, first, config, "setup").await?;
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
    commands += setup_phase(producer, replies, deposits, config, "funds").await?;
    Ok(commands)
}

/// The bench's own clients: one producer for every phase, and a reader of
/// each topic where a phase's ends appear.
struct Wires {
    producer: FutureProducer,
    /// `bench.replies`: the replies to setup and single commands.
    replies: StreamConsumer,
    /// `orders.events`: confirmations and saga ends.
    events: StreamConsumer,
    /// `bench.raw`.
    raw: StreamConsumer,
    /// `bench.pong`: the echoes.
    pongs: StreamConsumer,
}

pub(super) async fn measure(
    kafka: &KafkaConfig,
    config: &BenchConfig,
    plan: Plan,
) -> Result<Measured, BenchError> {
    let producer = clients::simple_producer(kafka, "ordersaga-bench")?;
    let own: Vec<String> = [REPLIES, RAW, PING, PONG].map(String::from).to_vec();
    topics::ensure_topics(kafka, &own).await?;
    let wires = Wires {
        replies: watcher(kafka, &producer, REPLIES).await?,
        events: watcher(kafka, &producer, ORDERS_EVENTS).await?,
        raw: watcher(kafka, &producer, RAW).await?,
        pongs: watcher(kafka, &producer, PONG).await?,
        producer,
    };
    let echo = Echo::start(kafka, &wires.producer).await?;
    let measured = levels(kafka, config, &plan, &wires).await;
    // The echo stops whatever happened; a run that failed reports its own
    // error first.
    let echoed = echo.stop().await;
    let (setup_commands, setup, levels) = measured?;
    echoed?;
    Ok(Measured {
        setup_commands,
        setup,
        levels,
        plan,
    })
}

/// Setup, then every level in turn; a level whose sagas stalled ends the
/// sweep.
async fn levels(
    kafka: &KafkaConfig,
    config: &BenchConfig,
    plan: &Plan,
    wires: &Wires,
) -> Result<(usize, Duration, Vec<LevelMeasured>), BenchError> {
    let Wires {
        producer,
        replies,
        events,
        raw: raw_reader,
        pongs,
    } = wires;
    let setup_start = Instant::now();
    let setup_commands = setup(kafka, config, plan, producer, replies).await?;
    let setup = setup_start.elapsed();
    let known = topics();
    let mut ends = read_ends(kafka, &known, &Ends::default(), config.stall_timeout).await?;

    let mut measured = Vec::new();
    let mut start = 0;
    for (concurrency, n) in config.level_orders() {
        let range = start..start + n;
        start += n;
        let orders = &plan.orders[range.clone()];
        let places = place_requests(kafka, orders)?;

        // The raw broker first, with the payloads of this level's orders:
        // the same count and sizes as the commands the saga load sends.
        let payloads = places.iter().map(|r| r.payload.as_slice());
        let raw_requests = raw::requests(kafka, RAW, payloads.clone());
        let raw = complete_phase(
            producer,
            raw_reader,
            raw_requests,
            concurrency,
            config,
            "raw",
            raw::key_signal,
        )
        .await?;
        let pings = raw::requests(kafka, PING, payloads);
        let ping_pong = complete_phase(
            producer,
            pongs,
            pings,
            concurrency,
            config,
            "ping-pong",
            raw::key_signal,
        )
        .await?;

        // Baseline: one step through Kafka per order, on the rich users only
        // so that the failure mix stays as planned.
        let deposits = (0..n)
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
            replied_phase(producer, replies, deposits, concurrency, config, "baseline").await?;

        // The saga load, between two counts of every topic's records.
        let before = read_ends(kafka, &known, &ends, config.stall_timeout).await?;
        let bar = progress_bar(config.progress, n, "sagas");
        let saga = drive(
            producer,
            events,
            places,
            concurrency,
            config.stall_timeout,
            &bar,
            saga_signal,
        )
        .await?;
        ends = read_ends(kafka, &known, &before, config.stall_timeout).await?;
        let records = ends.since(&before, kafka);
        let stalled = saga.unfinished > 0;
        measured.push(LevelMeasured {
            concurrency,
            orders: range,
            raw,
            ping_pong,
            baseline,
            saga,
            records,
        });
        if stalled {
            // Sagas stalled: the next level would start on a system still
            // busy with them. The run reports the unfinished ones and fails.
            break;
        }
    }
    Ok((setup_commands, setup, measured))
}
