//! A connection's session: the handshake, then who it acts as.
//!
//! Every connection starts unauthenticated. It must send `AuthHello`
//! (principal id and a client nonce); the engine answers with a fresh
//! server nonce; the client sends `AuthProof`; a valid proof makes the
//! connection act as that principal until it closes or the principal is
//! revoked. Anything else before that gets `unauthenticated` and changes
//! nothing. A bad proof, or a handshake message out of order, ends the
//! connection.

use super::slots::Slot;
use crate::auth::keys::{self, NONCE_BYTES};
use crate::auth::{Principal, Registry};
use crate::protocol::{
    AuthChallenge, AuthHello, AuthProof, AuthWelcome, ErrorCode, ErrorResponse, Response,
};
use std::sync::Arc;

pub(super) enum Session {
    /// Nothing yet: only `AuthHello` is accepted.
    Fresh,
    /// Challenge sent: only `AuthProof` is accepted.
    Challenged {
        principal: u32,
        client_nonce: [u8; NONCE_BYTES],
        server_nonce: [u8; NONCE_BYTES],
    },
    /// Requests act as this principal.
    Authenticated(Arc<Principal>),
}

/// What the reader does after a handshake message.
pub(super) enum Step {
    /// Send this reply and carry on.
    Reply(Response),
    /// Send this error last, then close.
    Close(ErrorResponse),
}

impl Session {
    pub(super) fn principal(&self) -> Option<&Arc<Principal>> {
        match self {
            Session::Authenticated(principal) => Some(principal),
            _ => None,
        }
    }

    pub(super) fn hello(&mut self, hello: AuthHello) -> Step {
        if !matches!(self, Session::Fresh) {
            return Step::Close(refusal("the handshake starts only once"));
        }
        let server_nonce = keys::nonce();
        *self = Session::Challenged {
            principal: hello.principal,
            client_nonce: hello.client_nonce,
            server_nonce,
        };
        Step::Reply(Response::Challenge(AuthChallenge { server_nonce }))
    }

    /// Checks the proof. An unknown or revoked principal and a wrong proof
    /// get the same refusal. A good proof moves the connection to the
    /// serving pool, unless a limit there refuses it (`overloaded`).
    pub(super) fn proof(&mut self, proof: AuthProof, registry: &Registry, slot: &mut Slot) -> Step {
        let Session::Challenged {
            principal,
            client_nonce,
            server_nonce,
        } = *self
        else {
            return Step::Close(refusal("AuthProof comes after AuthHello's challenge"));
        };
        let verified = registry.get(principal).filter(|p| {
            !p.is_revoked()
                && keys::verify(
                    p.stored_key(),
                    principal,
                    &client_nonce,
                    &server_nonce,
                    &proof.proof,
                )
        });
        crate::telemetry::authenticated(verified.is_some());
        match verified {
            Some(principal) => {
                if let Err(refusal) = slot.promote(&principal) {
                    tracing::info!(
                        principal = principal.id,
                        limit = refusal.limit,
                        "connection refused"
                    );
                    let message = format!("{} ({})", refusal.why, refusal.limit);
                    return Step::Close(ErrorResponse::new(ErrorCode::Overloaded, message));
                }
                let welcome = AuthWelcome {
                    principal: principal.id,
                    role: principal.role,
                    stores: principal.stores.clone(),
                };
                *self = Session::Authenticated(principal);
                Step::Reply(Response::Welcome(welcome))
            }
            None => {
                tracing::info!(principal, "authentication failed");
                Step::Close(refusal("authentication failed"))
            }
        }
    }
}

pub(super) fn refusal(message: &str) -> ErrorResponse {
    ErrorResponse::new(ErrorCode::Unauthenticated, message)
}
