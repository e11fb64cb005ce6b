//! Hostile load against a real engine over TCP: every connection deadline,
//! the per-peer limit, clients that never read their replies, floods that
//! are answered `busy`, the admin lane, and the money ceilings.
//!
//! Each test sets its limits low in the engine's config so the limit is
//! reached in well under a second; what is asserted is the outcome (which
//! reply, which close, how much memory), never a duration.

mod common;

use common::{Raw, Server, ServerOptions, active_cards, frame_of, raw_connection, runtime};
use kessai::auth::Key;
use kessai::client::Client;
use kessai::protocol::{
    BalanceRequest, ErrorCode, IssueRequest, PayBatchRequest, PayRequest, ReportRequest, Request,
    Response, Role,
};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn server_with(dir: &std::path::Path, limits: &[&str]) -> Server {
    Server::start_with(
        dir,
        ServerOptions {
            limits: limits.iter().map(|l| l.to_string()).collect(),
            ..ServerOptions::default()
        },
    )
}

/// The next frame is an error with `code`; returns its message.
fn expect_error(raw: &mut Raw, code: ErrorCode) -> String {
    match raw.next().1 {
        Response::Error(error) if error.code == code as u16 => error.message,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Writes `bytes` from a thread (the engine may stop reading; the test
/// must not block on it). The write gives up after `give_up`.
fn write_in_background(
    raw: &Raw,
    bytes: Vec<u8>,
    give_up: Duration,
) -> std::thread::JoinHandle<()> {
    let mut stream = raw.stream.try_clone().expect("clone stream");
    stream.set_write_timeout(Some(give_up)).expect("timeout");
    std::thread::spawn(move || {
        let _ = stream.write_all(&bytes);
    })
}

fn merchant_key(server: &Server, id: u32) -> Key {
    runtime().block_on(async {
        let principals = server.principals().await;
        principals.key(id, Role::Merchant, &[]).await
    })
}

#[test]
fn every_deadline_ends_a_connection_with_timed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(
        dir.path(),
        &[
            "handshake_timeout_ms = 500",
            "frame_timeout_ms = 500",
            "idle_timeout_ms = 1000",
        ],
    );
    let key = merchant_key(&server, 5);

    // Connects and says nothing.
    let mut silent = Raw::connect(server.addr);
    assert!(expect_error(&mut silent, ErrorCode::TimedOut).contains("handshake"));
    assert!(silent.closed_by_engine());

    // Three bytes of a length prefix, never the fourth.
    let mut prefix = Raw::connect(server.addr);
    prefix.stream.write_all(&[0, 0, 0]).expect("write");
    assert!(expect_error(&mut prefix, ErrorCode::TimedOut).contains("handshake"));
    assert!(prefix.closed_by_engine());

    // Authenticated, then half a frame.
    let mut half = raw_connection(server.addr, &key);
    half.stream
        .write_all(&frame_of(3, &Request::Ping)[..6])
        .expect("write");
    assert!(expect_error(&mut half, ErrorCode::TimedOut).contains("frame"));
    assert!(half.closed_by_engine());

    // A frame dripped a byte every 100 ms: each byte arrives in time, the
    // frame does not.
    let mut drip = raw_connection(server.addr, &key);
    let mut dripper = drip.stream.try_clone().expect("clone");
    let frame = frame_of(3, &Request::Ping);
    let dripping = std::thread::spawn(move || {
        for byte in frame {
            if dripper.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(expect_error(&mut drip, ErrorCode::TimedOut).contains("frame"));
    assert!(drip.closed_by_engine());
    dripping.join().expect("dripper");

    // A connection that keeps talking stays open past the idle timeout;
    // once it stops, it is closed.
    let mut chatty = raw_connection(server.addr, &key);
    let started = Instant::now();
    let mut correlation_id = 3;
    while started.elapsed() < Duration::from_millis(2500) {
        chatty.send(correlation_id, &Request::Ping);
        assert_eq!(chatty.next(), (correlation_id, Response::Pong));
        correlation_id += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(expect_error(&mut chatty, ErrorCode::TimedOut).contains("idle"));
    assert!(chatty.closed_by_engine());
}

#[test]
fn one_address_cannot_take_every_connection_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(
        dir.path(),
        &[
            "max_connections = 64",
            "max_connections_per_peer = 8",
            "handshake_timeout_ms = 1500",
        ],
    );
    // The operator's connection stays open throughout: one of the eight.
    let runtime = runtime();
    let principals = runtime.block_on(server.principals());
    let key = runtime.block_on(principals.key(5, Role::Merchant, &[]));
    // Seven sockets that each send three bytes of a length prefix.
    let mut holders: Vec<Raw> = (0..7)
        .map(|_| {
            let mut raw = Raw::connect(server.addr);
            raw.stream.write_all(&[0, 0, 0]).expect("write");
            raw
        })
        .collect();
    // A ninth from the same address is refused at once, well below
    // max_connections.
    let mut ninth = Raw::connect(server.addr);
    let refused = expect_error(&mut ninth, ErrorCode::Overloaded);
    assert!(refused.contains("address"), "{refused}");
    assert!(ninth.closed_by_engine());
    // The holders lose their slots at the handshake deadline...
    for holder in &mut holders {
        expect_error(holder, ErrorCode::TimedOut);
        assert!(holder.closed_by_engine());
    }
    // ...and an honest client gets in (the engine counts a slot free once
    // the closed connection's task has ended, so allow it a moment).
    runtime.block_on(async {
        for attempt in 0.. {
            match Client::connect_as(server.addr, &key).await {
                Ok(client) => {
                    client.ping().await.expect("served");
                    break;
                }
                Err(error) if attempt < 50 => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("still refused: {error}"),
            }
        }
    });
}

/// Limits for the memory tests: small budgets, so a bound far below the
/// 2.6 GB the unbounded engine reached is a real bound, not headroom.
const SMALL_BUDGETS: [&str; 6] = [
    "max_frame_bytes = 65536",
    "max_issue_per_request = 3000",
    // The least the config allows: two frames and 1 KiB per payment of
    // the largest batch (100, the test's).
    "max_payments_per_batch = 100",
    "max_inflight_bytes_per_connection = 233472",
    "max_inflight_bytes = 1048576",
    "write_timeout_ms = 2000",
];

/// What the engine's memory may grow by with 20 connections that never
/// read, at [`SMALL_BUDGETS`]: the engine-wide budget (1 MiB), each
/// connection's read buffer (64 KiB plus a frame) and write buffer
/// (256 KiB), and the allocator's slack. Stated in README, Limits.
const NEVER_READ_RSS_GROWTH_MAX: u64 = 48 << 20;

#[test]
fn clients_that_never_read_hold_bounded_memory_and_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut limits = SMALL_BUDGETS.to_vec();
    limits.push("idle_timeout_ms = 3000");
    let server = server_with(dir.path(), &limits);
    let (operator_key, merchant_key, pins) = runtime().block_on(async {
        let principals = server.principals().await;
        // 2,000 stores with a card each, so a report page is 1,000 lines.
        let stores: Vec<u32> = (1..=2000).collect();
        let hq_key = principals.key(2_000_000, Role::StoreHq, &stores).await;
        let hq = Arc::new(Client::connect_as(server.addr, &hq_key).await.expect("hq"));
        let pins = principals
            .operator
            .issue(2000, 1000)
            .await
            .expect("issue")
            .pins;
        let mut activations = tokio::task::JoinSet::new();
        for (store, pin) in stores.iter().zip(&pins) {
            let (hq, store, pin) = (hq.clone(), *store, pin.clone());
            activations.spawn(async move { hq.activate(store, 1, &[pin]).await });
        }
        while let Some(done) = activations.join_next().await {
            done.expect("task").expect("activate");
        }
        let operator_key = Key::read(&server.operator_key_path()).expect("operator key");
        let merchant_key = principals.key(5, Role::Merchant, &[]).await;
        (operator_key, merchant_key, pins)
    });
    let before = server.rss_bytes();

    let mut connections = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..8 {
        // 1,024 pipelined report pages, audits and stats: the requests
        // are tiny, their replies are not.
        let raw = raw_connection(server.addr, &operator_key);
        let mut bytes = Vec::new();
        for n in 0..1024u64 {
            let request = match n % 16 {
                0 => Request::Audit,
                1 => Request::Stats,
                _ => Request::Report(ReportRequest {
                    limit: 1000,
                    after: None,
                    only: None,
                }),
            };
            bytes.extend(frame_of(3 + n, &request));
        }
        writers.push(write_in_background(&raw, bytes, Duration::from_secs(5)));
        connections.push(raw);
    }
    for _ in 0..8 {
        let raw = raw_connection(server.addr, &merchant_key);
        let mut bytes = Vec::new();
        for n in 0..50_000u64 {
            let pin = pins[n as usize % pins.len()].clone();
            bytes.extend(frame_of(3 + n, &Request::Balance(BalanceRequest { pin })));
        }
        writers.push(write_in_background(&raw, bytes, Duration::from_secs(5)));
        connections.push(raw);
    }
    for connection in 0..4u64 {
        // 40 pipelined PayBatch frames of 100 payments each: one request
        // apiece in the budgets, weighed by their largest reply, so the
        // engine stops reading after a dozen or so. (Few enough that the
        // payments' own durable records, which do take memory, stay small.)
        let raw = raw_connection(server.addr, &merchant_key);
        let mut bytes = Vec::new();
        for frame in 0..40u64 {
            let payments = (0..100u64)
                .map(|i| {
                    let request_id = 1_000_000 + connection * 100_000 + frame * 100 + i;
                    PayRequest {
                        request_id,
                        amount_minor: 1,
                        pins: vec![pins[request_id as usize % pins.len()].clone()],
                    }
                })
                .collect();
            let batch = Request::PayBatch(PayBatchRequest { payments });
            bytes.extend(frame_of(3 + frame, &batch));
        }
        writers.push(write_in_background(&raw, bytes, Duration::from_secs(5)));
        connections.push(raw);
    }

    // While they sit there, an honest merchant is served, and memory is
    // sampled. The hoarders together may hold the whole engine-wide budget
    // (it is smaller than the sum of their connections' budgets, as it is
    // meant to be), and then a payment is answered `busy`, with nothing
    // done: the merchant retries, as §2.5 tells it to, and is served at
    // the latest once the engine has closed the hoarders.
    let mut peak = 0;
    runtime().block_on(async {
        let merchant = Client::connect_as(server.addr, &merchant_key)
            .await
            .expect("merchant");
        for request_id in 1..=30 {
            let give_up = std::time::Instant::now() + Duration::from_secs(15);
            let paid = loop {
                match merchant.pay(request_id, 1, &pins[..1]).await {
                    Err(error)
                        if error.server_code() == Some(ErrorCode::Busy)
                            && std::time::Instant::now() < give_up =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    answer => break answer.expect("pay"),
                }
            };
            assert!(paid.is_approved() && !paid.replayed, "{paid:?}");
            peak = peak.max(server.rss_bytes());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for writer in writers {
        writer.join().expect("writer");
    }
    // Every hoarding connection is closed by the engine: stuck writes
    // after write_timeout_ms, the others once idle.
    for raw in &mut connections {
        assert!(raw.closed_by_engine());
    }
    peak = peak.max(server.rss_bytes());
    let after = server.rss_bytes();
    eprintln!(
        "engine RSS: before {} MiB, peak {} MiB, after close {} MiB",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(
        peak.saturating_sub(before) <= NEVER_READ_RSS_GROWTH_MAX,
        "RSS grew from {before} to {peak}"
    );
    assert!(after.saturating_sub(before) <= NEVER_READ_RSS_GROWTH_MAX);
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!((status, &audit["ok"]), (0, &serde_json::json!(true)));
}

/// Writes every frame, then reads one reply per request; returns each
/// request's reply by its correlation id (3 upward).
fn pipeline_and_read(raw: &mut Raw, requests: &[Request]) -> Vec<Response> {
    let mut bytes = Vec::new();
    for (n, request) in requests.iter().enumerate() {
        bytes.extend(frame_of(3 + n as u64, request));
    }
    let writer = write_in_background(raw, bytes, Duration::from_secs(60));
    let mut replies: Vec<Option<Response>> = vec![None; requests.len()];
    for _ in 0..requests.len() {
        let (correlation_id, response) = raw.next();
        let slot = &mut replies[(correlation_id - 3) as usize];
        assert!(slot.is_none(), "two replies to {correlation_id}");
        *slot = Some(response);
    }
    writer.join().expect("writer");
    replies.into_iter().map(|r| r.expect("a reply")).collect()
}

fn is_busy(response: &Response) -> bool {
    matches!(response, Response::Error(e) if e.code == ErrorCode::Busy as u16)
}

#[test]
fn a_payment_flood_gets_busy_replies_then_normal_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(
        dir.path(),
        &[
            "max_frame_bytes = 4096",
            "max_issue_per_request = 200",
            "max_report_lines = 64",
            "max_payments_per_batch = 1",
            "max_inflight_bytes_per_connection = 12288",
            "max_inflight_bytes = 12288",
            "shard_mailbox_capacity = 1",
        ],
    );
    const MERCHANTS: u32 = 16;
    const PAYMENTS: u64 = 300;
    let (pins, keys) = runtime().block_on(async {
        let principals = server.principals().await;
        let mut pins = Vec::new();
        // Batches of 100: an activation of 100 PINs fits a 4 KiB frame.
        for _ in 0..4 {
            pins.extend(active_cards(&principals, 100, 100_000, 3).await);
        }
        let mut keys = Vec::new();
        for id in 0..MERCHANTS {
            keys.push(principals.key(100 + id, Role::Merchant, &[]).await);
        }
        (pins, keys)
    });
    let pay = |n: u64| {
        Request::Pay(PayRequest {
            request_id: n,
            amount_minor: 1,
            pins: vec![pins[n as usize % pins.len()].clone()],
        })
    };
    let requests: Vec<Request> = (0..PAYMENTS).map(pay).collect();
    let before = server.rss_bytes();
    let flood: Vec<std::thread::JoinHandle<Vec<Response>>> = keys
        .iter()
        .map(|key| {
            let (addr, key, requests) = (server.addr, key.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut raw = raw_connection(addr, &key);
                pipeline_and_read(&mut raw, &requests)
            })
        })
        .collect();
    let mut busy_total = 0;
    let mut approved_total = 0;
    let mut busy_by_merchant = Vec::new();
    for flooder in flood {
        let replies = flooder.join().expect("flooder");
        let mut busy = Vec::new();
        for (n, reply) in replies.iter().enumerate() {
            match reply {
                Response::Paid(paid) if paid.is_approved() => approved_total += 1,
                reply if is_busy(reply) => busy.push(n as u64),
                other => panic!("neither approved nor busy: {other:?}"),
            }
        }
        busy_total += busy.len();
        busy_by_merchant.push(busy);
    }
    let peak = server.rss_bytes();
    eprintln!(
        "flood: {approved_total} approved, {busy_total} busy; RSS {} -> {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(busy_total > 0, "the flood never met a limit");
    assert!(peak.saturating_sub(before) <= NEVER_READ_RSS_GROWTH_MAX);

    // Right after: every busy payment, retried, is served, and busy did
    // nothing (a replay would say `replayed`).
    for (key, busy) in keys.iter().zip(&busy_by_merchant) {
        let mut raw = raw_connection(server.addr, key);
        for &n in busy {
            raw.send(3, &pay(n));
            match raw.next().1 {
                Response::Paid(paid) => assert!(paid.is_approved() && !paid.replayed),
                other => panic!("retry after the flood: {other:?}"),
            }
        }
    }
    let expected_minor = u64::from(MERCHANTS) * PAYMENTS;
    let (_, report) = server.cli(&["report"]);
    assert_eq!(report["totals"]["merchant_owed_minor"], expected_minor);
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!((status, &audit["ok"]), (0, &serde_json::json!(true)));
}

#[test]
fn operator_floods_meet_the_admin_lane_and_payments_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(dir.path(), &["admin_requests_max = 1"]);
    let (pins, operator_key, merchant_key) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 100, 10_000, 3).await;
        let operator_key = Key::read(&server.operator_key_path()).expect("operator key");
        let merchant_key = principals.key(5, Role::Merchant, &[]).await;
        (pins, operator_key, merchant_key)
    });
    let issue = Request::Issue(IssueRequest {
        count: 1000,
        face_value_minor: 500,
    });
    let floods: Vec<std::thread::JoinHandle<Vec<Response>>> = (0..4)
        .map(|_| {
            let (addr, key, requests) =
                (server.addr, operator_key.clone(), vec![issue.clone(); 30]);
            std::thread::spawn(move || {
                let mut raw = raw_connection(addr, &key);
                pipeline_and_read(&mut raw, &requests)
            })
        })
        .collect();
    let approved = runtime().block_on(async {
        let merchant = Client::connect_as(server.addr, &merchant_key)
            .await
            .expect("merchant");
        let mut approved = 0;
        for request_id in 1..=50 {
            let pin = &pins[request_id as usize % pins.len()];
            let paid = merchant
                .pay(request_id, 7, std::slice::from_ref(pin))
                .await
                .expect("pay");
            approved += u64::from(paid.is_approved());
        }
        approved
    });
    assert_eq!(approved, 50);
    let (mut issued, mut busy) = (0u64, 0u64);
    for flood in floods {
        for reply in flood.join().expect("flood") {
            match reply {
                Response::Issued(made) => {
                    assert_eq!(made.pins.len(), 1000);
                    issued += 1;
                }
                reply if is_busy(&reply) => busy += 1,
                other => panic!("neither issued nor busy: {other:?}"),
            }
        }
    }
    assert_eq!(issued + busy, 120);
    assert!(busy > 0, "one admin slot, four pipelining operators");
    // A busy issue made no card: the engine holds exactly what was issued.
    let (_, stats) = server.cli(&["stats"]);
    let cards: u64 = stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["cards"].as_u64().expect("cards"))
        .sum();
    assert_eq!(cards, 100 + issued * 1000);
}

#[test]
fn money_limits_above_their_ceilings_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, value) in [
        ("max_face_value_minor", "9223372036854775807"),
        ("max_amount_minor", "9223372036854775807"),
    ] {
        let config = dir.path().join("huge.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[limits]\n{key} = {value}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let output = std::process::Command::new(common::kessai_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(key) && stderr.contains("1..="), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn books_beyond_any_engine_are_refused_at_start_not_a_panic() {
    use kessai::ids::ShardId;
    use kessai::storage::records::BookKind;
    use kessai::storage::{Changes, Storage, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    server.kill9();
    {
        let storage = Storage::open(&dir.path().join("data")).expect("open");
        let mut changes = Changes::new();
        // Two shares that overflow u64 when summed, and one that alone is
        // beyond anything the engine could ever hold.
        changes.put_book(BookKind::MerchantOwed, 9, ShardId(200), u64::MAX - 1);
        changes.put_book(BookKind::MerchantOwed, 9, ShardId(201), 2);
        storage.commit(&changes).expect("commit");
    }
    let refused = |dir: &std::path::Path| {
        let mut child = std::process::Command::new(common::kessai_bin())
            .args(["serve", "--config"])
            .arg(dir.join("kessai.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr)
                    .expect("read stderr");
                return (status.code(), stderr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the engine started on damaged books");
    };
    let (code, stderr) = refused(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("overflow"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    {
        let storage = Storage::open(&dir.path().join("data")).expect("open");
        let mut changes = Changes::new();
        changes.put_book(BookKind::MerchantOwed, 9, ShardId(201), 0);
        changes.put_book(BookKind::MerchantOwed, 9, ShardId(200), u64::MAX / 2 + 1);
        storage.commit(&changes).expect("commit");
    }
    let (code, stderr) = refused(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("damaged"), "{stderr}");
}

#[test]
fn payments_naming_unknown_cards_leave_no_record_and_writes_the_lockout_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(dir.path(), &["pin_failures_max = 100"]);
    let data = dir.path().join("data");
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, 1000, 3).await;
        let merchant = principals.merchant(5).await;
        let unknown = common::guess(&mut 0x5eed);
        let paid = merchant
            .pay(1, 100, std::slice::from_ref(&unknown))
            .await
            .expect("pay");
        assert_eq!(
            paid.reason(),
            Some(kessai::card::DeclineReason::InvalidCard)
        );
        // Not recorded, so the same request id is evaluated afresh: with a
        // real card it is approved (a recorded decline would be replayed).
        let retried = merchant.pay(1, 100, &pins).await.expect("retry");
        assert!(retried.is_approved() && !retried.replayed, "{retried:?}");

        // 50,000 more: each failure is written (so the lockout survives a
        // crash), which is why the lock bounds them: 99 more declines, then
        // `locked_out` for the rest, which writes nothing. The data dir
        // does not grow by the 51 bytes a recorded decline would take, nor
        // by a failure record for each.
        let before = dir_bytes(&data);
        let merchant = Arc::new(merchant);
        let declined = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut declines = tokio::task::JoinSet::new();
        for task in 0..50u64 {
            let (merchant, unknown, declined) =
                (merchant.clone(), unknown.clone(), declined.clone());
            declines.spawn(async move {
                for n in 0..1000 {
                    let request_id = 1_000_000 + task * 1000 + n;
                    match merchant
                        .pay(request_id, 100, std::slice::from_ref(&unknown))
                        .await
                    {
                        Ok(paid) => {
                            assert!(!paid.is_approved());
                            declined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(error) => {
                            assert_eq!(error.server_code(), Some(ErrorCode::LockedOut));
                        }
                    }
                }
            });
        }
        while let Some(done) = declines.join_next().await {
            done.expect("task");
        }
        assert_eq!(declined.load(std::sync::atomic::Ordering::Relaxed), 99);
        let grown = dir_bytes(&data).saturating_sub(before);
        assert!(grown < 64 * 1024, "the data dir grew {grown} bytes");
    });
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                dir_bytes(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// Payments in each attacking frame: the most a batch may carry.
const ATTACK_BATCH: u64 = 2048;
/// Connections that pipeline PayBatch frames and never read.
const ATTACK_CONNECTIONS: u64 = 24;
/// Frames each of them sends.
const ATTACK_FRAMES: u64 = 8;
/// The engine-wide in-flight budget in this test, and one principal's
/// share of it.
const ATTACK_BUDGET_BYTES: u64 = 16 << 20;
const ATTACK_SHARE_BYTES: u64 = 8 << 20;
/// What the engine's memory may grow by beyond the budget under this
/// attack: each connection's read and write buffers (64 KiB + 16 KiB) and
/// the allocator's slack. Stated in README, Security.
const ATTACK_RSS_OVERHEAD_MAX: u64 = 32 << 20;

#[test]
fn pay_batch_frames_never_read_hold_memory_to_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(
        dir.path(),
        &[
            &format!("max_inflight_bytes = {ATTACK_BUDGET_BYTES}"),
            &format!("max_inflight_bytes_per_principal = {ATTACK_SHARE_BYTES}"),
            "max_connections_per_peer = 256",
            "max_connections_per_principal = 128",
            "idle_timeout_ms = 3000",
            "write_timeout_ms = 2000",
        ],
    );
    let (pins, attacker_key, honest) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 256, 1_000_000, 7).await;
        let attacker_key = principals.key(5, Role::Merchant, &[]).await;
        let honest = principals.key(6, Role::Merchant, &[]).await;
        (pins, attacker_key, honest)
    });
    let payments_of = |connection: u64| -> Vec<PayRequest> {
        (0..ATTACK_BATCH)
            .map(|i| {
                let request_id = connection * ATTACK_BATCH + i;
                PayRequest {
                    request_id,
                    amount_minor: 1,
                    pins: vec![pins[request_id as usize % pins.len()].clone()],
                }
            })
            .collect()
    };
    // Every payment the attack names is paid once first, by a client that
    // reads its replies: the attack's frames are then all replays, which
    // take the whole path (gateway, router, shard, storage read) and leave
    // no new state, so what the engine's memory grows by is what it holds
    // in flight.
    runtime().block_on(async {
        let client = Client::connect_as(server.addr, &attacker_key)
            .await
            .expect("attacker");
        for connection in 0..ATTACK_CONNECTIONS {
            let results = client
                .pay_batch(payments_of(connection))
                .await
                .expect("batch");
            assert!(results.iter().all(
                |r| matches!(r, kessai::protocol::PayResult::Paid(paid) if paid.is_approved())
            ));
        }
    });
    let before = server.rss_bytes();

    let mut connections = Vec::new();
    let mut writers = Vec::new();
    for connection in 0..ATTACK_CONNECTIONS {
        let raw = raw_connection(server.addr, &attacker_key);
        let batch = Request::PayBatch(PayBatchRequest {
            payments: payments_of(connection),
        });
        let mut bytes = Vec::new();
        for frame in 0..ATTACK_FRAMES {
            bytes.extend(frame_of(3 + frame, &batch));
        }
        writers.push(write_in_background(&raw, bytes, Duration::from_secs(10)));
        connections.push(raw);
    }

    // Meanwhile another merchant is served, and memory is sampled.
    let mut peak = 0;
    runtime().block_on(async {
        let merchant = Client::connect_as(server.addr, &honest)
            .await
            .expect("honest");
        for request_id in 1..=40 {
            let paid = merchant.pay(request_id, 1, &pins[..1]).await.expect("pay");
            assert!(paid.is_approved(), "{paid:?}");
            peak = peak.max(server.rss_bytes());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for writer in writers {
        writer.join().expect("writer");
    }
    for raw in &mut connections {
        assert!(raw.closed_by_engine());
    }
    peak = peak.max(server.rss_bytes());
    // The engine gives memory back once a burst is over.
    std::thread::sleep(Duration::from_secs(2));
    let after = server.rss_bytes();
    eprintln!(
        "engine RSS: before {} MiB, peak {} MiB, after close {} MiB",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    let bound = ATTACK_BUDGET_BYTES + ATTACK_RSS_OVERHEAD_MAX;
    assert!(
        peak.saturating_sub(before) <= bound,
        "RSS grew from {before} to {peak}, more than {bound}"
    );
    assert!(
        after.saturating_sub(before) <= ATTACK_RSS_OVERHEAD_MAX,
        "RSS after close {after}, from {before}"
    );
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!((status, &audit["ok"]), (0, &serde_json::json!(true)));
}

/// Limits for the fair-share test (see there).
const SHARE_LIMITS: [&str; 7] = [
    "max_frame_bytes = 4096",
    "max_issue_per_request = 200",
    "max_report_lines = 64",
    "max_payments_per_batch = 1",
    "max_inflight_bytes_per_connection = 9216",
    "max_inflight_bytes_per_principal = 9216",
    "shard_mailbox_capacity = 16",
];

/// Connections of the flooding merchant, and payments each pipelines.
const FLOOD_CONNECTIONS: u64 = 24;
const FLOOD_PIPELINE: u64 = 500;

#[test]
fn a_merchant_flooding_at_full_pipeline_never_makes_another_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small limits, so a CI-sized flood reaches them: a mailbox of 16
    // messages per shard, and a principal's share of 9 KiB, about 7
    // payments in flight over all its connections. So the flooder can never
    // have more than 7 messages in any shard's mailbox and waits for its
    // own replies (with a share as large as the engine's budget, its 24
    // connections fill the mailboxes and the other merchant gets `busy`).
    let server = server_with(dir.path(), &SHARE_LIMITS);
    let (pins, flooder_key, honest_key) = runtime().block_on(async {
        let principals = server.principals().await;
        let mut pins = Vec::new();
        // Batches of 100: an activation of 100 PINs fits a 4 KiB frame.
        for _ in 0..4 {
            pins.extend(active_cards(&principals, 100, 1_000_000, 3).await);
        }
        let flooder_key = principals.key(5, Role::Merchant, &[]).await;
        let honest_key = principals.key(6, Role::Merchant, &[]).await;
        (pins, flooder_key, honest_key)
    });
    let flood: Vec<std::thread::JoinHandle<Vec<Response>>> = (0..FLOOD_CONNECTIONS)
        .map(|connection| {
            let (addr, key) = (server.addr, flooder_key.clone());
            let requests: Vec<Request> = (0..FLOOD_PIPELINE)
                .map(|n| {
                    let request_id = connection * FLOOD_PIPELINE + n;
                    Request::Pay(PayRequest {
                        request_id,
                        amount_minor: 1,
                        pins: vec![pins[request_id as usize % pins.len()].clone()],
                    })
                })
                .collect();
            std::thread::spawn(move || {
                let mut raw = raw_connection(addr, &key);
                pipeline_and_read(&mut raw, &requests)
            })
        })
        .collect();

    // While the flood runs, the other merchant pays one at a time: each is
    // approved, none is `busy`.
    let honest_paid = runtime().block_on(async {
        let honest = Client::connect_as(server.addr, &honest_key)
            .await
            .expect("honest");
        let mut paid = 0u64;
        for request_id in 1..=50 {
            let card = &pins[request_id as usize % pins.len()];
            let answer = honest.pay(request_id, 1, std::slice::from_ref(card)).await;
            match answer {
                Ok(answer) => assert!(answer.is_approved(), "{answer:?}"),
                Err(error) => panic!("payment {request_id} beside the flood: {error}"),
            }
            paid += 1;
        }
        paid
    });
    let mut flooder_approved = 0;
    for flooder in flood {
        for reply in flooder.join().expect("flooder") {
            match reply {
                Response::Paid(paid) if paid.is_approved() => flooder_approved += 1,
                other => panic!("the flooder, within its share, got {other:?}"),
            }
        }
    }
    assert_eq!(flooder_approved, FLOOD_CONNECTIONS * FLOOD_PIPELINE);
    let (_, report) = server.cli(&["report"]);
    assert_eq!(
        report["totals"]["merchant_owed_minor"],
        flooder_approved + honest_paid
    );
}
