//! The baseline: a trivial actix-web handler, served in the bench's process
//! with as many workers as the gateway, driven by the same client at the
//! same concurrency. What it measures is the cost of HTTP itself on this
//! machine at this moment (client, loopback, actix-web, JSON), so each
//! gateway phase divided by it says what the gateway adds.

use super::super::BenchError;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;

/// The path the baseline serves.
pub(super) const PATH: &str = "/ping";

/// A running baseline server.
pub(super) struct Baseline {
    pub(super) address: SocketAddr,
    handle: ServerHandle,
}

impl Baseline {
    /// Starts it on a free loopback port with `workers` worker threads,
    /// inside the current actix system.
    pub(super) fn start(workers: usize) -> Result<Self, BenchError> {
        let server = HttpServer::new(|| App::new().route(PATH, web::get().to(ping)))
            .workers(workers.max(1))
            .shutdown_timeout(1)
            .disable_signals()
            .bind("127.0.0.1:0")?;
        let address = server
            .addrs()
            .first()
            .copied()
            .ok_or("the baseline server is bound to no address")?;
        let server = server.run();
        let handle = server.handle();
        actix::spawn(server);
        Ok(Self { address, handle })
    }

    /// Stops it.
    pub(super) async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// A small JSON answer, like the gateway's smallest.
async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}
