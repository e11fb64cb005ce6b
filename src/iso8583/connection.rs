//! One store HQ's ISO 8583 connection: a reader half and a writer half,
//! under the gateway's limits.
//!
//! The connection already knows its principal (from its client
//! certificate, or from the config in plain-TCP test mode) and holds a
//! serving slot. The **reader** cuts messages (2-byte length prefix, at
//! most `max_message_bytes`), checks their fields ([`super::request`]) and
//! routes financial requests to the shards through the router, exactly as
//! the binary gateway does. Every message takes, before it is handled, one
//! of the connection's `max_inflight_per_connection` requests and its
//! weight (its bytes, the most its reply can take, and an operation's
//! overhead) from the connection's `max_inflight_bytes_per_connection`;
//! a routed one also takes its weight from the principal's share and the
//! engine's `max_inflight_bytes` (answered 91 when that is spent). When a
//! budget is spent the reader stops reading and TCP pushes back.
//!
//! The **writer** writes each answer as it is ready (responses carry the
//! request's STAN and RRN, so order does not matter) and then gives back
//! what its request held.
//!
//! **Sessions.** Financial messages need a sign-on (0800, DE 70 001): before
//! it, or after a sign-off (002), they are answered 91 and not applied.
//! Echo (301) is answered at any time.
//!
//! **Faults.** A message whose fields are wrong is answered with its DE 39
//! (30 for format) and nothing is applied. A length prefix out of bounds,
//! an MTI that is not four digits, or a message that is not a request ends
//! the connection, after the answers to everything admitted before it, as
//! a framing violation does at the gateway. Deadlines are the gateway's:
//! `frame_timeout_ms` for a started message, `idle_timeout_ms` with nothing
//! in flight, `write_timeout_ms` for a peer that stops reading.

use super::codec::{self, DecodeError, Message};
use super::codes::ResponseCode;
use super::request::{self, Network, Request, Sale};
use super::terminals::{TerminalId, Terminals, terminal_id};
use crate::auth::Principal;
use crate::config::{Limits, OPERATION_BYTES};
use crate::gateway::connection::{Budget, GatewayContext};
use crate::gateway::slots::Slot;
use crate::ids::CardRef;
use crate::pin::PinKey;
use crate::protocol::{ErrorCode, Response};
use crate::reply::{Reply, ReplyRx, ReplyTx, Tag};
use crate::router::Command;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Free space the reader keeps in its buffer before each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What every ISO 8583 connection shares: the gateway's context (router,
/// registry, guard, hasher, limits, budgets, slots) and the message limit.
pub struct IsoContext {
    pub gateway: Arc<GatewayContext>,
    pub max_message_bytes: usize,
    /// The per-terminal lockout, under the HQ's own.
    pub terminals: Terminals,
}

impl IsoContext {
    fn limits(&self) -> &Limits {
        &self.gateway.gate.limits
    }

    /// What one message holds of the byte budgets while it is in flight
    /// (at most [`crate::config::iso_weight_max`], which the config checks
    /// every budget holds).
    fn weight(&self, message_bytes: usize) -> usize {
        message_bytes + codec::LENGTH_BYTES + self.max_message_bytes + OPERATION_BYTES
    }
}

/// A routed request's answer in waiting: its response with every echoed
/// field set, and its approval code should it be approved.
struct Pending {
    response: Message,
    approval_code: Option<String>,
    kind: PendingKind,
    /// The terminal (DE 41) a PIN failure is counted against.
    terminal: Option<TerminalId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingKind {
    Activate,
    Reverse,
    Balance,
    /// A PIN with a bad check digit, counted as a failure by a shard.
    PinFailure,
}

type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

/// What the reader hands the writer directly.
enum Outgoing {
    /// An answer the reader gave itself; `bytes` go back once written.
    Local { message: Message, bytes: u32 },
    /// Everything admitted is answered: close.
    Close,
}

/// Serves one connection acting as `principal` until it ends.
pub async fn serve<S>(stream: S, context: Arc<IsoContext>, principal: Arc<Principal>, slot: Slot)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let limits = context.limits();
    let (reader_stream, writer) = tokio::io::split(stream);
    let budget = Arc::new(Budget::new(limits));
    let pending: PendingMap = Arc::new(Mutex::new(HashMap::new()));
    let (router_tx, router_rx) = mpsc::unbounded_channel();
    let (local_tx, local_rx) = mpsc::unbounded_channel();
    let writing = actix_rt::spawn(write_loop(
        writer,
        router_rx,
        local_rx,
        budget.clone(),
        pending.clone(),
        context.clone(),
    ));
    let mut reader = Reader {
        context: &context,
        principal,
        slot,
        budget,
        pending,
        router_tx,
        local_tx,
        signed_on: false,
        next_id: 0,
    };
    reader.run(reader_stream).await;
    // The reader's senders are gone; the writer ends once every routed
    // answer has been written (their senders drop as they deliver).
    drop(reader);
    let _ = writing.await;
}

