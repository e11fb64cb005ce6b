//! Putting the engine together: storage, load, shards, router, gateway.
//!
//! Thread layout: the actix system arbiter runs the accept loop. `worker`
//! arbiters, one per core by default, run the shard actors and the client
//! connections, round-robin; a connection routes its own requests and runs
//! the two-phase coordinators and gathers it starts. Each shard has its own
//! writer thread that spends its life in `fsync`.

use crate::auth::{Certs, Guard, Key, Registry, Tokens};
use crate::command_log::replay::{self, Checkpoints};
use crate::command_log::{CommandLog, FileLog, JetStreamLog, record};
use crate::config::{Config, LogBackend};
use crate::gateway::connection::{Gate, GatewayContext};
use crate::gateway::{self, server};
use crate::idempotency::{Claims, Watermarks};
use crate::iso8583;
use crate::load;
use crate::operation::Coordinator;
use crate::pin::{PinHasher, SECRET_BYTES};
use crate::protocol::Role;
use crate::router::{AdminLane, Router};
use crate::shard::{Services, Shards};
use crate::storage::Storage;
use crate::twopc::crashpoint;
use actix::prelude::*;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A started engine (inside an actix system).
pub(crate) struct Running {
    pub addr: SocketAddr,
    /// Where the ISO 8583 listener listens, when it is on.
    pub iso_addr: Option<SocketAddr>,
    /// Where the HTTP API listens, when it is on.
    pub http_addr: Option<SocketAddr>,
    /// Where the first operator's key was written, if the file is there.
    pub operator_key: Option<PathBuf>,
    storage: Arc<Storage>,
    workers: Vec<Arbiter>,
    /// Dropped with the engine: the checkpoint thread then stops.
    _checkpoints: crossbeam_channel::Sender<()>,
}

/// The command log's directory, under the data dir.
pub const LOG_DIR: &str = "log";

/// File in the data dir holding the first operator's key, written once.
pub const OPERATOR_KEY_FILE: &str = "operator.key";

/// Starts everything; must be called inside an actix `System`. The steps
/// follow the data flow backwards: storage and the log, the shards on
/// them, the router over the shards, the listeners in front.
pub(crate) async fn start(config: &Config) -> Result<Running, String> {
    config.validate()?;
    crashpoint::arm_from_env()?;
    let offset_ms = crate::clock::offset_from_env()?;
    if offset_ms > 0 {
        tracing::warn!(offset_ms, "the engine's clock runs ahead of the system's");
    }
    let secret = load_or_create_secret(config)?;
    let hasher = PinHasher::new(&secret);
    let storage = Arc::new(Storage::open(&config.data_dir).map_err(|e| e.to_string())?);
    let log = open_log(config, &storage)?;
    let (machines, loaded) =
        load::load(storage.as_ref(), &hasher, config.shards).map_err(|e| e.to_string())?;
    tracing::info!(
        cards = loaded.cards,
        shards = config.shards,
        book_rows = loaded.book_rows,
        recovered = ?loaded.recovered,
        "loaded"
    );
    let principals = Principals::load(config, &storage)?;
    let tls = gateway_tls(config)?;
    let checkpoints = Arc::new(Checkpoints::new(config.shards));
    let checkpoint_thread = start_checkpoints(
        storage.clone(),
        log.clone(),
        checkpoints.clone(),
        Duration::from_millis(config.log.checkpoint_interval_ms),
    );
    let services = services(config, &storage, log, checkpoints)?;
    let workers: Vec<Arbiter> = (0..config.worker_count()).map(|_| Arbiter::new()).collect();
    let handles: Vec<_> = workers.iter().map(|w| w.handle()).collect();
    let shards = Arc::new(Shards::start(
        machines,
        &services,
        &handles,
        config.limits.shard_mailbox_capacity,
    ));
    let router = start_router(config, shards, &services, &principals, &hasher)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let context = gateway_context(config, router, &services, &principals, hasher, &storage);
    let iso_addr = start_iso8583(config, &context, principals.certs, handles.clone()).await?;
    let http_addr = crate::http::start(config, &context, principals.tokens)?;
    actix_rt::spawn(server::accept_loop(listener, context, tls, handles));
    Ok(Running {
        addr,
        iso_addr,
        http_addr,
        operator_key: principals.operator_key,
        storage,
        workers,
        _checkpoints: checkpoint_thread,
    })
}

