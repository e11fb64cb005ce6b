//! `kessai-load`: the load harness.
//!
//! Drives a running engine (`--addr`) or one it starts itself in a temp dir
//! (`--spawn`) with payments and balance checks from many connections, then
//! prints throughput, latency percentiles, the engine's group-commit batch
//! sizes, and the audit result (exit status 1 if the audit fails, nothing
//! was approved, or the JSON report or plot could not be written).
//!
//! ```text
//! kessai-load --spawn --shards 4 --connections 8 --pipeline 64 --duration-s 10
//! kessai-load --spawn --shards 1,2,4,8 --runs 3      # which shard count?
//! kessai-load --addr 127.0.0.1:7878 --key data/operator.key --mix pay=80,pay2=15,balance=5
//! kessai-load --spawn --rate 20000 --json out.json --plot out.png   # open loop
//! kessai-load --spawn --audit-every-ms 10            # audits' cost
//! kessai-load --spawn --cards 200000 --connections 1 --pipeline 1 \
//!     --flood 48 --flood-pipeline 1024 --duration-s 10 --runs 3  # fairness
//! kessai-load --spawn --iso --cards 20000 --connections 8 --pipeline 64  # ISO 8583
//! kessai-load --spawn --http --connections 8 --pipeline 8  # HTTP vs binary, 64 in flight
//! kessai-load --spawn --jetstream-url nats://127.0.0.1:4222  # the log on JetStream
//! kessai-load --spawn --soak --duration-s 1800 --json soak.json --plot soak.png  # issue #20's soak
//! ```
//!
//! Two ways to load the engine:
//! * closed loop (the default, `closed_loop.rs`): connections x pipeline
//!   requests in flight, each sent as the previous one is answered. It
//!   finds the peak throughput.
//! * open loop (`--rate R`, `open_loop.rs`): R requests per second due on a
//!   fixed schedule, latency timed from when each was due. It shows the
//!   queueing a merchant sees at a given load, and says when the engine
//!   does not keep up.
//!
//! With `--flood N` (`flood.rs`), a second merchant with its own key and
//! cards keeps N connections x `--flood-pipeline` payments in flight and
//! never backs off. Each run then measures the load above (the "honest"
//! merchant) twice, alone and beside the flood, and reports both phases
//! and the ratio of their p99s (issue #19: one principal's flood should at
//! most double another's p99). Keep the honest load light (one connection,
//! one in flight, or a modest `--rate`) so that its quiet p99 is the
//! unloaded engine's.
//!
//! Throughput on a shared machine is noisy: run it several times (`--runs`)
//! and compare medians. With a list of shard counts, each gets a fresh
//! engine and the same load, and a closing table compares their medians.
//! `--json FILE` writes everything (report.rs), `--plot FILE.png` draws
//! latency, throughput and the engine's RSS per second (plot.rs; RSS with
//! `--spawn`, or `--engine-pid` for an engine at `--addr`: rss.rs).
//!
//! `--soak` judges one long run (soak.rs): throughput minute by minute
//! against the first minute's, RSS after a warm-up, the audit; it prints
//! the verdict and exits 1 if it failed. `scripts/soak` runs issue #20's.

mod auditor;
mod closed_loop;
mod flood;
mod http;
mod iso;
mod mix;
mod open_loop;
mod plot;
mod progress;
mod record;
mod report;
mod rss;
mod setup;
mod soak;
mod workload;

