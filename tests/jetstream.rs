//! The engine on the JetStream command log (issue #21, step 1), against a
//! real nats-server (tests/common/nats.rs): `kill -9` of the engine, a
//! restart under another shard count, and `kill -9` of nats-server under
//! load. Every acknowledged payment must be there afterwards, with the
//! answer it was given, and the audit exact.

mod common;

use common::kill_load::{AMOUNT, CARDS, FACE, WORKERS, check_everything, load_while};
use common::nats::{self, Nats};
use common::{Server, ServerOptions, active_cards, runtime};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