/// Who may connect: principals and roles, store HQs' certificates, HTTP
/// tokens, and the first operator's key (written at first start).
struct Principals {
    registry: Arc<Registry>,
    certs: Arc<Certs>,
    tokens: Arc<Tokens>,
    operator_key: Option<PathBuf>,
}

impl Principals {
    fn load(config: &Config, storage: &Arc<Storage>) -> Result<Principals, String> {
        let registry = Arc::new(Registry::load(storage.clone()).map_err(|e| e.to_string())?);
        let certs = Arc::new(
            Certs::load(storage.clone(), config.iso8583.max_certs_per_principal)
                .map_err(|e| e.to_string())?,
        );
        let tokens = Arc::new(
            Tokens::load(storage.clone(), config.http.max_tokens_per_principal)
                .map_err(|e| e.to_string())?,
        );
        let operator_key = bootstrap_operator(&registry, &config.data_dir)?;
        Ok(Principals {
            registry,
            certs,
            tokens,
            operator_key,
        })
    }
}

/// The binary port's TLS, if configured; a loud warning when it is off on
/// an address other machines can reach.
fn gateway_tls(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(gateway::tls::acceptor(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "TLS is off on a non-loopback address: keys prove who connects, but \
             PINs and amounts cross the network in clear; set tls_cert and tls_key"
        );
    }
    Ok(tls)
}

/// What every shard shares: storage, the log, the claims, the guard (as
/// the last run left it), and the card rules' settings.
fn services(
    config: &Config,
    storage: &Arc<Storage>,
    log: Arc<dyn CommandLog>,
    checkpoints: Arc<Checkpoints>,
) -> Result<Services, String> {
    let guard = Guard::load(&config.limits, storage.as_ref(), crate::clock::now_ms())
        .map_err(|e| e.to_string())?;
    Ok(Services {
        storage: storage.clone(),
        log,
        checkpoints,
        claims: Arc::new(Claims::new()),
        watermarks: Arc::new(Watermarks::load(storage.as_ref()).map_err(|e| e.to_string())?),
        guard: Arc::new(guard),
        reversal_window_ms: config.limits.activation_reversal_window_ms,
        card_validity_days: config.limits.card_validity_days,
        expiry_sweep: Duration::from_millis(config.limits.expiry_sweep_interval_ms),
        expiry_sweep_cards: config.limits.audit_slice_cards,
        group_commit_bytes_max: group_commit_bytes_max(config),
    })
}

/// The router over the shards, with its two-phase coordinator (open
/// authorizations loaded, their releases scheduled).
fn start_router(
    config: &Config,
    shards: Arc<Shards>,
    services: &Services,
    principals: &Principals,
    hasher: &PinHasher,
) -> Result<Arc<Router>, String> {
    let storage = &services.storage;
    let coordinator = Arc::new(Coordinator::new(
        shards.clone(),
        services,
        Duration::from_millis(config.limits.prepare_timeout_ms),
        config.limits.refund_window_ms(),
        config.limits.authorization_ttl_ms,
    ));
    let open = coordinator
        .load_open_authorizations()
        .map_err(|e| e.to_string())?;
    tracing::info!(open_authorizations = open, "authorizations loaded");
    actix_rt::spawn(release_authorizations(
        coordinator.clone(),
        Duration::from_millis(config.limits.expiry_sweep_interval_ms),
    ));
    Ok(Arc::new(Router {
        shards,
        coordinator,
        registry: principals.registry.clone(),
        certs: principals.certs.clone(),
        storage: storage.clone(),
        remittances: crate::router::Remittances {
            claims: Claims::new(),
            hq_claims: Claims::new(),
        },
        payouts: crate::router::Payouts {
            claims: Claims::new(),
            merchant_claims: Claims::new(),
            fees: config.fees.clone(),
            settle_ms: config.limits.payout_settle_ms,
        },
        admin: AdminLane::start(config.limits.admin_requests_max),
        hasher: hasher.clone(),
        pin_digits: config.pin_digits,
        audit_slice_cards: config.limits.audit_slice_cards,
    }))
}