use auditor::Auditor;
use clap::Parser;
use clap::builder::RangedU64ValueParser;
use flood::{FloodLoad, Flooder};
use hdrhistogram::Histogram;
use kessai::auth::Key;
use kessai::client::{Client, ClientError};
use kessai::protocol::{ErrorCode, ShardStats};
use mix::Mix;
use open_loop::Schedule;
use progress::Progress;
use report::{
    AuditReport, ConfigReport, EngineReport, FloodReport, FloodRunReport, HostReport, Percentiles,
    Report, RunReport, SetupReport, median,
};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Workload;

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
    /// Cards to issue and activate before the runs (a million: enough that
    /// payments rarely meet on one card, as on a real network).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    cards: u32,
    #[arg(long, default_value_t = 3000)]
    face_value: u64,
    /// Amount of each payment.
    #[arg(long, default_value_t = 1)]
    amount: u64,
    /// Client connections.
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    connections: usize,
    /// Requests in flight per connection (with --rate: at most this many).
    #[arg(long, default_value_t = 64, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pipeline: usize,
    /// Seconds of load per run (at most a day).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=DURATION_S_MAX))]
    duration_s: u64,
    /// Open loop: this many operations per second in total, due on a fixed
    /// schedule over the connections; latency counts from when each was due.
    /// Without it, a closed loop keeps connections x pipeline in flight.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Shares of single-card payments, two-card payments and balance
    /// checks, in percent summing to 100, e.g. pay=80,pay2=15,balance=5
    /// (a kind left out has 0). Default: pay=100.
    #[arg(long, conflicts_with = "multi_card_percent")]
    mix: Option<Mix>,
    /// Percent of payments that combine two cards (two-phase commit when
    /// they sit on different shards): the same as --mix pay=100-P,pay2=P.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    multi_card_percent: Option<u8>,
    /// Runs to make; the summary reports each and the median.
    #[arg(long, default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
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
    /// Write the whole report (configuration, runs, percentiles, group
    /// commits, audit) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw payment latency percentiles and payments/s per second to this
    /// PNG (with several shard counts, one file each, named FILE-<n>shards.png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The plot's size in pixels.
    #[arg(long, default_value = "1200x800", value_parser = plot::parse_size)]
    plot_size: (u32, u32),
    /// Gather payments into PayBatch frames of up to N (at most 512): each
    /// connection's concurrent payments go out together, as the client
    /// does with `Client::gather_payments`. Off (one frame per payment)
    /// without it.
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..=512))]
    gather: Option<usize>,
    /// Flood: a second merchant, registered like the first with its own key
    /// and as many cards of its own, keeps N connections x
    /// --flood-pipeline single-card payments in flight, never backing off
    /// (`busy` included). Each run then measures the load above alone
    /// ("quiet") and beside the flood ("flood"), and reports flood p99 /
    /// quiet p99. For a fairness figure keep that load light, e.g.
    /// --connections 1 --pipeline 1 --flood 48. An engine at --addr must
    /// allow --connections + N + 2 connections from this host
    /// (`max_connections_per_peer`); a spawned one is given that.
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    flood: Option<usize>,
    /// Payments in flight per flood connection.
    #[arg(long, default_value_t = 1024, requires = "flood", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    flood_pipeline: usize,
    /// The flood gathers its payments into PayBatch frames of up to N (at
    /// most 512), as --gather does for the measured load.
    #[arg(long, requires = "flood", value_parser = RangedU64ValueParser::<usize>::new().range(1..=512))]
    flood_gather: Option<usize>,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Measure activations per second over ISO 8583 beside the binary
    /// protocol's, at --connections x --pipeline, each phase activating
    /// --cards fresh cards one per request (needs --spawn; the first of
    /// --shards).
    #[arg(long, requires = "spawn")]
    iso: bool,
    /// Measure payments per second and latency over the HTTP API beside the
    /// binary protocol, --connections x --pipeline payments in flight each
    /// way (HTTP: that many keep-alive connections, one request each), for
    /// --duration-s each (needs --spawn; the first of --shards).
    #[arg(long, requires = "spawn", conflicts_with = "iso")]
    http: bool,
    /// Run the spawned engine's command log on this NATS JetStream server
    /// (`[log] backend = "jetstream"`, docs/CLUSTER.md), on a stream of its
    /// own, deleted after the run (needs --spawn; not with --iso or
    /// --http, whose engines keep the file log).
    #[arg(long, requires = "spawn", conflicts_with_all = ["iso", "http"], value_name = "URL")]
    jetstream_url: Option<String>,
    /// With --addr: the engine's process id, to sample its RSS each second
    /// (Linux). With --spawn the harness samples its own process, where
    /// the engine runs.
    #[arg(long, conflicts_with = "spawn")]
    engine_pid: Option<u32>,
    /// Judge the run as a soak (issue #20): each minute's median
    /// payments/s within 10% of the first minute's, RSS after the warm-up
    /// flat (the last minute at most 10% + 32 MiB over the minute after
    /// the warm-up), the audit ok. Prints the verdict and exits 1 if it
    /// fails. One run of one engine, closed loop, RSS sampled (--spawn or
    /// --engine-pid), and at least --soak-warmup-min + 2 minutes long.
    #[arg(long, conflicts_with_all = ["rate", "flood", "iso", "http"])]
    soak: bool,
    /// --soak: minutes of warm-up before the RSS baseline.
    #[arg(long, requires = "soak", default_value_t = soak::WARMUP_MINUTES_DEFAULT)]
    soak_warmup_min: u64,
}

