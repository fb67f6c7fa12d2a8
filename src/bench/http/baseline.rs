//! The baseline: a trivial actix-web handler, served in the bench's process
//! with as many workers as the gateway, driven by the same client at the
//! same concurrency. What it measures is the cost of HTTP itself on this
//! machine at this moment (client, loopback, actix-web, JSON), so each
//! gateway phase divided by it says what the gateway adds.
//!
//! Beside it runs the cheapest possible proxied read: `GET /ping/proxied`
//! on the same server asks `GET /ping` of a second trivial server (one
//! worker, like a service's HTTP face) through a keep-alive awc client, and
//! passes the answer on. A proxied read through the gateway is two HTTP
//! exchanges too, so this is its ceiling on this machine at this moment:
//! what the gateway's `GET /products/{id}` costs beyond it is the gateway's
//! and the service's own work.

use super::super::BenchError;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;

/// The path the baseline serves.
pub(super) const PATH: &str = "/ping";

/// The path of the trivial proxy: `GET /ping` asked of the upstream.
pub(super) const PROXY_PATH: &str = "/ping/proxied";

/// Worker threads of the upstream server: a service's HTTP face has one.
const UPSTREAM_WORKERS: usize = 1;

/// A running baseline server, and the upstream its proxy route asks.
pub(super) struct Baseline {
    pub(super) address: SocketAddr,
    handle: ServerHandle,
    upstream: ServerHandle,
}

/// Where the proxy route sends its requests, and the worker's client.
struct Upstream {
    url: String,
    client: awc::Client,
}

impl Baseline {
    /// Starts it on a free loopback port with `workers` worker threads,
    /// and its upstream with one, inside the current actix system.
    pub(super) fn start(workers: usize) -> Result<Self, BenchError> {
        let (upstream_address, upstream) = serve(UPSTREAM_WORKERS, || {
            App::new().route(PATH, web::get().to(ping))
        })?;
        let url = format!("http://{upstream_address}{PATH}");
        let started = serve(workers, move || {
            // awc's client is not `Send`: one per worker, as the gateway has.
            let upstream = Upstream {
                url: url.clone(),
                client: awc::Client::builder().timeout(TIMEOUT).finish(),
            };
            App::new()
                .app_data(web::Data::new(upstream))
                .route(PATH, web::get().to(ping))
                .route(PROXY_PATH, web::get().to(proxied))
        });
        let (address, handle) = match started {
            Ok(started) => started,
            Err(err) => {
                actix::spawn(async move { upstream.stop(true).await });
                return Err(err);
            }
        };
        Ok(Self {
            address,
            handle,
            upstream,
        })
    }

    /// Stops both servers.
    pub(super) async fn stop(self) {
        self.handle.stop(true).await;
        self.upstream.stop(true).await;
    }
}

/// How long the proxy waits for the upstream, as the gateway's calls do.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the app `app` builds on a free loopback port with `workers`
/// worker threads.
fn serve<F, A>(workers: usize, app: F) -> Result<(SocketAddr, ServerHandle), BenchError>
where
    F: Fn() -> App<A> + Send + Clone + 'static,
    A: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    let server = HttpServer::new(app)
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
    Ok((address, handle))
}

/// A small JSON answer, like the gateway's smallest.
async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /ping` of the upstream, its status and body passed on unparsed (as
/// the gateway passes a product's body on); 502 when it cannot be asked.
async fn proxied(upstream: web::Data<Upstream>) -> HttpResponse {
    let sent = upstream
        .client
        .get(&upstream.url)
        .insert_header(("accept", "application/json"))
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(err) => return HttpResponse::BadGateway().body(err.to_string()),
    };
    match response.body().await {
        Ok(body) => HttpResponse::build(response.status())
            .content_type("application/json")
            .body(body),
        Err(err) => HttpResponse::BadGateway().body(err.to_string()),
    }
}