/// What every listener shares: the router, the in-flight byte budget
/// (given back to the system after bursts), the connection slots, and
/// the gate (principals, guard, PIN hasher, limits).
fn gateway_context(
    config: &Config,
    router: Arc<Router>,
    services: &Services,
    principals: &Principals,
    hasher: PinHasher,
    storage: &Arc<Storage>,
) -> Arc<GatewayContext> {
    let inflight_bytes = Arc::new(tokio::sync::Semaphore::new(
        config.limits.max_inflight_bytes,
    ));
    let slots = gateway::slots::Slots::new(&config.limits);
    actix_rt::spawn(gateway::memory::give_back(
        inflight_bytes.clone(),
        config.limits.max_inflight_bytes,
        slots.clone(),
    ));
    Arc::new(GatewayContext {
        router,
        inflight_bytes,
        slots,
        gate: Gate {
            registry: principals.registry.clone(),
            guard: services.guard.clone(),
            hasher,
            limits: config.limits.clone(),
            storage: Some(storage.clone()),
            tokens: Some(principals.tokens.clone()),
        },
    })
}

/// Where a shard cuts a group commit gathered while its writer is busy:
/// at half the largest record the log takes, so the one message that
/// crosses the mark still fits.
fn group_commit_bytes_max(config: &Config) -> usize {
    match config.log.backend {
        LogBackend::File => record::PAYLOAD_BYTES_MAX / 2,
        LogBackend::Jetstream => config.log.jetstream.max_record_bytes / 2,
    }
}

/// An upper estimate of the changes one message to a shard can carry:
/// a whole batch frame of payments (each a card, a payment record, its
/// claim, an order id) or a whole issue request (a card each).
const PAYMENT_CHANGES_BYTES_EST: usize = 640;
const CARD_CHANGES_BYTES_EST: usize = 128;

/// Opens the command log, checks it belongs with the database, and brings
/// the database up to its end (then the log starts empty).
fn open_log(config: &Config, storage: &Arc<Storage>) -> Result<Arc<dyn CommandLog>, String> {
    match config.log.backend {
        LogBackend::File => open_file_log(config, storage),
        LogBackend::Jetstream => {
            // The JetStream log blocks on a runtime of its own, which may
            // not be entered from this one (the actix system's): open and
            // recover on a plain thread.
            let (config, storage) = (config.clone(), storage.clone());
            std::thread::Builder::new()
                .name("kessai-log-open".into())
                .spawn(move || open_jetstream_log(&config, &storage))
                .map_err(|e| format!("spawn the log's opening thread: {e}"))?
                .join()
                .map_err(|_| "the log's opening thread panicked".to_string())?
        }
    }
}

fn open_jetstream_log(config: &Config, storage: &Storage) -> Result<Arc<dyn CommandLog>, String> {
    let settings = &config.log.jetstream;
    let limits = &config.limits;
    let one_message = (limits.max_payments_per_batch * PAYMENT_CHANGES_BYTES_EST)
        .max(limits.max_issue_per_request * CARD_CHANGES_BYTES_EST);
    if one_message > settings.max_record_bytes / 2 {
        tracing::warn!(
            one_message,
            max_record_bytes = settings.max_record_bytes,
            "one request's changes may reach half of log.jetstream.max_record_bytes: a group \
             commit of it alone could exceed it, and the engine would stop (TooLarge); lower \
             limits.max_payments_per_batch / max_issue_per_request or raise max_record_bytes"
        );
    }
    let (log, opened) = JetStreamLog::open(settings).map_err(|e| e.to_string())?;
    replay::check_not_behind(storage, opened.next).map_err(|e| e.to_string())?;
    let replayed = replay::recover(storage, &log).map_err(|e| e.to_string())?;
    tracing::info!(
        url = %settings.url,
        stream = %settings.stream,
        messages = opened.messages,
        bytes = opened.bytes,
        partitions = opened.partitions,
        replayed = ?replayed,
        "command log recovered from jetstream"
    );
    Ok(Arc::new(log))
}

fn open_file_log(config: &Config, storage: &Storage) -> Result<Arc<dyn CommandLog>, String> {
    let dir = config.data_dir.join(LOG_DIR);
    let (log, scan) = FileLog::open(&dir, config.log.segment_bytes).map_err(|e| e.to_string())?;
    replay::check_not_behind(storage, log.next_position()).map_err(|e| e.to_string())?;
    let replayed = replay::recover(storage, &log).map_err(|e| e.to_string())?;
    tracing::info!(
        segments = scan.segments,
        records = scan.records,
        bytes = scan.bytes,
        torn_tails = scan.torn_tails,
        replayed = ?replayed,
        head = %hex::encode(scan.head),
        "command log recovered"
    );
    Ok(Arc::new(log))
}

