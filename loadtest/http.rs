//! `--http`: payments per second and latency over the HTTP API beside the
//! binary protocol, at the same number of payments in flight (issue #22:
//! the goals are at least 50% of the binary protocol's payments/s at 64 in
//! flight, and a p50 within 20% of its p50 at 1 in flight).
//!
//! A fresh in-process engine with its HTTP API on loopback (plain HTTP).
//! `--cards` cards are issued and activated; then two phases of
//! `--duration-s` each, single-card payments of `--amount` on random cards,
//! `--connections` x `--pipeline` payments in flight: first the binary
//! protocol (that many pipelined on each connection), then HTTP (as many
//! keep-alive connections, one request in flight on each, as HTTP/1.1
//! clients do), each payment under a fresh order id. Every payment must be
//! approved and the audit must pass, or the exit status is 1.
//!
//! The HTTP client is a few lines over a TCP stream (request, then a head
//! and a `Content-Length` body back), so that what is measured is the
//! engine, not a client library.

use crate::fail;
use hdrhistogram::Histogram;
use kessai::auth::{Key, tokens};
use kessai::client::Client;
use kessai::protocol::Role;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const HQ: u32 = 1;
const STORE: u32 = 1;
const MERCHANT: u32 = 2;
/// The most of a response the client reads (a payment's JSON is ~200 B).
const RESPONSE_BYTES_MAX: usize = 64 * 1024;

pub struct HttpLoad {
    pub shards: usize,
    pub cards: u32,
    pub face_value_minor: u64,
    pub amount_minor: u64,
    pub connections: usize,
    pub pipeline: usize,
    pub duration: Duration,
}

/// One phase's figures.
struct Phase {
    approved: u64,
    failed: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.approved as f64 / self.seconds
    }

    fn print(&self, name: &str) {
        let l = &self.latency_us;
        println!(
            "{name:7} {:>8.0} payments/s ({} approved, {} not) p50 {} us  p99 {} us  max {} us",
            self.rate(),
            self.approved,
            self.failed,
            l.value_at_quantile(0.5),
            l.value_at_quantile(0.99),
            l.max()
        );
    }
}

/// Runs both phases on a fresh engine; false if a payment was not
/// approved or the audit failed.
pub fn run(runtime: &tokio::runtime::Runtime, load: &HttpLoad) -> bool {
    // Every HTTP request in flight holds a serving slot (as a connection).
    let needed = load.connections * load.pipeline + load.connections + 4;
    let spawned = crate::setup::spawn("http", load.shards, needed, |config| {
        config.http.listen = Some("127.0.0.1:0".parse().expect("literal"));
        let limits = &mut config.limits;
        limits.max_connections_per_principal = limits.max_connections_per_principal.max(needed);
    });
    let engine = &spawned.engine;
    let http_addr = engine.http_addr.expect("the HTTP API is configured");
    let ok = runtime.block_on(drive(engine.addr, http_addr, &engine.operator_key, load));
    spawned.stop();
    ok
}

async fn drive(
    addr: SocketAddr,
    http_addr: SocketAddr,
    operator_key: &std::path::Path,
    load: &HttpLoad,
) -> bool {
    let key = Key::read(operator_key).unwrap_or_else(|e| fail(&e));
    let operator = Client::connect_as(addr, &key)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the operator: {e}")));
    let (hq, merchant) = (Key::generate(HQ), Key::generate(MERCHANT));
    for (key, role, stores) in [
        (&hq, Role::StoreHq, vec![STORE]),
        (&merchant, Role::Merchant, vec![]),
    ] {
        operator
            .principal_add(key, role, &stores)
            .await
            .unwrap_or_else(|e| fail(format!("add a {}: {e}", role.name())));
    }
    let (token, hash) = tokens::generate();
    operator
        .token_add(MERCHANT, hash)
        .await
        .unwrap_or_else(|e| fail(format!("add a token: {e}")));
    let store = Client::connect_as(addr, &hq)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the store HQ: {e}")));
    let mut pins = Vec::with_capacity(load.cards as usize);
    while pins.len() < load.cards as usize {
        let wanted = (load.cards as usize - pins.len()).min(4096) as u32;
        let issued = operator
            .issue(wanted, load.face_value_minor)
            .await
            .unwrap_or_else(|e| fail(format!("issue: {e}")));
        store
            .activate(STORE, 0, &issued.pins)
            .await
            .unwrap_or_else(|e| fail(format!("activate: {e}")));
        pins.extend(issued.pins);
    }
    let pins = Arc::new(pins);
    let binary = binary(addr, &merchant, pins.clone(), load).await;
    binary.print("binary");
    let http = http(http_addr, &token, pins, load).await;
    http.print("http");
    let p50 = |phase: &Phase| phase.latency_us.value_at_quantile(0.5) as f64;
    println!(
        "http / binary: payments/s {:.2}, p50 {:.2} ({} connections x {} in flight, {} shards)",
        http.rate() / binary.rate(),
        p50(&http) / p50(&binary),
        load.connections,
        load.pipeline,
        load.shards
    );
    let audit = operator
        .audit()
        .await
        .unwrap_or_else(|e| fail(format!("audit: {e}")));
    println!("audit: {}", if audit.ok { "ok" } else { "FAILED" });
    audit.ok && binary.failed == 0 && http.failed == 0
}

