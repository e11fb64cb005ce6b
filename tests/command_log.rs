//! The command log (issue #20): acknowledged payments live in the log
//! until a checkpoint holds them; a `kill -9` before any checkpoint loses
//! nothing; `kessai log verify` checks a stopped engine's chain offline,
//! replays it over the checkpoint into the same audit totals the live
//! engine gave, and its head hash carries over restarts.

mod common;

use common::{Principals, Server, ServerOptions, active_cards, kessai_bin, runtime};
use std::path::Path;
use std::time::Duration;

/// `kessai log verify DIR --json`: (exit status, its JSON).
fn verify(data_dir: &Path) -> (i32, serde_json::Value) {
    let output = std::process::Command::new(kessai_bin())
        .args(["log", "verify", "--json"])
        .arg(data_dir)
        .output()
        .expect("run kessai log verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("no JSON: {stdout:?} {:?}", output.stderr));
    (output.status.code().unwrap_or(-1), json)
}

fn start(dir: &Path, shards: usize, checkpoint_interval_ms: u64) -> Server {
    Server::start_with(
        dir,
        ServerOptions {
            shards,
            log: vec![
                format!("checkpoint_interval_ms = {checkpoint_interval_ms}"),
                "segment_bytes = 1048576".into(),
            ],
            ..ServerOptions::default()
        },
    )
}

/// Pays `count` single-card payments of 100 from `pins` as merchant 100
/// (payment ids 1, 2, ...); returns the balances left.
async fn pay_and_read(principals: &Principals, pins: &[String], count: usize) -> Vec<u64> {
    let merchant = principals.merchant(100).await;
    for (index, pin) in pins.iter().cycle().take(count).enumerate() {
        let paid = merchant
            .pay(index as u64 + 1, 100, std::slice::from_ref(pin))
            .await
            .expect("pay");
        assert!(paid.is_approved(), "{paid:?}");
    }
    balances(principals, pins).await
}

async fn balances(principals: &Principals, pins: &[String]) -> Vec<u64> {
    let merchant = principals.merchant(100).await;
    let mut out = Vec::new();
    for pin in pins {
        out.push(merchant.balance(pin).await.expect("balance").balance_minor);
    }
    out
}

/// Starts an engine, sells `cards` cards of `face_value_minor`, pays
/// `payments` of 100 from them.
fn serve_and_pay(
    dir: &Path,
    shards: usize,
    checkpoint_interval_ms: u64,
    cards: u32,
    payments: usize,
) -> (Server, Principals, Vec<String>, Vec<u64>) {
    let server = start(dir, shards, checkpoint_interval_ms);
    let (principals, pins, balances) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, cards, 2000, 1).await;
        let balances = pay_and_read(&principals, &pins, payments).await;
        (principals, pins, balances)
    });
    (server, principals, pins, balances)
}

#[test]
fn a_kill_before_any_checkpoint_replays_the_log_under_another_shard_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No checkpoint during the run: everything after start-up lives in the
    // log and in RocksDB's unsynced memtables, which the kill loses.
    let (server, principals, pins, before) = serve_and_pay(dir.path(), 4, 600_000, 8, 40);
    assert_eq!(before, vec![1500; 8]);
    // (The connections made under serve_and_pay's runtime ended with it.)
    let (principals, online) = runtime().block_on(async {
        let principals = principals.reconnect(&server).await;
        let online = principals.operator.audit().await.expect("audit");
        (principals, online)
    });
    assert!(online.ok, "{online:?}");
    server.kill9();

    let data = dir.path().join("data");
    let (status, found) = verify(&data);
    assert_eq!(status, 0, "{found}");
    assert_eq!(found["ok"], true);
    // The offline replay over the checkpoint reaches what the engine held.
    let totals = &found["audit"]["totals"];
    assert_eq!(found["audit"]["ok"], true, "{found}");
    assert_eq!(totals["activated_minor"], online.totals.activated_minor);
    assert_eq!(totals["activated_minor"], 8 * 2000);
    assert_eq!(totals["balance_minor"], online.totals.balance_minor);
    assert_eq!(totals["balance_minor"], 8 * 1500);
    assert_eq!(
        totals["merchant_owed_minor"],
        online.totals.merchant_owed_minor
    );
    assert_eq!(totals["store_owed_minor"], online.totals.store_owed_minor);
    let tail = found["tail_records"].as_u64().expect("tail_records");
    assert!(tail > 0, "the payments are only in the log: {found}");
    assert!(found["records"].as_u64().expect("records") >= tail);
    let head = found["head"].as_str().expect("head").to_string();
    assert_eq!(head.len(), 64);

    // Another shard count: the replay is by key, not by shard.
    let server = start(dir.path(), 3, 600_000);
    runtime().block_on(async {
        let principals = principals.reconnect(&server).await;
        let after = balances(&principals, &pins).await;
        assert_eq!(after, before, "every acknowledged payment survived");
        // Each payment id again: replayed, not paid twice.
        assert_eq!(pay_and_read(&principals, &pins, 40).await, before);
    });
    drop(server);

    let (status, found) = verify(&data);
    assert_eq!(status, 0, "{found}");
    assert_eq!(
        found["base"], head,
        "the chain goes on from the head verified before the restart"
    );
}

