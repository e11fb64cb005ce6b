//! Engine configuration: `config/kessai.toml`, overridden by flags.
//!
//! Every queue, frame and batch in the engine has an explicit limit, and all
//! of them live here so an operator can see (and tune) the engine's memory
//! bounds in one place. `validate` rejects values outside the compiled-in
//! hard maxima rather than letting a typo allocate a gigabyte.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Hard ceiling on shards: the shard id is stored as a u16 in book rows, and
/// more shards than this only adds threads and fsyncs.
pub const SHARDS_MAX: usize = 256;
/// Hard ceiling on cards in one payment (the config may set it lower).
pub const CARDS_PER_PAYMENT_MAX: usize = 16;
/// Hard ceiling on a frame, so a bad config cannot let a peer make the
/// engine buffer unbounded bytes.
pub const FRAME_BYTES_MAX: usize = 16 << 20;
/// Hard ceiling on the payments in one batch frame.
pub const PAYMENTS_PER_BATCH_MAX: usize = 8192;
/// Hard ceiling on a shard's mailbox, in messages.
pub const SHARD_MAILBOX_MAX: usize = 1 << 16;
/// Hard ceiling on the cards one shard holds (at about 70 bytes a card
/// this is some 2.3 GB of memory, past what one shard should carry). More
/// cards take more shards.
pub const CARDS_PER_SHARD_MAX: u64 = 1 << 25;
/// Hard ceiling on a card's face value (ten million yen at most in
/// practice; this leaves room).
pub const FACE_VALUE_MINOR_CEILING: u64 = 1_000_000_000;
/// Hard ceiling on one payment's amount (sixteen cards of the highest face
/// value).
pub const AMOUNT_MINOR_CEILING: u64 = 16 * FACE_VALUE_MINOR_CEILING;
/// The most money every card the engine can hold could ever carry. Every
/// sum the engine keeps (a card, a shard's totals, a book, the engine's
/// totals) is at most this on honest data; the loader refuses books above
/// it, and twice it still fits in u64, so even damaged books that pass
/// cannot overflow when credited further.
pub const MONEY_MINOR_MAX: u64 = SHARDS_MAX as u64 * CARDS_PER_SHARD_MAX * FACE_VALUE_MINOR_CEILING;
const _: () = assert!(
    (MONEY_MINOR_MAX as u128) * 2 <= u64::MAX as u128,
    "money sums fit in u64"
);
const _: () = assert!(CARDS_PER_SHARD_MAX <= u32::MAX as u64, "card slots are u32");

/// Hard ceiling on connections of each pool (serving, handshaking): each
/// holds a socket and its buffers.
pub const CONNECTIONS_MAX: usize = 1 << 16;
/// Hard ceilings on the connection timeouts.
pub const TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;
pub const IDLE_TIMEOUT_MS_MAX: u64 = 24 * 3600 * 1000;
/// Hard ceilings on the in-flight byte budgets.
pub const INFLIGHT_BYTES_PER_CONNECTION_MAX: usize = 64 << 20;
pub const INFLIGHT_BYTES_MAX: usize = 16 << 30;
/// What one operation in flight costs the engine's memory besides its
/// frame and its reply on the wire: the command and its tag, the shard's
/// copy in its mailbox, the changes it adds to a group commit, its typed
/// answer on the way back, its place in a batch's reply being assembled,
/// each with the allocator's overhead. A payment of a PayBatch frame is
/// one operation: a frame of 2 048 payments is some 60 KiB on the wire and
/// well over a megabyte inside, so weighing frames by their bytes alone let
/// a client that never reads hold several times the budget in memory.
/// `tests/hostile.rs` checks this bound against the engine's RSS.
pub const OPERATION_BYTES: usize = 1024;

/// Hard ceiling on operator requests running at once.
pub const ADMIN_REQUESTS_MAX: usize = 64;
/// The most a report line takes on the wire: a store line is its id (5)
/// and four u64 varints (10 each): 45, with room.
pub const REPORT_LINE_BYTES_MAX: usize = 48;
/// What a report page takes besides its lines: frame header, totals
/// (fifteen u64 varints), list lengths, cursor; with room.
pub const REPORT_PAGE_FIXED_BYTES: usize = 512;

/// Report lines that fit one frame of `max_frame_bytes`.
pub fn report_lines_max(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(REPORT_PAGE_FIXED_BYTES) / REPORT_LINE_BYTES_MAX
}
/// Hard ceiling on an audit slice.
pub const AUDIT_SLICE_CARDS_MAX: usize = 1_000_000;

/// Hard ceiling on the stores one store HQ may be registered for. Paging
/// the principal list does not lift it: an HQ's stores also travel whole
/// in its handshake's AuthWelcome and in the PrincipalAdd, Revoke and
/// Rotate replies (4,096 of the largest ids: 20 KB), and a remittance's
/// reply has a line per store it pays (up to 60 KB).
pub const STORES_PER_HQ_MAX: usize = 4096;
/// Hard ceiling on the principals in one PrincipalList page (a page is
/// also cut to fit a frame; this bounds the work of one request).
pub const PRINCIPALS_PER_PAGE_MAX: usize = 1000;
/// Hard ceilings on the PIN-guessing guard.
pub const PIN_FAILURES_MAX: usize = 100_000;
pub const PIN_FAILURE_WINDOW_MS_MAX: u64 = 24 * 3600 * 1000;
pub const LOCKOUT_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
/// Reversals are for sales cancelled at the till: a week is generous.
pub const ACTIVATION_REVERSAL_WINDOW_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
/// Ten years; with it, a window in ms (days × 86 400 000) fits u64 many
/// times over.
pub const REFUND_WINDOW_DAYS_MAX: u64 = 3650;
/// Fifty years: a card's validity is kept in a u16 of days.
pub const CARD_VALIDITY_DAYS_MAX: u16 = 18_250;
pub const EXPIRY_SWEEP_INTERVAL_MS_MAX: u64 = 60 * 60 * 1000;
/// A week: a hold longer than that is a payment that never happened.
pub const AUTHORIZATION_TTL_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
/// A week: the longest business delay a default payout cut-off may lag.
pub const PAYOUT_SETTLE_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
/// A fee is a part of the amount: at most all of it.
pub const FEE_BPS_MAX: u32 = 10_000;
const MS_PER_DAY: u64 = 24 * 3600 * 1000;

