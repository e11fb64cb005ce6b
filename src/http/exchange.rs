//! What every HTTP request goes through before and after the engine: the
//! bearer token, the body (bounded in bytes and in time, parsed as strict
//! JSON), admission under the gateway's limits, and the round trip through
//! the router.
//!
//! **Admission.** An HTTP request holds, while the engine works on it, what
//! a binary connection holds: a serving slot (so `max_connections`,
//! `max_connections_per_principal` and `max_connections_per_peer` count
//! HTTP requests in flight too), its weight from its principal's share of
//! the in-flight bytes (the same share its binary connections draw on, so
//! the fair share is per principal across both transports), and its weight
//! from the engine's `max_inflight_bytes` (`busy`, 503, when spent). A
//! principal whose share is spent waits, at most `frame_timeout_ms`.

use super::HttpContext;
use super::problem::Failure;
use crate::auth::Principal;
use crate::gateway::slots::Slot;
use crate::protocol::{ErrorCode, Response, Role};
use crate::reply::{Reply, Tag};
use crate::router::Command;
use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::web::Payload;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// The principal a request's bearer token acts as, if it may act at all.
pub fn authenticate(
    context: &HttpContext,
    request: &HttpRequest,
) -> Result<Arc<Principal>, Failure> {
    let header = request
        .headers()
        .get("Authorization")
        .ok_or_else(|| Failure::unauthorized("send Authorization: Bearer <token>"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Failure::unauthorized("the Authorization header is Bearer <token>"))?;
    let principal = context
        .tokens
        .principal_of(token.trim())
        .and_then(|id| context.gateway.gate.registry.get(id))
        .filter(|principal| !principal.is_revoked())
        .ok_or_else(|| Failure::unauthorized("this token is not valid (unknown or revoked)"))?;
    Ok(principal)
}

/// Refuses a principal whose role may not call this endpoint.
pub fn require(principal: &Principal, role: Role) -> Result<(), Failure> {
    if principal.role == role {
        return Ok(());
    }
    Err(Failure::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("a {} may not call this endpoint", principal.role.name()),
    ))
}

/// The request's body, at most `max_body_bytes` and whole within
/// `frame_timeout_ms` of the first read, parsed as `T`. Malformed JSON is
/// 400; JSON of the wrong shape or types (a float or a string where an
/// integer belongs, an unknown field) is 422.
pub async fn body<T: DeserializeOwned>(
    context: &HttpContext,
    mut payload: Payload,
) -> Result<T, Failure> {
    let limit = context.max_body_bytes;
    let deadline = tokio::time::Instant::now() + context.body_timeout;
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next()).await;
        match next {
            Err(_elapsed) => {
                return Err(Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    "the body did not arrive in time",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "bad-body",
                    "the body could not be read",
                ));
            }
            Ok(Some(Ok(chunk))) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(Failure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        format!("a body is at most {limit} bytes"),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
        }
    }
    parse(&bytes)
}

/// Strict JSON: syntax errors are 400, shape errors 422. The message names
/// the field, never its value (a PIN may be the value).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => Failure::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                format!(
                    "the body is not JSON (line {}, column {})",
                    error.line(),
                    error.column()
                ),
            ),
            Category::Data => Failure::invalid("invalid-body", shape_error(&error)),
        }
    })
}

/// serde's message for a shape error, cut before any quoted value: serde
/// quotes the offending value ("invalid type: string \"7992...\"").
fn shape_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let cut = text.find(['"', '`']).unwrap_or(text.len());
    let head = text[..cut].trim_end_matches([' ', ':']);
    format!(
        "{head} (line {}, column {}); amounts are integers in minor units",
        error.line(),
        error.column()
    )
}

/// What an admitted request holds until its answer is built.
pub struct Admitted {
    _slot: Slot,
    principal_share: Option<OwnedSemaphorePermit>,
    engine: Option<OwnedSemaphorePermit>,
}

/// Admits a request of `principal` from `request`'s peer, weighing
/// `weight` bytes (see the module's comment).
pub async fn admit(
    context: &HttpContext,
    request: &HttpRequest,
    principal: &Principal,
    weight: usize,
) -> Result<Admitted, Failure> {
    let gateway = &context.gateway;
    let peer = request
        .peer_addr()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |addr| addr.ip());
    let mut slot = gateway
        .slots
        .admit(peer)
        .map_err(|refusal| Failure::busy(refusal.why))?;
    slot.promote(principal)
        .map_err(|refusal| Failure::busy(refusal.why))?;
    let permits = u32::try_from(weight).expect("bounded by http_weight_max");
    let share = slot.share().cloned();
    let principal_share = match share {
        Some(share) => {
            let waited =
                tokio::time::timeout(context.body_timeout, share.acquire_many_owned(permits));
            match waited.await {
                Ok(Ok(permit)) => Some(permit),
                Ok(Err(_)) | Err(_) => {
                    return Err(Failure::busy("this principal's in-flight share is spent"));
                }
            }
        }
        None => None,
    };
    let engine = gateway
        .inflight_bytes
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| Failure::busy("the engine's in-flight budget is spent"))?;
    Ok(Admitted {
        _slot: slot,
        principal_share,
        engine: Some(engine),
    })
}

/// Sends `command` through the router and waits for its answer. The
/// budgets travel with it and go back as its tag drops.
pub async fn ask(context: &HttpContext, admitted: &mut Admitted, command: Command) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tag = Tag {
        correlation_id: 0,
        bytes: 0,
        engine: admitted.engine.take(),
        principal: admitted.principal_share.take(),
        item: None,
        order: false,
    };
    context.gateway.router.route(&tx, vec![(tag, command)]);
    drop(tx);
    let answer = match rx.recv().await {
        Some(Reply::One(_, response)) => Some(response),
        Some(Reply::Many(mut replies)) => replies.pop().map(|(_, response)| response),
        Some(Reply::Batch(..) | Reply::Fatal(..)) | None => None,
    };
    answer.unwrap_or_else(|| Response::error(ErrorCode::Internal, "the engine gave no answer"))
}

/// How long the lockout lasts, for `Retry-After`.
pub fn lockout_s(context: &HttpContext) -> u64 {
    Duration::from_millis(context.gateway.gate.limits.lockout_ms).as_secs()
}
