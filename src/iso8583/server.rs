//! The ISO 8583 accept loop: the gateway's connection slots, then who the
//! connection acts as (its client certificate, or the configured store HQ
//! in plain-TCP test mode), then [`super::connection::serve`].
//!
//! Every accepted connection takes a handshaking slot: past
//! `max_connections_per_peer` it is closed at once, and a full handshake
//! pool evicts as the gateway's does. The TLS handshake must finish within
//! `handshake_timeout_ms`. A connection whose certificate names no store
//! HQ in service (unregistered, revoked, not a store HQ) is closed; one the
//! serving pool refuses (`max_connections`, `_per_principal`) too.

use super::connection::{self, IsoContext};
use crate::auth::certs::fingerprint;
use crate::auth::{Certs, Principal, Registry};
use crate::protocol::Role;
use actix_rt::ArbiterHandle;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How connections say who they are.
pub enum Mode {
    /// Test mode (loopback only): every connection acts as this store HQ.
    Plain { store_hq: u32 },
    /// Mutual TLS: the client certificate's fingerprint names the HQ.
    Tls {
        acceptor: TlsAcceptor,
        certs: Arc<Certs>,
    },
}

pub async fn accept_loop(
    listener: TcpListener,
    context: Arc<IsoContext>,
    mode: Arc<Mode>,
    workers: Vec<ArbiterHandle>,
) {
    assert!(!workers.is_empty());
    let mut next_worker = 0usize;
    loop {
        let (stream, peer) = crate::gateway::server::next_connection(&listener, "ISO 8583").await;
        let accepted = Instant::now();
        let slot = match context.gateway.slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                // ISO 8583 has no message for it before a request: close.
                tracing::info!(limit = refusal.limit, "ISO 8583 connection refused");
                continue;
            }
        };
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        let (context, mode) = (context.clone(), mode.clone());
        let worker = &workers[next_worker % workers.len()];
        next_worker = next_worker.wrapping_add(1);
        worker.spawn_fn(move || {
            actix_rt::spawn(async move {
                let Ok(stream) = TcpStream::from_std(std_stream) else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                accept(stream, context, &mode, slot, accepted).await;
            });
        });
    }
}

async fn accept(
    stream: TcpStream,
    context: Arc<IsoContext>,
    mode: &Mode,
    mut slot: crate::gateway::slots::Slot,
    accepted: Instant,
) {
    let registry = &context.gateway.gate.registry;
    match mode {
        Mode::Plain { store_hq } => {
            let Some(principal) = in_service(registry, *store_hq) else {
                return tracing::warn!(
                    principal = store_hq,
                    "iso8583.plain_tcp_store_hq names no store HQ in service; closing"
                );
            };
            if promote(&mut slot, &principal) {
                connection::serve(stream, context, principal, slot).await;
            }
        }
        Mode::Tls { acceptor, certs } => {
            let limits = &context.gateway.gate.limits;
            let deadline = accepted + Duration::from_millis(limits.handshake_timeout_ms);
            let handshake = tokio::time::timeout_at(deadline.into(), acceptor.accept(stream));
            let outcome = tokio::select! {
                outcome = handshake => outcome,
                () = slot.evicted() => {
                    return tracing::info!("ISO 8583: evicted from the handshake pool during TLS");
                }
            };
            let stream = match outcome {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::info!(%error, "ISO 8583 TLS handshake failed"),
                Err(_elapsed) => return tracing::info!("ISO 8583 TLS handshake timed out"),
            };
            let owner = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| certs.principal_of(&fingerprint(cert)));
            let Some(principal) = owner.and_then(|id| in_service(registry, id)) else {
                return tracing::info!("ISO 8583 client certificate names no store HQ in service");
            };
            if promote(&mut slot, &principal) {
                connection::serve(stream, context, principal, slot).await;
            }
        }
    }
}

/// The store HQ `id`, if it is one and not revoked.
fn in_service(registry: &Registry, id: u32) -> Option<Arc<Principal>> {
    registry
        .get(id)
        .filter(|principal| principal.role == Role::StoreHq && !principal.is_revoked())
}

fn promote(slot: &mut crate::gateway::slots::Slot, principal: &Principal) -> bool {
    match slot.promote(principal) {
        Ok(()) => true,
        Err(refusal) => {
            tracing::info!(
                principal = principal.id,
                limit = refusal.limit,
                "ISO 8583 connection refused"
            );
            false
        }
    }
}
