//! The accept loop.
//!
//! Accepted sockets are spread round-robin over the worker arbiters (one
//! thread each), so connection work (routing included) runs beside the
//! shards on every core while only the accept loop stays on the system
//! arbiter.
//!
//! Every accepted connection takes a handshaking slot ([`super::slots`]):
//! past `max_connections_per_peer` from one address it gets an
//! `overloaded` error frame and is closed at once (refusing is cheaper than
//! queueing); a full handshake pool makes room by evicting its oldest. A
//! TLS handshake must finish within `handshake_timeout_ms`, or before the
//! connection is evicted.

use super::connection::{self, GatewayContext};
use crate::protocol::{ErrorCode, Response};
use actix_rt::ArbiterHandle;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The listener's next connection. A failed accept (typically out of file
/// descriptors) is logged and retried after a pause: the listener keeps
/// serving. `what` names the listener in the log.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    what: &str,
) -> (TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, listener = what, "accept failed");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        }
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
    let slots = &context.slots;
    let mut next_worker = 0usize;
    loop {
        let (stream, peer) = next_connection(&listener, "binary").await;
        let accepted = Instant::now();
        let slot = match slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(stream, refusal.why, limits.max_frame_bytes);
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
                let stream = match TcpStream::from_std(std_stream) {
                    Ok(stream) => stream,
                    Err(error) => return tracing::warn!(%error, "cannot adopt a connection"),
                };
                let Some(tls) = tls else {
                    return connection::serve_tcp(stream, context, slot, accepted).await;
                };
                let _ = stream.set_nodelay(true);
                let deadline =
                    accepted + Duration::from_millis(context.gate.limits.handshake_timeout_ms);
                let handshake = tokio::time::timeout_at(deadline.into(), tls.accept(stream));
                let outcome = tokio::select! {
                    outcome = handshake => outcome,
                    () = slot.evicted() => {
                        return tracing::info!("evicted from the handshake pool during TLS");
                    }
                };
                match outcome {
                    Ok(Ok(stream)) => {
                        connection::serve_stream(stream, context, slot, accepted).await
                    }
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
