//! One client connection: a reader half and a writer half.
//!
//! The **reader** cuts every complete frame out of what one `read` returned,
//! validates them, and hands all routable commands to the router at once
//! (one hand-off per read, not per request). Before dispatching it admits
//! them against two per-connection budgets: `max_inflight_per_connection`
//! requests, and `max_inflight_bytes_per_connection` bytes, where a request
//! weighs its frame plus the most its reply can take. When either is spent
//! the reader stops reading, TCP flow control pushes back on the client,
//! and no queue in the engine grows. Each request also takes its weight
//! from the engine-wide `max_inflight_bytes`; when that is spent the
//! request is answered `busy` at once.
//!
//! The **writer** takes every reply that is ready, encodes them into one
//! buffer and writes it with one syscall, then gives back what each reply's
//! request had reserved (its [`Tag`] says how much). Replies go out in the
//! order they become ready, not request order; the correlation id pairs
//! them up.
//!
//! Before anything else the connection authenticates (see
//! [`super::session`]); every request is then validated as its principal's,
//! and refused if the principal was revoked meanwhile.
//!
//! **Deadlines** (all in `[limits]`): the handshake must be done within
//! `handshake_timeout_ms` of the accept; a frame, once started, must arrive
//! whole within `frame_timeout_ms`; a connection with nothing in flight
//! that sends nothing for `idle_timeout_ms` is closed; a write that the
//! peer does not read within `write_timeout_ms` closes the connection. A
//! connection that times out gets `timed_out` (after the replies it is
//! owed) and is closed.
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
use super::slots::{Slot, Slots};
use super::validate::{self, Action};
use crate::auth::{Guard, Registry};
use crate::config::Limits;
use crate::pin::PinHasher;
use crate::protocol::frame::{FRAME_BYTES_MIN, Frame, FrameBuffer, FrameError};
use crate::protocol::{
    DecodeError, ErrorCode, ErrorResponse, PayBatchRequest, PayBatchResponse, PayRequestView,
    PayResult, Request, Response,
};
use crate::reply::{self, Item, Reply, ReplyRx, ReplyTx, Tag};
use crate::router::{Command, Router, busy};
use crate::telemetry::ReplyTally;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc};

/// Free space the reader keeps in its buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The writer flushes once this much is encoded, even if more is ready.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
/// What the writer's buffer starts with, and shrinks back to after a burst.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// The largest frame before the handshake is done: AuthHello and AuthProof
/// take under a hundred bytes; anything else is refused unread anyway.
pub(crate) const HANDSHAKE_FRAME_BYTES_MAX: usize = 1024;

/// What every connection shares.
pub struct GatewayContext {
    pub router: Arc<Router>,
    pub gate: Gate,
    /// The engine-wide in-flight byte budget.
    pub inflight_bytes: Arc<Semaphore>,
    /// Connection slots, and each principal's share of the budget.
    pub slots: Arc<Slots>,
}

/// What a connection checks requests against before routing them.
pub struct Gate {
    pub registry: Arc<Registry>,
    pub guard: Arc<Guard>,
    pub hasher: PinHasher,
    pub limits: Limits,
    /// Where order ids are kept and payments looked up by them (`None`
    /// only in tests that route nothing).
    pub storage: Option<Arc<crate::storage::Storage>>,
    /// The HTTP API's bearer tokens (`None` only in such tests).
    pub tokens: Option<Arc<crate::auth::Tokens>>,
}

/// A connection's in-flight budgets, shared by its reader and writer.
/// A connection's own budgets, shared by its reader and writer (the
/// binary port's and the ISO 8583 listener's alike).
pub(crate) struct Budget {
    pub(crate) requests: Semaphore,
    pub(crate) bytes: Semaphore,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Budget {
        Budget {
            requests: Semaphore::new(limits.max_inflight_per_connection),
            bytes: Semaphore::new(limits.max_inflight_bytes_per_connection),
        }
    }

    /// Gives back what an answered request had reserved: one request and
    /// its `bytes`. (A routed request's engine-wide share goes back as its
    /// tag drops.)
    pub(crate) fn release(&self, bytes: u32) {
        self.requests.add_permits(1);
        self.bytes.add_permits(bytes as usize);
    }

