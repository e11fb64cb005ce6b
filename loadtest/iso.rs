//! `--iso`: activations per second over ISO 8583 beside the binary
//! protocol's, at the same concurrency (issue #23: the goal is at least
//! 70%).
//!
//! A fresh in-process engine with its ISO 8583 listener in plain-TCP test
//! mode (loopback) acting as one store HQ. Two phases, each activating
//! `--cards` fresh cards, one card per request, `--connections` x
//! `--pipeline` requests in flight: first the binary protocol (Activate
//! with one PIN), then ISO 8583 (one 0200 per card, pipelined on each
//! connection, after a sign-on). Every activation must be approved, and
//! the audit must pass, or the exit status is 1.

use crate::fail;
use kessai::auth::Key;
use kessai::client::Client;
use kessai::iso8583::codec::{self, Message};
use kessai::protocol::{ActivationResult, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// The store HQ the listener acts as, and its store.
const HQ: u32 = 1;
const STORE: u32 = 1;
const MESSAGE_BYTES_MAX: usize = 2048;

pub struct IsoLoad {
    pub shards: usize,
    pub cards: usize,
    pub face_value_minor: u64,
    pub connections: usize,
    pub pipeline: usize,
}

/// Runs both phases on a fresh engine; false if anything was not approved
/// or the audit failed.
pub fn run(runtime: &tokio::runtime::Runtime, load: &IsoLoad) -> bool {
    let spawned = crate::setup::spawn("iso", load.shards, 2 * load.connections + 2, |config| {
        config.iso8583.listen = Some("127.0.0.1:0".parse().expect("literal"));
        config.iso8583.plain_tcp_store_hq = Some(HQ);
    });
    let engine = &spawned.engine;
    let iso_addr = engine.iso_addr.expect("the listener is configured");
    let ok = runtime.block_on(drive(engine.addr, iso_addr, &engine.operator_key, load));
    spawned.stop();
    ok
}

async fn drive(
    addr: SocketAddr,
    iso_addr: SocketAddr,
    operator_key: &std::path::Path,
    load: &IsoLoad,
) -> bool {
    let key = Key::read(operator_key).unwrap_or_else(|e| fail(&e));
    let operator = Client::connect_as(addr, &key)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the operator: {e}")));
    let hq = Key::generate(HQ);
    operator
        .principal_add(&hq, Role::StoreHq, &[STORE])
        .await
        .unwrap_or_else(|e| fail(format!("add the store HQ: {e}")));
    let mut pins = Vec::with_capacity(2 * load.cards);
    while pins.len() < 2 * load.cards {
        let wanted = (2 * load.cards - pins.len()).min(10_000) as u32;
        let issued = operator
            .issue(wanted, load.face_value_minor)
            .await
            .unwrap_or_else(|e| fail(format!("issue: {e}")));
        pins.extend(issued.pins);
    }
    let iso_pins = Arc::new(pins.split_off(load.cards));
    let binary_pins = Arc::new(pins);

    let (binary_s, binary_ok) = binary(addr, &hq, binary_pins, load).await;
    let binary_rate = load.cards as f64 / binary_s;
    println!(
        "binary:   {} activations in {binary_s:.2}s = {binary_rate:.0}/s ({} approved)",
        load.cards, binary_ok
    );
    let (iso_s, iso_ok) = iso(iso_addr, iso_pins, load).await;
    let iso_rate = load.cards as f64 / iso_s;
    println!(
        "iso8583:  {} activations in {iso_s:.2}s = {iso_rate:.0}/s ({} approved)",
        load.cards, iso_ok
    );
    println!(
        "iso8583 / binary = {:.2} ({} connections x {} in flight, {} shards)",
        iso_rate / binary_rate,
        load.connections,
        load.pipeline,
        load.shards
    );
    let audit = operator
        .audit()
        .await
        .unwrap_or_else(|e| fail(format!("audit: {e}")));
    println!("audit: {}", if audit.ok { "ok" } else { "FAILED" });
    audit.ok && binary_ok == load.cards && iso_ok == load.cards
}

/// The binary phase: seconds taken, activations approved.
async fn binary(
    addr: SocketAddr,
    hq: &Key,
    pins: Arc<Vec<String>>,
    load: &IsoLoad,
) -> (f64, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let approved = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut lanes = Vec::new();
    for _ in 0..load.connections {
        let client = Arc::new(
            Client::connect_as(addr, hq)
                .await
                .unwrap_or_else(|e| fail(format!("connect as the store HQ: {e}"))),
        );
        for _ in 0..load.pipeline {
            let (client, pins, next, approved) =
                (client.clone(), pins.clone(), next.clone(), approved.clone());
            lanes.push(tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(pin) = pins.get(index) else { break };
                    let pos_ref = index as u64 + 1;
                    let reply = client
                        .activate(STORE, pos_ref, std::slice::from_ref(pin))
                        .await;
                    if let Ok(reply) = reply
                        && matches!(
                            reply.results.first(),
                            Some(ActivationResult::Activated { .. })
                        )
                    {
                        approved.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for lane in lanes {
        let _ = lane.await;
    }
    (
        started.elapsed().as_secs_f64(),
        approved.load(Ordering::Relaxed),
    )
}

/// The ISO 8583 phase: each connection signs on, then a writer keeps
/// `pipeline` 0200s in flight while a reader counts the 0210s.
async fn iso(addr: SocketAddr, pins: Arc<Vec<String>>, load: &IsoLoad) -> (f64, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let approved = Arc::new(AtomicUsize::new(0));
    let face = load.face_value_minor;
    let mut connections = Vec::new();
    for _ in 0..load.connections {
        connections.push(signed_on(addr).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for stream in connections {
        let (reader, mut writer) = stream.into_split();
        let room = Arc::new(Semaphore::new(load.pipeline));
        let sent = Arc::new(AtomicUsize::new(0));
        let done_sending = Arc::new(tokio::sync::Notify::new());
        let (pins, next, approved) = (pins.clone(), next.clone(), approved.clone());
        let (room_w, sent_w, done_w) = (room.clone(), sent.clone(), done_sending.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(256);
            loop {
                let Ok(permit) = room_w.acquire().await else {
                    break;
                };
                permit.forget();
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(pin) = pins.get(index) else { break };
                out.clear();
                sale(pin, index, face)
                    .encode(&mut out, MESSAGE_BYTES_MAX)
                    .expect("a legal 0200");
                if writer.write_all(&out).await.is_err() {
                    break;
                }
                sent_w.fetch_add(1, Ordering::Release);
            }
            done_w.notify_one();
            // Dropping the write half tells the engine nothing more comes;
            // it still answers everything in flight.
            drop(writer);
        }));
        let answers = Answers {
            room,
            sent,
            done_sending,
            approved,
        };
        tasks.push(tokio::spawn(answers.read(reader)));
    }
    for task in tasks {
        let _ = task.await;
    }
    (
        started.elapsed().as_secs_f64(),
        approved.load(Ordering::Relaxed),
    )
}

/// A connection to the ISO 8583 listener, signed on (an 0800).
async fn signed_on(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| fail(format!("connect to the ISO 8583 listener: {e}")));
    let _ = stream.set_nodelay(true);
    let mut sign_on = Message::new(*b"0800");
    sign_on.set(11, "000000").set(70, "001");
    let reply = exchange(&mut stream, &sign_on).await;
    if reply.get(39) != Some("00") {
        fail("the ISO 8583 sign-on was refused");
    }
    stream
}

/// The 0200 that activates `pin`, the phase's `index`th card.
fn sale(pin: &str, index: usize, face: u64) -> Message {
    let mut sale = Message::new(*b"0200");
    sale.set(2, pin)
        .set(3, "220000")
        .set(4, format!("{face:012}"))
        .set(11, format!("{:06}", index % 1_000_000))
        .set(37, format!("{index:012}"))
        .set(41, "LOADTERM")
        .set(42, format!("{STORE:015}"))
        .set(49, "392");
    sale
}

/// The reading side of one ISO 8583 connection, shared with its writer.
struct Answers {
    /// Room in the pipeline: a permit back per answer.
    room: Arc<Semaphore>,
    /// 0200s written so far.
    sent: Arc<AtomicUsize>,
    /// The writer has sent its last 0200.
    done_sending: Arc<tokio::sync::Notify>,
    /// Approved activations, over all connections.
    approved: Arc<AtomicUsize>,
}

impl Answers {
    /// Counts the 0210s until every 0200 sent has its answer (or the
    /// connection closes).
    async fn read(self, mut reader: tokio::net::tcp::OwnedReadHalf) {
        let mut received = 0usize;
        let mut finished = false;
        loop {
            if finished && received == self.sent.load(Ordering::Acquire) {
                break;
            }
            let message = tokio::select! {
                message = read_message(&mut reader) => message,
                () = self.done_sending.notified(), if !finished => {
                    finished = true;
                    continue;
                }
            };
            let Some(message) = message else { break };
            received += 1;
            self.room.add_permits(1);
            if message.get(39) == Some("00") {
                self.approved.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn exchange(stream: &mut tokio::net::TcpStream, message: &Message) -> Message {
    let mut out = Vec::new();
    message.encode(&mut out, MESSAGE_BYTES_MAX).expect("legal");
    stream
        .write_all(&out)
        .await
        .unwrap_or_else(|e| fail(format!("ISO 8583 write: {e}")));
    read_message(stream)
        .await
        .unwrap_or_else(|| fail("the ISO 8583 listener closed the connection"))
}

async fn read_message<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> Option<Message> {
    let mut prefix = [0u8; codec::LENGTH_BYTES];
    reader.read_exact(&mut prefix).await.ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    reader.read_exact(&mut body).await.ok()?;
    Message::decode(&body).ok()
}
