//! One client connection: a reader half and a writer half.
//!
//! The **reader** cuts every complete frame out of what one `read` returned,
//! validates them, and hands all routable commands to the router at once
//! (one hand-off per read, not per request). Before dispatching it takes one
//! permit per request from the connection's semaphore of
//! `max_inflight_per_connection`; when a pipelining client has that many
//! requests unanswered the reader stops reading, TCP flow control pushes
//! back on the client, and no queue in the engine grows.
//!
//! The **writer** takes every reply that is ready, encodes them into one
//! buffer and writes it with one syscall, then returns their permits.
//! Replies go out in the order they become ready, not request order; the
//! correlation id pairs them up.
//!
//! Before anything else the connection authenticates (see [`super::session`]);
//! every request is then validated as its principal's, and refused if the
//! principal was revoked meanwhile.
//!
//! A framing violation (oversized, undecodable or truncated frame) ends the
//! connection, but not abruptly: the reader stops reading, waits until every
//! request admitted before the bad frame has had its reply written, and only
//! then queues the error frame that makes the writer close. A pipelining
//! client thus learns the outcome of every payment it sent before the bad
//! bytes; none is applied silently. The wait is bounded (twice the 2PC
//! prepare timeout, the longest a legitimate request can take) so a peer
//! that stops reading cannot pin the connection forever. An unknown message
//! type gets an error frame and the connection carries on, since framing is
//! intact.

use super::session::{self, Session, Step};
use super::validate::{self, Action};
use crate::auth::{Guard, Registry};
use crate::config::Limits;
use crate::pin::PinHasher;
use crate::protocol::frame::{FrameBuffer, FrameError};
use crate::protocol::{ErrorCode, ErrorResponse, Request, Response};
use crate::reply::{self, Reply, ReplyRx, ReplyTx};
use crate::router::{Command, Router};
use crate::telemetry::ReplyTally;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

/// Free space the reader keeps in its buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The writer flushes once this much is encoded, even if more is ready.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// What every connection shares.
pub struct GatewayContext {
    pub router: Arc<Router>,
    pub gate: Gate,
}

/// What a connection checks requests against before routing them.
pub struct Gate {
    pub registry: Arc<Registry>,
    pub guard: Arc<Guard>,
    pub hasher: PinHasher,
    pub limits: Limits,
}

/// Serves a plain TCP connection (halves that need no lock between them).
pub async fn serve_tcp(stream: TcpStream, context: Arc<GatewayContext>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    serve(reader, writer, context).await;
}

/// Serves a connection over any stream, TLS included.
pub async fn serve_stream<S>(stream: S, context: Arc<GatewayContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    serve(reader, writer, context).await;
}

async fn serve<R, W>(reader: R, writer: W, context: Arc<GatewayContext>)
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(
        context.gate.limits.max_inflight_per_connection,
    ));
    let writing = actix_rt::spawn(write_loop(
        writer,
        rx,
        permits.clone(),
        context.gate.limits.max_frame_bytes,
    ));
    read_loop(reader, tx, permits, &context).await;
    // The reader's sender is gone; the writer ends once every in-flight
    // reply has been written (their senders are dropped as they deliver).
    let _ = writing.await;
}

/// Frames cut from the buffer in one pass, ready to dispatch.
struct Cut {
    commands: Vec<(u64, Command)>,
    replies: Vec<(u64, Response)>,
    /// Requests admitted (each needs a permit and gets exactly one reply).
    requests: usize,
    /// A violation that ends the connection after dispatch.
    fatal: Option<(u64, ErrorResponse)>,
}