    /// Wakes a reader waiting for room: the connection is over.
    pub(crate) fn close(&self) {
        self.requests.close();
        self.bytes.close();
    }

    /// True when every request has been answered.
    pub(crate) fn idle(&self, limits: &Limits) -> bool {
        self.requests.available_permits() == limits.max_inflight_per_connection
    }
}

/// Serves a plain TCP connection (halves that need no lock between them).
pub async fn serve_tcp(
    stream: TcpStream,
    context: Arc<GatewayContext>,
    slot: Slot,
    accepted: Instant,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    serve(reader, writer, context, slot, accepted).await;
}

/// Serves a connection over any stream, TLS included.
pub async fn serve_stream<S>(stream: S, context: Arc<GatewayContext>, slot: Slot, accepted: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    serve(reader, writer, context, slot, accepted).await;
}

async fn serve<R, W>(
    reader: R,
    writer: W,
    context: Arc<GatewayContext>,
    mut slot: Slot,
    accepted: Instant,
) where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let limits = &context.gate.limits;
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Budget::new(limits));
    let writing = actix_rt::spawn(write_loop(writer, rx, budget.clone(), limits.clone()));
    read_loop(reader, tx, budget, &context, &mut slot, accepted).await;
    // The reader's sender is gone; the writer ends once every in-flight
    // reply has been written (their senders are dropped as they deliver).
    let _ = writing.await;
}

/// Frames cut from the buffer in one pass, ready to dispatch.
struct Cut {
    commands: Vec<(Tag, Command)>,
    replies: Vec<(Tag, Response)>,
    batches: Vec<Batch>,
    /// Requests admitted (each gets exactly one reply).
    requests: usize,
    /// The bytes they weigh.
    bytes: usize,
    /// A violation that ends the connection after dispatch.
    fatal: Option<(u64, ErrorResponse)>,
}

/// A batch frame, validated: one request in the budgets, many payments.
struct Batch {
    tag: Tag,
    number: u32,
    /// Results validation already gave; `None` where a payment is routed.
    results: Vec<Option<PayResult>>,
    commands: Vec<(Tag, Command)>,
}

impl Batch {
    /// Splits validated items into results and routed payments, each of
    /// the latter tagged with its place in the batch.
    fn new(tag: Tag, number: u32, items: Vec<Action>) -> Batch {
        let mut results = Vec::with_capacity(items.len());
        let mut commands = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item {
                Action::Route(command) => {
                    let item = Item {
                        batch: number,
                        index: u32::try_from(index).expect("batches are capped far below u32"),
                    };
                    let tag = Tag {
                        correlation_id: tag.correlation_id,
                        bytes: 0,
                        engine: None,
                        principal: None,
                        item: Some(item),
                        order: false,
                    };
                    commands.push((tag, command));
                    results.push(None);
                }
                Action::Reply(response) => results.push(Some(PayResult::from(response))),
                Action::Batch(_) => unreachable!("a batch holds payments only"),
            }
        }
        Batch {
            tag,
            number,
            results,
            commands,
        }
    }
}

/// Cuts, decodes and validates complete frames, up to the in-flight limits.
///
/// `batches_opened` numbers this connection's batch frames.
fn cut_frames(
    buffer: &mut FrameBuffer,
    session: &mut Session,
    slot: &mut Slot,
    gate: &Gate,
    batches_opened: &mut u32,
) -> Cut {
    let limits = &gate.limits;
    let mut cut = Cut {
        commands: Vec::new(),
        replies: Vec::new(),
        batches: Vec::new(),
        requests: 0,
        bytes: 0,
        fatal: None,
    };
    let checks = validate::Context {
        limits,
        hasher: &gate.hasher,
        guard: &gate.guard,
        now_ms: crate::clock::now_ms(),
        storage: gate.storage.as_deref(),
        tokens: gate
            .tokens
            .as_deref()
            .map(|tokens| (tokens, &*gate.registry)),
    };
    // Stop while one more frame of any weight still fits the budget, so the
    // whole cut can always be admitted.
    let room = limits.max_inflight_bytes_per_connection - limits.frame_weight_max();
    while cut.requests < limits.max_inflight_per_connection && cut.bytes <= room {
        let frame = match buffer.next_frame(frame_limit(session, limits)) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                cut.fatal = Some((0, framing_error(error)));
                break;
            }
        };
        if let Some(action) = pay_in_place(&frame, session, &checks) {
            let tag = frame_tag(&frame, None, limits);
            cut.admit(tag, action, batches_opened);
            continue;
        }
        let decoded = Request::decode(frame.kind, frame.body);
        let batch = match &decoded {
            Ok(Request::PayBatch(body)) => Some(body),
            _ => None,
        };
        let tag = frame_tag(&frame, batch, limits);
        match take_request(decoded, session, slot, gate, &checks) {
            Ok(action) => cut.admit(tag, action, batches_opened),
            Err(error) => {
                cut.fatal = Some((tag.correlation_id, error));
                break;
            }
        }
    }
    cut
}

