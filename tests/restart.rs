//! Durability: restarts with a different shard count, and `kill -9` while
//! payments are in flight.

mod common;

use common::{Server, active_cards, runtime};
use kessai::client::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

async fn balances(
    client: &Client,
    pins: &[String],
) -> BTreeMap<String, (u64, kessai::card::CardState)> {
    let mut out = BTreeMap::new();
    for pin in pins {
        let seen = match client.balance(pin).await {
            Ok(balance) => (balance.balance_minor, balance.state),
            // An unsold card: merchants get no balance for it.
            Err(error) => {
                assert_eq!(
                    error.server_code(),
                    Some(kessai::protocol::ErrorCode::InvalidCard)
                );
                (0, kessai::card::CardState::Issued)
            }
        };
        out.insert(pin.clone(), seen);
    }
    out
}

#[test]
fn changing_the_shard_count_between_restarts_changes_no_balance_or_book() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = Server::start(dir.path(), 4);
    let (mut principals, pins, mut before, mut report_before) = rt.block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(100).await;
        let mut pins = active_cards(&principals, 40, 2000, 11).await;
        pins.extend(active_cards(&principals, 10, 500, 12).await);
        pins.extend(
            principals
                .operator
                .issue(5, 1000)
                .await
                .expect("issue")
                .pins,
        ); // unsold
        for (index, pin) in pins.iter().take(50).enumerate() {
            let merchant = principals.merchant(100 + (index % 3) as u32).await;
            let paid = merchant
                .pay(index as u64, 100 + index as u64, std::slice::from_ref(pin))
                .await
                .expect("pay");
            assert!(paid.is_approved(), "{paid:?}");
        }
        let combined = client.pay(999, 2500, &pins[..3]).await.expect("pay");
        assert!(combined.is_approved(), "{combined:?}");
        let balances = balances(&client, &pins).await;
        let report = principals.operator.report().await.expect("report");
        (principals, pins.clone(), balances, report)
    });
    drop(server);

    for shards in [1, 7, 4] {
        let server = Server::start(dir.path(), shards);
        (principals, before, report_before) = rt.block_on(async {
            let principals = principals.reconnect(&server).await;
            let client = principals.merchant(100).await;
            assert_eq!(
                balances(&client, &pins).await,
                before,
                "balances with {shards} shards"
            );
            let report = principals.operator.report().await.expect("report");
            assert_eq!(report, report_before, "books with {shards} shards");
            let audit = principals.operator.audit().await.expect("audit");
            assert!(audit.ok, "{:?}", audit.problems);
            // The engine keeps working with the new layout; the next restart
            // must preserve this payment too.
            let request_id = 10_000 + shards as u64;
            let paid = client
                .pay(request_id, 1, std::slice::from_ref(&pins[49]))
                .await
                .expect("pay");
            assert!(paid.is_approved() && !paid.replayed);
            let balances = balances(&client, &pins).await;
            let report = principals.operator.report().await.expect("report");
            (principals, balances, report)
        });
        drop(server);
    }
}

/// The cards one request of the kill test pays from: every third request
/// combines two cards (a two-phase payment when they sit on different
/// shards), the others use one.
fn kill_test_cards(request_id: u64, pins: &[String]) -> Vec<String> {
    let first = request_id as usize % pins.len();
    if request_id.is_multiple_of(3) {
        vec![pins[first].clone(), pins[(first + 5) % pins.len()].clone()]
    } else {
        vec![pins[first].clone()]
    }
}

#[test]
fn kill_9_keeps_every_acknowledged_payment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = Server::start(dir.path(), 4);
    const CARDS: usize = 24;
    const WORKERS: usize = 8;
    const FACE: u64 = 3000;
    const AMOUNT: u64 = 7;

    let (principals, pins, workers, stop) = rt.block_on(async {
        let principals = server.principals().await;
        let client = Arc::new(principals.merchant(1).await);
        let pins = active_cards(&principals, CARDS as u32, FACE, 1).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..WORKERS {
            let (client, pins, stop) = (client.clone(), pins.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                // Every request sent, and those acknowledged with their answer.
                let mut sent = Vec::new();
                let mut acked = Vec::new();
                let mut request_id = (worker as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    request_id += 1;
                    sent.push(request_id);
                    match client
                        .pay(request_id, AMOUNT, &kill_test_cards(request_id, &pins))
                        .await
                    {
                        Ok(paid) => acked.push((request_id, paid)),
                        Err(_) => break, // the engine died under us
                    }
                }
                (sent, acked)
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        (principals, pins, workers, stop)
    });
    // kill -9 while the workers are mid-flight (they keep running on the
    // runtime's threads).
    server.kill9();
    let (acked, sent) = rt.block_on(async {
        stop.store(true, Ordering::Relaxed);
        let mut all_sent = Vec::new();
        let mut all_acked = Vec::new();
        for worker in workers {
            let (sent, acked) = worker.await.expect("worker");
            all_sent.extend(sent);
            all_acked.extend(acked);
        }
        (all_acked, all_sent)
    });
    assert!(acked.len() > 50, "the load was real: {} acked", acked.len());
    assert!(acked.iter().all(|(_, paid)| paid.is_approved()));

    let server = Server::start(dir.path(), 4);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let client = principals.merchant(1).await;
        let audit = principals.operator.audit().await.expect("audit");
        assert!(audit.ok, "after recovery: {:?}", audit.problems);
        assert_eq!(audit.totals.held_minor, 0, "no hold survives recovery");
        // Every acknowledged payment is there, with the answer it was given.
        for (request_id, paid) in &acked {
            let retry = client
                .pay(*request_id, AMOUNT, &kill_test_cards(*request_id, &pins))
                .await
                .expect("retry");
            assert!(retry.replayed, "acknowledged payment {request_id} was lost");
            assert_eq!(
                &retry,
                &kessai::protocol::PayResponse {
                    replayed: true,
                    ..paid.clone()
                }
            );
        }
        // Retrying everything that was sent settles each unacknowledged
        // payment exactly once: applied before the crash (replayed), aborted
        // by recovery (replayed decline), or never started (applied now).
        // The final answers must account for every yen that left the cards.
        let mut taken = [0u64; CARDS];
        let mut approved_minor = 0;
        for request_id in &sent {
            let cards = kill_test_cards(*request_id, &pins);
            let answer = client
                .pay(*request_id, AMOUNT, &cards)
                .await
                .expect("retry");
            if answer.is_approved() {
                approved_minor += AMOUNT;
                for (pin, part) in cards.iter().zip(&answer.parts) {
                    taken[pins.iter().position(|p| p == pin).expect("known pin")] +=
                        part.taken_minor;
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
        let audit = principals.operator.audit().await.expect("audit");
        assert!(audit.ok, "{:?}", audit.problems);
    });
}
