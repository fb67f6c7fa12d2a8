//! The process's metrics, in the Prometheus text format (`GET /metrics`).
//!
//! Counters and histograms that move as work flows live in one registry
//! per process, labelled by service, so that `ordersaga run` (three
//! services in one process) reports each. Values that are states rather
//! than flows (outbox backlog, journal counters, live entities, waiting
//! sagas) are read from the service when scraped.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// The flows every service of the process records.
pub struct Metrics {
    registry: Registry,
    /// Commands answered, by service and outcome (`accepted` or the
    /// rejection code).
    pub commands: IntCounterVec,
    /// Seconds from a command's arrival at the consumer to its answer.
    pub command_seconds: HistogramVec,
    /// Records dead-lettered, by service and code.
    pub dead_letters: IntCounterVec,
    /// Saga events that move sagas between watched states (`started`,
    /// `completed`, `aborted`, `stuck`, `retry_requested`), as the orders
    /// service's follower passes them.
    pub saga_events: IntCounterVec,
    /// Each consumed partition's lag, from the consumers' statistics.
    pub consumer_lag: IntGaugeVec,
    /// Commands a service's consumer of a topic (a service may consume
    /// several) has taken and not finished yet: it
    /// takes no more than its window, so a value stuck at the window means
    /// a consumer that has stopped consuming.
    pub consumer_in_flight: IntGaugeVec,
    /// Records delivered again while their first delivery was still running
    /// (after a rebalance the consumer resumes from the oldest unfinished
    /// offset): skipped, since the running one answers them.
    pub redelivered_in_flight: IntCounterVec,
    /// Partitions sought back because the first record after a resume came
    /// after the stored offset: the broker left records out (see
    /// `kafka/resume.rs`).
    pub resume_rewinds: IntCounterVec,
    /// Password checks made by the login backend, by result. An unknown
    /// account is checked too (against a dummy hash), so it counts here.
    pub password_checks: IntCounterVec,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let commands = IntCounterVec::new(
            Opts::new("ordersaga_commands_total", "Commands answered, by outcome"),
            &["service", "outcome"],
        )
        .expect("a valid metric");
        let command_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ordersaga_command_seconds",
                "Seconds from a command's arrival to its answer",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["service"],
        )
        .expect("a valid metric");
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "ordersaga_dead_letters_total",
                "Records dead-lettered, by code",
            ),
            &["service", "code"],
        )
        .expect("a valid metric");
        let password_checks = IntCounterVec::new(
            Opts::new(
                "ordersaga_password_checks_total",
                "argon2 password checks of the login backend, by result",
            ),
            &["result"],
        )
        .expect("a valid metric");
        let saga_events = IntCounterVec::new(
            Opts::new(
                "ordersaga_saga_events_total",
                "Saga state changes: started, completed, aborted, stuck, retry_requested",
            ),
            &["event"],
        )
        .expect("a valid metric");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "ordersaga_consumer_lag",
                "Records of a consumed partition not yet read (high watermark minus position)",
            ),
            &["service", "topic", "partition"],
        )
        .expect("a valid metric");
        let consumer_in_flight = IntGaugeVec::new(
            Opts::new(
                "ordersaga_consumer_in_flight",
                "Commands the consumer of a topic has taken and not finished (at most its window)",
            ),
            &["service", "topic"],
        )
        .expect("a valid metric");
        let redelivered_in_flight = IntCounterVec::new(
            Opts::new(
                "ordersaga_consumer_redelivered_in_flight_total",
                "Records delivered again while their first delivery still ran, skipped",
            ),
            &["service", "topic"],
        )
        .expect("a valid metric");
        let resume_rewinds = IntCounterVec::new(
            Opts::new(
                "ordersaga_consumer_resume_rewinds_total",
                "Partitions sought back because the broker left out records (after a resume point, or inside a partition)",
            ),
            &["service", "topic"],
        )
        .expect("a valid metric");
        for gauge in [&consumer_lag, &consumer_in_flight] {
            registry
                .register(Box::new(gauge.clone()))
                .expect("registered once");
        }
        for metric in [
            &commands,
            &dead_letters,
            &saga_events,
            &redelivered_in_flight,
            &resume_rewinds,
        ] {
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
        }
        registry
            .register(Box::new(command_seconds.clone()))
            .expect("registered once");
        registry
            .register(Box::new(password_checks.clone()))
            .expect("registered once");
        Self {
            registry,
            commands,
            command_seconds,
            dead_letters,
            saga_events,
            consumer_lag,
            consumer_in_flight,
            redelivered_in_flight,
            resume_rewinds,
            password_checks,
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A service's state at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The service (`users`, …).
    pub service: &'static str,
    /// Records waiting in the outbox.
    pub outbox_backlog: usize,
    /// The journal's durable flushes so far.
    pub flushes: u64,
    /// Batches committed so far.
    pub commits: u64,
    /// Events appended so far.
    pub events: u64,
    /// Seconds spent flushing so far.
    pub flush_seconds: f64,
    /// Entities in memory.
    pub live_entities: usize,
    /// Entities passivated (idle or evicted) since start.
    pub passivations: u64,
    /// Queries answered from an entity's view since start.
    pub queries_from_views: u64,
    /// Queries answered by the entity since start.
    pub queries_from_entities: u64,
    /// Sagas waiting for replies (orders only).
    pub sagas_waiting: Option<usize>,
    /// Whether every consumer owns partitions.
    pub ready: bool,
}