/// The longest run: its timeline keeps about 100 bytes a second, in memory
/// and in the JSON report, and a run longer than a day is not a load test.
const DURATION_S_MAX: u64 = 86_400;

impl Args {
    /// The process whose RSS each run samples: the harness's own with
    /// --spawn (the engine runs in it), or --engine-pid's.
    fn rss_pid(&self) -> Option<u32> {
        if self.spawn {
            Some(std::process::id())
        } else {
            self.engine_pid
        }
    }

    /// Why `--soak` cannot judge this run, if it cannot.
    fn soak_refusal(&self) -> Option<String> {
        let minutes = soak::minutes_needed(self.soak_warmup_min);
        if self.runs != 1 || self.shards.len() != 1 {
            Some("--soak judges one run of one engine (--runs 1, one --shards count)".into())
        } else if self.rss_pid().is_none() {
            Some("--soak needs the engine's RSS: --spawn, or --engine-pid with --addr".into())
        } else if self.duration_s < minutes * soak::MINUTE_S as u64 {
            Some(format!(
                "--soak with a {}-minute warm-up needs --duration-s {} or more",
                self.soak_warmup_min,
                minutes * soak::MINUTE_S as u64
            ))
        } else {
            None
        }
    }

    fn flood_load(&self) -> Option<FloodLoad> {
        self.flood.map(|connections| FloodLoad {
            connections,
            pipeline: self.flood_pipeline,
            gather: self.flood_gather,
        })
    }
}

fn main() {
    let args = Args::parse();
    let mix = checked_mix(&args);
    let json_file = open_outputs(&args);
    let progress = Progress::new(args.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("tokio runtime: {e}")));
    if let Some(passed) = compare_protocols(&runtime, &args) {
        std::process::exit(if passed { 0 } else { 1 });
    }

    let engines = drive_engines(&runtime, &args, mix, progress);
    let report = report_of(&args, mix, engines);
    let mut written = true;
    if let Some(file) = json_file {
        written &= write_json(file, &report, args.json.as_deref().unwrap_or(Path::new("")));
    }
    if let Some(path) = &args.plot {
        written &= write_plots(path, &args, mix, &report);
    }
    let soak_passed = report.soak.as_ref().is_none_or(|verdict| verdict.pass);
    std::process::exit(if report.ok && written && soak_passed {
        0
    } else {
        1
    });
}

/// The mix to run, once the arguments are known to agree with each other
/// (exits with the reason if they do not).
fn checked_mix(args: &Args) -> Mix {
    let mix = match (args.mix, args.multi_card_percent) {
        (Some(mix), _) => mix,
        (None, Some(percent)) => Mix::two_card_percent(percent).unwrap_or_else(|e| fail(&e)),
        (None, None) => Mix::default(),
    };
    if args.shards.is_empty() || args.shards.contains(&0) {
        fail("--shards takes one or more counts of at least 1");
    }
    if !args.spawn && args.shards.len() > 1 {
        fail("a list of shard counts needs --spawn (a running engine has its own)");
    }
    if mix.pay2 > 0 && args.cards < 2 {
        fail("two-card payments need --cards 2 or more");
    }
    if args.soak
        && let Some(refusal) = args.soak_refusal()
    {
        fail(refusal);
    }
    mix
}

/// Creates the JSON report's file and checks the plot's directory.
fn open_outputs(args: &Args) -> Option<std::fs::File> {
    // Fail before the load, not after it: a report nobody can write is
    // a run wasted.
    let json_file = args.json.as_ref().map(|path| {
        std::fs::File::create(path)
            .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", path.display())))
    });
    if let Some(path) = &args.plot {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            fail(format!("no directory for the plot {}", path.display()));
        }
    }
    json_file
}

