//! The accept loop.
//!
//! Accepted sockets are spread round-robin over the worker arbiters (one
//! thread each), so connection work (routing included) runs beside the
//! shards on every core while only the accept loop stays on the system
//! arbiter.
//!
//! At `max_connections`, or at `max_connections_per_peer` from one address,
//! a new connection gets an `overloaded` error frame and is closed at once:
//! refusing is cheaper than queueing, and one peer cannot take every slot.
//! A TLS handshake must finish within `handshake_timeout_ms`.

use super::connection::{self, GatewayContext};
use crate::protocol::{ErrorCode, Response};
use crate::telemetry;
use actix_rt::ArbiterHandle;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Connections being served, in all and per peer address.
#[derive(Default)]
struct Census {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One served connection: counted (and shown as the open-connections gauge)
/// from admission until the connection ends.
struct Live {
    census: Arc<Mutex<Census>>,
    peer: IpAddr,
}

impl Live {
    /// Admits a connection from `peer`, or says why not.
    fn admit(
        census: &Arc<Mutex<Census>>,
        peer: IpAddr,
        max_total: usize,
        max_per_peer: usize,
    ) -> Result<Live, Refusal> {
        let mut counts = census
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.total >= max_total {
            return Err(Refusal {
                limit: "max_connections",
                why: "connection limit reached",
            });
        }
        let from_peer = counts.by_peer.entry(peer).or_insert(0);
        if *from_peer >= max_per_peer {
            return Err(Refusal {
                limit: "max_connections_per_peer",
                why: "too many connections from this address",
            });
        }
        *from_peer += 1;
        counts.total += 1;
        metrics::gauge!(telemetry::CONNECTIONS_OPEN).increment(1.0);
        Ok(Live {
            census: census.clone(),
            peer,
        })
    }
}

/// Why a connection was not admitted.
struct Refusal {
    /// The limit reached (the metric's label).
    limit: &'static str,
    why: &'static str,
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut counts = self
            .census
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.total -= 1;
        if let Some(from_peer) = counts.by_peer.get_mut(&self.peer) {
            *from_peer -= 1;
            if *from_peer == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
        metrics::gauge!(telemetry::CONNECTIONS_OPEN).decrement(1.0);
    }
}

pub async fn accept_loop(
    listener: TcpListener,
    context: Arc<GatewayContext>,
    tls: Option<TlsAcceptor>,
    workers: Vec<ArbiterHandle>,
) {
    assert!(!workers.is_empty());
    let limits = &context.gate.limits;
    let census = Arc::new(Mutex::new(Census::default()));
    let mut next_worker = 0usize;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically out of file descriptors: back off, keep serving.
                tracing::warn!(%error, "accept failed");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let accepted = Instant::now();
        let live = match Live::admit(
            &census,
            peer.ip(),
            limits.max_connections,
            limits.max_connections_per_peer,
        ) {
            Ok(live) => live,
            Err(refusal) => {
                refuse(stream, refusal.why, limits.max_frame_bytes);
                metrics::counter!(telemetry::CONNECTIONS_REFUSED_TOTAL, "limit" => refusal.limit)
                    .increment(1);
                continue;
            }
        };
        let std_stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot hand a connection to a worker");
                continue;
            }
        };
        let (context, tls) = (context.clone(), tls.clone());
        let worker = &workers[next_worker % workers.len()];
        next_worker = next_worker.wrapping_add(1);
        worker.spawn_fn(move || {
            actix_rt::spawn(async move {
                let _live = live;
                let stream = match TcpStream::from_std(std_stream) {
                    Ok(stream) => stream,
                    Err(error) => return tracing::warn!(%error, "cannot adopt a connection"),
                };
                let Some(tls) = tls else {
                    return connection::serve_tcp(stream, context, accepted).await;
                };
                let _ = stream.set_nodelay(true);
                let deadline =
                    accepted + Duration::from_millis(context.gate.limits.handshake_timeout_ms);
                match tokio::time::timeout_at(deadline.into(), tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection::serve_stream(stream, context, accepted).await,
                    Ok(Err(error)) => tracing::info!(%error, "TLS handshake failed"),
                    Err(_elapsed) => tracing::info!("TLS handshake timed out"),
                }
            });
        });
    }
}

/// Best effort: one error frame, then close. Never blocks the accept loop.
fn refuse(stream: TcpStream, why: &str, max_frame_bytes: usize) {
    let mut out = Vec::new();
    let response = Response::error(ErrorCode::Overloaded, why);
    if response.encode(&mut out, 0, max_frame_bytes).is_ok() {
        let _ = stream.try_write(&out);
    }
}