/// What the reader decided about the connection after a message.
enum Next {
    Continue,
    /// A framing violation: answer what was admitted, then close.
    Close(&'static str),
}

/// What the reader does with an admitted message.
// Made and consumed once per message, on the stack: boxing the command
// would allocate per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Handling {
    /// Answer it at once with this code, without the engine.
    Answer(ResponseCode),
    /// Route a command; the writer builds the answer.
    Route {
        command: Command,
        kind: PendingKind,
        approval_code: Option<String>,
    },
}

impl Handling {
    fn route(command: Command, kind: PendingKind, approval_code: Option<String>) -> Handling {
        Handling::Route {
            command,
            kind,
            approval_code,
        }
    }
}

/// The reader half's state.
struct Reader<'a> {
    context: &'a IsoContext,
    principal: Arc<Principal>,
    /// Held for the connection's life: its place in the serving pool, and
    /// the principal's share of the in-flight bytes.
    slot: Slot,
    budget: Arc<Budget>,
    pending: PendingMap,
    router_tx: ReplyTx,
    local_tx: mpsc::UnboundedSender<Outgoing>,
    signed_on: bool,
    /// Numbers this connection's routed requests (the tags' correlation).
    next_id: u64,
}

impl Reader<'_> {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut stream: R) {
        let limits = self.context.limits().clone();
        let max_message_bytes = self.context.max_message_bytes;
        // Unhandled bytes: at most a partial message and one read's chunk,
        // since every whole message is cut before the next read.
        let mut buffer: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        // When the first bytes of a message not yet whole arrived.
        let mut started: Option<Instant> = None;
        loop {
            // Handle every whole message in the buffer, then drop them all
            // at once (not one `drain` per message).
            let mut handled = 0;
            loop {
                let cut = codec::cut(&buffer[handled..], max_message_bytes);
                let (decoded, used) = match cut {
                    Ok(Some((body, used))) => (decode(body), used),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::info!(%error, "ISO 8583 framing violation; closing");
                        return self.close_after_outstanding(&limits).await;
                    }
                };
                handled += used;
                started = None;
                if let Next::Close(why) = self.message(decoded, used).await {
                    tracing::info!(why, "ISO 8583 connection closed");
                    return self.close_after_outstanding(&limits).await;
                }
            }
            buffer.drain(..handled);
            if !buffer.is_empty() && started.is_none() {
                started = Some(Instant::now());
            }
            // A burst is over: give its memory back.
            if buffer.is_empty() && buffer.capacity() > 4 * READ_CHUNK_BYTES {
                buffer.shrink_to(READ_CHUNK_BYTES);
            }
            let deadline = match started {
                Some(at) => at + Duration::from_millis(limits.frame_timeout_ms),
                None => Instant::now() + Duration::from_millis(limits.idle_timeout_ms),
            };
            let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await;
            match read {
                Err(_elapsed) if started.is_none() && !self.budget.idle(&limits) => continue,
                Err(_elapsed) => {
                    tracing::info!("ISO 8583 connection timed out");
                    return self.close_after_outstanding(&limits).await;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(count)) => buffer.extend_from_slice(&chunk[..count]),
            }
        }
    }

    /// Waits (at most twice the 2PC prepare timeout, the longest a request
    /// can take) until every admitted message is answered, then closes.
    async fn close_after_outstanding(&self, limits: &Limits) {
        let all = u32::try_from(limits.max_inflight_per_connection).unwrap_or(u32::MAX);
        let wait = Duration::from_millis(limits.prepare_timeout_ms.saturating_mul(2));
        let _drained = tokio::time::timeout(wait, self.budget.requests.acquire_many(all)).await;
        let _ = self.local_tx.send(Outgoing::Close);
    }

    /// Handles one message of `frame_bytes` on the wire.
    async fn message(&mut self, decoded: Result<Message, Decoded>, frame_bytes: usize) -> Next {
        let weight = self.context.weight(frame_bytes);
        let weight_permits = u32::try_from(weight).expect("bounded by weight_max");
        if let Err(why) = self.admit(weight_permits).await {
            return Next::Close(why);
        }
        let message = match decoded {
            Ok(message) => message,
            Err(Decoded::Refused(message)) => {
                return self.answer(&message, ResponseCode::FormatError, weight_permits);
            }
            Err(Decoded::Violation(why)) => {
                self.budget.release(weight_permits);
                return Next::Close(why);
            }
        };
        match self.handling(&message) {
            Handling::Answer(code) => self.answer(&message, code, weight_permits),
            Handling::Route {
                command,
                kind,
                approval_code,
            } => {
                self.route(&message, command, kind, approval_code, weight)
                    .await
            }
        }
    }

    /// Admits a message of `weight_permits` bytes, before anything else:
    /// past the budget, the reader stops reading here. `Err` says why the
    /// connection closes instead.
    async fn admit(&self, weight_permits: u32) -> Result<(), &'static str> {
        let Ok(request_permit) = self.budget.requests.acquire().await else {
            return Err("the writer is gone");
        };
        let Ok(bytes_permit) = self.budget.bytes.acquire_many(weight_permits).await else {
            return Err("the writer is gone");
        };
        request_permit.forget();
        bytes_permit.forget();
        // Revoked meanwhile: refused from its next message on, as at the
        // gateway, before anything is counted or answered.
        if self.principal.is_revoked() {
            self.budget.release(weight_permits);
            return Err("the store HQ was revoked");
        }
        Ok(())
    }

    /// What a decoded message gets: refused before a sign-on, for its
    /// fields or in a lockout, or else its request's handling.
    fn handling(&mut self, message: &Message) -> Handling {
        let financial = !matches!(&message.mti, b"0800");
        if financial && request::response_mti(message.mti).is_some() && !self.signed_on {
            return Handling::Answer(ResponseCode::Unavailable);
        }
        let parsed = match request::parse(message) {
            Ok(parsed) => parsed,
            // A typo is a PIN failure, counted durably before the 14.
            Err(refusal) if refusal.bad_pin => {
                let command = Command::PinFailure {
                    principal: self.principal.id,
                    refusal: Response::error(ErrorCode::InvalidPin, "bad check digit"),
                };
                return Handling::route(command, PendingKind::PinFailure, None);
            }
            Err(refusal) => return Handling::Answer(refusal.code),
        };
        if parsed.is_financial() && self.locked_out(message) {
            return Handling::Answer(ResponseCode::LockedOut);
        }
        self.request(parsed)
    }

    /// Whether the HQ, or the terminal the message comes from, is locked
    /// out now.
    fn locked_out(&self, message: &Message) -> bool {
        let now_ms = crate::clock::now_ms();
        let guard = &self.context.gateway.gate.guard;
        if guard.check(self.principal.id, now_ms).is_err() {
            return true;
        }
        self.terminal(message)
            .is_some_and(|terminal| self.context.terminals.is_locked(&terminal, now_ms))
    }

    /// A request's handling: network management is answered here; a sale,
    /// its reversal and a balance inquiry are routed, if the store is this
    /// HQ's.
    fn request(&mut self, parsed: Request) -> Handling {
        match parsed {
            Request::Network(network) => {
                match network {
                    Network::SignOn => self.signed_on = true,
                    Network::SignOff => self.signed_on = false,
                    Network::Echo => {}
                }
                Handling::Answer(ResponseCode::Approved)
            }
            Request::Activate(sale) => {
                let Some((key, approval)) = self.own_sale(&sale) else {
                    return Handling::Answer(ResponseCode::NotPermitted);
                };
                let command = Command::Activate {
                    principal: self.principal.id,
                    store_id: sale.store_id,
                    pos_ref: sale.pos_ref,
                    cards: vec![Some(key)],
                    face_value_minor: Some(sale.amount_minor),
                };
                Handling::route(command, PendingKind::Activate, Some(approval))
            }
            Request::Reverse(_kind, sale) => {
                let Some((key, approval)) = self.own_sale(&sale) else {
                    return Handling::Answer(ResponseCode::NotPermitted);
                };
                let command = Command::ReverseActivation {
                    principal: self.principal.id,
                    store_id: sale.store_id,
                    pos_ref: sale.pos_ref,
                    key,
                    face_value_minor: Some(sale.amount_minor),
                };
                Handling::route(command, PendingKind::Reverse, Some(approval))
            }
            Request::Balance { pin, store_id } => {
                if store_id.is_some_and(|store| !self.principal.sells_at(store)) {
                    return Handling::Answer(ResponseCode::NotPermitted);
                }
                let command = Command::Balance {
                    principal: self.principal.id,
                    card: CardRef {
                        key: self.context.gateway.gate.hasher.key(&pin),
                        last4: pin.last4(),
                    },
                    hq: Some(self.principal.clone()),
                };
                Handling::route(command, PendingKind::Balance, None)
            }
        }
    }

    /// The terminal a financial message comes from, if it names one.
    fn terminal(&self, message: &Message) -> Option<TerminalId> {
        message
            .get(41)
            .map(|de41| terminal_id(self.principal.id, de41))
    }

    /// The card's key and the sale's approval code, if the sale's store is
    /// this HQ's.
    fn own_sale(&self, sale: &Sale) -> Option<(PinKey, String)> {
        if !self.principal.sells_at(sale.store_id) {
            return None;
        }
        let key = self.context.gateway.gate.hasher.key(&sale.pin);
        let approval = request::approval_code(&key, sale.store_id, sale.pos_ref);
        Some((key, approval))
    }

    /// Answers `message` with `code` without the engine.
    fn answer(&self, message: &Message, code: ResponseCode, bytes: u32) -> Next {
        match request::response(message, code) {
            Some(response) => {
                let _ = self.local_tx.send(Outgoing::Local {
                    message: response,
                    bytes,
                });
                Next::Continue
            }
            None => {
                self.budget.release(bytes);
                Next::Close("a message that is not a request")
            }
        }
    }

    /// Routes `command`; its answer is built by the writer from `message`.
    /// The principal's share and the engine's budget are taken here (91
    /// when the engine's is spent).
    async fn route(
        &mut self,
        message: &Message,
        command: Command,
        kind: PendingKind,
        approval_code: Option<String>,
        weight: usize,
    ) -> Next {
        let weight_permits = u32::try_from(weight).expect("bounded by weight_max");
        let Some(response) = request::response(message, ResponseCode::Approved) else {
            self.budget.release(weight_permits);
            return Next::Close("a message that is not a request");
        };
        let principal_share = match self.slot.share() {
            Some(share) => share.clone().acquire_many_owned(weight_permits).await.ok(),
            None => None,
        };
        let engine = self
            .context
            .gateway
            .inflight_bytes
            .clone()
            .try_acquire_many_owned(weight_permits)
            .ok();
        if engine.is_none() {
            return self.answer(message, ResponseCode::Unavailable, weight_permits);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let pending = Pending {
            response,
            approval_code,
            kind,
            terminal: self.terminal(message),
        };
        self.pending
            .lock()
            .expect("the pending map is never poisoned")
            .insert(id, pending);
        let tag = Tag {
            correlation_id: id,
            bytes: weight_permits,
            engine,
            principal: principal_share,
            item: None,
            order: false,
        };
        self.context
            .gateway
            .router
            .route(&self.router_tx, vec![(tag, command)]);
        Next::Continue
    }
}

