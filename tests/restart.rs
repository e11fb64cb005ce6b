//! Durability: restarts with a different shard count, and `kill -9` while
//! payments are in flight.

mod common;

use common::kill_load::{CARDS, FACE, check_everything, load_while};
use common::{Server, active_cards, runtime};
use kessai::client::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
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

#[test]
fn kill_9_keeps_every_acknowledged_payment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = Server::start(dir.path(), 4);
    let (principals, pins, client) = rt.block_on(async {
        let principals = server.principals().await;
        let client = Arc::new(principals.merchant(1).await);
        let pins = active_cards(&principals, CARDS as u32, FACE, 1).await;
        (principals, pins, client)
    });
    // kill -9 while the workers are mid-flight (they keep running on the
    // runtime's threads).
    let load = load_while(&rt, client, &pins, 0, |_| {
        std::thread::sleep(Duration::from_millis(700));
        server.kill9();
    });
    assert!(
        load.acked.len() > 50,
        "the load was real: {} acked",
        load.acked.len()
    );
    assert!(load.acked.iter().all(|(_, paid)| paid.is_approved()));

    // Retrying everything that was sent settles each unacknowledged
    // payment exactly once: applied before the crash (replayed), aborted
    // by recovery (replayed decline), or never started (applied now). The
    // final answers must account for every yen that left the cards.
    let server = Server::start(dir.path(), 4);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        check_everything(&principals, &pins, &load).await;
    });
}
