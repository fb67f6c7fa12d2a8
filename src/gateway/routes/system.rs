//! Operations: the registry with breaker states, health, readiness,
//! metrics and the OpenAPI document.

use crate::gateway::metrics::{render, BreakerSample, Sample};
use crate::gateway::state::GatewayState;
use crate::http::problem::Problem;
use actix_web::{web, HttpResponse};
use ordersaga_events::topics::Service as ServiceName;
use serde_json::json;

/// `GET /services`: every downstream service, its breaker and its live
/// instances (from their heartbeats).
#[utoipa::path(get, path = "/services", tag = "operations", responses(
    (status = 200, description = "`{services: {users: {breaker, instances}, …}}`", body = Object)))]
pub async fn services(state: web::Data<GatewayState>) -> HttpResponse {
    let mut services = serde_json::Map::new();
    for service in ServiceName::ALL {
        let breaker = state.downstream.breakers().of(service).snapshot();
        let instances = state.downstream.registry().live(service);
        services.insert(
            service.name().to_string(),
            json!({"breaker": breaker, "instances": instances}),
        );
    }
    HttpResponse::Ok().json(json!({ "services": services }))
}

/// `GET /health`: alive while the process serves.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Object)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

/// `GET /ready`: 200 once the read model has caught up with the event
/// topics (as they were at start), else 503; both with the projection lag.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready: `{ready, reasons, projection_lag, partitions}`", body = Object),
    (status = 503, description = "Not ready, with the reasons", body = Object)))]
pub async fn ready(state: web::Data<GatewayState>) -> HttpResponse {
    let lag = state.projector.lag();
    let mut reasons = Vec::new();
    if !state.projector.caught_up() {
        reasons.push(format!(
            "the read model is catching up with the event topics ({} records behind)",
            lag.total
        ));
    }
    let body = json!({
        "ready": reasons.is_empty(),
        "reasons": reasons,
        "projection_lag": lag.total,
        "partitions": lag.per_partition.iter().map(|(topic, partition, lag)| json!({
            "topic": topic, "partition": partition, "lag": lag,
        })).collect::<Vec<_>>(),
    });
    if reasons.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<GatewayState>) -> Result<HttpResponse, Problem> {
    let breakers = ServiceName::ALL
        .into_iter()
        .map(|service| {
            let snapshot = state.downstream.breakers().of(service).snapshot();
            BreakerSample {
                downstream: service.name(),
                state: snapshot.state.gauge_value(),
                opened: snapshot.opened,
            }
        })
        .collect();
    let counters = state.projector.counters();
    let sample = Sample {
        breakers,
        rate_limited: state.limiter.refused(),
        rate_limit_keys: state.limiter.keys(),
        commands_waiting: state.requester.waiting(),
        projection_lag: state.projector.lag().per_partition,
        projected: [
            ("applied", counters.applied),
            ("duplicate", counters.duplicates),
            ("skipped", counters.skipped),
        ],
        ready: state.projector.caught_up(),
    };
    let text = render(&sample)
        .map_err(|err| Problem::unavailable(format!("cannot render the metrics: {err}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// `GET /openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(<super::ApiDoc as utoipa::OpenApi>::openapi())
}