/// A message that did not decode: answered 30 when its MTI is a request's,
/// otherwise a violation that ends the connection.
enum Decoded {
    Refused(Message),
    Violation(&'static str),
}

fn decode(body: &[u8]) -> Result<Message, Decoded> {
    Message::decode(body).map_err(|error| {
        tracing::info!(%error, "ISO 8583 message refused");
        let mti: Option<[u8; 4]> = body.get(..4).and_then(|mti| mti.try_into().ok());
        match (error, mti) {
            (DecodeError::BadMti | DecodeError::TooShort { .. }, _) | (_, None) => {
                Decoded::Violation("a message without a legal MTI")
            }
            (_, Some(mti)) if request::response_mti(mti).is_some() => {
                Decoded::Refused(Message::new(mti))
            }
            _ => Decoded::Violation("a message that is not a request"),
        }
    })
}

/// Whether an answer tells of what the engine counts as a PIN failure: an
/// unknown PIN or a bad check digit (14), another HQ's card (57 on a
/// balance inquiry).
fn is_pin_failure(kind: PendingKind, answer: &Message) -> bool {
    match answer.get(39) {
        Some(code) if code == ResponseCode::InvalidCard.as_str() => true,
        Some(code) if code == ResponseCode::NotPermitted.as_str() => kind == PendingKind::Balance,
        _ => false,
    }
}

/// The answer to a routed request, from the engine's response.
fn answer(pending: Pending, response: Response) -> Message {
    let Pending {
        response: mut message,
        approval_code,
        kind,
        terminal: _,
    } = pending;
    let code = match (kind, &response) {
        (_, Response::Error(error)) => error
            .error_code()
            .map_or(ResponseCode::SystemMalfunction, ResponseCode::of_error),
        (PendingKind::Activate, Response::Activated(activated)) => activated
            .results
            .first()
            .map_or(ResponseCode::SystemMalfunction, ResponseCode::of_activation),
        (PendingKind::Reverse, Response::ActivationReversed(reversed)) => {
            ResponseCode::of_reversal(reversed)
        }
        (PendingKind::Balance, Response::Balance(balance)) => {
            if balance.state == crate::card::CardState::Expired {
                ResponseCode::ExpiredCard
            } else {
                message.set(54, request::balance_amounts(balance));
                ResponseCode::Approved
            }
        }
        _ => ResponseCode::SystemMalfunction,
    };
    if code == ResponseCode::Approved
        && let Some(approval_code) = approval_code
    {
        message.set(38, approval_code);
    }
    message.set(39, code.as_str());
    message
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut router_rx: ReplyRx,
    mut local_rx: mpsc::UnboundedReceiver<Outgoing>,
    budget: Arc<Budget>,
    pending: PendingMap,
    context: Arc<IsoContext>,
) {
    let limits = context.limits();
    let write_timeout = Duration::from_millis(limits.write_timeout_ms);
    let max_message_bytes = context.max_message_bytes;
    let mut out = Vec::with_capacity(READ_CHUNK_BYTES);
    let (mut router_open, mut local_open) = (true, true);
    while router_open || local_open {
        // Tags of routed answers and bytes of local ones: their budgets go
        // back once written.
        let mut answered: Vec<Tag> = Vec::new();
        let mut local_bytes = Vec::new();
        let mut close = false;
        tokio::select! {
            reply = router_rx.recv(), if router_open => match reply {
                Some(reply) => {
                    let terminals = &context.terminals;
                    for (tag, response) in replies(reply) {
                        encode_routed(&tag, response, &pending, terminals, &mut out, max_message_bytes);
                        answered.push(tag);
                    }
                }
                None => router_open = false,
            },
            outgoing = local_rx.recv(), if local_open => match outgoing {
                Some(Outgoing::Local { message, bytes }) => {
                    encode(&mut out, &message, max_message_bytes);
                    local_bytes.push(bytes);
                }
                Some(Outgoing::Close) => close = true,
                None => local_open = false,
            },
        }
        if !out.is_empty() {
            match tokio::time::timeout(write_timeout, writer.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    tracing::info!("an ISO 8583 peer stopped reading; closing");
                    break;
                }
            }
            out.clear();
        }
        for tag in answered {
            budget.release(tag.bytes);
        }
        for bytes in local_bytes {
            budget.release(bytes);
        }
        if close {
            let _ = writer.shutdown().await;
            break;
        }
    }
    budget.close();
}

