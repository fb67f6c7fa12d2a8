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
//!
//! `plan.rs` draws the run (config, users, products, orders, the mix);
//! `drive.rs` sends the requests and watches their ends; `report.rs` holds
//! what was measured and checked.

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

pub mod actors;
mod drive;
pub mod hops;
pub mod http;
mod plan;
mod report;

use drive::*;
pub use plan::BenchConfig;
use plan::*;
use report::*;
pub use report::{BenchReport, Expected, PhaseStats, Ratios};

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