/// With --iso or --http, the protocol comparison they ask for (instead of
/// the runs) and whether it passed; `None` without either.
fn compare_protocols(runtime: &tokio::runtime::Runtime, args: &Args) -> Option<bool> {
    if args.iso {
        let load = iso::IsoLoad {
            shards: args.shards[0],
            cards: args.cards as usize,
            face_value_minor: args.face_value,
            connections: args.connections,
            pipeline: args.pipeline,
        };
        return Some(iso::run(runtime, &load));
    }
    if args.http {
        let load = http::HttpLoad {
            shards: args.shards[0],
            cards: args.cards,
            face_value_minor: args.face_value,
            amount_minor: args.amount,
            connections: args.connections,
            pipeline: args.pipeline,
            duration: Duration::from_secs(args.duration_s),
        };
        return Some(http::run(runtime, &load));
    }
    None
}

/// Drives the engine at --addr, or a fresh spawned engine for each shard
/// count (then compares them).
fn drive_engines(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    mix: Mix,
    progress: Progress,
) -> Vec<EngineReport> {
    let mut engines = Vec::with_capacity(args.shards.len());
    if !args.spawn {
        let key = args
            .key
            .clone()
            .unwrap_or_else(|| fail("--addr needs --key (the operator's key file)"));
        engines.push(runtime.block_on(drive(args, mix, args.addr, &key, None, progress)));
    } else {
        for &shards in &args.shards {
            println!("== {shards} shard(s)");
            engines.push(spawned(runtime, args, mix, shards, progress));
        }
    }
    if engines.len() > 1 {
        print_sweep(&engines);
    }
    engines
}

/// The whole report on `engines`, with the soak's verdict (printed) under
/// --soak.
fn report_of(args: &Args, mix: Mix, engines: Vec<EngineReport>) -> Report {
    let best = engines
        .iter()
        .max_by(|a, b| a.median_payments_per_s.total_cmp(&b.median_payments_per_s));
    // One engine, one run (soak_refusal): its timeline and its audit.
    let soak = args.soak.then(|| {
        let engine = &engines[0];
        let verdict = soak::judge(
            &engine.runs[0].timeline,
            engine.audit.ok,
            args.soak_warmup_min,
        );
        verdict.print();
        verdict
    });
    Report {
        tool: "kessai-load",
        version: env!("CARGO_PKG_VERSION"),
        median_payments_per_s: best.map_or(0.0, |e| e.median_payments_per_s),
        median_p99_us: best.map_or(0, |e| e.median_p99_us),
        ok: engines.iter().all(|e| e.ok),
        config: config_report(args, mix),
        host: HostReport::here(),
        engines,
        soak,
    }
}

/// Starts a fresh in-process engine with `shards` shards in a temp dir,
/// drives it, and removes it.
fn spawned(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    mix: Mix,
    shards: usize,
    progress: Progress,
) -> EngineReport {
    // The measured load's connections, the flood's, the operator's and
    // the store HQ's.
    let needed = args.connections + args.flood.unwrap_or(0) + 2;
    let name = format!("{shards}");
    let spawned = setup::spawn(&name, shards, needed, |config| {
        if let Some(url) = &args.jetstream_url {
            setup::use_jetstream(config, url, &name);
        }
    });
    let engine = &spawned.engine;
    let report = runtime.block_on(drive(
        args,
        mix,
        engine.addr,
        &engine.operator_key,
        Some(shards),
        progress,
    ));
    spawned.stop();
    report
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("kessai-load: {message}");
    std::process::exit(1);
}

