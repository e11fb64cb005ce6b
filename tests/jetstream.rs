//! The engine on the JetStream command log (issue #21, step 1), against a
//! real nats-server (tests/common/nats.rs): `kill -9` of the engine, a
//! restart under another shard count, and `kill -9` of nats-server under
//! load. Every acknowledged payment must be there afterwards, with the
//! answer it was given, and the audit exact.

mod common;

use common::nats::{self, Nats};
use common::{Principals, Server, ServerOptions, active_cards, runtime};
use kessai::client::Client;
use kessai::protocol::PayResponse;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CARDS: usize = 24;
const WORKERS: usize = 8;
const FACE: u64 = 3000;
const AMOUNT: u64 = 7;

fn start(dir: &Path, nats: &Nats, shards: usize) -> Server {
    Server::start_with(
        dir,
        ServerOptions {
            shards,
            log: vec![
                "backend = \"jetstream\"".into(),
                // Checkpoints (and so trims) run during the load too.
                "checkpoint_interval_ms = 300".into(),
                format!("jetstream.url = \"{}\"", nats.url()),
                "jetstream.stream = \"KESSAI_TEST\"".into(),
                "jetstream.ack_timeout_ms = 2000".into(),
            ],
            ..ServerOptions::default()
        },
    )
}

/// Every third request combines two cards (a two-phase payment when they
/// sit on different shards); the others use one.
fn cards_of(request_id: u64, pins: &[String]) -> Vec<String> {
    let first = request_id as usize % pins.len();
    if request_id.is_multiple_of(3) {
        vec![pins[first].clone(), pins[(first + 5) % pins.len()].clone()]
    } else {
        vec![pins[first].clone()]
    }
}

/// What a load sent, and what it heard back.
struct Load {
    sent: Vec<u64>,
    acked: Vec<(u64, PayResponse)>,
}

/// Pays from `pins` with `WORKERS` concurrent workers of merchant 1 while
/// `meanwhile` runs (on this thread); stops them after it.
/// `meanwhile` gets the count of answers so far.
fn load_while(
    rt: &tokio::runtime::Runtime,
    client: Arc<Client>,
    pins: &[String],
    first_request: u64,
    meanwhile: impl FnOnce(&AtomicUsize),
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (client, pins, stop) = (client.clone(), pins.to_vec(), stop.clone());
            let answered = answered.clone();
            rt.spawn(async move {
                let mut sent = Vec::new();
                let mut acked = Vec::new();
                let mut request_id = first_request + ((worker as u64) << 32);
                while !stop.load(Ordering::Relaxed) {
                    request_id += 1;
                    sent.push(request_id);
                    match client
                        .pay(request_id, AMOUNT, &cards_of(request_id, &pins))
                        .await
                    {
                        Ok(paid) => {
                            acked.push((request_id, paid));
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break, // the engine died under us
                    }
                }
                (sent, acked)
            })
        })
        .collect();
    meanwhile(&answered);
    stop.store(true, Ordering::Relaxed);
    let mut load = Load {
        sent: Vec::new(),
        acked: Vec::new(),
    };
    for worker in workers {
        let (sent, acked) = rt.block_on(worker).expect("worker");
        load.sent.extend(sent);
        load.acked.extend(acked);
    }
    load
}

/// Every acknowledged payment is there with its answer; every request
/// sent settles exactly once; balances, books and the audit agree.
async fn check_everything(principals: &Principals, pins: &[String], load: &Load) {
    let client = principals.merchant(1).await;
    let audit = principals.operator.audit().await.expect("audit");
    assert!(audit.ok, "after recovery: {:?}", audit.problems);
    assert_eq!(audit.totals.held_minor, 0, "no hold survives recovery");
    for (request_id, paid) in &load.acked {
        let retry = client
            .pay(*request_id, AMOUNT, &cards_of(*request_id, pins))
            .await
            .expect("retry");
        assert!(retry.replayed, "acknowledged payment {request_id} was lost");
        assert_eq!(
            &retry,
            &PayResponse {
                replayed: true,
                ..paid.clone()
            }
        );
    }
    let mut taken = vec![0u64; pins.len()];
    let mut approved_minor = 0;
    for request_id in &load.sent {
        let cards = cards_of(*request_id, pins);
        let answer = client
            .pay(*request_id, AMOUNT, &cards)
            .await
            .expect("retry");
        if answer.is_approved() {
            approved_minor += AMOUNT;
            for (pin, part) in cards.iter().zip(&answer.parts) {
                taken[pins.iter().position(|p| p == pin).expect("known pin")] += part.taken_minor;
            }
        } else {
            assert_eq!(
                answer.reason,
                Some(kessai::card::DeclineReason::Aborted),
                "{answer:?}"
            );
        }
    }
    for (card, spent) in taken.iter().enumerate() {
        let balance = client.balance(&pins[card]).await.expect("balance");
        assert_eq!(balance.balance_minor, FACE - spent, "card {card}");
    }
    let report = principals.operator.report().await.expect("report");
    assert_eq!(report.totals.merchant_owed_minor, approved_minor);
    assert_eq!(report.totals.activated_minor, FACE * pins.len() as u64);
    let audit = principals.operator.audit().await.expect("audit");
    assert!(audit.ok, "{:?}", audit.problems);
}