/// Takes a checkpoint every `every` until the returned sender drops.
fn start_checkpoints(
    storage: Arc<Storage>,
    log: Arc<dyn CommandLog>,
    checkpoints: Arc<Checkpoints>,
    every: Duration,
) -> crossbeam_channel::Sender<()> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    std::thread::Builder::new()
        .name("kessai-checkpoint".into())
        .spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(every)
            {
                if let Err(error) = checkpoints.take(storage.as_ref(), log.as_ref()) {
                    // Nothing is lost: the log keeps every record until a
                    // checkpoint covers it.
                    tracing::error!(%error, "checkpoint failed; the log keeps growing until one succeeds");
                }
            }
        })
        .expect("spawn the checkpoint thread");
    stop
}

/// Starts the ISO 8583 listener if `[iso8583] listen` is set: mutual TLS,
/// or plain TCP on loopback for tests. Its connections share the
/// gateway's context: slots, budgets, guard, router.
async fn start_iso8583(
    config: &Config,
    context: &Arc<GatewayContext>,
    certs: Arc<Certs>,
    workers: Vec<actix_rt::ArbiterHandle>,
) -> Result<Option<SocketAddr>, String> {
    let iso = &config.iso8583;
    let Some(listen) = iso.listen else {
        return Ok(None);
    };
    let mode = match (iso.plain_tcp_store_hq, &config.tls_cert, &config.tls_key) {
        (Some(store_hq), _, _) => {
            tracing::warn!(
                %listen,
                store_hq,
                "ISO 8583 PLAIN-TCP TEST MODE IS ON: no TLS, and every connection to this \
                 loopback port acts as store HQ {store_hq}; never run this in production"
            );
            iso8583::server::Mode::Plain { store_hq }
        }
        (None, Some(cert), Some(key)) => iso8583::server::Mode::Tls {
            acceptor: iso8583::tls::acceptor(cert, key, certs.clone())?,
            certs,
        },
        (None, _, _) => return Err("iso8583.listen needs tls_cert and tls_key".into()),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (iso8583): {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("iso8583 listener address: {e}"))?;
    let limits = &config.limits;
    let context = Arc::new(iso8583::connection::IsoContext {
        gateway: context.clone(),
        max_message_bytes: iso.max_message_bytes,
        terminals: iso8583::terminals::Terminals::new(
            // Never above the HQ-wide ceiling, which locks first anyway.
            iso.pin_failures_per_terminal_max
                .min(limits.pin_failures_max),
            limits.pin_failure_window_ms,
            limits.lockout_ms,
            iso.max_terminals_tracked,
        ),
    });
    actix_rt::spawn(iso8583::server::accept_loop(
        listener,
        context,
        Arc::new(mode),
        workers,
    ));
    Ok(Some(addr))
}

/// Releases authorizations past their deadline, a batch every `every`,
/// for as long as the engine runs (an authorization that expired while
/// the engine was down goes in the first round).
async fn release_authorizations(coordinator: Arc<Coordinator>, every: Duration) {
    const PER_ROUND: usize = 1024;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match coordinator
            .release_due(crate::clock::now_ms(), PER_ROUND)
            .await
        {
            Ok(0) => {}
            Ok(released) => crate::telemetry::authorizations_released(released),
            Err(_shard_gone) => return,
        }
    }
}

/// The first operator. On a data dir with no principals, the engine makes
/// an operator key, writes it to `<data_dir>/operator.key` (mode 0600,
/// never overwritten) and registers it; a key file already there (say, the
/// database was recreated) is registered instead. Returns the file's path
/// when it exists.
fn bootstrap_operator(registry: &Registry, data_dir: &Path) -> Result<Option<PathBuf>, String> {
    let path = data_dir.join(OPERATOR_KEY_FILE);
    if registry.has_operator() {
        return Ok(path.exists().then_some(path));
    }
    if !registry.list().is_empty() {
        tracing::warn!("every operator is revoked: no one can issue cards or add principals");
        return Ok(None);
    }
    let key = if path.exists() {
        Key::read(&path)?
    } else {
        // The file first: a crash before the registration adopts it next
        // time, and the secret is never lost.
        let key = Key::generate(0);
        key.write_new(&path, Role::Operator.name())?;
        key
    };
    registry
        .add(key.principal, Role::Operator, Vec::new(), key.stored_key())
        .map_err(|e| format!("cannot register the first operator: {e}"))?;
    tracing::info!(path = %path.display(), "first operator key written; move it somewhere safe");
    Ok(Some(path))
}