/// Hard ceiling on an ISO 8583 message: its length prefix is two bytes.
pub const ISO_MESSAGE_BYTES_MAX: usize = u16::MAX as usize;
/// The smallest message limit that still holds every field kessai reads.
pub const ISO_MESSAGE_BYTES_MIN: usize = 512;
/// Hard ceiling on the client certificates registered for one store HQ.
pub const ISO_CERTS_PER_PRINCIPAL_MAX: usize = 64;
/// Hard ceiling on the terminals whose PIN failures are counted in memory
/// at once (each holds at most `pin_failures_per_terminal_max` times).
pub const ISO_TERMINALS_TRACKED_MAX: usize = 1 << 20;

// Limits that must fit the types that carry them.
const _: () = assert!(SHARDS_MAX <= u16::MAX as usize + 1, "shard ids are u16");
const _: () = assert!(CARDS_PER_PAYMENT_MAX < u8::MAX as usize, "positions are u8");
const _: () = assert!(
    FRAME_BYTES_MAX <= u32::MAX as usize,
    "frame lengths are u32"
);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// TCP address the gateway listens on.
    pub listen: SocketAddr,
    /// Where `kessai serve` exposes Prometheus metrics over HTTP; unset
    /// means no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for RocksDB and the PIN secret.
    pub data_dir: PathBuf,
    /// Number of card-shard actors. May change between restarts: cards are
    /// repartitioned on load.
    pub shards: usize,
    /// Arbiter (thread) count that shards and connections are spread over;
    /// 0 means one per CPU.
    pub worker_threads: usize,
    /// Hex-encoded PIN secret. When absent, the engine generates one into
    /// `<data_dir>/pin-secret` on first start and reads it afterwards.
    pub pin_secret_hex: Option<String>,
    /// PEM certificate chain and private key: both set turns on TLS at the
    /// gateway; neither leaves it plain TCP (then keep the engine on a
    /// network you control).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Digits in newly issued PINs (10..=16, check digit included).
    pub pin_digits: usize,
    pub limits: Limits,
    pub fees: Fees,
    pub iso8583: Iso8583,
    pub log: Log,
    pub http: Http,
}

/// Smallest and largest log segment (`log.segment_bytes`): a record
/// larger than a segment still fits (the segment grows), so the floor
/// only keeps files from being absurdly many.
pub const LOG_SEGMENT_BYTES_MIN: u64 = 1 << 20;
pub const LOG_SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Longest time between checkpoints: it bounds the log's tail, so the
/// replay at a restart.
pub const LOG_CHECKPOINT_INTERVAL_MS_MAX: u64 = 10 * 60 * 1000;

/// Hard ceilings of the JetStream log (`[log.jetstream]`, docs/CLUSTER.md).
/// Replicas: JetStream's own ceiling.
pub const LOG_JETSTREAM_REPLICAS_MAX: usize = 5;
pub const LOG_JETSTREAM_TIMEOUT_MS_MAX: u64 = 60_000;
/// A record larger than one NATS message (the server's `max_payload`, 1 MiB
/// by default) goes in several; a reader holds one whole record in memory.
/// The ceiling is the file log's; the floor keeps a group commit's cut
/// (half of it) above most single requests' changes.
pub const LOG_RECORD_BYTES_MIN: usize = 64 << 10;
pub const LOG_RECORD_BYTES_MAX: usize = 1 << 30;
pub const LOG_JETSTREAM_INFLIGHT_MAX: usize = 1 << 16;
pub const LOG_JETSTREAM_STREAM_NAME_MAX: usize = 64;

/// The command log (`docs/DESIGN.md`, Durability): under `<data_dir>/log`
/// by default, or on a NATS JetStream stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Where the log lives.
    pub backend: LogBackend,
    /// Bytes preallocated per segment file (the file log).
    pub segment_bytes: u64,
    /// How often RocksDB is flushed and the log behind it trimmed. The log
    /// holds at most about this long of history (plus one segment), and a
    /// restart replays at most that much.
    pub checkpoint_interval_ms: u64,
    /// The JetStream log's settings (read when `backend = "jetstream"`).
    pub jetstream: LogJetStream,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            backend: LogBackend::File,
            segment_bytes: 64 << 20,
            checkpoint_interval_ms: 10_000,
            jetstream: LogJetStream::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// Segment files under `<data_dir>/log`, one fsync per group commit.
    File,
    /// A NATS JetStream stream, one subject per partition (issue #21).
    Jetstream,
}

/// `[log.jetstream]`: the command log on a NATS JetStream stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogJetStream {
    /// The NATS server (or servers, comma-separated).
    pub url: String,
    /// The stream's name; its subjects are `<stream>.p.<partition>`.
    pub stream: String,
    /// Copies of every record, when the stream is created (1..=5). An
    /// existing stream keeps its own.
    pub replicas: usize,
    /// How long an append waits for the stream's acknowledgement before
    /// its outcome counts as unknown (and is resolved by reading back).
    pub ack_timeout_ms: u64,
    /// How long the first connection may take.
    pub connect_timeout_ms: u64,
    /// The largest record: a shard's group commit is cut at half of it.
    /// A record above the server's `max_payload` goes as several messages.
    pub max_record_bytes: usize,
    /// Appends waiting for their acknowledgement at once.
    pub max_inflight_appends: usize,
}

impl Default for LogJetStream {
    fn default() -> LogJetStream {
        LogJetStream {
            url: "nats://127.0.0.1:4222".to_string(),
            stream: "KESSAI".to_string(),
            replicas: 1,
            ack_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            // Group commits cut at 32 MiB: far above any one request's
            // changes, and a second or so of appends at worst.
            max_record_bytes: 64 << 20,
            max_inflight_appends: 1024,
        }
    }
}

/// Hard ceilings of the HTTP API's own limits.
pub const HTTP_BODY_BYTES_MIN: usize = 1024;
pub const HTTP_BODY_BYTES_MAX: usize = 1 << 20;
pub const HTTP_TOKENS_PER_PRINCIPAL_MAX: usize = 64;
pub const HTTP_WORKERS_MAX: usize = 64;

/// The HTTP/JSON API (`docs/HTTP.md`): off unless `listen` is set. Its
/// requests share the gateway's `[limits]` (serving slots, the principal's
/// and the engine's in-flight budgets, the PIN-failure lockout) and its
/// deadlines: `frame_timeout_ms` for a request's head and for its body,
/// `idle_timeout_ms` for a keep-alive connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Where it listens. HTTPS with the engine's `tls_cert`/`tls_key`;
    /// without them, plain HTTP only on a loopback address (or anywhere
    /// with `insecure_plain_http`).
    pub listen: Option<SocketAddr>,
    /// Plain HTTP beyond loopback: bearer tokens and PINs in clear on the
    /// network. For tests in a closed network only; logged loudly at start.
    pub insecure_plain_http: bool,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Bearer tokens one principal may hold at once (more than one, so a
    /// rotation has no gap).
    pub max_tokens_per_principal: usize,
    /// Worker threads of the HTTP server, besides the engine's (0: as many
    /// as the engine's `worker_threads`, one per core by default).
    pub workers: usize,
    /// The currency every amount is in (ISO 4217); requests naming another
    /// are refused.
    pub currency: String,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            listen: None,
            insecure_plain_http: false,
            max_body_bytes: 16 * 1024,
            max_tokens_per_principal: 8,
            workers: 0,
            currency: "JPY".to_string(),
        }
    }
}

