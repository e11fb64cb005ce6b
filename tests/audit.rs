//! The audit catches books that do not add up, says where, and makes
//! `kessai audit` exit non-zero.

mod common;

use common::{Server, active_cards, runtime};
use kessai::ids::ShardId;
use kessai::storage::records::BookKind;
use kessai::storage::{Changes, Storage, Store};

#[test]
fn tampered_books_fail_the_audit_and_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(9).await;
        let pins = active_cards(&principals, 2, 1000, 3).await;
        assert!(
            client
                .pay(1, 400, &pins[..1])
                .await
                .expect("pay")
                .is_approved()
        );
    });
    let (status, clean) = server.cli(&["audit"]);
    assert_eq!(
        (status, &clean["ok"]),
        (0, &serde_json::Value::Bool(true)),
        "{clean}"
    );
    server.kill9();

    // Behind the engine's back: a merchant credit no card paid for, and a
    // debt for a store that sold nothing. (Rows of a shard id the engine
    // never ran, so they add to the real rows instead of replacing them.)
    {
        let storage = Storage::open(&dir.path().join("data")).expect("open");
        let mut changes = Changes::new();
        changes.put_book(BookKind::MerchantOwed, 9, ShardId(200), 250);
        changes.put_book(BookKind::StoreOwed, 77, ShardId(200), 500);
        storage.commit(&changes).expect("commit");
    }

    let server = Server::start(dir.path(), 2);
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!(status, 1, "a failed audit exits non-zero: {audit}");
    assert_eq!(audit["ok"], false);
    let problems: Vec<&str> = audit["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("conservation") && p.contains("difference -250")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("store 77:") && p.contains("owed 500")),
        "{problems:?}"
    );
}

#[test]
fn findings_are_capped_with_a_count_of_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    server.kill9();
    {
        let storage = Storage::open(&dir.path().join("data")).expect("open");
        let mut changes = Changes::new();
        // 150 stores that owe for cards that do not exist.
        for store in 1000..1150 {
            changes.put_book(BookKind::StoreOwed, store, ShardId(200), 10);
        }
        storage.commit(&changes).expect("commit");
    }
    let server = Server::start(dir.path(), 2);
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!(status, 1);
    let listed = audit["problems"].as_array().expect("problems").len() as u64;
    assert_eq!(listed, kessai::ledger::PROBLEMS_MAX as u64);
    // 150 store findings and the conservation line.
    assert_eq!(
        listed + audit["problems_omitted"].as_u64().expect("omitted"),
        151
    );
}

#[test]
fn audits_every_10_ms_during_30_s_of_combined_payments_are_all_ok() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    const CARDS: usize = 3000;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = Arc::new(active_cards(&principals, CARDS as u32, 3000, 3).await);
        let unsold = principals
            .operator
            .issue(3000, 500)
            .await
            .expect("issue")
            .pins;
        let stop = Arc::new(AtomicBool::new(false));
        let approved = Arc::new(AtomicU64::new(0));
        let mut load = tokio::task::JoinSet::new();
        for merchant_id in 0..4u32 {
            let merchant = Arc::new(principals.merchant(10 + merchant_id).await);
            for task in 0..8u64 {
                let (merchant, pins) = (merchant.clone(), pins.clone());
                let (stop, approved) = (stop.clone(), approved.clone());
                load.spawn(async move {
                    let mut n = task;
                    while !stop.load(Ordering::Relaxed) {
                        // Three cards a third of the deck apart: on
                        // different shards most of the time (two-phase).
                        let first = (n as usize * 7) % CARDS;
                        let cards: Vec<String> = (0..3)
                            .map(|k| pins[(first + k * CARDS / 3) % CARDS].clone())
                            .collect();
                        let paid = merchant
                            .pay((task << 32) | n, 3, &cards)
                            .await
                            .expect("pay");
                        if paid.is_approved() {
                            approved.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 8;
                    }
                });
            }
        }
        // Sales go on too.
        let hq = principals.store(3).await;
        let stop_sales = stop.clone();
        load.spawn(async move {
            for chunk in unsold.chunks(10) {
                if stop_sales.load(Ordering::Relaxed) {
                    break;
                }
                hq.activate(3, 1, chunk).await.expect("activate");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });

        let started = Instant::now();
        let (mut audits, mut failed) = (0u64, Vec::new());
        while started.elapsed() < Duration::from_secs(30) {
            let audit = principals.operator.audit().await.expect("audit");
            audits += 1;
            if !audit.ok {
                failed.push(audit.problems);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        while let Some(done) = load.join_next().await {
            done.expect("load task");
        }
        let approved = approved.load(Ordering::Relaxed);
        eprintln!("{audits} audits during {approved} approved three-card payments");
        assert!(
            failed.is_empty(),
            "{} of {audits} failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert!(
            audits >= 100 && approved >= 1000,
            "{audits} audits, {approved} payments"
        );
        let last = principals.operator.audit().await.expect("audit");
        assert!(last.ok, "{:?}", last.problems);
        assert_eq!(last.totals.merchant_owed_minor, 3 * approved);
    });
}
