//! The Rust client: used by the CLI, the tests and the load harness.
//!
//! One TCP connection, pipelined: any number of tasks may call at once; each
//! call gets a fresh correlation id, and a reader task hands every response
//! to the call that waits for it, in whatever order the engine answers. A
//! writer task gathers queued requests and writes them with one syscall,
//! which is what makes pipelining cheap on both ends.

use crate::auth::{self, Key};
use crate::config::FRAME_BYTES_MAX;
use crate::protocol::frame::FrameBuffer;
use crate::protocol::{
    ActivateRequest, ActivateResponse, AuditResponse, AuthHello, AuthProof, AuthWelcome,
    AuthorizeRequest, AuthorizeResponse, BalanceRequest, BalanceResponse, CaptureRequest,
    CaptureResponse, ErrorCode, ErrorResponse, IssueRequest, IssueResponse, OrderInfo,
    OrderLookupRequest, OrderPayRequest, PayBatchRequest, PayRequest, PayResponse, PayResult,
    PayoutConfirmRequest, PayoutConfirmResponse, PayoutCreateRequest, PayoutCreateResponse,
    PayoutItemRef, PayoutListRequest, PayoutListResponse, PayoutShowRequest, PayoutShowResponse,
    PrincipalAddRequest, PrincipalInfo, PrincipalListRef, PrincipalListRequest,
    PrincipalListResponse, PrincipalRevokeRequest, PrincipalRotateRequest, RefundRequest,
    RefundResponse, RemitRequest, RemitResponse, ReportAccount, ReportRequest, ReportResponse,
    Request, Response, ReverseActivationRequest, ReverseActivationResponse, Role, StatementRef,
    StatementRequest, StatementResponse, StatsResponse, StoreStatementRef, StoreStatementRequest,
    StoreStatementResponse, VoidRequest, VoidResponse,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Requests queued towards the socket before callers wait.
const SEND_QUEUE_DEPTH: usize = 4096;
/// Lines per report page the client asks for (the engine's default
/// `max_report_lines`).
pub const REPORT_PAGE_LINES: u32 = 1000;
/// Free space kept in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Could not connect, or the socket failed.
    Io(String),
    /// The connection closed before the answer came.
    Closed,
    /// The engine answered with an error frame.
    Server(ErrorResponse),
    /// The engine answered with something this request does not expect.
    Unexpected(String),
}