/// What every lane of a phase shares.
struct Shared {
    pins: Arc<Vec<String>>,
    next: AtomicU64,
    approved: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    latency_us: Mutex<Histogram<u64>>,
}

impl Shared {
    fn new(pins: Arc<Vec<String>>) -> Arc<Shared> {
        Arc::new(Shared {
            pins,
            next: AtomicU64::new(0),
            approved: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            latency_us: Mutex::new(Histogram::new(3).expect("histogram")),
        })
    }

    /// The next payment's number and its card (spread over the cards).
    fn next(&self) -> (u64, &str) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let card = number.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.pins.len() as u64;
        (number, &self.pins[card as usize])
    }

    fn record(&self, approved: bool, started: Instant) {
        let counter = if approved {
            &self.approved
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = self
            .latency_us
            .lock()
            .expect("histogram")
            .record(micros.max(1));
    }

    async fn finish(
        self: Arc<Shared>,
        lanes: Vec<tokio::task::JoinHandle<()>>,
        load: &HttpLoad,
    ) -> Phase {
        let started = Instant::now();
        tokio::time::sleep(load.duration).await;
        self.stop.store(true, Ordering::Relaxed);
        for lane in lanes {
            let _ = lane.await;
        }
        let seconds = started.elapsed().as_secs_f64();
        Phase {
            approved: self.approved.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            seconds,
            latency_us: self.latency_us.lock().expect("histogram").clone(),
        }
    }
}

async fn binary(
    addr: SocketAddr,
    merchant: &Key,
    pins: Arc<Vec<String>>,
    load: &HttpLoad,
) -> Phase {
    let shared = Shared::new(pins);
    let mut lanes = Vec::new();
    for _ in 0..load.connections {
        let client = Arc::new(
            Client::connect_as(addr, merchant)
                .await
                .unwrap_or_else(|e| fail(format!("connect as the merchant: {e}"))),
        );
        for _ in 0..load.pipeline {
            let (client, shared) = (client.clone(), shared.clone());
            let amount = load.amount_minor;
            lanes.push(tokio::spawn(async move {
                while !shared.stop.load(Ordering::Relaxed) {
                    let (number, pin) = shared.next();
                    let started = Instant::now();
                    let paid = client.pay(number, amount, &[pin.to_string()]).await;
                    shared.record(paid.is_ok_and(|p| p.is_approved()), started);
                }
            }));
        }
    }
    shared.finish(lanes, load).await
}

async fn http(addr: SocketAddr, token: &str, pins: Arc<Vec<String>>, load: &HttpLoad) -> Phase {
    let shared = Shared::new(pins);
    let mut lanes = Vec::new();
    for _ in 0..load.connections * load.pipeline {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| fail(format!("connect to the HTTP API: {e}")));
        let _ = stream.set_nodelay(true);
        let (shared, token) = (shared.clone(), token.to_string());
        let amount = load.amount_minor;
        lanes.push(tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut reader = BufReader::new(reader);
            let mut request = Vec::with_capacity(512);
            while !shared.stop.load(Ordering::Relaxed) {
                let (number, pin) = shared.next();
                let body = format!(
                    "{{\"order_id\":\"load-{number}\",\"pins\":[\"{pin}\"],\"amount\":{amount},\"currency\":\"JPY\"}}"
                );
                request.clear();
                request.extend_from_slice(
                    format!(
                        "POST /v1/payments HTTP/1.1\r\nHost: kessai\r\nAuthorization: Bearer {token}\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                let started = Instant::now();
                if writer.write_all(&request).await.is_err() {
                    shared.record(false, started);
                    break;
                }
                match read_status(&mut reader).await {
                    Some(status) => shared.record(status == 201, started),
                    None => {
                        shared.record(false, started);
                        break;
                    }
                }
            }
        }));
    }
    shared.finish(lanes, load).await
}

/// Reads one response (head, then a `Content-Length` body); its status.
async fn read_status<R: tokio::io::AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<u16> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    if length > RESPONSE_BYTES_MAX {
        return None;
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(status)
}