/// The text exposition of the process's flows and of `snapshot`.
pub fn render(snapshot: &Snapshot) -> Result<String, prometheus::Error> {
    let now = Registry::new();
    let service = snapshot.service;
    let gauge = |name: &str, help: &str, value: f64| -> Result<(), prometheus::Error> {
        let g = Gauge::with_opts(Opts::new(name, help).const_label("service", service))?;
        g.set(value);
        now.register(Box::new(g))
    };
    gauge(
        "ordersaga_outbox_backlog",
        "Records waiting in the outbox",
        snapshot.outbox_backlog as f64,
    )?;
    gauge(
        "ordersaga_journal_flushes",
        "Durable flushes of the journal since start (one per commit group)",
        snapshot.flushes as f64,
    )?;
    gauge(
        "ordersaga_journal_commits",
        "Batches committed since start",
        snapshot.commits as f64,
    )?;
    gauge(
        "ordersaga_journal_group_size",
        "Mean batches per commit group since start",
        if snapshot.flushes == 0 {
            0.0
        } else {
            snapshot.commits as f64 / snapshot.flushes as f64
        },
    )?;
    gauge(
        "ordersaga_journal_flush_seconds",
        "Seconds spent in durable flushes since start",
        snapshot.flush_seconds,
    )?;
    gauge(
        "ordersaga_journal_events",
        "Events appended since start",
        snapshot.events as f64,
    )?;
    gauge(
        "ordersaga_live_entities",
        "Aggregates in memory",
        snapshot.live_entities as f64,
    )?;
    let passivations = IntCounter::with_opts(
        Opts::new(
            "ordersaga_passivations_total",
            "Entities stopped because idle or evicted, since start",
        )
        .const_label("service", service),
    )?;
    passivations.inc_by(snapshot.passivations);
    now.register(Box::new(passivations))?;
    let queries = IntCounterVec::new(
        Opts::new(
            "ordersaga_queries_total",
            "Queries of live aggregates since start, by what answered them: the entity's view (no message) or the entity",
        )
        .const_label("service", service),
        &["answered_by"],
    )?;
    queries
        .with_label_values(&["view"])
        .inc_by(snapshot.queries_from_views);
    queries
        .with_label_values(&["entity"])
        .inc_by(snapshot.queries_from_entities);
    now.register(Box::new(queries))?;
    let ready = IntGauge::with_opts(
        Opts::new("ordersaga_ready", "1 when every consumer owns partitions")
            .const_label("service", service),
    )?;
    ready.set(i64::from(snapshot.ready));
    now.register(Box::new(ready))?;
    if let Some(waiting) = snapshot.sagas_waiting {
        gauge(
            "ordersaga_sagas_waiting",
            "Sagas waiting for replies (in the deadline index)",
            waiting as f64,
        )?;
    }
    let mut families = metrics().registry.gather();
    families.extend(now.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