/// The error frame for bytes that are not a frame.
fn framing_error(error: FrameError) -> ErrorResponse {
    let code = match error {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        FrameError::TooShort { .. } => ErrorCode::MalformedFrame,
    };
    ErrorResponse::new(code, error.to_string())
}

/// The hot path's shortcut: a Pay frame from an authenticated principal,
/// validated as it lies in the buffer (no vector of PIN strings per
/// payment). `None` leaves the frame to the general path: another kind,
/// a session not (or no longer) authenticated, or a body that does not
/// decode (which the general path refuses, saying why).
fn pay_in_place(frame: &Frame, session: &Session, checks: &validate::Context) -> Option<Action> {
    if frame.kind != crate::protocol::KIND_PAY {
        return None;
    }
    let principal = session.principal().filter(|p| !p.is_revoked())?;
    let body = PayRequestView::decode(frame.body)?;
    Some(validate::validate_pay(&body, principal, checks))
}

/// A frame's tag: its correlation id, and its weight (the frame plus the
/// most its reply can take; a PayBatch's `batch` weighs by its payments).
fn frame_tag(frame: &Frame, batch: Option<&PayBatchRequest>, limits: &Limits) -> Tag {
    let frame_bytes = frame.body.len() + FRAME_BYTES_MIN;
    let weight = match batch {
        Some(body) => validate::batch_weight(frame_bytes, body, limits),
        None => validate::weight(frame.kind, frame_bytes, limits),
    };
    Tag {
        correlation_id: frame.correlation_id,
        bytes: u32::try_from(weight).expect("bounded by weight_max"),
        engine: None,
        principal: None,
        item: None,
        order: matches!(
            frame.kind,
            crate::protocol::KIND_ORDER_PAY | crate::protocol::KIND_ORDER_AUTHORIZE
        ),
    }
}

/// What one decoded frame asks for: the handshake's next step, or a
/// request validated as its principal's. `Err` is the error that closes
/// the connection.
fn take_request(
    decoded: Result<Request, DecodeError>,
    session: &mut Session,
    slot: &mut Slot,
    gate: &Gate,
    checks: &validate::Context,
) -> Result<Action, ErrorResponse> {
    let step = match decoded {
        Ok(Request::AuthHello(hello)) => session.hello(hello),
        Ok(Request::AuthProof(proof)) => session.proof(proof, &gate.registry, slot),
        Ok(request) => match session.principal() {
            None => Step::Reply(Response::Error(session::refusal(
                "authenticate first (AuthHello, then AuthProof)",
            ))),
            Some(principal) if principal.is_revoked() => {
                Step::Close(session::refusal("this principal's key was revoked"))
            }
            Some(principal) => return Ok(validate::validate(request, principal, checks)),
        },
        Err(error) if error.code == ErrorCode::UnknownMessageType => {
            Step::Reply(Response::error(error.code, error.message))
        }
        Err(error) => Step::Close(ErrorResponse::new(error.code, error.message)),
    };
    match step {
        Step::Reply(response) => Ok(Action::Reply(response)),
        Step::Close(error) => Err(error),
    }
}

