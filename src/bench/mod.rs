//! `ordersaga bench`: drives orders through the whole saga over Kafka at one
//! or more concurrency levels and measures them against baselines taken in
//! the same run, through the same broker.
//!
//! The run, against services already started by the caller's [`NodeOptions`]:
//! 1. **Setup** through Kafka commands with replies: users (most rich, a few
//!    poor) and products (most plentiful, a few scarce), with money and
//!    stock enough for the orders of every level.
//! 2. At each level C, ascending, each phase keeping C requests in flight
//!    and as many requests as the level has orders:
//!    - **raw**: records of the orders' command bytes produced and consumed,
//!      no service in between ([`raw`]);
//!    - **ping-pong**: a record echoed back by a task reading and writing
//!      with the services' client settings ([`raw`]);
//!    - **baseline**: single-command round trips (`UserCommand::Deposit` of
//!      1 cent, send → reply consumed): one service step through Kafka;
//!    - **saga load**: `OrderCommand::Place` sent → the order's `Confirmed`
//!      ("confirmed") and → the saga's `Completed`/`Aborted` ("finished")
//!      consumed from `orders.events`; every topic's records are counted
//!      before and after it ([`records`]).
//! 3. The knee of the saga's throughput over the levels ([`knee`]), the
//!    headline ratios and the goals ([`goals`]).
//! 4. The services stop, the stores are reopened and
//!    [`verify::check`](crate::verify::check) runs with every saga required to
//!    have finished.
//!
//! The machines this runs on are shared and noisy, so the headline numbers are
//! the ratios of the saga load to the same-run baselines.
//!
//! `plan.rs` draws the run (config, users, products, orders, the mix);
//! `levels.rs` sizes the levels; `sweep.rs` runs the phases; `drive.rs` sends
//! requests and watches their ends; `latency.rs` turns histograms into
//! percentiles; `report.rs` holds what was measured and checked; `chart.rs`
//! draws it.

use crate::kafka::{clients, topics, KafkaConfig};
use crate::node::{self, NodeOptions, RunningService};
use crate::verify;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ordersaga_actors::Journal;
use ordersaga_events::codec::{decode, decode_event, encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderEvent, OrderLine};
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::{header, Service as ServiceName, HEARTBEATS, ORDERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{
    Cents, CommandEnvelope, OrderId, ProductId, Reply, StreamId, StreamKind, UserId,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub mod actors;
pub mod chart;
pub mod cpu;
mod drive;
pub mod goals;
pub mod hops;
pub mod http;
pub mod knee;
pub mod latency;
pub mod levels;
mod plan;
pub mod raw;
pub mod records;
mod report;
mod sweep;

use drive::*;
use goals::{Goal, Headline};
use knee::{find_knee, Knee};
use latency::{percentile_curve, ratio, LatencyStats};
pub use plan::BenchConfig;
use plan::*;
use report::*;
pub use report::{BenchReport, Curves, Expected, LevelReport, PhaseStats, Ratios, Records};
use sweep::*;

/// Why a bench run could not finish.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The logical topic the bench's commands name as `reply_to`.
pub const REPLIES: &str = "bench.replies";

/// Every logical topic a bench run uses: the services', [`REPLIES`] and the
/// raw baseline's.
pub fn topics() -> Vec<String> {
    let mut all = topics::all_topics();
    all.extend([REPLIES, raw::RAW, raw::PING, raw::PONG].map(String::from));
    all
}

/// Most orders one run accepts: far beyond what fits in a bench run, low
/// enough that stock and deposits computed from it cannot overflow.
pub const MAX_ORDERS: usize = 10_000_000;

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
    let (users, inventory, orders) = (
        open(ServiceName::Users)?,
        open(ServiceName::Inventory)?,
        open(ServiceName::Orders)?,
    );
    let checked = verify::check(&users, &inventory, &orders, true)?;
    let milestones = hops::milestones(&orders, &inventory, &users)?;
    Ok(report(options, config, measured, checked, &milestones))
}
