//! `kessai-load`: the load harness.
//!
//! Drives a running engine (`--addr`) or one it starts itself in a temp dir
//! (`--spawn`) with pipelined payments from many connections, then prints
//! throughput, latency percentiles, the engine's group-commit batch sizes,
//! and the audit result (exit status 1 if the audit fails or nothing was
//! approved).
//!
//! ```text
//! kessai-load --spawn --shards 4 --connections 8 --pipeline 64 --duration-s 10
//! kessai-load --spawn --shards 1,2,4,8 --runs 3      # which shard count?
//! kessai-load --addr 127.0.0.1:7878 --multi-card-percent 20
//! kessai-load --spawn --cards 1000000 --audit-every-ms 10   # audits' cost
//! ```
//!
//! Throughput on a shared machine is noisy: run it several times (`--runs`)
//! and compare medians. With a list of shard counts, each gets a fresh
//! engine and the same load, and a closing table compares their medians.

use clap::Parser;
use hdrhistogram::Histogram;
use kessai::auth::Key;
use kessai::client::Client;
use kessai::config::Config;
use kessai::engine::EngineHandle;
use kessai::protocol::Role;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(name = "kessai-load", about = "Load harness for the kessai engine")]
struct Args {
    /// Engine to drive (ignored with --spawn).
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: SocketAddr,
    /// Start an engine in-process, on a fresh temp data dir.
    #[arg(long)]
    spawn: bool,
    /// Shards of the spawned engine; a comma-separated list runs the same
    /// load on a fresh engine for each and compares them.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    shards: Vec<usize>,
    /// Cards to issue and activate before the run.
    #[arg(long, default_value_t = 10_000)]
    cards: u32,
    #[arg(long, default_value_t = 3000)]
    face_value: u64,
    /// Amount of each payment.
    #[arg(long, default_value_t = 1)]
    amount: u64,
    /// Client connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 64)]
    pipeline: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Percent of payments that combine two cards (two-phase commit when
    /// they sit on different shards).
    #[arg(long, default_value_t = 0)]
    multi_card_percent: u32,
    /// Runs to make; the summary reports each and the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The operator's key file (needed with --addr; a spawned engine's own
    /// is used otherwise). The harness registers a store HQ and a merchant
    /// of its own with it, under fresh ids.
    #[arg(long, env = "KESSAI_KEY")]
    key: Option<PathBuf>,
    /// Run an audit this often during the load (one at a time, as the
    /// operator), and report how many came back ok: payment latency with
    /// audits running is then in the run line.
    #[arg(long)]
    audit_every_ms: Option<u64>,
}

/// The principals a run acts as.
struct Actors {
    operator: Arc<Client>,
    store_hq: Key,
    merchant: Key,
}

/// The store every harness card is sold at.
const STORE: u32 = 1;

/// One lane's tally: payments answered, by kind, and their latencies.
struct Tally {
    approved: u64,
    declined: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            approved: 0,
            declined: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds"),
        }
    }

    fn add(&mut self, other: &Tally) {
        self.approved += other.approved;
        self.declined += other.declined;
        self.errors += other.errors;
        self.latency_us.add(&other.latency_us).expect("same bounds");
    }
}

/// What one engine's load run produced.
struct Outcome {
    median_per_second: f64,
    ok: bool,
}

