//! The gateway's metrics (`GET /metrics` on the gateway): requests by route
//! and status, their latency, and at scrape time the breakers, the rate
//! limiter, the commands waiting for replies and the projection's lag.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

/// The flows of every gateway in the process.
pub struct GatewayMetrics {
    registry: Registry,
    /// Requests answered, by route pattern, method and status.
    pub requests: IntCounterVec,
    /// Seconds from a request's arrival to its answer, by route pattern.
    pub request_seconds: HistogramVec,
    /// Reads each downstream read call carried: 1 for a read alone, more
    /// for a coalesced `POST /reads`.
    pub reads_per_call: Histogram,
    /// Event partitions the projector sought back because the broker left
    /// out records, after a stored position or inside a partition (see
    /// `kafka/resume.rs`).
    pub projection_rewinds: IntCounterVec,
}

impl GatewayMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ordersaga_gateway_requests_total",
                "HTTP requests answered by the gateway, by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("a valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ordersaga_gateway_request_seconds",
                "Seconds from a request's arrival at the gateway to its answer",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("a valid metric");
        let reads_per_call = Histogram::with_opts(
            HistogramOpts::new(
                "ordersaga_gateway_reads_per_call",
                "Single-entity reads each downstream call carried (1: alone; more: coalesced into POST /reads)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("a valid metric");
        let projection_rewinds = IntCounterVec::new(
            Opts::new(
                "ordersaga_gateway_projection_rewinds_total",
                "Event partitions sought back because the broker left out records (after a stored position, or inside a partition)",
            ),
            &["topic"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(projection_rewinds.clone()))
            .expect("registered once");
        registry
            .register(Box::new(reads_per_call.clone()))
            .expect("registered once");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(request_seconds.clone()))
            .expect("registered once");
        Self {
            registry,
            requests,
            request_seconds,
            reads_per_call,
            projection_rewinds,
        }
    }
}

/// The process's gateway metrics.
pub fn gateway_metrics() -> &'static GatewayMetrics {
    static METRICS: OnceLock<GatewayMetrics> = OnceLock::new();
    METRICS.get_or_init(GatewayMetrics::new)
}

/// A downstream breaker at scrape time.
pub struct BreakerSample {
    /// `users`, `orders` or `inventory`.
    pub downstream: &'static str,
    /// 0 closed, 1 half-open, 2 open.
    pub state: i64,
    /// Times it opened since start.
    pub opened: u64,
}

/// The gateway's state at scrape time.
pub struct Sample {
    /// One per downstream service.
    pub breakers: Vec<BreakerSample>,
    /// Requests refused by the rate limits since start.
    pub rate_limited: u64,
    /// Keys the rate limiter tracks now.
    pub rate_limit_keys: usize,
    /// Commands waiting for replies.
    pub commands_waiting: usize,
    /// Projection lag per `(topic, partition)`.
    pub projection_lag: Vec<(String, i32, i64)>,
    /// Events the projection applied, skipped as duplicates, and could not
    /// read.
    pub projected: [(&'static str, u64); 3],
    /// 1 when the projection caught up with the topics once.
    pub ready: bool,
}

/// The text exposition of the gateway's flows and of `sample`.
pub fn render(sample: &Sample) -> Result<String, prometheus::Error> {
    let now = Registry::new();
    let breaker_state = IntGaugeVec::new(
        Opts::new(
            "ordersaga_gateway_breaker_state",
            "Circuit breaker of each downstream service: 0 closed, 1 half-open, 2 open",
        ),
        &["downstream"],
    )?;
    let breaker_opened = IntGaugeVec::new(
        Opts::new(
            "ordersaga_gateway_breaker_opened_total",
            "Times each downstream's breaker opened since start",
        ),
        &["downstream"],
    )?;
    for breaker in &sample.breakers {
        breaker_state
            .with_label_values(&[breaker.downstream])
            .set(breaker.state);
        breaker_opened
            .with_label_values(&[breaker.downstream])
            .set(breaker.opened as i64);
    }
    now.register(Box::new(breaker_state))?;
    now.register(Box::new(breaker_opened))?;
    let single = |name: &str, help: &str, value: i64| -> Result<(), prometheus::Error> {
        let gauge = IntGauge::new(name, help)?;
        gauge.set(value);
        now.register(Box::new(gauge))
    };
    single(
        "ordersaga_gateway_rate_limited_total",
        "Requests refused with 429 since start",
        sample.rate_limited as i64,
    )?;
    single(
        "ordersaga_gateway_rate_limit_keys",
        "Users and client addresses the rate limiter tracks now",
        sample.rate_limit_keys as i64,
    )?;
    single(
        "ordersaga_gateway_commands_waiting",
        "Commands waiting for their replies",
        sample.commands_waiting as i64,
    )?;
    single(
        "ordersaga_gateway_ready",
        "1 when the projection has caught up with the event topics",
        i64::from(sample.ready),
    )?;
    let lag = IntGaugeVec::new(
        Opts::new(
            "ordersaga_gateway_projection_lag",
            "Records of an event topic partition the read model has not applied yet",
        ),
        &["topic", "partition"],
    )?;
    for (topic, partition, records) in &sample.projection_lag {
        lag.with_label_values(&[topic.as_str(), &partition.to_string()])
            .set(*records);
    }
    now.register(Box::new(lag))?;
    let projected = IntGaugeVec::new(
        Opts::new(
            "ordersaga_gateway_projected_total",
            "Event records the projection read since start, by result",
        ),
        &["result"],
    )?;
    for (result, count) in sample.projected {
        projected.with_label_values(&[result]).set(count as i64);
    }
    now.register(Box::new(projected))?;
    let mut families = gateway_metrics().registry.gather();
    families.extend(now.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