/// Sets up cards on the engine at `addr`, makes the runs, then asks for
/// its group-commit figures and an audit.
async fn drive(
    args: &Args,
    mix: Mix,
    addr: SocketAddr,
    operator_key: &Path,
    shards: Option<usize>,
    progress: Progress,
) -> EngineReport {
    let flood_load = args.flood_load();
    let actors = setup::actors(addr, operator_key, flood_load.is_some()).await;
    let (pins, setup) = prepare_merchant(args, addr, &actors, progress).await;
    let flood_setup = match flood_load {
        Some(load) => prepare_flood(args, addr, &actors, load, progress).await,
        None => None,
    };

    let duration = Duration::from_secs(args.duration_s);
    let honest = Honest {
        args,
        mix,
        addr,
        merchant: &actors.merchant,
        operator: &actors.operator,
        workload: Arc::new(Workload::new(pins, mix, args.amount)),
        schedule: args.rate.map(|rate| Schedule::new(rate, duration)),
        duration,
        progress,
    };
    let measured = honest.run_all(flood_setup.as_ref()).await;
    let runs = measured.runs;
    let rates: Vec<f64> = runs.iter().map(|r| r.payments_per_s).collect();
    let p99s: Vec<f64> = runs.iter().map(|r| r.latency_us.p99 as f64).collect();
    let median_payments_per_s = median(&rates);
    let load = honest.describe();
    println!(
        "median of {} run(s): {median_payments_per_s:.0} payments/s ({load}, mix {mix})",
        runs.len()
    );
    let flood = flood_setup.map(|flood_setup| {
        let cards = flood_setup.workload.pins.len();
        let report = FloodReport::new(cards, measured.flood_runs, measured.runs_under_flood);
        report.print(&load, &flood_text(flood_setup.load));
        report
    });

    let (group_commit, group_commit_error, audit) = closing_figures(addr, &actors).await;
    let ok = audit.ok && runs_ok(&runs, flood.as_ref(), mix);
    EngineReport {
        shards,
        addr: addr.to_string(),
        setup,
        median_payments_per_s,
        median_p99_us: median(&p99s).round() as u64,
        latency_us: Percentiles::of(&measured.all_latency_us),
        runs,
        group_commit,
        group_commit_error,
        ok,
        audit,
        flood,
    }
}

/// Issues and activates the measured merchant's cards; returns their PINs
/// and how long that took (printed).
async fn prepare_merchant(
    args: &Args,
    addr: SocketAddr,
    actors: &setup::Actors,
    progress: Progress,
) -> (Vec<String>, SetupReport) {
    let started = Instant::now();
    let pins = setup::prepare_cards(actors, addr, args.cards, args.face_value, progress).await;
    let setup = SetupReport {
        cards: pins.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    println!(
        "setup: {} cards issued and activated in {:.2}s",
        setup.cards, setup.seconds
    );
    (pins, setup)
}

/// The flood beside the measured load: its shape, merchant and cards
/// (single-card payments only).
struct FloodSetup<'a> {
    load: FloodLoad,
    merchant: &'a Key,
    workload: Arc<Workload>,
}

/// Issues and activates the flooding merchant's own cards; `None` if the
/// actors have no flooding merchant.
async fn prepare_flood<'a>(
    args: &Args,
    addr: SocketAddr,
    actors: &'a setup::Actors,
    load: FloodLoad,
    progress: Progress,
) -> Option<FloodSetup<'a>> {
    let merchant = actors.flooder.as_ref()?;
    let started = Instant::now();
    let pins = setup::prepare_cards(actors, addr, args.cards, args.face_value, progress).await;
    println!(
        "setup: the flooding merchant's own {} cards issued and activated in {:.2}s",
        pins.len(),
        started.elapsed().as_secs_f64()
    );
    let workload = Arc::new(Workload::new(pins, Mix::default(), args.amount));
    Some(FloodSetup {
        load,
        merchant,
        workload,
    })
}

/// What the runs measured.
struct Measured {
    /// Each run's report (with a flood, its quiet phase's).
    runs: Vec<RunReport>,
    /// The payments' latencies over all runs (quiet phases only).
    all_latency_us: Histogram<u64>,
    /// With a flood: each run's quiet phase against its flooded one.
    flood_runs: Vec<FloodRunReport>,
    /// With a flood: each run's flooded phase.
    runs_under_flood: Vec<RunReport>,
}