#[test]
fn the_engine_on_jetstream_survives_kill_9_and_a_new_shard_count() {
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let rt = runtime();
    let server = start(dir.path(), &nats, 4);
    let (principals, pins, client) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, CARDS as u32, FACE, 1).await;
        let client = Arc::new(principals.merchant(1).await);
        (principals, pins, client)
    });
    let load = load_while(&rt, client, &pins, 0, |_| {
        std::thread::sleep(Duration::from_millis(1500));
        // kill -9 while the workers are mid-flight.
        server.kill9();
    });
    assert!(load.acked.len() > 50, "a real load: {}", load.acked.len());
    assert!(load.acked.iter().all(|(_, paid)| paid.is_approved()));

    // Another shard count: the log's partitions are the old shards', the
    // replay is by key.
    let server = start(dir.path(), &nats, 3);
    let principals = rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        check_everything(&principals, &pins, &load).await;
        principals
    });
    server.kill9();
    let server = start(dir.path(), &nats, 4);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        check_everything(&principals, &pins, &load).await;
    });
}

#[test]
fn a_kill_9_of_nats_server_under_load_loses_no_acknowledged_payment() {
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = Nats::start(dir.path());
    let rt = runtime();
    let mut server = start(dir.path(), &nats, 4);
    let (principals, pins, client) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, CARDS as u32, FACE, 1).await;
        let client = Arc::new(principals.merchant(1).await);
        (principals, pins, client)
    });
    let (mut before_kill, mut during, mut after) = (0, 0, 0);
    let load = load_while(&rt, client, &pins, 0, |answered| {
        std::thread::sleep(Duration::from_millis(1000));
        nats.kill9();
        before_kill = answered.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        nats.restart();
        during = answered.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1500));
        after = answered.load(Ordering::Relaxed);
    });
    eprintln!(
        "answers: {before_kill} before the kill, {} while nats-server was down, {} after",
        during - before_kill,
        after - during
    );
    assert!(
        before_kill > 50,
        "a real load before the kill: {before_kill}"
    );
    assert!(
        during - before_kill <= WORKERS,
        "nothing but answers already on their way while the log is down"
    );
    assert!(load.acked.len() > 50, "a real load: {}", load.acked.len());
    assert!(load.acked.iter().all(|(_, paid)| paid.is_approved()));

    // The engine rides out the restart (appends wait and resolve); if it
    // stopped instead, a restart replays the stream. Either way nothing
    // acknowledged may be missing.
    let survived = server.wait_exit(Duration::from_millis(200)).is_none();
    if survived {
        assert!(after > during, "the engine serves again after the restart");
    }
    let server = if survived {
        server
    } else {
        eprintln!("the engine stopped during the nats-server restart; starting it again");
        start(dir.path(), &nats, 4)
    };
    let principals = rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        check_everything(&principals, &pins, &load).await;
        principals
    });
    // And once more from the stream alone.
    server.kill9();
    let server = start(dir.path(), &nats, 2);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        check_everything(&principals, &pins, &load).await;
    });
    let log = std::fs::read_to_string(dir.path().join("engine.log")).unwrap_or_default();
    assert!(
        survived,
        "the engine should ride out a short nats-server restart; its log:\n{log}"
    );
}

/// A stream that lost records the database holds (deleted and created
/// again, say) is refused at start, as a file log that ends too early is:
/// replaying it would skip records.
#[test]
fn a_stream_behind_the_database_is_refused_at_start() {
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let rt = runtime();
    let server = start(dir.path(), &nats, 2);
    rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 4, FACE, 1).await;
        let paid = principals
            .merchant(1)
            .await
            .pay(1, AMOUNT, &pins[..1])
            .await
            .expect("pay");
        assert!(paid.is_approved());
    });
    // A checkpoint (every 300 ms) writes the positions into the database.
    std::thread::sleep(Duration::from_millis(1500));
    drop(server);
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        async_nats::jetstream::new(client)
            .delete_stream("KESSAI_TEST")
            .await
            .expect("delete the stream");
    });
    let log = dir.path().join("refused.log");
    let mut engine = std::process::Command::new(common::kessai_bin())
        .args(["serve", "--config"])
        .arg(dir.path().join("kessai.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run kessai serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = engine.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = engine.kill();
            let _ = engine.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the engine started on a stream behind its database: {stderr}"
    );
    assert!(stderr.contains("log ends before"), "{stderr}");
}