/// `kessai serve`: runs until SIGINT or SIGTERM. Every acknowledged change
/// is already durable, so stopping needs no flush.
pub fn serve(config: Config) -> Result<(), String> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        if let Some(metrics_listen) = config.metrics_listen {
            // Before the shards start, so their metric handles are live.
            crate::telemetry::install(metrics_listen)?;
        }
        let running = start(&config).await?;
        // Scripts and tests read this line to learn the bound port.
        println!("kessai listening on {}", running.addr);
        if let Some(iso_addr) = running.iso_addr {
            println!("kessai iso8583 listening on {iso_addr}");
        }
        if let Some(http_addr) = running.http_addr {
            println!("kessai http listening on {http_addr}");
        }
        if let Some(path) = &running.operator_key {
            println!("operator key: {}", path.display());
        }
        let _ = std::io::stdout().flush();
        wait_for_shutdown_signal().await;
        tracing::info!("stopping");
        Ok(())
    })
}

async fn wait_for_shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// An engine on its own thread, for tests, benches and the load harness.
pub struct EngineHandle {
    pub addr: SocketAddr,
    /// The ISO 8583 listener's address, when the config turns it on.
    pub iso_addr: Option<SocketAddr>,
    /// The HTTP API's address, when the config turns it on.
    pub http_addr: Option<SocketAddr>,
    /// The first operator's key file (see [`OPERATOR_KEY_FILE`]).
    pub operator_key: PathBuf,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Disconnects when the engine's database has closed.
    storage_closed: Option<std::sync::mpsc::Receiver<()>>,
}

impl EngineHandle {
    pub fn start(config: Config) -> Result<EngineHandle, String> {
        let operator_key = config.data_dir.join(OPERATOR_KEY_FILE);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kessai-engine".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                match system.block_on(start(&config)) {
                    Ok(running) => {
                        let closed = running.storage.watch_close();
                        let current = actix_rt::System::current();
                        let addrs = (running.addr, running.iso_addr, running.http_addr);
                        let _ = tx.send(Ok((addrs, current, closed)));
                        let _ = system.run();
                        for worker in &running.workers {
                            worker.stop();
                        }
                        drop(running);
                    }
                    Err(error) => {
                        let _ = tx.send(Err(error));
                    }
                }
            })
            .map_err(|e| format!("spawn engine thread: {e}"))?;
        let ((addr, iso_addr, http_addr), system, storage_closed) = rx
            .recv()
            .map_err(|_| "engine thread died during start".to_string())??;
        Ok(EngineHandle {
            addr,
            iso_addr,
            http_addr,
            operator_key,
            system,
            thread: Some(thread),
            storage_closed,
        })
    }

    /// Stops the engine and waits until its database is closed, so the same
    /// data dir can be opened again at once.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(closed) = self.storage_closed.take() {
            // Writer threads drop their handles as their shards go away;
            // the last one closes the database, then the channel
            // disconnects. Waiting on a count of handles instead would
            // return while RocksDB was still closing its files.
            let _ = closed.recv_timeout(std::time::Duration::from_secs(10));
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// File in the data dir holding the generated PIN secret (hex).
pub(crate) const SECRET_FILE: &str = "pin-secret";

/// The PIN secret: from config if set, else from the data dir, else a fresh
/// one written there (mode 0600, synced) on first start.
fn load_or_create_secret(config: &Config) -> Result<Vec<u8>, String> {
    if let Some(text) = &config.pin_secret_hex {
        return decode_secret(text, "pin_secret_hex");
    }
    let path = config.data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return decode_secret(&text, &path.display().to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    }
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::fill(&mut secret[..]);
    write_secret(&config.data_dir, &path, &hex::encode(&secret))?;
    tracing::info!(path = %path.display(), "generated a new PIN secret; back it up");
    Ok(secret)
}

fn decode_secret(text: &str, origin: &str) -> Result<Vec<u8>, String> {
    let secret = hex::decode(text.trim()).map_err(|e| format!("{origin}: not hex: {e}"))?;
    if secret.len() < 16 {
        return Err(format!("{origin}: the PIN secret needs at least 16 bytes"));
    }
    Ok(secret)
}

fn write_secret(dir: &Path, path: &Path, hex_text: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let temporary = dir.join(format!("{SECRET_FILE}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    file.write_all(hex_text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot rename secret: {e}"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok(())
}
