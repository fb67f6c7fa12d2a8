//! Each service instance's HTTP face: queries answered from its live
//! aggregates, the login backend (users), health and readiness.
//!
//! Queries go to the entity actors, so they see every write this instance
//! has acknowledged. Errors are `application/problem+json` ([`problem`]).
//! The server runs beside the service's actors and stops before them.

pub mod auth;
pub mod ids;
pub mod lists;
pub mod problem;
pub mod reads;
pub mod routes;
pub mod views;

use crate::kafka::liveness::Readiness;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::{Journal, Service};
use std::net::SocketAddr;
use tokio::sync::watch;

/// Largest request body accepted, in bytes: credentials and small commands
/// fit many times over; anything larger is refused with 413.
pub const MAX_BODY: usize = 16 * 1024;

/// The outbox backlog above which an instance reports not ready: it is
/// alive but its publishing has fallen behind.
pub const OUTBOX_READY_BOUND: usize = 10_000;

/// The actors a service's HTTP face reads.
#[derive(Clone)]
pub enum Backend {
    /// The users service.
    Users(Service<User>),
    /// The inventory service.
    Inventory(Service<Product>),
    /// The orders service: orders and their sagas.
    Orders {
        /// The orders.
        orders: Service<Order>,
        /// Their sagas (a saga's id is its order's id).
        sagas: Service<Saga>,
    },
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The actors.
    pub backend: Backend,
    /// The service's store.
    pub journal: Journal,
    /// Whether its consumers own partitions.
    pub readiness: watch::Receiver<Readiness>,
}

/// A running HTTP server.
pub struct HttpFace {
    /// Where it listens.
    pub address: SocketAddr,
    handle: ServerHandle,
}

impl HttpFace {
    /// Stops accepting, finishes the requests in flight (briefly).
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Binds `address` (port 0 picks one) and serves `state` on one worker
/// thread, inside the current actix system.
pub fn serve(address: &str, state: ApiState) -> std::io::Result<HttpFace> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(routes::json_config())
            .app_data(routes::path_config())
            .app_data(routes::query_config())
            .configure(routes::configure)
    })
    .workers(1)
    .shutdown_timeout(2)
    .disable_signals()
    .bind(address)?;
    let bound = server.addrs().first().copied().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "bound to no address")
    })?;
    let server = server.run();
    let handle = server.handle();
    actix::spawn(server);
    Ok(HttpFace {
        address: bound,
        handle,
    })
}