/// The closing figures, over a fresh connection as the operator: the
/// group commits (printed, or why they are not there) and the audit
/// (printed).
async fn closing_figures(
    addr: SocketAddr,
    actors: &setup::Actors,
) -> (Option<Vec<ShardStats>>, Option<String>, AuditReport) {
    // A run can outlast the engine's idle deadline (5 minutes by default)
    // while the operator's setup connection sits unused, and the engine
    // closes it: the closing stats and audit go over a fresh connection.
    let closing = Client::connect_as(addr, &actors.operator_key).await;
    // After a flood the engine may answer `busy` for a while.
    let (stats, audit) = match &closing {
        Ok(client) => (
            unless_busy(|| client.stats()).await,
            unless_busy(|| client.audit()).await,
        ),
        Err(error) => (Err(error.clone()), Err(error.clone())),
    };
    let (group_commit, group_commit_error) = match stats {
        Ok(stats) => {
            report::print_group_commit(&stats.shards);
            (Some(stats.shards), None)
        }
        Err(error) => {
            println!("stats unavailable: {error}");
            (None, Some(error.to_string()))
        }
    };
    let audit = AuditReport::from_result(audit);
    audit.print();
    (group_commit, group_commit_error, audit)
}

/// Whether the runs did their work: every audit during them ok, and
/// answers to the load (approved payments among them, if it made any).
fn runs_ok(runs: &[RunReport], flood: Option<&FloodReport>, mix: Mix) -> bool {
    let audits_ok = runs
        .iter()
        .chain(flood.iter().flat_map(|f| &f.runs_under_flood))
        .all(|r| r.audits.is_none_or(|a| a.not_ok == 0));
    let approved: u64 = runs.iter().map(|r| r.payments.approved).sum();
    let answered: u64 = runs
        .iter()
        .flat_map(|r| r.by_kind.values())
        .map(|k| k.ok + k.declined)
        .sum();
    // A run that only checks balances approves nothing, and that is fine.
    let worked = answered > 0 && (mix.payment_percent() == 0 || approved > 0);
    audits_ok && worked
}

/// The measured load: the honest merchant's, with or without a flood.
struct Honest<'a> {
    args: &'a Args,
    mix: Mix,
    addr: SocketAddr,
    merchant: &'a Key,
    operator: &'a Arc<Client>,
    workload: Arc<Workload>,
    schedule: Option<Schedule>,
    duration: Duration,
    progress: Progress,
}