impl ClientError {
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(error) => error.error_code(),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(message) => write!(f, "connection: {message}"),
            ClientError::Closed => write!(f, "connection closed before the answer"),
            ClientError::Server(error) => {
                let name = error.error_code().map_or("unknown", |c| c.name());
                write!(f, "engine refused ({name}): {}", error.message)
            }
            ClientError::Unexpected(message) => write!(f, "unexpected answer: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Calls waiting for their response, by correlation id.
#[derive(Default)]
struct Waiting {
    calls: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    /// Set (before `calls` is emptied) when the connection is gone, so a
    /// call that registers late does not wait forever.
    closed: std::sync::atomic::AtomicBool,
}

impl Waiting {
    /// Hands `response` to the call waiting for `correlation_id`. A reply
    /// with correlation 0 is a connection-level error (framing violation,
    /// overload): every waiting call gets it.
    fn answer(&self, correlation_id: u64, response: Response) {
        let mut calls = self.calls.lock().expect("waiter map lock");
        if let Some(waiter) = calls.remove(&correlation_id) {
            drop(calls);
            let _ = waiter.send(response);
        } else if correlation_id == 0 {
            let all: Vec<_> = calls.drain().collect();
            drop(calls);
            for (_, waiter) in all {
                let _ = waiter.send(response.clone());
            }
        }
    }
}

type Waiters = Arc<Waiting>;

pub struct Client {
    queue: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    next_correlation_id: AtomicU64,
    /// Set by [`Client::gather_payments`].
    gathering: Option<Gathering>,
}

/// Concurrent [`Client::pay`] calls gathered into PayBatch frames.
///
/// The first caller to find nothing gathered leads: it yields once, so the
/// other tasks that are ready can add their payments, then sends everything
/// gathered (at most `batch_max` a frame) and goes back to waiting for its
/// own answer like the rest. Calls that arrive meanwhile gather for the
/// next frame. Under light load a payment goes alone, as a plain Pay; under
/// heavy load the frames fill by themselves, with no timer.
struct Gathering {
    batch_max: usize,
    pending: Mutex<Gathered>,
}

#[derive(Default)]
struct Gathered {
    payments: Vec<PayRequest>,
    /// Their request ids, so a call can tell in O(1) whether its id is
    /// already waiting.
    request_ids: HashSet<u64>,
    answers: Vec<oneshot::Sender<Result<PayResponse, ClientError>>>,
    /// A caller is about to send what has gathered.
    led: bool,
}

/// The most payments [`Client::gather_payments`] puts in one frame: at the
/// engine's default limits even sixteen-card payments' replies fit.
pub const GATHER_BATCH_MAX: usize = 512;

/// TLS towards the engine: the CA to trust and the name to verify. There
/// is no way to skip verification.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// Trusts the certificates in the PEM file `ca_path`. The engine's
    /// certificate must name `server_name`, or (when it is `None`) the IP
    /// address connected to.
    pub fn from_ca_file(ca_path: &Path, server_name: Option<&str>) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_path)
            .map_err(|e| format!("tls CA {}: {e}", ca_path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("tls CA {}: {e}", ca_path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls CA {}: {e}", ca_path.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_string())
                    .map_err(|e| format!("TLS server name {name:?}: {e}"))
            })
            .transpose()?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// How to reach an engine and who to be there.
#[derive(Clone, Default)]
pub struct Connect {
    /// The principal's key; without one the connection stays
    /// unauthenticated (and every request is refused).
    pub key: Option<Key>,
    pub tls: Option<TlsClient>,
}

impl Client {
    /// Connects without authenticating; must be called inside a tokio
    /// runtime.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        Client::connect_with(addr, &Connect::default()).await
    }

    /// Connects and authenticates as `key`'s principal.
    pub async fn connect_as(addr: SocketAddr, key: &Key) -> Result<Client, ClientError> {
        let options = Connect {
            key: Some(key.clone()),
            tls: None,
        };
        Client::connect_with(addr, &options).await
    }

    /// Connects (over TLS if asked) and authenticates (if given a key).
    pub async fn connect_with(addr: SocketAddr, options: &Connect) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Io(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let client = match &options.tls {
            None => {
                let (reader, writer) = stream.into_split();
                Client::start(reader, writer)
            }
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| ClientError::Io(format!("TLS with {addr}: {e}")))?;
                let (reader, writer) = tokio::io::split(stream);
                Client::start(reader, writer)
            }
        };
        if let Some(key) = &options.key {
            client.authenticate(key).await?;
        }
        Ok(client)
    }

    fn start<R, W>(reader: R, writer: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let waiters: Waiters = Arc::new(Waiting::default());
        let (queue, queued) = mpsc::channel::<Vec<u8>>(SEND_QUEUE_DEPTH);
        tokio::spawn(write_loop(writer, queued));
        tokio::spawn(read_loop(reader, waiters.clone()));
        Client {
            queue,
            waiters,
            next_correlation_id: AtomicU64::new(1),
            gathering: None,
        }
    }

    /// From now on, concurrent [`Client::pay`] calls go out together in
    /// PayBatch frames of up to `batch_max` payments (at most
    /// [`GATHER_BATCH_MAX`]). Each call still gets exactly its own answer.
    pub fn gather_payments(mut self, batch_max: usize) -> Client {
        self.gathering = Some(Gathering {
            batch_max: batch_max.clamp(1, GATHER_BATCH_MAX),
            pending: Mutex::new(Gathered::default()),
        });
        self
    }

    /// The handshake: proves `key` without sending its secret.
    pub async fn authenticate(&self, key: &Key) -> Result<AuthWelcome, ClientError> {
        let client_nonce = auth::keys::nonce();
        let hello = Request::AuthHello(AuthHello {
            principal: key.principal,
            client_nonce,
        });
        let server_nonce = match self.call_ok(&hello).await? {
            Response::Challenge(challenge) => challenge.server_nonce,
            other => return Err(unexpected(other)),
        };
        let proof = Request::AuthProof(AuthProof {
            proof: key.proof(&client_nonce, &server_nonce),
        });
        match self.call_ok(&proof).await? {
            Response::Welcome(welcome) => Ok(welcome),
            other => Err(unexpected(other)),
        }
    }

    /// Sends one request and waits for its response (error frames included).
    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let answer = self.send(request).await?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// Sends one request; the receiver gets its response.
    async fn send(&self, request: &Request) -> Result<oneshot::Receiver<Response>, ClientError> {
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        request
            .encode(&mut bytes, correlation_id, FRAME_BYTES_MAX)
            .map_err(|e| ClientError::Unexpected(format!("cannot encode request: {e:?}")))?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .calls
            .lock()
            .expect("waiter map lock")
            .insert(correlation_id, tx);
        if self.waiters.closed.load(Ordering::SeqCst) || self.queue.send(bytes).await.is_err() {
            self.waiters
                .calls
                .lock()
                .expect("waiter map lock")
                .remove(&correlation_id);
            return Err(ClientError::Closed);
        }
        Ok(rx)
    }

    /// Like [`Client::call`], but an error frame becomes `Err`.
    async fn call_ok(&self, request: &Request) -> Result<Response, ClientError> {
        match self.call(request).await? {
            Response::Error(error) => Err(ClientError::Server(error)),
            response => Ok(response),
        }
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.call_ok(&Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn issue(
        &self,
        count: u32,
        face_value_minor: u64,
    ) -> Result<IssueResponse, ClientError> {
        let request = Request::Issue(IssueRequest {
            count,
            face_value_minor,
        });
        match self.call_ok(&request).await? {
            Response::Issued(issued) => Ok(issued),
            other => Err(unexpected(other)),
        }
    }

    pub async fn activate(
        &self,
        store_id: u32,
        pos_ref: u64,
        pins: &[String],
    ) -> Result<ActivateResponse, ClientError> {
        let request = Request::Activate(ActivateRequest {
            store_id,
            pos_ref,
            pins: pins.to_vec(),
        });
        match self.call_ok(&request).await? {
            Response::Activated(activated) => Ok(activated),
            other => Err(unexpected(other)),
        }
    }

    /// Reverses the sale (`store_id`, `pos_ref`) of the card `pin` (store
    /// HQ). The sale is the idempotency key: a retry gets the first outcome
    /// with `replayed` set, so it is safe to resend after a timeout.
    pub async fn reverse_activation(
        &self,
        store_id: u32,
        pos_ref: u64,
        pin: &str,
    ) -> Result<ReverseActivationResponse, ClientError> {
        let request = Request::ReverseActivation(ReverseActivationRequest {
            store_id,
            pos_ref,
            pin: pin.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::ActivationReversed(reversed) => Ok(reversed),
            other => Err(unexpected(other)),
        }
    }

    /// Pays the authenticated merchant.
    pub async fn pay(
        &self,
        request_id: u64,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<PayResponse, ClientError> {
        let payment = PayRequest {
            request_id,
            amount_minor,
            pins: pins.to_vec(),
        };
        match &self.gathering {
            Some(gathering) => self.pay_gathered(gathering, payment).await,
            None => pay_result(self.call(&Request::Pay(payment)).await),
        }
    }

    async fn pay_gathered(
        &self,
        gathering: &Gathering,
        payment: PayRequest,
    ) -> Result<PayResponse, ClientError> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut gathered = gathering.pending.lock().expect("gathering lock");
            if !gathered.request_ids.insert(payment.request_id) {
                Err(payment)
            } else {
                gathered.payments.push(payment);
                gathered.answers.push(answer);
                Ok(!std::mem::replace(&mut gathered.led, true))
            }
        };
        let lead = match lead {
            Ok(lead) => lead,
            // The same request id twice in one batch would be refused;
            // alone, it is answered as a retry would be.
            Err(payment) => return pay_result(self.call(&Request::Pay(payment)).await),
        };
        if lead {
            tokio::task::yield_now().await;
            self.send_gathered(gathering).await;
        }
        answered.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends everything gathered, a frame at a time; a task per frame hands
    /// out the answers.
    async fn send_gathered(&self, gathering: &Gathering) {
        loop {
            let (mut payments, answers) = {
                let mut gathered = gathering.pending.lock().expect("gathering lock");
                if gathered.payments.is_empty() {
                    gathered.led = false;
                    return;
                }
                let take = gathered.payments.len().min(gathering.batch_max);
                let payments: Vec<PayRequest> = gathered.payments.drain(..take).collect();
                for payment in &payments {
                    gathered.request_ids.remove(&payment.request_id);
                }
                let answers: Vec<_> = gathered.answers.drain(..take).collect();
                (payments, answers)
            };
            let request = if payments.len() == 1 {
                Request::Pay(payments.pop().expect("one"))
            } else {
                Request::PayBatch(PayBatchRequest { payments })
            };
            let reply = self.send(&request).await;
            tokio::spawn(hand_out(reply, answers));
        }
    }

    /// Many payments in one frame: one result per payment, in order. Each
    /// is exactly what the payment alone would have got; a refusal of the
    /// whole batch (too many payments, a reply that could not fit a frame,
    /// `busy`) is an error.
    pub async fn pay_batch(
        &self,
        payments: Vec<PayRequest>,
    ) -> Result<Vec<PayResult>, ClientError> {
        let request = Request::PayBatch(PayBatchRequest { payments });
        match self.call_ok(&request).await? {
            Response::PaidBatch(batch) => Ok(batch.results),
            other => Err(unexpected(other)),
        }
    }

    /// Refunds `amount_minor` of the authenticated merchant's payment
    /// `payment_request_id`. `request_id` names the refund (its own
    /// namespace): resending the identical refund replays its answer.
    pub async fn refund(
        &self,
        request_id: u64,
        payment_request_id: u64,
        amount_minor: u64,
    ) -> Result<RefundResponse, ClientError> {
        let request = Request::Refund(RefundRequest {
            request_id,
            payment_request_id,
            amount_minor,
        });
        match self.call_ok(&request).await? {
            Response::Refunded(refunded) => Ok(refunded),
            other => Err(unexpected(other)),
        }
    }

    /// Holds `amount_minor` on the cards (taken in the order given) for the
    /// authenticated merchant. `request_id` names the authorization in the
    /// merchant's payment namespace: once captured it is the payment's
    /// request id. Resending the identical request replays its answer.
    pub async fn authorize(
        &self,
        request_id: u64,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<AuthorizeResponse, ClientError> {
        let request = Request::Authorize(AuthorizeRequest {
            request_id,
            amount_minor,
            pins: pins.to_vec(),
        });
        match self.call_ok(&request).await? {
            Response::Authorized(authorized) => Ok(authorized),
            other => Err(unexpected(other)),
        }
    }

    /// Pays `amount_minor` under the merchant's own `order_id` (see
    /// [`crate::order`]): a retry with the same order id and content
    /// replays the first answer.
    pub async fn pay_order(
        &self,
        order_id: &str,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<PayResponse, ClientError> {
        let request = Request::OrderPay(order_request(order_id, amount_minor, pins));
        match self.call_ok(&request).await? {
            Response::OrderPaid(paid) => Ok(paid),
            other => Err(unexpected(other)),
        }
    }

    /// Authorizes `amount_minor` under the merchant's own `order_id`.
    pub async fn authorize_order(
        &self,
        order_id: &str,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<AuthorizeResponse, ClientError> {
        let request = Request::OrderAuthorize(order_request(order_id, amount_minor, pins));
        match self.call_ok(&request).await? {
            Response::OrderAuthorized(authorized) => Ok(authorized),
            other => Err(unexpected(other)),
        }
    }

    /// The merchant's payment or authorization under `order_id`, if any.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderInfo>, ClientError> {
        let request = Request::OrderLookup(OrderLookupRequest {
            order_id: order_id.to_owned(),
        });
        match self.call_ok(&request).await? {
            Response::Order(found) => Ok(found.order),
            other => Err(unexpected(other)),
        }
    }

    /// Captures `amount_minor` (at most what was authorized) of the
    /// authenticated merchant's authorization `authorization_request_id`
    /// and releases the rest. `request_id` names the capture (the namespace
    /// of captures and voids): resending the identical capture replays its
    /// answer.
    pub async fn capture(
        &self,
        request_id: u64,
        authorization_request_id: u64,
        amount_minor: u64,
    ) -> Result<CaptureResponse, ClientError> {
        let request = Request::Capture(CaptureRequest {
            request_id,
            authorization_request_id,
            amount_minor,
        });
        match self.call_ok(&request).await? {
            Response::Captured(captured) => Ok(captured),
            other => Err(unexpected(other)),
        }
    }

    /// Releases the whole hold of the authenticated merchant's
    /// authorization `authorization_request_id`. `request_id` names the
    /// void (the namespace of captures and voids): resending the identical
    /// void replays its answer.
    pub async fn void(
        &self,
        request_id: u64,
        authorization_request_id: u64,
    ) -> Result<VoidResponse, ClientError> {
        let request = Request::Void(VoidRequest {
            request_id,
            authorization_request_id,
        });
        match self.call_ok(&request).await? {
            Response::Voided(voided) => Ok(voided),
            other => Err(unexpected(other)),
        }
    }

    /// Records that store headquarters `store_hq_id` paid the center
    /// `amount_minor` (bank reference `reference`) toward its stores' debt
    /// (operator only). The amount goes to the HQ's stores in ascending
    /// store id order, each up to what it owes; more than they owe in all
    /// is declined `exceeds_owed`. `request_id` names the remittance (the
    /// operator's namespace): resending the identical remittance replays
    /// its answer.
    pub async fn remit(
        &self,
        request_id: u64,
        store_hq_id: u32,
        amount_minor: u64,
        reference: &str,
    ) -> Result<RemitResponse, ClientError> {
        let request = Request::Remit(RemitRequest {
            request_id,
            store_hq_id,
            amount_minor,
            reference: reference.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::Remitted(remitted) => Ok(remitted),
            other => Err(unexpected(other)),
        }
    }

    /// Closes everything the center owes merchant `merchant_id` up to
    /// `until_ms` (engine clock; `None`: now less the engine's
    /// `payout_settle_ms`) into one payout (operator only): the payments
    /// and refunds decided after the merchant's last payout's cut-off, less
    /// the merchant's fee and what earlier payouts carried. Declined
    /// `period_closed` or `nothing_to_pay`. `request_id` names the payout
    /// (the operator's namespace): resending the identical request replays
    /// its answer.
    pub async fn payout_create(
        &self,
        request_id: u64,
        merchant_id: u32,
        until_ms: Option<u64>,
    ) -> Result<PayoutCreateResponse, ClientError> {
        let request = Request::PayoutCreate(PayoutCreateRequest {
            request_id,
            merchant_id,
            until_ms,
        });
        match self.call_ok(&request).await? {
            Response::PayoutCreated(created) => Ok(created),
            other => Err(unexpected(other)),
        }
    }

    /// Marks payout (`merchant_id`, `seq`) paid with the bank's
    /// `reference` (operator only). Confirming again with the same
    /// reference replays; with another, it is `invalid_argument`.
    pub async fn payout_confirm(
        &self,
        merchant_id: u32,
        seq: u64,
        reference: &str,
    ) -> Result<PayoutConfirmResponse, ClientError> {
        let request = Request::PayoutConfirm(PayoutConfirmRequest {
            merchant_id,
            seq,
            reference: reference.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::PayoutConfirmed(confirmed) => Ok(confirmed),
            other => Err(unexpected(other)),
        }
    }

    /// One page of merchant `merchant_id`'s payouts after `after_seq` (0:
    /// from the first), at most `limit` (operator only).
    pub async fn payout_list(
        &self,
        merchant_id: u32,
        after_seq: u64,
        limit: u32,
    ) -> Result<PayoutListResponse, ClientError> {
        let request = Request::PayoutList(PayoutListRequest {
            merchant_id,
            after_seq,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::Payouts(payouts) => Ok(payouts),
            other => Err(unexpected(other)),
        }
    }

    /// Payout (`merchant_id`, `seq`) and one page of what it contains
    /// after `after` (`None`: from the start), at most `limit` items: its
    /// payments, then its refunds, each by request id (operator only).
    pub async fn payout_show(
        &self,
        merchant_id: u32,
        seq: u64,
        after: Option<PayoutItemRef>,
        limit: u32,
    ) -> Result<PayoutShowResponse, ClientError> {
        let request = Request::PayoutShow(PayoutShowRequest {
            merchant_id,
            seq,
            after,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::PayoutItems(items) => Ok(items),
            other => Err(unexpected(other)),
        }
    }

    /// One page of merchant `merchant_id`'s statement (operator only):
    /// its approved payments (what was captured), refunds and payouts
    /// with their engine-clock time in (`from_ms`, `to_ms`], after `after`
    /// (`None`: from the start), at most `limit` lines: payments, then
    /// refunds, each by request id, then payouts by number. `next` is where
    /// the next page starts when more may follow.
    pub async fn statement(
        &self,
        merchant_id: u32,
        from_ms: u64,
        to_ms: u64,
        after: Option<StatementRef>,
        limit: u32,
    ) -> Result<StatementResponse, ClientError> {
        let request = Request::Statement(StatementRequest {
            merchant_id,
            from_ms,
            to_ms,
            after,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::Statement(statement) => Ok(statement),
            other => Err(unexpected(other)),
        }
    }

    /// One page of store `store_id`'s statement (operator only): its
    /// journal (activations, reversals and what remittances paid off its
    /// debt) with the engine-clock time in (`from_ms`, `to_ms`], after
    /// `after` (`None`: from the start), at most `limit` lines, ordered by
    /// time, then kind, subject and reference. `next` is where the next
    /// page starts when more may follow.
    pub async fn store_statement(
        &self,
        store_id: u32,
        from_ms: u64,
        to_ms: u64,
        after: Option<StoreStatementRef>,
        limit: u32,
    ) -> Result<StoreStatementResponse, ClientError> {
        let request = Request::StoreStatement(StoreStatementRequest {
            store_id,
            from_ms,
            to_ms,
            after,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::StoreStatement(statement) => Ok(statement),
            other => Err(unexpected(other)),
        }
    }

    pub async fn balance(&self, pin: &str) -> Result<BalanceResponse, ClientError> {
        let request = Request::Balance(BalanceRequest {
            pin: pin.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::Balance(balance) => Ok(balance),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the report.
    pub async fn report_page(&self, request: ReportRequest) -> Result<ReportResponse, ClientError> {
        match self.call_ok(&Request::Report(request)).await? {
            Response::Report(report) => Ok(report),
            other => Err(unexpected(other)),
        }
    }

    /// The whole report (or one account's line, with `only`), following
    /// the pages; the totals are the last page's.
    pub async fn report_all(
        &self,
        only: Option<ReportAccount>,
        page_lines: u32,
    ) -> Result<ReportResponse, ClientError> {
        let mut all = ReportResponse::default();
        let mut after = None;
        loop {
            let request = ReportRequest {
                limit: page_lines,
                after,
                only,
            };
            let page = self.report_page(request).await?;
            all.stores.extend(page.stores);
            all.merchants.extend(page.merchants);
            all.totals = page.totals;
            match page.next {
                Some(next) if Some(next) != after => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// The whole report, in pages of [`REPORT_PAGE_LINES`].
    pub async fn report(&self) -> Result<ReportResponse, ClientError> {
        self.report_all(None, REPORT_PAGE_LINES).await
    }

    pub async fn audit(&self) -> Result<AuditResponse, ClientError> {
        match self.call_ok(&Request::Audit).await? {
            Response::Audit(audit) => Ok(audit),
            other => Err(unexpected(other)),
        }
    }

    pub async fn stats(&self) -> Result<StatsResponse, ClientError> {
        match self.call_ok(&Request::Stats).await? {
            Response::Stats(stats) => Ok(stats),
            other => Err(unexpected(other)),
        }
    }

    /// Registers the principal of `key` (operator only); only the key's
    /// stored form is sent.
    pub async fn principal_add(
        &self,
        key: &Key,
        role: Role,
        stores: &[u32],
    ) -> Result<PrincipalInfo, ClientError> {
        let request = Request::PrincipalAdd(PrincipalAddRequest {
            id: key.principal,
            role,
            stores: stores.to_vec(),
            stored_key: key.stored_key(),
        });
        match self.call_ok(&request).await? {
            Response::PrincipalAdded(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the principals (operator only), ascending id: after
    /// `after` (`None`: from the start), at most `limit`. The last may be
    /// a store HQ cut short; `next` is where the next page starts.
    pub async fn principal_list_page(
        &self,
        after: Option<PrincipalListRef>,
        limit: u32,
    ) -> Result<PrincipalListResponse, ClientError> {
        let request = Request::PrincipalList(PrincipalListRequest { after, limit });
        match self.call_ok(&request).await? {
            Response::Principals(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Every principal, ascending id, following the pages (a store HQ
    /// split across two is joined).
    pub async fn principal_list(&self) -> Result<Vec<PrincipalInfo>, ClientError> {
        let limit = u32::try_from(crate::config::PRINCIPALS_PER_PAGE_MAX).unwrap_or(u32::MAX);
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.principal_list_page(after, limit).await?;
            let next = page.next;
            page.append_to(&mut all);
            match next {
                Some(next) if Some(next) != after => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Gives the principal of `key` this new key (operator only).
    pub async fn principal_rotate(&self, key: &Key) -> Result<PrincipalInfo, ClientError> {
        let request = Request::PrincipalRotate(PrincipalRotateRequest {
            id: key.principal,
            stored_key: key.stored_key(),
        });
        match self.call_ok(&request).await? {
            Response::PrincipalRotated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Registers the client certificate with SHA-256 `fingerprint` for
    /// store HQ `id` on the ISO 8583 listener (operator only).
    pub async fn principal_cert(
        &self,
        id: u32,
        fingerprint: [u8; 32],
    ) -> Result<crate::protocol::PrincipalCertInfo, ClientError> {
        let request =
            Request::PrincipalCert(crate::protocol::PrincipalCertRequest { id, fingerprint });
        match self.call_ok(&request).await? {
            Response::PrincipalCertRegistered(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Registers an HTTP bearer token for principal `id` by its hash.
    pub async fn token_add(
        &self,
        id: u32,
        hash: [u8; 32],
    ) -> Result<crate::protocol::PrincipalTokens, ClientError> {
        let request = Request::TokenAdd(crate::protocol::TokenAddRequest { id, hash });
        match self.call_ok(&request).await? {
            Response::TokenAdded(tokens) => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    /// Principal `id`'s HTTP bearer tokens, by id.
    pub async fn token_list(
        &self,
        id: u32,
    ) -> Result<crate::protocol::PrincipalTokens, ClientError> {
        let request = Request::TokenList(crate::protocol::TokenListRequest { id });
        match self.call_ok(&request).await? {
            Response::Tokens(tokens) => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes principal `id`'s HTTP bearer token `token` (its id).
    pub async fn token_revoke(
        &self,
        id: u32,
        token: [u8; 8],
    ) -> Result<crate::protocol::PrincipalTokens, ClientError> {
        let request = Request::TokenRevoke(crate::protocol::TokenRevokeRequest { id, token });
        match self.call_ok(&request).await? {
            Response::TokenRevoked(tokens) => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    pub async fn principal_revoke(&self, id: u32) -> Result<PrincipalInfo, ClientError> {
        let request = Request::PrincipalRevoke(PrincipalRevokeRequest { id });
        match self.call_ok(&request).await? {
            Response::PrincipalRevoked(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(response: Response) -> ClientError {
    ClientError::Unexpected(format!("{response:?}"))
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut queued: mpsc::Receiver<Vec<u8>>) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(first) = queued.recv().await {
        out.extend_from_slice(&first);
        while out.len() < 256 * 1024 {
            match queued.try_recv() {
                Ok(more) => out.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

/// A payment's answer from the reply to a Pay.
fn pay_result(reply: Result<Response, ClientError>) -> Result<PayResponse, ClientError> {
    match reply? {
        Response::Paid(paid) => Ok(paid),
        Response::Error(error) => Err(ClientError::Server(error)),
        other => Err(unexpected(other)),
    }
}

/// Gives each gathered payment its answer from the reply to its frame: a
/// result each from a PayBatch; the same error to all when the batch was
/// refused whole (`busy`, say, when nothing was done).
async fn hand_out(
    reply: Result<oneshot::Receiver<Response>, ClientError>,
    answers: Vec<oneshot::Sender<Result<PayResponse, ClientError>>>,
) {
    let response = match reply {
        Ok(receiver) => receiver.await.map_err(|_| ClientError::Closed),
        Err(error) => Err(error),
    };
    let results: Vec<Result<PayResponse, ClientError>> = match response {
        Ok(Response::PaidBatch(batch)) if batch.results.len() == answers.len() => batch
            .results
            .into_iter()
            .map(|result| match result {
                PayResult::Paid(paid) => Ok(paid),
                PayResult::Error(error) => Err(ClientError::Server(error)),
            })
            .collect(),
        Ok(Response::PaidBatch(batch)) => {
            let message = format!(
                "{} results for {} payments",
                batch.results.len(),
                answers.len()
            );
            vec![Err(ClientError::Unexpected(message)); answers.len()]
        }
        reply => vec![pay_result(reply); answers.len()],
    };
    for (answer, result) in answers.into_iter().zip(results) {
        let _ = answer.send(result);
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: R, waiters: Waiters) {
    let mut buffer = FrameBuffer::with_capacity(READ_CHUNK_BYTES);
    'read: loop {
        loop {
            let frame = match buffer.next_frame(FRAME_BYTES_MAX) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let response = Response::decode(frame.kind, frame.body).unwrap_or_else(|e| {
                Response::error(
                    ErrorCode::MalformedFrame,
                    format!("undecodable reply: {}", e.message),
                )
            });
            waiters.answer(frame.correlation_id, response);
        }
        match buffer.fill(&mut reader, READ_CHUNK_BYTES).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Dropping the waiters fails every outstanding call with `Closed`.
    waiters.closed.store(true, Ordering::SeqCst);
    waiters.calls.lock().expect("waiter map lock").clear();
}

fn order_request(order_id: &str, amount_minor: u64, pins: &[String]) -> OrderPayRequest {
    OrderPayRequest {
        order_id: order_id.to_owned(),
        amount_minor,
        pins: pins.to_vec(),
    }
}