/// Encodes the answer to a routed request from its response, if the
/// request is still waiting, and counts a PIN failure against its terminal.
fn encode_routed(
    tag: &Tag,
    response: Response,
    pending: &PendingMap,
    terminals: &Terminals,
    out: &mut Vec<u8>,
    max_message_bytes: usize,
) {
    let waiting = pending
        .lock()
        .expect("the pending map is never poisoned")
        .remove(&tag.correlation_id);
    let Some(waiting) = waiting else { return };
    let (kind, terminal) = (waiting.kind, waiting.terminal);
    let message = answer(waiting, response);
    if let Some(terminal) = terminal
        && is_pin_failure(kind, &message)
    {
        let now_ms = crate::clock::now_ms();
        terminals.record_failure(terminal, now_ms);
    }
    encode(out, &message, max_message_bytes);
}

/// The (tag, response) pairs of a router reply. Batches and fatal errors
/// belong to the binary protocol and never answer an ISO request.
fn replies(reply: Reply) -> Vec<(Tag, Response)> {
    match reply {
        Reply::One(tag, response) => vec![(tag, response)],
        Reply::Many(replies) => replies,
        Reply::Batch(..) | Reply::Fatal(..) => Vec::new(),
    }
}

/// Appends `message` as a frame, and counts it; one that cannot be
/// encoded (never, with the fields set here) is logged and left out.
fn encode(out: &mut Vec<u8>, message: &Message, max_message_bytes: usize) {
    if let Err(error) = message.encode(out, max_message_bytes) {
        return tracing::error!(%error, "an ISO 8583 response did not encode");
    }
    let mti = match &message.mti {
        b"0110" => "0110",
        b"0210" => "0210",
        b"0410" => "0410",
        b"0430" => "0430",
        b"0810" => "0810",
        _ => "other",
    };
    let code = message
        .get(39)
        .and_then(ResponseCode::parse)
        .map_or("", ResponseCode::as_str);
    crate::telemetry::iso8583_response(mti, code);
}