fn main() {
    let args = Args::parse();
    if args.shards.is_empty() || args.shards.contains(&0) {
        fail("--shards takes one or more counts of at least 1");
    }
    if !args.spawn && args.shards.len() > 1 {
        fail("a list of shard counts needs --spawn (a running engine has its own)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if !args.spawn {
        let key = args
            .key
            .clone()
            .unwrap_or_else(|| fail("--addr needs --key (the operator's key file)"));
        let outcome = runtime.block_on(drive(&args, args.addr, &key));
        std::process::exit(if outcome.ok { 0 } else { 1 });
    }
    let mut medians = Vec::with_capacity(args.shards.len());
    let mut all_ok = true;
    for &shards in &args.shards {
        println!("== {shards} shard(s)");
        let outcome = spawned(&runtime, &args, shards);
        all_ok &= outcome.ok;
        medians.push((shards, outcome.median_per_second));
    }
    if medians.len() > 1 {
        let best = medians.iter().map(|(_, m)| *m).fold(0.0, f64::max);
        println!("shards  median payments/s  vs best");
        for (shards, median) in &medians {
            println!(
                "{shards:>6}  {median:>17.0}  {:>6.2}",
                if best > 0.0 { median / best } else { 0.0 }
            );
        }
    }
    std::process::exit(if all_ok { 0 } else { 1 });
}

/// Starts a fresh in-process engine with `shards` shards in a temp dir,
/// drives it, and removes it.
fn spawned(runtime: &tokio::runtime::Runtime, args: &Args, shards: usize) -> Outcome {
    let dir = std::env::temp_dir().join(format!("kessai-load-{}-{shards}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("literal"),
        data_dir: dir.join("data"),
        shards,
        ..Config::default()
    };
    let engine =
        EngineHandle::start(config).unwrap_or_else(|e| fail(&format!("cannot start engine: {e}")));
    let outcome = runtime.block_on(drive(args, engine.addr, &engine.operator_key));
    drop(engine);
    let _ = std::fs::remove_dir_all(dir);
    outcome
}

fn fail(message: &str) -> ! {
    eprintln!("kessai-load: {message}");
    std::process::exit(1);
}

/// Connects as the operator and registers a store HQ and a merchant under
/// the next free ids.
async fn actors(addr: SocketAddr, operator_key: &std::path::Path) -> Actors {
    let key = Key::read(operator_key).unwrap_or_else(|e| fail(&e));
    let operator = Client::connect_as(addr, &key)
        .await
        .unwrap_or_else(|e| fail(&format!("connect {addr} as the operator: {e}")));
    let taken = operator
        .principal_list()
        .await
        .unwrap_or_else(|e| fail(&format!("list principals: {e}")));
    let next = taken.iter().map(|p| p.id).max().map_or(0, |id| id + 1);
    let (store_hq, merchant) = (Key::generate(next), Key::generate(next + 1));
    for (key, role, stores) in [
        (&store_hq, Role::StoreHq, vec![STORE]),
        (&merchant, Role::Merchant, vec![]),
    ] {
        operator
            .principal_add(key, role, &stores)
            .await
            .unwrap_or_else(|e| fail(&format!("add a {}: {e}", role.name())));
    }
    Actors {
        operator: Arc::new(operator),
        store_hq,
        merchant,
    }
}

async fn drive(args: &Args, addr: SocketAddr, operator_key: &std::path::Path) -> Outcome {
    let actors = actors(addr, operator_key).await;
    let setup = &actors.operator;
    let started = Instant::now();
    let pins = prepare_cards(&actors, addr, args).await;
    println!(
        "setup: {} cards issued and activated in {:.2}s",
        pins.len(),
        started.elapsed().as_secs_f64()
    );

    let pins = Arc::new(pins);
    // Request ids unique across runs and connections: time-based base.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        << 8;
    let next_request = Arc::new(AtomicU64::new(base));
    let mut per_run = Vec::new();
    let mut audits_ok = true;
    for run in 1..=args.runs {
        let auditor = args
            .audit_every_ms
            .map(|every_ms| Auditor::start(actors.operator.clone(), every_ms));
        let (tally, elapsed) = one_run(args, addr, &actors.merchant, &pins, &next_request).await;
        if let Some(auditor) = auditor {
            let audits = auditor.stop().await;
            println!(
                "run {run}: {} audits during the run, {} not ok; audit took ms p50 {} max {}",
                audits.done,
                audits.not_ok,
                audits.latency_us.value_at_quantile(0.5) / 1000,
                audits.latency_us.max() / 1000
            );
            audits_ok &= audits.not_ok == 0;
        }
        let answered = tally.approved + tally.declined;
        let per_second = answered as f64 / elapsed.as_secs_f64();
        println!(
            "run {run}: {per_second:.0} payments/s  ({} approved, {} declined, {} errors in {:.2}s)  latency us p50 {} p99 {} p99.9 {} max {}",
            tally.approved,
            tally.declined,
            tally.errors,
            elapsed.as_secs_f64(),
            tally.latency_us.value_at_quantile(0.5),
            tally.latency_us.value_at_quantile(0.99),
            tally.latency_us.value_at_quantile(0.999),
            tally.latency_us.max(),
        );
        per_run.push((per_second, tally));
    }
    let mut rates: Vec<f64> = per_run.iter().map(|(rate, _)| *rate).collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    println!(
        "median of {} run(s): {median:.0} payments/s ({} connections x {} in flight, {}% two-card)",
        rates.len(),
        args.connections,
        args.pipeline,
        args.multi_card_percent
    );

    match setup.stats().await {
        Ok(stats) => {
            for shard in &stats.shards {
                println!(
                    "shard {}: {} cards in {} KiB, {} group commits, {} ops, batch ops p50 {} p99 {} max {}, sync us p50 {} p99 {}",
                    shard.shard,
                    shard.cards,
                    shard.card_map_bytes / 1024,
                    shard.batches,
                    shard.ops,
                    shard.batch_ops_p50,
                    shard.batch_ops_p99,
                    shard.batch_ops_max,
                    shard.sync_us_p50,
                    shard.sync_us_p99
                );
            }
        }
        Err(error) => println!("stats unavailable: {error}"),
    }
    let audit = setup
        .audit()
        .await
        .unwrap_or_else(|e| fail(&format!("audit: {e}")));
    println!(
        "audit: {} (activated {} = balances {} + merchant credits {})",
        if audit.ok { "ok" } else { "FAILED" },
        audit.totals.activated_minor,
        audit.totals.balance_minor,
        audit.totals.merchant_owed_minor
    );
    for problem in &audit.problems {
        println!("  {problem}");
    }
    let approved: u64 = per_run.iter().map(|(_, t)| t.approved).sum();
    Outcome {
        median_per_second: median,
        ok: audit.ok && audits_ok && approved > 0,
    }
}

/// Audits back to back during a run, `every_ms` apart.
struct Auditor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Audits>,
}

struct Audits {
    done: u64,
    not_ok: u64,
    latency_us: Histogram<u64>,
}

impl Auditor {
    fn start(operator: Arc<Client>, every_ms: u64) -> Auditor {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut audits = Audits {
                done: 0,
                not_ok: 0,
                latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds"),
            };
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match operator.audit().await {
                    Ok(audit) if audit.ok => {}
                    Ok(audit) => {
                        audits.not_ok += 1;
                        eprintln!("audit not ok: {:?}", audit.problems);
                    }
                    Err(error) => {
                        audits.not_ok += 1;
                        eprintln!("audit failed: {error}");
                    }
                }
                audits.done += 1;
                audits
                    .latency_us
                    .saturating_record(sent.elapsed().as_micros() as u64);
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
            audits
        });
        Auditor { stop, task }
    }

    async fn stop(self) -> Audits {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .unwrap_or_else(|e| fail(&format!("auditor: {e}")))
    }
}