/// The ISO 8583 listener for store HQ switches (`docs/ISO8583.md`): off
/// unless `listen` is set. Its connections share the gateway's `[limits]`
/// (connection slots, in-flight budgets, deadlines, lockout).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Iso8583 {
    /// Where it listens. With TLS (`tls_cert`, `tls_key`, required then),
    /// a client must show a certificate whose SHA-256 fingerprint an
    /// operator registered (`kessai principal cert`).
    pub listen: Option<SocketAddr>,
    /// Test mode: plain TCP, on a loopback `listen` only, every connection
    /// acting as this store HQ. Logged loudly at start.
    pub plain_tcp_store_hq: Option<u32>,
    /// Largest message, after its 2-byte length prefix.
    pub max_message_bytes: usize,
    /// Client certificates one store HQ may have registered.
    pub max_certs_per_principal: usize,
    /// PIN failures of one terminal (store HQ, DE 41) within
    /// `limits.pin_failure_window_ms` that lock that terminal out for
    /// `limits.lockout_ms`. Above `limits.pin_failures_max`, the HQ-wide
    /// ceiling (which still counts every failure), it acts as that.
    pub pin_failures_per_terminal_max: usize,
    /// Terminals counted in memory at once.
    pub max_terminals_tracked: usize,
}

impl Default for Iso8583 {
    fn default() -> Iso8583 {
        Iso8583 {
            listen: None,
            plain_tcp_store_hq: None,
            max_message_bytes: 2048,
            max_certs_per_principal: 8,
            pin_failures_per_terminal_max: 20,
            max_terminals_tracked: 65_536,
        }
    }
}

/// The center's fee on what it pays each merchant, in basis points.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fees {
    /// For merchants not listed below.
    pub default_bps: u32,
    /// By merchant id (as a string: TOML keys are).
    pub merchant_bps: std::collections::BTreeMap<String, u32>,
}

impl Fees {
    /// The fee rate of `merchant_id` (ids were checked at start).
    pub fn bps_of(&self, merchant_id: u32) -> u32 {
        self.merchant_bps
            .get(&merchant_id.to_string())
            .copied()
            .unwrap_or(self.default_bps)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame (header and body) accepted or sent.
    pub max_frame_bytes: usize,
    /// Authenticated connections served at once; a connection past it is
    /// refused `overloaded` when its handshake completes. The last
    /// `reserved_operator_connections` of them are for operators.
    pub max_connections: usize,
    /// Connections in their handshake at once. The pool never refuses: a
    /// new connection evicts one when it is full (the oldest of the address
    /// holding the most), so a flood of silent connections cannot keep
    /// anyone out.
    pub max_handshakes: usize,
    /// Authenticated connections one principal may hold at once.
    pub max_connections_per_principal: usize,
    /// Serving slots only operators may take, so an operator can always
    /// connect (to revoke a key, say) when the rest are full.
    pub reserved_operator_connections: usize,
    /// Requests one connection may have in flight. The reader stops reading
    /// when it is reached, so a pipelining client cannot queue without bound.
    pub max_inflight_per_connection: usize,
    /// PINs in one payment.
    pub max_cards_per_payment: usize,
    /// Payments in one batch frame (its worst-case reply must also fit in
    /// a frame).
    pub max_payments_per_batch: usize,
    /// PINs in one activation request.
    pub max_activations_per_request: usize,
    /// Cards made by one issue request (the CLI splits larger runs).
    pub max_issue_per_request: usize,
    /// Largest face value a card may be issued with.
    pub max_face_value_minor: u64,
    /// Largest amount of one payment.
    pub max_amount_minor: u64,
    /// How long a two-phase coordinator waits for every shard's vote before
    /// it aborts the payment.
    pub prepare_timeout_ms: u64,
    /// Messages a shard's mailbox holds; requests for a full one are
    /// answered `busy` (a two-phase coordinator's own messages wait, within
    /// `prepare_timeout_ms`).
    pub shard_mailbox_capacity: usize,
    /// PIN failures a principal may make within `pin_failure_window_ms`;
    /// reaching it locks the principal out for `lockout_ms`.
    pub pin_failures_max: usize,
    pub pin_failure_window_ms: u64,
    pub lockout_ms: u64,
    /// A connection must finish its handshake (TLS included) this soon
    /// after it is accepted.
    pub handshake_timeout_ms: u64,
    /// Once a frame has started to arrive, the rest must follow this soon.
    pub frame_timeout_ms: u64,
    /// A connection with nothing in flight that sends nothing this long is
    /// closed.
    pub idle_timeout_ms: u64,
    /// A write to a peer that stops reading must finish this soon, or the
    /// connection is closed.
    pub write_timeout_ms: u64,
    /// Connections from one peer address at once, handshaking or serving.
    pub max_connections_per_peer: usize,
    /// Bytes one connection may have in flight: each request counts its
    /// frame plus the most its reply can take. Past it the engine stops
    /// reading that connection.
    pub max_inflight_bytes_per_connection: usize,
    /// The same, engine-wide; past it requests are answered `busy`.
    pub max_inflight_bytes: usize,
    /// The same, per principal over all its connections: past it the
    /// engine stops reading that principal's connections until its earlier
    /// requests are answered, so one principal cannot take the engine's
    /// whole budget, and others keep theirs.
    pub max_inflight_bytes_per_principal: usize,
    /// Operator requests (issue, report, audit, stats, principals) running
    /// at once, engine-wide, in their own lane; more are answered `busy`.
    pub admin_requests_max: usize,
    /// Lines in one report page.
    pub max_report_lines: usize,
    /// Cards an audit checks per slice: a shard runs no payment during a
    /// slice, so this bounds the pause an audit causes.
    pub audit_slice_cards: usize,
    /// How long after its activation a sale may be reversed (while nothing
    /// was spent from the card).
    pub activation_reversal_window_ms: u64,
    /// How long after a payment it may be refunded.
    pub refund_window_days: u64,
    /// Days a card is valid from its activation (0: cards never expire).
    /// Kept with each card when it is sold, so a change applies to cards
    /// sold afterwards.
    pub card_validity_days: u16,
    /// How often each shard sweeps `audit_slice_cards` of its cards for
    /// expired ones (a card is also expired when a payment touches it).
    pub expiry_sweep_interval_ms: u64,
    /// How long an authorization holds its money unless captured or
    /// voided; then the engine releases it (swept every
    /// `expiry_sweep_interval_ms`).
    pub authorization_ttl_ms: u64,
    /// A payout without an explicit cut-off closes the period up to this
    /// long before now. A business delay only: a payout is exact at any
    /// cut-off, 0 included (every payment and refund lands in exactly one
    /// payout, see `ShardMachine::stamp`).
    pub payout_settle_ms: u64,
}

impl Limits {
    /// The most one frame can weigh in the in-flight budgets: a whole
    /// frame, a whole reply, and the largest batch's operations.
    /// One principal's share of the in-flight bytes: never more than the
    /// engine's whole budget, so lowering that one lowers both.
    pub fn principal_share_bytes(&self) -> usize {
        self.max_inflight_bytes_per_principal
            .min(self.max_inflight_bytes)
    }

