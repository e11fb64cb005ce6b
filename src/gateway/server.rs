//! The accept loop.
//!
//! Accepted sockets are spread round-robin over the worker arbiters (one
//! thread each), so connection work (routing included) runs beside the
//! shards on every core while only the accept loop stays on the system
//! arbiter.
//! At `max_connections` a new connection gets an `Overloaded` error frame
//! and is closed at once: refusing is cheaper than queueing.

use super::connection::{self, GatewayContext};
use crate::protocol::{ErrorCode, Response};
use crate::telemetry;
use actix_rt::ArbiterHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// One served connection: counted (and shown as the open-connections gauge)
/// from admission until the connection ends.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn admit(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(telemetry::CONNECTIONS_OPEN).increment(1.0);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    let live = Arc::new(AtomicUsize::new(0));
    let mut next_worker = 0usize;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Typically out of file descriptors: back off, keep serving.
                tracing::warn!(%error, "accept failed");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if live.load(Ordering::Acquire) >= context.gate.limits.max_connections {
            refuse(stream, context.gate.limits.max_frame_bytes);
            metrics::counter!(telemetry::CONNECTIONS_REFUSED_TOTAL).increment(1);
            continue;
        }
        let std_stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot hand a connection to a worker");
                continue;
            }
        };
        let guard = Live::admit(&live);
        let (context, tls) = (context.clone(), tls.clone());
        let worker = &workers[next_worker % workers.len()];
        next_worker = next_worker.wrapping_add(1);
        worker.spawn_fn(move || {
            actix_rt::spawn(async move {
                let _live = guard;
                let stream = match TcpStream::from_std(std_stream) {
                    Ok(stream) => stream,
                    Err(error) => return tracing::warn!(%error, "cannot adopt a connection"),
                };
                let Some(tls) = tls else {
                    return connection::serve_tcp(stream, context).await;
                };
                let _ = stream.set_nodelay(true);
                match tls.accept(stream).await {
                    Ok(stream) => connection::serve_stream(stream, context).await,
                    Err(error) => tracing::info!(%error, "TLS handshake failed"),
                }
            });
        });
    }
}

/// Best effort: one error frame, then close. Never blocks the accept loop.
fn refuse(stream: TcpStream, max_frame_bytes: usize) {
    let mut out = Vec::new();
    let response = Response::error(ErrorCode::Overloaded, "connection limit reached");
    if response.encode(&mut out, 0, max_frame_bytes).is_ok() {
        let _ = stream.try_write(&out);
    }
}