#[test]
fn checkpoints_leave_no_tail_to_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, principals, pins, before) = serve_and_pay(dir.path(), 2, 50, 4, 12);
    // Several checkpoint intervals after the last write.
    std::thread::sleep(Duration::from_millis(1000));
    server.kill9();

    let (status, found) = verify(&dir.path().join("data"));
    assert_eq!(status, 0, "{found}");
    assert!(found["records"].as_u64().expect("records") > 0, "{found}");
    assert_eq!(
        found["tail_records"], 0,
        "a checkpoint holds every record: {found}"
    );
    let server = start(dir.path(), 2, 50);
    runtime().block_on(async {
        let principals = principals.reconnect(&server).await;
        assert_eq!(balances(&principals, &pins).await, before);
    });
}

#[test]
fn a_damaged_log_is_refused_at_start_and_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, ..) = serve_and_pay(dir.path(), 1, 600_000, 2, 4);
    server.kill9();
    // Start again (replays, then a new segment), stop, then remove the
    // log: the database now holds positions the log no longer has.
    drop(start(dir.path(), 1, 600_000));
    let log_dir = dir.path().join("data").join("log");
    std::fs::remove_dir_all(&log_dir).expect("remove the log");
    std::fs::create_dir(&log_dir).expect("an empty log");

    let (status, found) = verify(&dir.path().join("data"));
    assert_eq!(status, 1);
    let error = found["error"].as_str().expect("an error");
    assert!(error.contains("log ends before"), "{error}");

    let refused = std::process::Command::new(kessai_bin())
        .args(["serve", "--config"])
        .arg(dir.path().join("kessai.toml"))
        .output()
        .expect("run kessai serve");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("log ends before"), "{stderr}");
}

/// A merchant's order id is written with its payment's record, so through
/// the log: a kill before any checkpoint keeps it for a single-shard
/// payment, a two-phase one and an authorization.
#[test]
fn order_ids_survive_a_kill_before_any_checkpoint() {
    use kessai::order::{OrderId, payment_id};
    use kessai::storage::{Storage, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), 4, 600_000);
    let (principals, pins) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 8, 2000, 1).await;
        let merchant = principals.merchant(100).await;
        let one = merchant.pay_order("ORD-ONE", 300, &pins[..1]).await;
        assert!(one.expect("paid").is_approved());
        // Seven cards over four shards: a two-phase payment.
        let many = merchant.pay_order("ORD-MANY", 2500, &pins[1..]).await;
        assert!(many.expect("paid").is_approved());
        let held = merchant.authorize_order("ORD-HELD", 100, &pins[7..]).await;
        assert!(held.expect("authorized").is_authorized());
        (principals, pins)
    });
    server.kill9();

    let server = start(dir.path(), 3, 600_000);
    runtime().block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(100).await;
        for order in ["ORD-ONE", "ORD-MANY", "ORD-HELD"] {
            let found = merchant.order(order).await.expect("lookup");
            assert_eq!(found.expect(order).order_id, order);
        }
        let again = merchant.pay_order("ORD-MANY", 2500, &pins[1..]).await;
        assert!(again.expect("replayed").replayed, "not paid twice");
    });
    drop(server);
    let storage = Storage::open_read_only(&dir.path().join("data")).expect("open");
    for order in ["ORD-ONE", "ORD-MANY", "ORD-HELD"] {
        let payment = payment_id(100, &OrderId::parse(order).expect("order id"));
        assert_eq!(
            storage.order_id_of(payment).expect("read"),
            Some(order.to_string()),
            "the order id's own record survived the kill"
        );
    }
}