async fn prepare_cards(actors: &Actors, addr: SocketAddr, args: &Args) -> Vec<String> {
    let store = Client::connect_as(addr, &actors.store_hq)
        .await
        .unwrap_or_else(|e| fail(&format!("connect as the store HQ: {e}")));
    let mut pins = Vec::with_capacity(args.cards as usize);
    while pins.len() < args.cards as usize {
        let wanted = (args.cards as usize - pins.len()).min(4096) as u32;
        let issued = actors
            .operator
            .issue(wanted, args.face_value)
            .await
            .unwrap_or_else(|e| fail(&format!("issue: {e}")));
        store
            .activate(STORE, 0, &issued.pins)
            .await
            .unwrap_or_else(|e| fail(&format!("activate: {e}")));
        pins.extend(issued.pins);
    }
    // A two-card payment pairs neighbours in this list. Shuffle it, so that
    // whether neighbours share a shard does not depend on the order the
    // engine lists new PINs in (engines before this harness listed them
    // grouped by shard, which made nearly every "two-card" payment local).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..pins.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        pins.swap(i, (state % (i as u64 + 1)) as usize);
    }
    pins
}

async fn one_run(
    args: &Args,
    addr: SocketAddr,
    merchant: &Key,
    pins: &Arc<Vec<String>>,
    next_request: &Arc<AtomicU64>,
) -> (Tally, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut lanes = Vec::new();
    for _ in 0..args.connections {
        let client = Arc::new(
            Client::connect_as(addr, merchant)
                .await
                .unwrap_or_else(|e| fail(&format!("connect: {e}"))),
        );
        for _ in 0..args.pipeline {
            let (client, pins, stop, next) = (
                client.clone(),
                pins.clone(),
                stop.clone(),
                next_request.clone(),
            );
            let (amount, multi) = (args.amount, args.multi_card_percent);
            lanes.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut chosen: Vec<String> = Vec::with_capacity(2);
                while !stop.load(Ordering::Relaxed) {
                    let request_id = next.fetch_add(1, Ordering::Relaxed);
                    let first = (request_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize
                        % pins.len();
                    chosen.clear();
                    chosen.push(pins[first].clone());
                    if (request_id % 100) < u64::from(multi) && pins.len() > 1 {
                        chosen.push(pins[(first + 1) % pins.len()].clone());
                    }
                    let sent = Instant::now();
                    match client.pay(request_id, amount, &chosen).await {
                        Ok(paid) if paid.is_approved() => tally.approved += 1,
                        Ok(_) => tally.declined += 1,
                        Err(_) => tally.errors += 1,
                    }
                    tally
                        .latency_us
                        .saturating_record(sent.elapsed().as_micros() as u64);
                }
                tally
            }));
        }
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration_s)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::new();
    for lane in lanes {
        if let Ok(tally) = lane.await {
            total.add(&tally);
        }
    }
    (total, started.elapsed())
}