    pub fn frame_weight_max(&self) -> usize {
        2 * self.max_frame_bytes + self.max_payments_per_batch.max(1) * OPERATION_BYTES
    }

    pub fn refund_window_ms(&self) -> u64 {
        self.refund_window_days * MS_PER_DAY
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:7878".parse().expect("literal address"),
            metrics_listen: None,
            data_dir: PathBuf::from("data"),
            shards: 4,
            worker_threads: 0,
            pin_secret_hex: None,
            tls_cert: None,
            tls_key: None,
            pin_digits: 16,
            limits: Limits::default(),
            fees: Fees::default(),
            iso8583: Iso8583::default(),
            log: Log::default(),
            http: Http::default(),
        }
    }
}

/// The most an HTTP reply body takes (a payment with its cards, or a
/// problem document).
pub const HTTP_REPLY_BYTES_MAX: usize = 4096;

/// What one HTTP request holds of the in-flight byte budgets at most: its
/// body, its reply, and an operation's overhead.
pub const fn http_weight_max(max_body_bytes: usize) -> usize {
    max_body_bytes + HTTP_REPLY_BYTES_MAX + OPERATION_BYTES
}

/// What one ISO 8583 message holds of the in-flight byte budgets at most:
/// itself, the most its reply can take, and an operation's overhead.
pub fn iso_weight_max(max_message_bytes: usize) -> usize {
    2 * (max_message_bytes + 2) + OPERATION_BYTES
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 256 * 1024,
            max_connections: 1024,
            max_handshakes: 256,
            max_connections_per_principal: 64,
            reserved_operator_connections: 8,
            max_inflight_per_connection: 1024,
            max_cards_per_payment: 10,
            max_payments_per_batch: 2048,
            max_activations_per_request: 4096,
            max_issue_per_request: 10_000,
            max_face_value_minor: 1_000_000,
            max_amount_minor: 10_000_000,
            prepare_timeout_ms: 5_000,
            shard_mailbox_capacity: 1024,
            // A guesser gets 100 tries an hour and ten minutes; README,
            // Security, has the arithmetic.
            pin_failures_max: 100,
            pin_failure_window_ms: 10 * 60 * 1000,
            lockout_ms: 60 * 60 * 1000,
            handshake_timeout_ms: 5_000,
            frame_timeout_ms: 10_000,
            idle_timeout_ms: 5 * 60 * 1000,
            write_timeout_ms: 30_000,
            max_connections_per_peer: 64,
            max_inflight_bytes_per_connection: 4 << 20,
            max_inflight_bytes: 256 << 20,
            max_inflight_bytes_per_principal: 4 << 20,
            admin_requests_max: 4,
            max_report_lines: 1000,
            audit_slice_cards: 20_000,
            activation_reversal_window_ms: 30 * 60 * 1000,
            refund_window_days: 180,
            card_validity_days: 1825,
            expiry_sweep_interval_ms: 1000,
            authorization_ttl_ms: 10 * 60 * 1000,
            payout_settle_ms: 0,
        }
    }
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Reads `path` (all keys optional), applies overrides, validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
                toml::from_str::<Config>(&text)
                    .map_err(|e| format!("bad config {}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(metrics_listen) = overrides.metrics_listen {
            config.metrics_listen = Some(metrics_listen);
        }
        if let Some(data_dir) = &overrides.data_dir {
            config.data_dir = data_dir.clone();
        }
        if let Some(shards) = overrides.shards {
            config.shards = shards;
        }
        if overrides.tls_cert.is_some() {
            config.tls_cert.clone_from(&overrides.tls_cert);
        }
        if overrides.tls_key.is_some() {
            config.tls_key.clone_from(&overrides.tls_key);
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.validate_fees()?;
        self.validate_iso8583()?;
        self.validate_log()?;
        self.validate_http()?;
        let checks = [
            self.connections_checks(),
            self.budgets_checks(),
            self.requests_checks(),
            self.rules_checks(),
        ];
        for (ok, message) in checks.into_iter().flatten() {
            if !ok {
                return Err(message);
            }
        }
        // The largest legal requests must fit in a frame, or the limits
        // contradict each other.
        let limits = &self.limits;
        let issue_reply_bytes =
            limits.max_issue_per_request * (crate::pin::PIN_DIGITS_MAX + 1) + 64;
        if issue_reply_bytes > limits.max_frame_bytes {
            return Err(format!(
                "limits.max_issue_per_request {} does not fit in max_frame_bytes {}",
                limits.max_issue_per_request, limits.max_frame_bytes
            ));
        }
        Ok(())
    }

    /// Connections, frames and time-outs: what one peer may hold.
    fn connections_checks(&self) -> Vec<(bool, String)> {
        let limits = &self.limits;
        let timeout_ok = |ms: u64| (1..=TIMEOUT_MS_MAX).contains(&ms);
        vec![
            (
                (1..=SHARDS_MAX).contains(&self.shards),
                format!("shards must be 1..={SHARDS_MAX}"),
            ),
            (
                (crate::pin::PIN_DIGITS_MIN..=crate::pin::PIN_DIGITS_MAX)
                    .contains(&self.pin_digits),
                "pin_digits must be 10..=16".to_string(),
            ),
            (
                (1024..=FRAME_BYTES_MAX).contains(&limits.max_frame_bytes),
                format!("limits.max_frame_bytes must be 1024..={FRAME_BYTES_MAX}"),
            ),
            (
                (1..=CONNECTIONS_MAX).contains(&limits.max_connections),
                format!("limits.max_connections must be 1..={CONNECTIONS_MAX}"),
            ),
            (
                (1..=CONNECTIONS_MAX).contains(&limits.max_handshakes),
                format!("limits.max_handshakes must be 1..={CONNECTIONS_MAX}"),
            ),
            (
                (1..=limits.max_connections).contains(&limits.max_connections_per_principal),
                "limits.max_connections_per_principal must be 1..=max_connections".into(),
            ),
            (
                limits.reserved_operator_connections < limits.max_connections,
                "limits.reserved_operator_connections must be below max_connections".into(),
            ),
            (
                (1..=1 << 20).contains(&limits.max_inflight_per_connection),
                "limits.max_inflight_per_connection must be 1..=1048576".into(),
            ),
            (
                self.tls_cert.is_some() == self.tls_key.is_some(),
                "tls_cert and tls_key go together".into(),
            ),
            (
                timeout_ok(limits.handshake_timeout_ms)
                    && timeout_ok(limits.frame_timeout_ms)
                    && timeout_ok(limits.write_timeout_ms),
                format!("limits.*_timeout_ms must be 1..={TIMEOUT_MS_MAX}"),
            ),
            (
                (1..=IDLE_TIMEOUT_MS_MAX).contains(&limits.idle_timeout_ms),
                format!("limits.idle_timeout_ms must be 1..={IDLE_TIMEOUT_MS_MAX}"),
            ),
            (
                (1..=CONNECTIONS_MAX).contains(&limits.max_connections_per_peer),
                format!("limits.max_connections_per_peer must be 1..={CONNECTIONS_MAX}"),
            ),
        ]
    }

    /// Memory and queue budgets: in-flight bytes, mailboxes, pages.
    fn budgets_checks(&self) -> Vec<(bool, String)> {
        let limits = &self.limits;
        vec![
            (
                (limits.frame_weight_max()..=INFLIGHT_BYTES_PER_CONNECTION_MAX)
                    .contains(&limits.max_inflight_bytes_per_connection),
                format!(
                    "limits.max_inflight_bytes_per_connection must be {}..={INFLIGHT_BYTES_PER_CONNECTION_MAX}: \
                 at least what the largest frame weighs (2 * max_frame_bytes + \
                 max_payments_per_batch * {OPERATION_BYTES})",
                    limits.frame_weight_max()
                ),
            ),
            (
                (limits.max_inflight_bytes_per_connection..=INFLIGHT_BYTES_MAX)
                    .contains(&limits.max_inflight_bytes),
                format!(
                    "limits.max_inflight_bytes must be max_inflight_bytes_per_connection..={INFLIGHT_BYTES_MAX}"
                ),
            ),
            (
                // Above the engine-wide budget it is that budget (see
                // `Limits::principal_share_bytes`).
                (limits.max_inflight_bytes_per_connection..=INFLIGHT_BYTES_MAX)
                    .contains(&limits.max_inflight_bytes_per_principal),
                format!(
                    "limits.max_inflight_bytes_per_principal must be max_inflight_bytes_per_connection..={INFLIGHT_BYTES_MAX}"
                ),
            ),
            (
                (1..=ADMIN_REQUESTS_MAX).contains(&limits.admin_requests_max),
                format!("limits.admin_requests_max must be 1..={ADMIN_REQUESTS_MAX}"),
            ),
            (
                (1..=report_lines_max(limits.max_frame_bytes)).contains(&limits.max_report_lines),
                format!(
                    "limits.max_report_lines must be 1..={} (a page fits a frame)",
                    report_lines_max(limits.max_frame_bytes)
                ),
            ),
            (
                (1..=AUDIT_SLICE_CARDS_MAX).contains(&limits.audit_slice_cards),
                format!("limits.audit_slice_cards must be 1..={AUDIT_SLICE_CARDS_MAX}"),
            ),
            (
                (1..=SHARD_MAILBOX_MAX).contains(&limits.shard_mailbox_capacity),
                format!("limits.shard_mailbox_capacity must be 1..={SHARD_MAILBOX_MAX}"),
            ),
        ]
    }

    /// What one request may carry: cards, payments, amounts.
    fn requests_checks(&self) -> Vec<(bool, String)> {
        let limits = &self.limits;
        let timeout_ok = |ms: u64| (1..=TIMEOUT_MS_MAX).contains(&ms);
        vec![
            (
                (1..=CARDS_PER_PAYMENT_MAX).contains(&limits.max_cards_per_payment),
                format!("limits.max_cards_per_payment must be 1..={CARDS_PER_PAYMENT_MAX}"),
            ),
            (
                (1..=PAYMENTS_PER_BATCH_MAX).contains(&limits.max_payments_per_batch),
                format!("limits.max_payments_per_batch must be 1..={PAYMENTS_PER_BATCH_MAX}"),
            ),
            (
                limits.max_activations_per_request >= 1,
                "limits.max_activations_per_request must be at least 1".into(),
            ),
            (
                limits.max_issue_per_request >= 1,
                "limits.max_issue_per_request must be at least 1".into(),
            ),
            (
                (1..=FACE_VALUE_MINOR_CEILING).contains(&limits.max_face_value_minor),
                format!("limits.max_face_value_minor must be 1..={FACE_VALUE_MINOR_CEILING}"),
            ),
            (
                (1..=AMOUNT_MINOR_CEILING).contains(&limits.max_amount_minor),
                format!("limits.max_amount_minor must be 1..={AMOUNT_MINOR_CEILING}"),
            ),
            (
                timeout_ok(limits.prepare_timeout_ms),
                format!("limits.prepare_timeout_ms must be 1..={TIMEOUT_MS_MAX}"),
            ),
        ]
    }

    /// The card and settlement rules' windows, and the PIN guard.
    fn rules_checks(&self) -> Vec<(bool, String)> {
        let limits = &self.limits;
        vec![
            (
                (1..=PIN_FAILURES_MAX).contains(&limits.pin_failures_max),
                format!("limits.pin_failures_max must be 1..={PIN_FAILURES_MAX}"),
            ),
            (
                (1..=PIN_FAILURE_WINDOW_MS_MAX).contains(&limits.pin_failure_window_ms),
                format!("limits.pin_failure_window_ms must be 1..={PIN_FAILURE_WINDOW_MS_MAX}"),
            ),
            (
                (1..=LOCKOUT_MS_MAX).contains(&limits.lockout_ms),
                format!("limits.lockout_ms must be 1..={LOCKOUT_MS_MAX}"),
            ),
            (
                limits.activation_reversal_window_ms <= ACTIVATION_REVERSAL_WINDOW_MS_MAX,
                format!(
                    "limits.activation_reversal_window_ms must be 0..={ACTIVATION_REVERSAL_WINDOW_MS_MAX}"
                ),
            ),
            (
                limits.payout_settle_ms <= PAYOUT_SETTLE_MS_MAX,
                format!("limits.payout_settle_ms must be 0..={PAYOUT_SETTLE_MS_MAX}"),
            ),
            (
                (1..=AUTHORIZATION_TTL_MS_MAX).contains(&limits.authorization_ttl_ms),
                format!("limits.authorization_ttl_ms must be 1..={AUTHORIZATION_TTL_MS_MAX}"),
            ),
            (
                limits.card_validity_days <= CARD_VALIDITY_DAYS_MAX,
                format!("limits.card_validity_days must be 0..={CARD_VALIDITY_DAYS_MAX}"),
            ),
            (
                (1..=EXPIRY_SWEEP_INTERVAL_MS_MAX).contains(&limits.expiry_sweep_interval_ms),
                format!(
                    "limits.expiry_sweep_interval_ms must be 1..={EXPIRY_SWEEP_INTERVAL_MS_MAX}"
                ),
            ),
            (
                limits.refund_window_days <= REFUND_WINDOW_DAYS_MAX,
                format!("limits.refund_window_days must be 0..={REFUND_WINDOW_DAYS_MAX}"),
            ),
        ]
    }

    fn validate_log(&self) -> Result<(), String> {
        let log = &self.log;
        if !(LOG_SEGMENT_BYTES_MIN..=LOG_SEGMENT_BYTES_MAX).contains(&log.segment_bytes) {
            return Err(format!(
                "log.segment_bytes must be {LOG_SEGMENT_BYTES_MIN}..={LOG_SEGMENT_BYTES_MAX}"
            ));
        }
        if !(1..=LOG_CHECKPOINT_INTERVAL_MS_MAX).contains(&log.checkpoint_interval_ms) {
            return Err(format!(
                "log.checkpoint_interval_ms must be 1..={LOG_CHECKPOINT_INTERVAL_MS_MAX}"
            ));
        }
        self.validate_jetstream()
    }

    fn validate_jetstream(&self) -> Result<(), String> {
        let js = &self.log.jetstream;
        let name_ok = !js.stream.is_empty()
            && js.stream.len() <= LOG_JETSTREAM_STREAM_NAME_MAX
            && js
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let checks = [
            (
                !js.url.trim().is_empty(),
                "log.jetstream.url must name a NATS server".to_string(),
            ),
            (
                name_ok,
                format!(
                    "log.jetstream.stream must be 1..={LOG_JETSTREAM_STREAM_NAME_MAX} of A-Z a-z 0-9 _ -"
                ),
            ),
            (
                (1..=LOG_JETSTREAM_REPLICAS_MAX).contains(&js.replicas),
                format!("log.jetstream.replicas must be 1..={LOG_JETSTREAM_REPLICAS_MAX}"),
            ),
            (
                (1..=LOG_JETSTREAM_TIMEOUT_MS_MAX).contains(&js.ack_timeout_ms),
                format!("log.jetstream.ack_timeout_ms must be 1..={LOG_JETSTREAM_TIMEOUT_MS_MAX}"),
            ),
            (
                (1..=LOG_JETSTREAM_TIMEOUT_MS_MAX).contains(&js.connect_timeout_ms),
                format!(
                    "log.jetstream.connect_timeout_ms must be 1..={LOG_JETSTREAM_TIMEOUT_MS_MAX}"
                ),
            ),
            (
                (LOG_RECORD_BYTES_MIN..=LOG_RECORD_BYTES_MAX).contains(&js.max_record_bytes),
                format!(
                    "log.jetstream.max_record_bytes must be {LOG_RECORD_BYTES_MIN}..={LOG_RECORD_BYTES_MAX}"
                ),
            ),
            (
                (1..=LOG_JETSTREAM_INFLIGHT_MAX).contains(&js.max_inflight_appends),
                format!(
                    "log.jetstream.max_inflight_appends must be 1..={LOG_JETSTREAM_INFLIGHT_MAX}"
                ),
            ),
        ];
        for (ok, message) in checks {
            if !ok {
                return Err(message);
            }
        }
        Ok(())
    }

    fn validate_iso8583(&self) -> Result<(), String> {
        let iso = &self.iso8583;
        if !(ISO_MESSAGE_BYTES_MIN..=ISO_MESSAGE_BYTES_MAX).contains(&iso.max_message_bytes) {
            return Err(format!(
                "iso8583.max_message_bytes must be {ISO_MESSAGE_BYTES_MIN}..={ISO_MESSAGE_BYTES_MAX}"
            ));
        }
        if !(1..=ISO_CERTS_PER_PRINCIPAL_MAX).contains(&iso.max_certs_per_principal) {
            return Err(format!(
                "iso8583.max_certs_per_principal must be 1..={ISO_CERTS_PER_PRINCIPAL_MAX}"
            ));
        }
        if !(1..=PIN_FAILURES_MAX).contains(&iso.pin_failures_per_terminal_max) {
            return Err(format!(
                "iso8583.pin_failures_per_terminal_max must be 1..={PIN_FAILURES_MAX}"
            ));
        }
        if !(1..=ISO_TERMINALS_TRACKED_MAX).contains(&iso.max_terminals_tracked) {
            return Err(format!(
                "iso8583.max_terminals_tracked must be 1..={ISO_TERMINALS_TRACKED_MAX}"
            ));
        }
        // One message of the largest size must fit every budget it draws
        // on, or admitting it would wait forever.
        let weight = iso_weight_max(iso.max_message_bytes);
        let limits = &self.limits;
        if weight > limits.max_inflight_bytes_per_connection
            || weight > limits.max_inflight_bytes_per_principal
        {
            return Err(format!(
                "iso8583.max_message_bytes {} weighs {weight} bytes in flight, more than \
                 limits.max_inflight_bytes_per_connection or _per_principal",
                iso.max_message_bytes
            ));
        }
        match (iso.listen, iso.plain_tcp_store_hq) {
            (Some(listen), Some(_)) if !listen.ip().is_loopback() => Err(
                "iso8583.plain_tcp_store_hq is a test mode: iso8583.listen must be a loopback address"
                    .to_string(),
            ),
            (Some(_), None) if self.tls_cert.is_none() || self.tls_key.is_none() => Err(
                "iso8583.listen needs TLS (tls_cert and tls_key), or plain_tcp_store_hq for tests"
                    .to_string(),
            ),
            _ => Ok(()),
        }
    }

    fn validate_http(&self) -> Result<(), String> {
        let http = &self.http;
        if !(HTTP_BODY_BYTES_MIN..=HTTP_BODY_BYTES_MAX).contains(&http.max_body_bytes) {
            return Err(format!(
                "http.max_body_bytes must be {HTTP_BODY_BYTES_MIN}..={HTTP_BODY_BYTES_MAX}"
            ));
        }
        if !(1..=HTTP_TOKENS_PER_PRINCIPAL_MAX).contains(&http.max_tokens_per_principal) {
            return Err(format!(
                "http.max_tokens_per_principal must be 1..={HTTP_TOKENS_PER_PRINCIPAL_MAX}"
            ));
        }
        if http.workers > HTTP_WORKERS_MAX {
            return Err(format!("http.workers must be 0..={HTTP_WORKERS_MAX}"));
        }
        let currency = http.currency.as_bytes();
        if currency.len() != 3 || !currency.iter().all(u8::is_ascii_uppercase) {
            return Err("http.currency is three capital letters (ISO 4217)".to_string());
        }
        // With the API on, a request's body and reply must fit a
        // principal's share, or admitting it would wait forever.
        let weight = http_weight_max(http.max_body_bytes);
        if http.listen.is_some() && weight > self.limits.max_inflight_bytes_per_principal {
            return Err(format!(
                "http.max_body_bytes {} weighs {weight} bytes in flight, more than \
                 limits.max_inflight_bytes_per_principal",
                http.max_body_bytes
            ));
        }
        match http.listen {
            Some(listen)
                if !listen.ip().is_loopback()
                    && !http.insecure_plain_http
                    && (self.tls_cert.is_none() || self.tls_key.is_none()) =>
            {
                Err(
                    "http.listen beyond loopback needs TLS (tls_cert and tls_key), or \
                     insecure_plain_http for tests"
                        .to_string(),
                )
            }
            _ => Ok(()),
        }
    }

    fn validate_fees(&self) -> Result<(), String> {
        if self.fees.default_bps > FEE_BPS_MAX {
            return Err(format!("fees.default_bps must be 0..={FEE_BPS_MAX}"));
        }
        for (merchant, &bps) in &self.fees.merchant_bps {
            if merchant.parse::<u32>().is_err() {
                return Err(format!(
                    "fees.merchant_bps: {merchant:?} is not a merchant id"
                ));
            }
            if bps > FEE_BPS_MAX {
                return Err(format!(
                    "fees.merchant_bps.{merchant} must be 0..={FEE_BPS_MAX}"
                ));
            }
        }
        Ok(())
    }

    /// Threads of the HTTP server.
    pub fn http_worker_count(&self) -> usize {
        match self.http.workers {
            0 => self.worker_count().min(HTTP_WORKERS_MAX),
            workers => workers,
        }
    }

    pub fn worker_count(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_settings_have_floors_and_ceilings() {
        let with = |change: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate()
        };
        for bytes in [LOG_SEGMENT_BYTES_MIN - 1, LOG_SEGMENT_BYTES_MAX + 1] {
            assert!(with(&|c| c.log.segment_bytes = bytes).is_err());
        }
        for ms in [0, LOG_CHECKPOINT_INTERVAL_MS_MAX + 1] {
            assert!(with(&|c| c.log.checkpoint_interval_ms = ms).is_err());
        }
        assert_eq!(
            with(&|c| {
                c.log.segment_bytes = LOG_SEGMENT_BYTES_MIN;
                c.log.checkpoint_interval_ms = LOG_CHECKPOINT_INTERVAL_MS_MAX;
            }),
            Ok(())
        );
    }

    #[test]
    fn the_jetstream_settings_have_floors_and_ceilings() {
        let with = |change: &dyn Fn(&mut LogJetStream)| {
            let mut config = Config::default();
            config.log.backend = LogBackend::Jetstream;
            change(&mut config.log.jetstream);
            config.validate()
        };
        assert_eq!(with(&|_| {}), Ok(()));
        for replicas in [0, LOG_JETSTREAM_REPLICAS_MAX + 1] {
            assert!(with(&|j| j.replicas = replicas).is_err());
        }
        for ms in [0, LOG_JETSTREAM_TIMEOUT_MS_MAX + 1] {
            assert!(with(&|j| j.ack_timeout_ms = ms).is_err());
            assert!(with(&|j| j.connect_timeout_ms = ms).is_err());
        }
        for bytes in [LOG_RECORD_BYTES_MIN - 1, LOG_RECORD_BYTES_MAX + 1] {
            assert!(with(&|j| j.max_record_bytes = bytes).is_err());
        }
        for inflight in [0, LOG_JETSTREAM_INFLIGHT_MAX + 1] {
            assert!(with(&|j| j.max_inflight_appends = inflight).is_err());
        }
        for name in [
            "",
            "a.b",
            "a b",
            "a>",
            &"x".repeat(LOG_JETSTREAM_STREAM_NAME_MAX + 1),
        ] {
            assert!(with(&|j| j.stream = name.to_string()).is_err(), "{name:?}");
        }
        assert!(with(&|j| j.url = " ".to_string()).is_err());
        let parsed: Config =
            toml::from_str("[log]\nbackend = \"jetstream\"\n[log.jetstream]\nreplicas = 3\n")
                .expect("parses");
        assert_eq!(parsed.log.backend, LogBackend::Jetstream);
        assert_eq!(parsed.log.jetstream.replicas, 3);
        assert!(toml::from_str::<Config>("[log]\nbackend = \"kafka\"\n").is_err());
    }

    #[test]
    fn the_iso8583_limits_have_ceilings_and_fit_the_budgets() {
        let with = |change: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate()
        };
        assert_eq!(with(&|_| {}), Ok(()), "off by default");
        for bytes in [ISO_MESSAGE_BYTES_MIN - 1, ISO_MESSAGE_BYTES_MAX + 1] {
            assert!(with(&|c| c.iso8583.max_message_bytes = bytes).is_err());
        }
        assert_eq!(
            with(&|c| c.iso8583.max_message_bytes = ISO_MESSAGE_BYTES_MAX),
            Ok(())
        );
        for terminals in [0, ISO_TERMINALS_TRACKED_MAX + 1] {
            assert!(with(&|c| c.iso8583.max_terminals_tracked = terminals).is_err());
        }
        for terminal in [0, PIN_FAILURES_MAX + 1] {
            assert!(with(&|c| c.iso8583.pin_failures_per_terminal_max = terminal).is_err());
        }
        // A low HQ-wide ceiling is no error: the terminal's acts as it.
        assert_eq!(with(&|c| c.limits.pin_failures_max = 3), Ok(()));
        for certs in [0, ISO_CERTS_PER_PRINCIPAL_MAX + 1] {
            assert!(with(&|c| c.iso8583.max_certs_per_principal = certs).is_err());
        }
        // The largest message must fit a principal's share.
        let too_big = with(&|c| {
            c.iso8583.max_message_bytes = ISO_MESSAGE_BYTES_MAX;
            c.limits.max_inflight_bytes_per_principal = iso_weight_max(ISO_MESSAGE_BYTES_MAX) - 1;
        });
        assert!(
            too_big
                .expect_err("refused")
                .contains("iso8583.max_message_bytes")
        );
        // Plain TCP on loopback only; TLS otherwise.
        let loopback = "127.0.0.1:0".parse().ok();
        assert!(with(&|c| c.iso8583.listen = loopback).is_err(), "no TLS");
        assert_eq!(
            with(&|c| {
                c.iso8583.listen = loopback;
                c.iso8583.plain_tcp_store_hq = Some(7);
            }),
            Ok(())
        );
        assert!(
            with(&|c| {
                c.iso8583.listen = "0.0.0.0:0".parse().ok();
                c.iso8583.plain_tcp_store_hq = Some(7);
            })
            .is_err()
        );
    }

    #[test]
    fn the_http_limits_have_ceilings_and_plain_http_stays_on_loopback() {
        let with = |change: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate()
        };
        for bytes in [HTTP_BODY_BYTES_MIN - 1, HTTP_BODY_BYTES_MAX + 1] {
            assert!(with(&|c| c.http.max_body_bytes = bytes).is_err());
        }
        for tokens in [0, HTTP_TOKENS_PER_PRINCIPAL_MAX + 1] {
            assert!(with(&|c| c.http.max_tokens_per_principal = tokens).is_err());
        }
        assert!(with(&|c| c.http.workers = HTTP_WORKERS_MAX + 1).is_err());
        assert_eq!(with(&|c| c.http.workers = 0), Ok(()), "as the engine's");
        for currency in ["yen", "JP", "JPYY", ""] {
            assert!(with(&|c| c.http.currency = currency.to_string()).is_err());
        }
        // A share too small for the largest body (with budgets and frames
        // cut down so that the share itself is legal).
        let small_share = |c: &mut Config| {
            let limits = &mut c.limits;
            limits.max_frame_bytes = 64 * 1024;
            limits.max_payments_per_batch = 64;
            limits.max_activations_per_request = 1000;
            limits.max_issue_per_request = 1000;
            limits.max_inflight_bytes_per_connection = 256 * 1024;
            c.http.max_body_bytes = HTTP_BODY_BYTES_MAX;
            c.limits.max_inflight_bytes_per_principal = http_weight_max(HTTP_BODY_BYTES_MAX) - 1;
        };
        assert_eq!(with(&|c| small_share(c)), Ok(()), "the API is off");
        let too_big = with(&|c| {
            small_share(c);
            c.http.listen = "127.0.0.1:0".parse().ok();
        });
        assert!(
            too_big
                .expect_err("refused")
                .contains("http.max_body_bytes")
        );
        let anywhere = "0.0.0.0:0".parse().ok();
        assert_eq!(
            with(&|c| c.http.listen = "127.0.0.1:0".parse().ok()),
            Ok(())
        );
        assert!(with(&|c| c.http.listen = anywhere).is_err(), "no TLS");
        assert_eq!(
            with(&|c| {
                c.http.listen = anywhere;
                c.http.insecure_plain_http = true;
            }),
            Ok(())
        );
    }

    /// A page of the most report lines, each as large as a line can be,
    /// with the largest totals, fits the smallest and the default frame.
    #[test]
    fn a_full_report_page_of_the_largest_lines_fits_a_frame() {
        use crate::protocol::{
            MerchantLine, ReportAccount, ReportResponse, Response, StoreLine, Totals,
        };
        for max_frame_bytes in [1024, 256 * 1024] {
            let lines = report_lines_max(max_frame_bytes);
            let store = StoreLine {
                store_id: u32::MAX,
                cards_activated: u64::MAX,
                owed_minor: u64::MAX,
                reversed_minor: u64::MAX,
                remitted_minor: u64::MAX,
            };
            let merchant = MerchantLine {
                merchant_id: u32::MAX,
                owed_minor: u64::MAX,
                refunded_minor: u64::MAX,
                paid_out_minor: u64::MAX,
                fees_minor: u64::MAX,
            };
            let totals = Totals {
                cards: u64::MAX,
                cards_issued: u64::MAX,
                cards_active: u64::MAX,
                cards_exhausted: u64::MAX,
                cards_reversed: u64::MAX,
                cards_expired: u64::MAX,
                activated_minor: u64::MAX,
                balance_minor: u64::MAX,
                held_minor: u64::MAX,
                store_owed_minor: u64::MAX,
                store_reversed_minor: u64::MAX,
                store_remitted_minor: u64::MAX,
                merchant_owed_minor: u64::MAX,
                merchant_refunded_minor: u64::MAX,
                merchant_paid_out_minor: u64::MAX,
                fees_minor: u64::MAX,
                breakage_minor: u64::MAX,
            };
            let page = Response::Report(ReportResponse {
                stores: vec![store; lines - 1],
                merchants: vec![merchant],
                totals,
                next: Some(ReportAccount::Store(u32::MAX)),
            });
            let mut out = Vec::new();
            page.encode(&mut out, u64::MAX, max_frame_bytes)
                .expect("a page of max_report_lines fits its frame");
        }
    }

    #[test]
    fn the_shipped_config_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kessai.toml");
        let config = Config::load(Some(&path), &Overrides::default()).expect("valid");
        assert_eq!(config.limits.max_cards_per_payment, 10);
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9187".parse().expect("addr"))
        );
    }

    #[test]
    fn overrides_win_and_bad_values_are_refused() {
        let overrides = Overrides {
            shards: Some(3),
            ..Overrides::default()
        };
        assert_eq!(Config::load(None, &overrides).expect("ok").shards, 3);
        let zero = Overrides {
            shards: Some(0),
            ..Overrides::default()
        };
        assert!(Config::load(None, &zero).is_err());
        let mut config = Config::default();
        config.limits.max_issue_per_request = 1_000_000;
        assert!(config.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_errors_not_silently_ignored() {
        assert!(toml::from_str::<Config>("shard = 4").is_err());
    }
}
