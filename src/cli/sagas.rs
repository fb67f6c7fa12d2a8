//! `ordersaga sagas list|show|retry`: inspect and unstick order sagas.

use super::common::KafkaArgs;
use super::CliError;
use crate::kafka::clients;
use clap::{Args, Subcommand};
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::recovery::{decode_stored, replay, stream_of};
use ordersaga_actors::{Execute, Journal, Service, ServiceConfig};
use ordersaga_events::codec::{encode, Format};
use ordersaga_events::saga::{SagaCommand, SagaPhase};
use ordersaga_events::topics::SAGA_COMMANDS;
use ordersaga_events::{CommandEnvelope, SagaId, StreamKind};
use rdkafka::producer::FutureRecord;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `sagas`.
#[derive(Debug, Args)]
pub struct SagasArgs {
    /// The data directory (the orders store is `DATA/orders`). Reading works
    /// only while the orders service is stopped.
    #[arg(long, default_value = "data", global = true)]
    pub data: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: SagasCommand,
}

/// The `sagas` subcommands.
#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// List sagas with their phase.
    List {
        /// Only stuck sagas.
        #[arg(long)]
        stuck: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one saga's steps with their timestamps.
    Show {
        /// The saga id (= the order id).
        id: SagaId,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Retry the compensations of a stuck saga with a fresh attempt budget:
    /// in the store (service stopped), or through Kafka with --brokers.
    Retry {
        /// The saga id (= the order id).
        id: SagaId,
        /// Send the retry to the running orders service through this cluster.
        #[arg(long)]
        brokers: Option<String>,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

fn orders_store(data: &std::path::Path) -> Result<Journal, CliError> {
    let path = data.join("orders");
    if !path.exists() {
        return Err(format!("no orders store at {}", path.display()).into());
    }
    Ok(Journal::open_path(path)?)
}

/// Runs a `sagas` subcommand.
pub fn run(args: SagasArgs) -> Result<(), CliError> {
    match args.command {
        SagasCommand::List { stuck, json } => list(&orders_store(&args.data)?, stuck, json),
        SagasCommand::Show { id, json } => show(&orders_store(&args.data)?, id, json),
        SagasCommand::Retry {
            id,
            brokers: Some(brokers),
            kafka,
        } => retry_remote(&kafka.config(&brokers), id),
        SagasCommand::Retry {
            id, brokers: None, ..
        } => retry_local(orders_store(&args.data)?, id),
    }
}

fn list(journal: &Journal, stuck_only: bool, json: bool) -> Result<(), CliError> {
    if !json {
        println!("{:<36}  {:<12}  {:>7}  reason", "saga", "phase", "attempt");
    }
    for item in journal.streams(Some(StreamKind::Saga)) {
        let (stream, _) = item?;
        let saga = replay::<Saga>(journal, stream.id, None)?.state;
        if stuck_only && saga.phase() != SagaPhase::Stuck {
            continue;
        }
        if json {
            let line = serde_json::json!({
                "saga": stream.id,
                "order": saga.order_id(),
                "user": saga.user_id(),
                "phase": saga.phase(),
                "attempt": saga.attempt(),
                "reason": saga.reason(),
                "stuck_reason": saga.stuck_reason(),
                "total": saga.total(),
            });
            println!("{line}");
        } else {
            // A stuck saga shows why it is stuck; any other, why it ended
            // (or is compensating), if it says.
            let reason = match saga.phase() {
                SagaPhase::Stuck => saga.stuck_reason(),
                _ => saga.reason(),
            };
            println!(
                "{:<36}  {:<12}  {:>7}  {}",
                stream.id,
                phase_name(saga.phase()),
                saga.attempt(),
                reason.unwrap_or("")
            );
        }
    }
    Ok(())
}

/// A phase as people and the JSON output name it (`compensating`).
fn phase_name(phase: SagaPhase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{phase:?}").to_lowercase())
}

fn show(journal: &Journal, id: SagaId, json: bool) -> Result<(), CliError> {
    let stream = stream_of::<Saga>(id.as_uuid());
    if journal.version(&stream)? == 0 {
        return Err(format!("no saga {id}").into());
    }
    for item in journal.read_stream(&stream, 1) {
        let (sequence, bytes) = item?;
        let envelope = decode_stored::<Saga>(&stream, sequence, &bytes)?;
        if json {
            println!("{}", serde_json::to_string(&envelope)?);
        } else {
            // The event as it reads on the topic (JSON), not Rust's debug
            // text.
            println!(
                "{:>3}  {}  {}",
                sequence,
                envelope.recorded_at.to_rfc3339(),
                serde_json::to_string(&envelope.payload)?
            );
        }
    }
    let saga = replay::<Saga>(journal, id.as_uuid(), None)?.state;
    if !json {
        let waiting: Vec<String> = saga.outstanding().iter().map(|s| s.label()).collect();
        println!(
            "phase: {}; waiting for: {}",
            phase_name(saga.phase()),
            if waiting.is_empty() {
                "nothing".to_owned()
            } else {
                waiting.join(", ")
            }
        );
        if let Some(reason) = saga
            .stuck_reason()
            .filter(|_| saga.phase() == SagaPhase::Stuck)
        {
            println!("stuck because: {reason}");
        }
    }
    Ok(())
}

fn retry_local(journal: Journal, id: SagaId) -> Result<(), CliError> {
    actix_rt::System::new().block_on(async move {
        let sagas = Service::<Saga>::start(journal.clone(), ServiceConfig::default());
        let command = CommandEnvelope::new(SagaCommand::Retry {
            saga_id: id,
            now: chrono::Utc::now(),
        });
        let reply = sagas.execute(Execute::new(command)).await?;
        match reply.outcome.rejection_code() {
            None => {
                println!("saga {id}: compensations will be retried when the orders service runs");
                Ok(())
            }
            Some(code) => Err(format!("saga {id}: {code}").into()),
        }
    })
}

fn retry_remote(kafka: &crate::kafka::KafkaConfig, id: SagaId) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let producer = clients::simple_producer(kafka, "ordersaga-cli")?;
        let command = CommandEnvelope::new(SagaCommand::Retry {
            saga_id: id,
            now: chrono::Utc::now(),
        });
        let payload = encode(Format::Bincode, &command)?;
        let key = id.to_string();
        let topic = kafka.name(SAGA_COMMANDS);
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(err, _)| err)?;
        println!("retry for saga {id} sent to {topic}");
        Ok(())
    })
}