impl Honest<'_> {
    async fn connect(&self) -> Vec<Arc<Client>> {
        let args = self.args;
        connect(
            self.addr,
            self.merchant,
            "the merchant",
            args.connections,
            args.gather,
        )
        .await
    }

    /// One run (or one `phase` of a run) on `clients`: prints its lines and
    /// returns its report and its payments' latencies.
    async fn measure(
        &self,
        clients: &[Arc<Client>],
        run: usize,
        phase: Option<&str>,
    ) -> (RunReport, Histogram<u64>) {
        let args = self.args;
        let auditor = args
            .audit_every_ms
            .map(|every_ms| Auditor::start(self.operator.clone(), every_ms));
        let label = match phase {
            None => format!("run {run}/{}", args.runs),
            Some(phase) => format!("run {run}/{} {phase}", args.runs),
        };
        let bar = self.progress.run(&label, self.duration);
        let (recorder, elapsed) = match self.schedule {
            None => {
                closed_loop::run(
                    clients,
                    args.pipeline,
                    &self.workload,
                    self.duration,
                    args.rss_pid(),
                    &bar,
                )
                .await
            }
            Some(schedule) => {
                open_loop::run(
                    clients,
                    args.pipeline,
                    &self.workload,
                    schedule,
                    self.duration,
                    args.rss_pid(),
                    &bar,
                )
                .await
            }
        };
        let mut report = RunReport::new(run, &recorder, elapsed, &self.mix, self.schedule);
        if let Some(auditor) = auditor {
            report.audits = Some(auditor.stop().await);
        }
        match phase {
            None => report.print(&self.mix),
            Some(phase) => report.print_as(&format!("run {run} {phase}"), &self.mix),
        }
        (report, recorder.payments_latency_us)
    }

    /// All the runs, each with its flooded phase after its quiet one when
    /// there is a flood.
    async fn run_all(&self, flood: Option<&FloodSetup<'_>>) -> Measured {
        let runs_wanted = self.args.runs;
        let mut measured = Measured {
            runs: Vec::with_capacity(runs_wanted),
            all_latency_us: record::latency_histogram(),
            flood_runs: Vec::new(),
            runs_under_flood: Vec::new(),
        };
        for run in 1..=runs_wanted {
            let quiet_phase = flood.map(|_| "quiet");
            let clients = self.connect().await;
            let (quiet, latency_us) = self.measure(&clients, run, quiet_phase).await;
            // Same bounds on both sides: adding cannot fail.
            let _ = measured.all_latency_us.add(&latency_us);
            if let Some(flood) = flood {
                let (report, loaded) = self.measure_flooded(run, &quiet, flood).await;
                measured.flood_runs.push(report);
                measured.runs_under_flood.push(loaded);
                if run < runs_wanted {
                    // The next quiet phase should not start in the flood's
                    // wake (group commits, memtable flushes still running).
                    tokio::time::sleep(AFTER_FLOOD).await;
                }
            }
            measured.runs.push(quiet);
        }
        measured
    }

    /// Run `run`'s flooded phase: the load again beside the flood, compared
    /// (printed) with its `quiet` phase.
    async fn measure_flooded(
        &self,
        run: usize,
        quiet: &RunReport,
        setup: &FloodSetup<'_>,
    ) -> (FloodRunReport, RunReport) {
        // Connected before the flood starts: the handshake is not what
        // is measured.
        let clients = self.connect().await;
        let workload = setup.workload.clone();
        let flood = Flooder::start(self.addr, setup.merchant, setup.load, workload).await;
        let lead = flood.until_full().await;
        let phase_start = flood.mark();
        let (loaded, _) = self.measure(&clients, run, Some("flood")).await;
        let flooder = flood.stop(lead, phase_start).await;
        let report = FloodRunReport::new(run, quiet, &loaded, flooder);
        report.print();
        (report, loaded)
    }

    /// The load in words, for the median line.
    fn describe(&self) -> String {
        let load = load_text(self.args);
        match self.args.gather {
            Some(batch_max) => format!("{load}, gathered in batches of up to {batch_max}"),
            None => load,
        }
    }
}

fn load_text(args: &Args) -> String {
    match args.rate {
        None => format!(
            "{} connections x {} in flight",
            args.connections, args.pipeline
        ),
        Some(rate) => format!("open loop, {rate}/s over {} connections", args.connections),
    }
}

fn flood_text(load: FloodLoad) -> String {
    let text = format!(
        "{} connections x {} in flight",
        load.connections, load.pipeline
    );
    match load.gather {
        Some(batch_max) => format!("{text}, gathered in batches of up to {batch_max}"),
        None => text,
    }
}

/// A pause between a flood's last answer and the next run's quiet phase.
const AFTER_FLOOD: Duration = Duration::from_secs(2);

/// How long the final stats and audit are retried while the engine
/// answers `busy` (after a flood, its queues may take a while to drain).
const BUSY_RETRY_FOR: Duration = Duration::from_secs(30);
const BUSY_RETRY_EVERY: Duration = Duration::from_millis(100);

/// `call`'s answer, asked again while it is `busy`, for up to
/// [`BUSY_RETRY_FOR`].
async fn unless_busy<T, F, Fut>(mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let give_up = Instant::now() + BUSY_RETRY_FOR;
    loop {
        match call().await {
            Err(error) if error.server_code() == Some(ErrorCode::Busy) => {
                if Instant::now() >= give_up {
                    return Err(error);
                }
                tokio::time::sleep(BUSY_RETRY_EVERY).await;
            }
            answer => return answer,
        }
    }
}

/// `connections` fresh connections as `who` (a merchant), gathering
/// payments into batch frames of up to `gather` when asked.
async fn connect(
    addr: SocketAddr,
    merchant: &Key,
    who: &str,
    connections: usize,
    gather: Option<usize>,
) -> Vec<Arc<Client>> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut client = Client::connect_as(addr, merchant)
            .await
            .unwrap_or_else(|e| fail(format!("connect as {who}: {e}")));
        if let Some(batch_max) = gather {
            client = client.gather_payments(batch_max);
        }
        clients.push(Arc::new(client));
    }
    clients
}