/// Cuts, decodes and validates complete frames, up to the in-flight limit.
fn cut_frames(buffer: &mut FrameBuffer, session: &mut Session, gate: &Gate) -> Cut {
    let limits = &gate.limits;
    let mut cut = Cut {
        commands: Vec::new(),
        replies: Vec::new(),
        requests: 0,
        fatal: None,
    };
    let checks = validate::Context {
        limits,
        hasher: &gate.hasher,
        guard: &gate.guard,
        now: Instant::now(),
    };
    while cut.requests < limits.max_inflight_per_connection {
        let frame = match buffer.next_frame(limits.max_frame_bytes) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                let code = match error {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    FrameError::TooShort { .. } => ErrorCode::MalformedFrame,
                };
                cut.fatal = Some((0, ErrorResponse::new(code, error.to_string())));
                break;
            }
        };
        let correlation_id = frame.correlation_id;
        let step = match Request::decode(frame.kind, frame.body) {
            Ok(Request::AuthHello(hello)) => session.hello(hello),
            Ok(Request::AuthProof(proof)) => session.proof(proof, &gate.registry),
            Ok(request) => match session.principal() {
                None => Step::Reply(Response::Error(session::refusal(
                    "authenticate first (AuthHello, then AuthProof)",
                ))),
                Some(principal) if principal.is_revoked() => {
                    Step::Close(session::refusal("this principal's key was revoked"))
                }
                Some(principal) => match validate::validate(request, principal, &checks) {
                    Action::Route(command) => {
                        cut.commands.push((correlation_id, command));
                        cut.requests += 1;
                        continue;
                    }
                    Action::Reply(response) => Step::Reply(response),
                },
            },
            Err(error) if error.code == ErrorCode::UnknownMessageType => {
                Step::Reply(Response::error(error.code, error.message))
            }
            Err(error) => Step::Close(ErrorResponse::new(error.code, error.message)),
        };
        match step {
            Step::Reply(response) => cut.replies.push((correlation_id, response)),
            Step::Close(error) => {
                cut.fatal = Some((correlation_id, error));
                break;
            }
        }
        cut.requests += 1;
    }
    cut
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    tx: ReplyTx,
    permits: Arc<Semaphore>,
    context: &GatewayContext,
) {
    let limits = &context.gate.limits;
    let mut buffer = FrameBuffer::with_capacity(READ_CHUNK_BYTES);
    let mut session = Session::Fresh;
    loop {
        let cut = cut_frames(&mut buffer, &mut session, &context.gate);
        if cut.requests > 0
            && !dispatch(
                &tx,
                &permits,
                context,
                cut.requests,
                cut.replies,
                cut.commands,
            )
            .await
        {
            return;
        }
        if let Some((correlation_id, error)) = cut.fatal {
            fail_after_outstanding_replies(&tx, &permits, limits, correlation_id, error).await;
            return;
        }
        if cut.requests == limits.max_inflight_per_connection {
            continue; // the buffer may hold more complete frames
        }
        match buffer.fill(&mut reader, READ_CHUNK_BYTES).await {
            Ok(0) => {
                if buffer.pending_bytes() > 0 {
                    let error = ErrorResponse::new(
                        ErrorCode::TruncatedFrame,
                        format!("stream ended {} bytes into a frame", buffer.pending_bytes()),
                    );
                    fail_after_outstanding_replies(&tx, &permits, limits, 0, error).await;
                }
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Admits `requests` (waiting while this client has too much in flight),
/// answers the ones validation already answered, and routes the rest.
/// False when the connection is finished.
async fn dispatch(
    tx: &ReplyTx,
    permits: &Semaphore,
    context: &GatewayContext,
    requests: usize,
    replies: Vec<(u64, Response)>,
    commands: Vec<(u64, Command)>,
) -> bool {
    match permits.acquire_many(requests as u32).await {
        Ok(admitted) => admitted.forget(),
        Err(_closed) => return false,
    }
    if !replies.is_empty() {
        reply::send(tx, Reply::Many(replies));
    }
    commands.is_empty() || context.router.route(tx, commands).await.is_ok()
}

/// Ends the connection on a framing violation, after the replies it owes.
///
/// Every admitted request holds a permit until its reply is written, so
/// holding all `max_inflight_per_connection` permits at once means nothing
/// is outstanding. Then the error frame goes out last and the writer
/// closes. If the peer stops reading (or the engine is stuck) the wait ends
/// after `2 * prepare_timeout_ms` and the remaining replies are dropped.
async fn fail_after_outstanding_replies(
    tx: &ReplyTx,
    permits: &Semaphore,
    limits: &Limits,
    correlation_id: u64,
    error: ErrorResponse,
) {
    let all_permits = limits.max_inflight_per_connection as u32;
    let drain_timeout = Duration::from_millis(limits.prepare_timeout_ms.saturating_mul(2));
    // Timed out or the writer is gone: close anyway, nothing left to wait for.
    let _drained = tokio::time::timeout(drain_timeout, permits.acquire_many(all_permits)).await;
    reply::send(tx, Reply::Fatal(correlation_id, error));
}

/// Appends one reply frame, or an `internal` error in its place when the
/// reply would exceed the frame limit.
fn encode_reply(
    out: &mut Vec<u8>,
    correlation_id: u64,
    response: &Response,
    max_frame_bytes: usize,
) {
    if response
        .encode(out, correlation_id, max_frame_bytes)
        .is_err()
    {
        let error = Response::error(
            ErrorCode::Internal,
            "the response exceeds the frame limit; narrow the request",
        );
        error
            .encode(out, correlation_id, max_frame_bytes)
            .expect("a short error frame always encodes");
    }
}

/// Encodes the replies of `message` into `out`; returns how many requests
/// they answer and whether the connection closes after them.
fn encode_message(
    out: &mut Vec<u8>,
    tally: &mut ReplyTally,
    message: Reply,
    max_frame_bytes: usize,
) -> (usize, bool) {
    let mut one = |correlation_id, response: &Response| {
        tally.count(response);
        encode_reply(out, correlation_id, response, max_frame_bytes);
    };
    match message {
        Reply::Many(replies) => {
            for (correlation_id, response) in &replies {
                one(*correlation_id, response);
            }
            (replies.len(), false)
        }
        Reply::One(correlation_id, response) => {
            one(correlation_id, &response);
            (1, false)
        }
        Reply::Fatal(correlation_id, error) => {
            one(correlation_id, &Response::Error(error));
            (0, true)
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: ReplyRx,
    permits: Arc<Semaphore>,
    max_frame_bytes: usize,
) {
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_CHUNK_BYTES);
    let mut tally = ReplyTally::default();
    while let Some(first) = rx.recv().await {
        let mut answered = 0usize;
        let mut close = false;
        let mut next = Some(first);
        while let Some(message) = next {
            let (count, closes) = encode_message(&mut out, &mut tally, message, max_frame_bytes);
            answered += count;
            close |= closes;
            if close || out.len() >= WRITE_CHUNK_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        // Counted before the write, so a client holding its reply finds it
        // in the metrics.
        tally.flush();
        if writer.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        permits.add_permits(answered);
        if close {
            let _ = writer.shutdown().await;
            break;
        }
    }
    // Wakes a reader waiting for permits: nobody will answer it any more.
    permits.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame;
    use proptest::prelude::*;

    fn test_gate(limits: Limits) -> Gate {
        Gate {
            registry: Arc::new(super::super::validate::tests::principals()),
            guard: Arc::new(Guard::new(&limits)),
            hasher: PinHasher::new(b"proptest"),
            limits,
        }
    }

    /// A frame with a correct length prefix, a kind that is usually a real
    /// request kind, and a random body: gets past framing into decoding.
    fn plausible_frame() -> impl Strategy<Value = Vec<u8>> {
        let kind = prop_oneof![1u8..=9, any::<u8>()];
        (
            kind,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..48),
        )
            .prop_map(|(kind, correlation_id, body)| {
                let mut out = ((9 + body.len()) as u32).to_be_bytes().to_vec();
                out.push(kind);
                out.extend_from_slice(&correlation_id.to_be_bytes());
                out.extend_from_slice(&body);
                out
            })
    }

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let frames = proptest::collection::vec(plausible_frame(), 0..12);
        let garbage = proptest::collection::vec(any::<u8>(), 0..24);
        (frames, garbage, any::<bool>()).prop_map(|(frames, garbage, garbage_first)| {
            let mut bytes: Vec<u8> = frames.concat();
            if garbage_first {
                let mut front = garbage;
                front.extend_from_slice(&bytes);
                bytes = front;
            } else {
                bytes.extend_from_slice(&garbage);
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever a peer sends, the reader's cutter never panics, never
        /// reads past the buffer, answers every admitted frame exactly once,
        /// and leaves no complete frame behind unless it stopped for a
        /// violation or for the in-flight limit.
        #[test]
        fn cutting_untrusted_bytes_never_panics(
            bytes in stream(),
            max_inflight in 1usize..16,
            authenticated in any::<bool>(),
        ) {
            let limits = Limits {
                max_frame_bytes: 1024,
                max_inflight_per_connection: max_inflight,
                ..Limits::default()
            };
            let gate = test_gate(limits.clone());
            let mut session = if authenticated {
                Session::Authenticated(gate.registry.get(5).expect("merchant"))
            } else {
                Session::Fresh
            };
            let mut buffer = FrameBuffer::default();
            buffer.extend(&bytes);
            let cut = cut_frames(&mut buffer, &mut session, &gate);
            prop_assert!(buffer.pending_bytes() <= bytes.len());
            prop_assert_eq!(cut.requests, cut.commands.len() + cut.replies.len());
            prop_assert!(cut.requests <= max_inflight);
            if cut.fatal.is_none() && cut.requests < max_inflight {
                prop_assert!(matches!(
                    buffer.next_frame(limits.max_frame_bytes),
                    Ok(None)
                ));
                let rest = &bytes[bytes.len() - buffer.pending_bytes()..];
                prop_assert!(matches!(frame::parse(rest, limits.max_frame_bytes), Ok(None)));
            }
        }
    }
}