impl Cut {
    /// Admits one request into the cut: it counts toward the limits and
    /// gets exactly one reply.
    fn admit(&mut self, tag: Tag, action: Action, batches_opened: &mut u32) {
        self.requests += 1;
        self.bytes += tag.bytes as usize;
        match action {
            Action::Route(command) => self.commands.push((tag, command)),
            Action::Batch(items) => {
                let number = *batches_opened;
                *batches_opened = batches_opened.wrapping_add(1);
                self.batches.push(Batch::new(tag, number, items));
            }
            Action::Reply(response) => self.replies.push((tag, response)),
        }
    }
}

/// The largest frame a connection may send now: a handshake message is
/// small, so before the handshake nobody may make the engine buffer more.
fn frame_limit(session: &Session, limits: &Limits) -> usize {
    match session.principal() {
        Some(_) => limits.max_frame_bytes,
        None => HANDSHAKE_FRAME_BYTES_MAX,
    }
}

/// Which deadline the reader is waiting under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// The handshake must finish this long after the accept.
    Handshake,
    /// A started frame must arrive whole.
    Frame,
    /// Nothing arrived for this long.
    Idle,
}

impl Deadline {
    /// The one the reader is under now, and when it expires.
    fn current(
        session: &Session,
        buffer: &FrameBuffer,
        frame_started: Option<Instant>,
        limits: &Limits,
        accepted: Instant,
    ) -> (Deadline, Instant) {
        let ms = Duration::from_millis;
        if session.principal().is_none() {
            return (
                Deadline::Handshake,
                accepted + ms(limits.handshake_timeout_ms),
            );
        }
        match frame_started {
            Some(at) if buffer.pending_bytes() > 0 => {
                (Deadline::Frame, at + ms(limits.frame_timeout_ms))
            }
            _ => (Deadline::Idle, Instant::now() + ms(limits.idle_timeout_ms)),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Deadline::Handshake => "the handshake did not finish in time",
            Deadline::Frame => "a frame did not arrive whole in time",
            Deadline::Idle => "idle for too long",
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    tx: ReplyTx,
    budget: Arc<Budget>,
    context: &GatewayContext,
    slot: &mut Slot,
    accepted: Instant,
) {
    let limits = &context.gate.limits;
    let mut buffer = FrameBuffer::with_capacity(READ_CHUNK_BYTES);
    let mut session = Session::Fresh;
    let mut frame_started: Option<Instant> = None;
    let mut batches_opened = 0u32;
    // The engine's bytes held for a large frame still arriving.
    let mut arriving: Option<OwnedSemaphorePermit> = None;
    loop {
        let mut cut = cut_frames(
            &mut buffer,
            &mut session,
            slot,
            &context.gate,
            &mut batches_opened,
        );
        let fatal = cut.fatal.take();
        let requests = cut.requests;
        if requests > 0 {
            // The frame arrived whole; from here its weight holds its bytes.
            arriving = None;
        }
        if requests > 0 && !dispatch(&tx, &budget, context, slot, cut).await {
            return;
        }
        if let Some((correlation_id, error)) = fatal {
            fail_after_outstanding_replies(&tx, &budget, limits, correlation_id, error).await;
            return;
        }
        if requests > 0 && buffer.has_frame(frame_limit(&session, limits)) {
            continue; // stopped at a limit with more complete frames waiting
        }
        frame_started = frame_started_at(&buffer, frame_started);
        let (deadline, expires) =
            Deadline::current(&session, &buffer, frame_started, limits, accepted);
        let inflight_bytes = &context.inflight_bytes;
        let fill = fill_within_budget(&mut buffer, &mut reader, inflight_bytes, &mut arriving);
        let read = tokio::time::timeout_at(expires.into(), fill);
        let next = tokio::select! {
            // The writer gave up (the peer stopped reading): nothing this
            // connection reads could be answered.
            () = tx.closed() => AfterRead::Stop,
            // Still in its handshake, and the oldest in a full pool.
            () = slot.evicted() => AfterRead::Fail(evicted()),
            outcome = read => after_read(outcome, deadline, &buffer, &budget, limits),
        };
        match next {
            AfterRead::Carry => {}
            AfterRead::Stop => return,
            AfterRead::Fail(error) => {
                fail_after_outstanding_replies(&tx, &budget, limits, 0, error).await;
                return;
            }
        }
    }
}

/// The error for a connection evicted from a full handshake pool.
fn evicted() -> ErrorResponse {
    ErrorResponse::new(
        ErrorCode::Overloaded,
        "evicted: the handshake pool is full (max_handshakes) and this address \
         holds the most handshakes; connect again and finish the handshake promptly",
    )
}

/// When the frame now arriving started: none while the buffer holds no
/// partial frame, now when one begins, unchanged while it keeps arriving.
fn frame_started_at(buffer: &FrameBuffer, started: Option<Instant>) -> Option<Instant> {
    if buffer.pending_bytes() == 0 {
        None
    } else {
        Some(started.unwrap_or_else(Instant::now))
    }
}

/// Reads more bytes into the buffer; `Ok(0)` at the end of the stream, or
/// when the engine is shutting down.
///
/// A frame larger than a read will make the buffer grow to hold it, before
/// it can be weighed: its bytes come out of the engine's budget first
/// (waiting for room, and held in `arriving`), so partial frames cannot
/// take memory past it either.
async fn fill_within_budget<R: AsyncRead + Unpin>(
    buffer: &mut FrameBuffer,
    reader: &mut R,
    inflight_bytes: &Arc<Semaphore>,
    arriving: &mut Option<OwnedSemaphorePermit>,
) -> std::io::Result<usize> {
    let announced = buffer
        .announced_frame_bytes()
        .filter(|&bytes| bytes > READ_CHUNK_BYTES && arriving.is_none());
    if let Some(bytes) = announced {
        let bytes = u32::try_from(bytes).expect("frames are below 4 GiB");
        match inflight_bytes.clone().acquire_many_owned(bytes).await {
            Ok(permit) => *arriving = Some(permit),
            Err(_closed) => return Ok(0),
        }
    }
    buffer.fill(reader, READ_CHUNK_BYTES).await
}

/// What the reader does next, after a read or a deadline.
enum AfterRead {
    /// Read again.
    Carry,
    /// End the connection at once: no one is there to answer.
    Stop,
    /// End it with this error, after the replies it owes.
    Fail(ErrorResponse),
}

/// Judges a read that ended, or (`Err`) the deadline that cut it short.
fn after_read(
    outcome: Result<std::io::Result<usize>, tokio::time::error::Elapsed>,
    deadline: Deadline,
    buffer: &FrameBuffer,
    budget: &Budget,
    limits: &Limits,
) -> AfterRead {
    let Ok(outcome) = outcome else {
        // A peer still owed replies is waiting for us, not idle.
        if deadline == Deadline::Idle && !budget.idle(limits) {
            return AfterRead::Carry;
        }
        return AfterRead::Fail(ErrorResponse::new(ErrorCode::TimedOut, deadline.reason()));
    };
    match outcome {
        Ok(0) if buffer.pending_bytes() > 0 => AfterRead::Fail(ErrorResponse::new(
            ErrorCode::TruncatedFrame,
            format!("stream ended {} bytes into a frame", buffer.pending_bytes()),
        )),
        Ok(0) | Err(_) => AfterRead::Stop,
        Ok(_) => AfterRead::Carry,
    }
}

/// Admits the cut (waiting while this connection, or its principal over
/// all its connections, has too much in flight), answers what validation
/// already answered, takes each command's weight from the engine-wide
/// budget (answering `busy` where it is spent), and routes the rest. False
/// when the connection is finished.
async fn dispatch(
    tx: &ReplyTx,
    budget: &Budget,
    context: &GatewayContext,
    slot: &Slot,
    cut: Cut,
) -> bool {
    let Cut {
        commands,
        mut replies,
        batches,
        requests,
        bytes,
        fatal: _,
    } = cut;
    let Ok(mut principal_share) = admit(budget, slot, requests, bytes).await else {
        return false;
    };
    let mut engine_share = |tag: &mut Tag| {
        tag.principal = principal_share
            .as_mut()
            .and_then(|share| share.split(tag.bytes as usize));
        let share = context
            .inflight_bytes
            .clone()
            .try_acquire_many_owned(tag.bytes)
            .ok();
        tag.engine = share;
        tag.engine.is_some()
    };
    let spent = || busy("the engine's in-flight budget is spent");
    // Commands keep their vector (no second one per read): those the
    // engine's budget refuses are taken out, in order, and answered.
    let mut routed = commands;
    for (tag, _) in routed.extract_if(.., |(tag, _)| !engine_share(tag)) {
        replies.push((tag, spent()));
    }
    // A batch's payments go out only after the writer knows the batch,
    // through the same queue their replies will take.
    for mut batch in batches {
        if engine_share(&mut batch.tag) {
            reply::send(tx, Reply::Batch(batch.tag, batch.number, batch.results));
            routed.append(&mut batch.commands);
        } else {
            replies.push((batch.tag, spent()));
        }
    }
    // Requests validation answered keep their part of the principal's
    // share until their replies are written, like the rest.
    for (tag, _) in &mut replies {
        if tag.principal.is_none() {
            tag.principal = principal_share
                .as_mut()
                .and_then(|share| share.split(tag.bytes as usize));
        }
    }
    if !replies.is_empty() {
        reply::send(tx, Reply::Many(replies));
    }
    if !routed.is_empty() {
        context.router.route(tx, routed);
    }
    true
}

/// Takes the cut's `requests` and `bytes` from the connection's budgets,
/// then `bytes` from its principal's share, waiting for room in each;
/// returns the principal's share taken. `Err` when the connection is
/// finished.
async fn admit(
    budget: &Budget,
    slot: &Slot,
    requests: usize,
    bytes: usize,
) -> Result<Option<OwnedSemaphorePermit>, AcquireError> {
    budget
        .requests
        .acquire_many(requests as u32)
        .await?
        .forget();
    budget.bytes.acquire_many(bytes as u32).await?.forget();
    // The principal's share (none before the handshake: only handshake
    // replies and refusals are cut then). Waiting here stops this
    // connection's reading, as the connection's own budget does.
    match slot.share() {
        Some(share) => Ok(Some(share.clone().acquire_many_owned(bytes as u32).await?)),
        None => Ok(None),
    }
}

/// Ends the connection on a framing violation or a timeout, after the
/// replies it owes.
///
/// Every admitted request holds a request permit until its reply is
/// written, so holding all `max_inflight_per_connection` permits at once
/// means nothing is outstanding. Then the error frame goes out last and the
/// writer closes. If the peer stops reading (or the engine is stuck) the
/// wait ends after `2 * prepare_timeout_ms` and the remaining replies are
/// dropped.
async fn fail_after_outstanding_replies(
    tx: &ReplyTx,
    budget: &Budget,
    limits: &Limits,
    correlation_id: u64,
    error: ErrorResponse,
) {
    let all_permits = limits.max_inflight_per_connection as u32;
    let drain_timeout = Duration::from_millis(limits.prepare_timeout_ms.saturating_mul(2));
    // Timed out or the writer is gone: close anyway, nothing left to wait for.
    let _drained =
        tokio::time::timeout(drain_timeout, budget.requests.acquire_many(all_permits)).await;
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

/// What the writer encodes into before each write.
struct Encoder {
    out: Vec<u8>,
    tally: ReplyTally,
    /// Tags of the requests answered in `out`: their budget goes back once
    /// it is written.
    answered: Vec<Tag>,
    /// Batch frames still waiting for some of their payments, by number.
    batches: HashMap<u32, Assembly>,
    max_frame_bytes: usize,
}

/// A batch frame's reply being put together.
struct Assembly {
    tag: Tag,
    results: Vec<Option<PayResult>>,
    missing: usize,
}

impl Encoder {
    /// Encodes the replies of `message`; true when the connection closes
    /// after them.
    fn message(&mut self, message: Reply) -> bool {
        match message {
            Reply::Many(replies) => {
                for (tag, response) in replies {
                    self.one(tag, response);
                }
                false
            }
            Reply::One(tag, response) => {
                self.one(tag, response);
                false
            }
            Reply::Batch(tag, number, results) => {
                let missing = results.iter().filter(|result| result.is_none()).count();
                let assembly = Assembly {
                    tag,
                    results,
                    missing,
                };
                if missing == 0 {
                    self.batch(assembly);
                } else {
                    let earlier = self.batches.insert(number, assembly);
                    assert!(earlier.is_none(), "batch numbers are unique in flight");
                }
                false
            }
            Reply::Fatal(correlation_id, error) => {
                let response = Response::Error(error);
                self.tally.count(&response);
                encode_reply(
                    &mut self.out,
                    correlation_id,
                    &response,
                    self.max_frame_bytes,
                );
                true
            }
        }
    }

    fn one(&mut self, tag: Tag, response: Response) {
        let Some(Item { batch, index }) = tag.item else {
            let response = if tag.order {
                response.for_order()
            } else {
                response
            };
            self.tally.count(&response);
            encode_reply(
                &mut self.out,
                tag.correlation_id,
                &response,
                self.max_frame_bytes,
            );
            self.answered.push(tag);
            return;
        };
        let assembly = self
            .batches
            .get_mut(&batch)
            .expect("a batch is opened before its payments are routed");
        let slot = &mut assembly.results[index as usize];
        assert!(slot.is_none(), "one reply per payment of a batch");
        *slot = Some(PayResult::from(response));
        assembly.missing -= 1;
        if assembly.missing == 0 {
            let done = self.batches.remove(&batch).expect("just found");
            self.batch(done);
        }
    }

    /// Encodes a complete batch's reply.
    fn batch(&mut self, assembly: Assembly) {
        let results: Vec<PayResult> = assembly
            .results
            .into_iter()
            .map(|result| result.expect("every payment answered"))
            .collect();
        let response = Response::PaidBatch(PayBatchResponse { results });
        self.tally.count(&response);
        encode_reply(
            &mut self.out,
            assembly.tag.correlation_id,
            &response,
            self.max_frame_bytes,
        );
        self.answered.push(assembly.tag);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: ReplyRx,
    budget: Arc<Budget>,
    limits: Limits,
) {
    let write_timeout = Duration::from_millis(limits.write_timeout_ms);
    let mut encoder = Encoder {
        out: Vec::with_capacity(WRITE_BUFFER_BYTES),
        tally: ReplyTally::default(),
        answered: Vec::new(),
        batches: HashMap::new(),
        max_frame_bytes: limits.max_frame_bytes,
    };
    while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut next = Some(first);
        while let Some(message) = next {
            close |= encoder.message(message);
            if close || encoder.out.len() >= WRITE_CHUNK_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        // Counted before the write, so a client holding its reply finds it
        // in the metrics.
        encoder.tally.flush();
        match tokio::time::timeout(write_timeout, writer.write_all(&encoder.out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_elapsed) => {
                tracing::info!("a peer stopped reading its replies; closing");
                break;
            }
        }
        encoder.out.clear();
        for tag in encoder.answered.drain(..) {
            budget.release(tag.bytes);
        }
        if encoder.out.capacity() > 4 * WRITE_BUFFER_BYTES {
            // A burst is over: give its buffers back.
            encoder.out.shrink_to(WRITE_BUFFER_BYTES);
            encoder.answered.shrink_to(WRITE_BUFFER_BYTES / 64);
        }
        if close {
            let _ = writer.shutdown().await;
            break;
        }
    }
    // Replies never written drop their tags, which gives their share back
    // to the engine; the connection's own budget dies with it, and closing
    // it wakes a reader waiting for room.
    rx.close();
    budget.close();
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
            storage: None,
            tokens: None,
        }
    }

    /// A frame with a correct length prefix, a kind that is usually a real
    /// request kind, and a random body: gets past framing into decoding.
    fn plausible_frame() -> impl Strategy<Value = Vec<u8>> {
        let kind = prop_oneof![1u8..=15, any::<u8>()];
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
            let slots = super::super::slots::Slots::new(&limits);
            let mut slot = slots
                .admit(std::net::Ipv4Addr::LOCALHOST.into())
                .expect("an empty pool has room");
            let mut buffer = FrameBuffer::default();
            buffer.extend(&bytes);
            let cut = cut_frames(&mut buffer, &mut session, &mut slot, &gate, &mut 0);
            prop_assert!(buffer.pending_bytes() <= bytes.len());
            prop_assert_eq!(
                cut.requests,
                cut.commands.len() + cut.replies.len() + cut.batches.len()
            );
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