fn print_sweep(engines: &[EngineReport]) {
    let best = engines
        .iter()
        .map(|e| e.median_payments_per_s)
        .fold(0.0, f64::max);
    println!("shards  median payments/s  vs best");
    for engine in engines {
        let median = engine.median_payments_per_s;
        println!(
            "{:>6}  {median:>17.0}  {:>6.2}",
            engine.shards.unwrap_or(0),
            if best > 0.0 { median / best } else { 0.0 }
        );
    }
}

fn config_report(args: &Args, mix: Mix) -> ConfigReport {
    ConfigReport {
        target: if args.spawn { "spawn" } else { "addr" },
        addr: (!args.spawn).then(|| args.addr.to_string()),
        shards: if args.spawn {
            args.shards.clone()
        } else {
            Vec::new()
        },
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        rate_per_s: args.rate,
        connections: args.connections,
        pipeline: args.pipeline,
        duration_s: args.duration_s,
        runs: args.runs,
        cards: args.cards,
        face_value_minor: args.face_value,
        amount_minor: args.amount,
        mix,
        audit_every_ms: args.audit_every_ms,
        gather: args.gather,
        flood: args.flood_load(),
        jetstream_url: args.jetstream_url.clone(),
    }
}

fn write_json(file: std::fs::File, report: &Report, path: &Path) -> bool {
    let mut out = std::io::BufWriter::new(file);
    let written = serde_json::to_writer_pretty(&mut out, report)
        .map_err(|e| e.to_string())
        .and_then(|()| writeln!(out).map_err(|e| e.to_string()))
        .and_then(|()| out.flush().map_err(|e| e.to_string()));
    match written {
        Ok(()) => true,
        Err(error) => {
            eprintln!("kessai-load: cannot write {}: {error}", path.display());
            false
        }
    }
}

/// One PNG per engine: `path` itself, or `<stem>-<n>shards.png` for each
/// of several shard counts.
fn write_plots(path: &Path, args: &Args, mix: Mix, report: &Report) -> bool {
    let mut ok = true;
    for engine in &report.engines {
        let file = match engine.shards {
            Some(shards) if report.engines.len() > 1 => {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                path.with_file_name(format!("{stem}-{shards}shards.png"))
            }
            _ => path.to_path_buf(),
        };
        let engine_name = engine
            .shards
            .map_or(engine.addr.clone(), |n| format!("{n} shard(s)"));
        let load = match args.rate {
            None => format!(
                "closed loop {} x {} in flight",
                args.connections, args.pipeline
            ),
            Some(rate) => format!("open loop {rate}/s"),
        };
        // With a flood, the honest load's phases in the order they ran:
        // quiet, flooded, quiet, flooded...
        let phases: Vec<RunReport>;
        let (runs, load) = match &engine.flood {
            None => (&engine.runs, load),
            Some(flood) => {
                let pairs = engine.runs.iter().zip(&flood.runs_under_flood);
                phases = pairs.flat_map(|(q, f)| [q.clone(), f.clone()]).collect();
                // The title has room for little: the flood's shape only.
                let (connections, pipeline) = (args.flood.unwrap_or(0), args.flood_pipeline);
                let load = format!("{load}, alone | flooded {connections} x {pipeline}");
                (&phases, load)
            }
        };
        let input = plot::PlotInput {
            title: format!(
                "kessai-load: {engine_name}, {load}, mix {mix}, {} cards",
                args.cards
            ),
            runs,
            duration_s: args.duration_s,
            offered_payments_per_s: args
                .rate
                .map(|rate| rate as f64 * f64::from(mix.payment_percent()) / 100.0),
            rss_of: if args.spawn {
                "engine and load generator"
            } else {
                "engine"
            },
            soak: report.soak.as_ref().map(plot::SoakLines::of),
        };
        match plot::draw(&file, args.plot_size, &input) {
            Ok(()) => println!("plot: {}", file.display()),
            Err(error) => {
                eprintln!("kessai-load: plot {}: {error}", file.display());
                ok = false;
            }
        }
    }
    ok
}
