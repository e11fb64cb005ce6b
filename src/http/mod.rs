//! The HTTP/JSON API (`docs/HTTP.md`): payments and authorizations by the
//! merchant's order id, captures, voids and refunds under an
//! `Idempotency-Key`, card balances, for gateways without a kessai client
//! library. actix-web on its own port (`[http] listen`, off by default),
//! HTTPS with the engine's certificate, bearer tokens per principal.
//!
//! Arrows run one way: server (here) → api → exchange, problem; the API
//! sits above the gateway, like the ISO 8583 listener, and shares its
//! context (serving slots, in-flight budgets, the PIN guard, validation,
//! the router), so an HTTP request ends in the same shard operations, under
//! the same limits, roles, lockout and fair shares as a binary one.
//!
//! * [`api`]: the endpoints and their JSON bodies.
//! * [`exchange`]: token, body, admission, the round trip to the engine.
//! * [`problem`]: RFC 9457 problem documents and status codes.
//! * [`openapi`]: the OpenAPI document (`/v1/openapi.json`).

pub mod api;
pub(crate) mod exchange;
pub mod openapi;
pub mod problem;

use crate::auth::Tokens;
use crate::config::{Config, http_weight_max};
use crate::gateway::connection::GatewayContext;
use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every HTTP request shares.
pub struct HttpContext {
    pub(crate) gateway: Arc<GatewayContext>,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) max_body_bytes: usize,
    /// How long a body may take to arrive, and a principal's share to
    /// make room (`limits.frame_timeout_ms`).
    pub(crate) body_timeout: Duration,
    pub(crate) currency: String,
    /// What one request weighs in the in-flight budgets.
    pub(crate) weight: usize,
    openapi: String,
}

/// Starts the HTTP API if `[http] listen` is set; where it listens.
pub(crate) fn start(
    config: &Config,
    gateway: &Arc<GatewayContext>,
    tokens: Arc<Tokens>,
) -> Result<Option<SocketAddr>, String> {
    let http = &config.http;
    let Some(listen) = http.listen else {
        return Ok(None);
    };
    let tls = tls_config(config)?;
    if tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "HTTP API: PLAIN HTTP BEYOND LOOPBACK (insecure_plain_http): bearer tokens and PINs \
             cross the network in clear; never run this in production"
        );
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen} (http): {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("http listener address: {e}"))?;
    let limits = &config.limits;
    let context = Data::new(HttpContext {
        gateway: gateway.clone(),
        tokens,
        max_body_bytes: http.max_body_bytes,
        body_timeout: Duration::from_millis(limits.frame_timeout_ms),
        currency: http.currency.clone(),
        weight: http_weight_max(http.max_body_bytes),
        openapi: openapi::document(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(context.clone())
            .service(web::scope("/v1").configure(routes))
            .default_service(web::to(api::not_found))
    })
    .workers(config.http_worker_count())
    // The engine handles SIGINT and SIGTERM itself.
    .disable_signals()
    // Per worker: together at most the gateway's serving pool.
    .max_connections(limits.max_connections.div_ceil(config.http_worker_count()))
    .keep_alive(Duration::from_millis(limits.idle_timeout_ms))
    .client_request_timeout(Duration::from_millis(limits.frame_timeout_ms))
    .client_disconnect_timeout(Duration::from_millis(limits.write_timeout_ms))
    .shutdown_timeout(1);
    let server = match tls {
        Some(tls) => server
            .tls_handshake_timeout(Duration::from_millis(limits.handshake_timeout_ms))
            .listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    }
    .map_err(|e| format!("http server: {e}"))?
    .run();
    actix_rt::spawn(server);
    Ok(Some(addr))
}

/// The engine's certificate for HTTPS, speaking HTTP/1.1; `None` without
/// one (plain HTTP).
fn tls_config(config: &Config) -> Result<Option<rustls::ServerConfig>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let mut tls = crate::gateway::tls::server_config(cert, key)?;
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Some(tls))
        }
        _ => Ok(None),
    }
}

/// The API's endpoints, under `/v1`.
fn routes(v1: &mut web::ServiceConfig) {
    v1.route("/payments", web::post().to(api::create_payment))
        .route("/payments/{order_id}", web::get().to(api::get_payment))
        .route("/payments/{order_id}/capture", web::post().to(api::capture))
        .route("/payments/{order_id}/void", web::post().to(api::void))
        .route("/payments/{order_id}/refunds", web::post().to(api::refund))
        .route("/cards/balance", web::post().to(api::balance))
        .route("/openapi.json", web::get().to(openapi_json))
        .route("/healthz", web::get().to(api::healthz));
}

async fn openapi_json(context: Data<HttpContext>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(context.openapi.clone())
}
