//! `ordersaga gateway --rebuild`: the read model remade from the event
//! topics.
//!
//! The store is cleared, then every partition of the three topics is read
//! from its beginning up to the high watermark it had when the rebuild
//! started, each record applied exactly as live projection applies it (the
//! same transaction, the same duplicate and gap rules), so a rebuild gives
//! the same read model as live projection of the same records. The offsets
//! stored with the rows are where live projection ([`super::Projector`])
//! continues. Run it while no projector writes into the same store.

use super::error::ReadModelError;
use super::record::{ProjectedRecord, ProjectionCounters};
use super::source::{EventSource, Partition};
use super::store::{ReadModel, Source};
use crate::kafka::clients::CONNECT_TIMEOUT;
use crate::kafka::KafkaConfig;
use futures_util::FutureExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The client id of the rebuild's consumer.
const CLIENT_ID: &str = "ordersaga-gateway-rebuild";
/// How long the rebuild waits for a record before it gives up on the
/// partitions still short of their targets.
const STALL: Duration = Duration::from_secs(60);

/// What a rebuild read and did.
#[derive(Clone, Debug)]
pub struct RebuildReport {
    /// Records read.
    pub records: u64,
    /// What applying them did.
    pub counters: ProjectionCounters,
    /// The next offset reached per (physical topic, partition): the high
    /// watermarks as of the start.
    pub targets: BTreeMap<(String, i32), i64>,
    /// How long it took.
    pub elapsed: Duration,
}

impl std::fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "rebuilt the read model from {} records of {} partitions in {:.1} s: {} applied, {} duplicates, {} gaps, {} unreadable, {} ignored",
            self.records,
            self.targets.len(),
            self.elapsed.as_secs_f64(),
            c.applied,
            c.duplicates,
            c.gaps,
            c.skipped,
            c.ignored
        )
    }
}

/// Rebuilds the read model in directory `dir` (see the module docs), with
/// a progress bar on stderr when `show_progress`.
pub async fn rebuild(
    kafka: &KafkaConfig,
    dir: &Path,
    show_progress: bool,
) -> Result<RebuildReport, ReadModelError> {
    let model = ReadModel::open(dir)?;
    rebuild_into(kafka, &model, show_progress).await
}

/// Rebuilds an open read model (see the module docs).
pub async fn rebuild_into(
    kafka: &KafkaConfig,
    model: &ReadModel,
    show_progress: bool,
) -> Result<RebuildReport, ReadModelError> {
    let source = EventSource::new(kafka, CLIENT_ID)
        .map_err(|e| ReadModelError::kafka("make the rebuild's consumer", e))?;
    let result = read_all(&source, model, show_progress).await;
    source.close();
    result
}

/// The cluster id, the partitions and their watermarks, asked again for a
/// while when the cluster is not there yet (a rebuild started with it).
async fn survey(
    source: &EventSource,
) -> Result<(String, BTreeMap<Partition, (i64, i64)>), ReadModelError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut pause = Duration::from_millis(100);
    loop {
        let surveyed = async {
            let cluster_id = source.cluster_id().await?;
            let partitions = source.partitions().await?;
            Ok::<_, ReadModelError>((cluster_id, source.watermarks(&partitions).await?))
        }
        .await;
        match surveyed {
            Ok(found) => return Ok(found),
            Err(err) if Instant::now() < deadline => {
                tracing::debug!(cause = %err, "the rebuild asks the cluster again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(err) => return Err(err),
        }
    }
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    // The style of `ordersaga bench`'s bars.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix("rebuild");
    bar
}

async fn read_all(
    source: &EventSource,
    model: &ReadModel,
    show_progress: bool,
) -> Result<RebuildReport, ReadModelError> {
    let started = Instant::now();
    let (cluster_id, marks) = survey(source).await?;
    model.reset(&Source::new(cluster_id, source.topics.clone()))?;
    let targets: BTreeMap<Partition, i64> = marks
        .iter()
        .map(|(p, &(_, high))| (p.clone(), high))
        .collect();
    // Each partition still to read: the next offset and the target.
    let mut remaining: BTreeMap<Partition, (i64, i64)> = marks
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, &(low, high))| (p.clone(), (low, high)))
        .collect();
    let total: i64 = remaining.values().map(|(low, high)| high - low).sum();
    let bar = progress_bar(show_progress, u64::try_from(total).unwrap_or(0));
    let from: BTreeMap<Partition, Option<i64>> =
        remaining.keys().map(|p| (p.clone(), None)).collect();
    source.assign(&from)?;
    let mut counters = ProjectionCounters::default();
    let mut records = 0u64;
    let mut done = 0i64;
    let mut last_progress = tokio::time::Instant::now();
    loop {
        let received = if remaining.is_empty() {
            // Every target is reached. A broker may report an end inside a
            // partition's last batch (Tansu 0.6 reports the batch's first
            // offset + 1), and then the batch's other records have arrived
            // with it: apply them too, so the rebuild never stops inside a
            // batch (see `ARCHITECTURE.md`, "Positions inside a batch").
            match source.consumer.recv().now_or_never() {
                Some(Ok(message)) => Ok(Ok(message)),
                _ => break,
            }
        } else {
            tokio::time::timeout_at(last_progress + STALL, source.consumer.recv()).await
        };
        let record = match received {
            Err(_) => {
                bar.abandon();
                let short: Vec<String> = remaining
                    .iter()
                    .map(|((t, p), (next, high))| format!("{t}[{p}] at {next} of {high}"))
                    .collect();
                return Err(ReadModelError::Source(format!(
                    "no record for {} s; still short of the targets: {}",
                    STALL.as_secs(),
                    short.join(", ")
                )));
            }
            Ok(Err(err)) => {
                tracing::warn!(cause = %err, "the rebuild's consumer failed; it waits and reads on");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Ok(message)) => ProjectedRecord::from_message(&message),
        };
        let applied = model.apply(&record).inspect_err(|_| bar.abandon())?;
        counters.count(&record, &applied);
        records += 1;
        last_progress = tokio::time::Instant::now();
        let partition = (record.topic.clone(), record.partition);
        if let Some((next, high)) = remaining.get_mut(&partition) {
            let reached = record.offset.saturating_add(1).min(*high);
            done += (reached - *next).max(0);
            *next = (*next).max(reached);
            bar.set_position(u64::try_from(done).unwrap_or(0));
            if *next >= *high {
                remaining.remove(&partition);
            }
        }
    }
    bar.finish_and_clear();
    model.flush().await?;
    Ok(RebuildReport {
        records,
        counters,
        targets,
        elapsed: started.elapsed(),
    })
}
