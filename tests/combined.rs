//! Combined-card payments over TCP: order of taking, declines naming the
//! card, atomicity across shards, local single-shard commits, and many
//! concurrent overlapping payments.

mod common;

use common::{Server, ServerOptions, active_cards, pick_by_shard, runtime};
use kessai::card::DeclineReason;
use kessai::protocol::ErrorCode;
use std::collections::HashMap;
use std::sync::Arc;

const SHARDS: usize = 4;

#[test]
fn cards_are_taken_in_order_across_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(8).await;
        let pool = active_cards(&principals, 40, 1000, 1).await;
        // Three cards on three different shards: a two-phase payment.
        let cards = pick_by_shard(&pool, SHARDS, &[2, 0, 3]);
        let first = client.pay(1, 2300, &cards).await.expect("pay");
        let paid = &first;
        assert!(paid.is_approved(), "{paid:?}");
        let taken: Vec<u64> = paid.parts().iter().map(|p| p.taken_minor).collect();
        assert_eq!(taken, vec![1000, 1000, 300]);
        let remaining: Vec<u64> = paid.parts().iter().map(|p| p.remaining_minor).collect();
        assert_eq!(remaining, vec![0, 0, 700]);
        assert_eq!(paid.remaining_minor(), 700);
        let last4: Vec<u16> = cards
            .iter()
            .map(|p| p[p.len() - 4..].parse().expect("digits"))
            .collect();
        assert_eq!(
            paid.parts().iter().map(|p| p.pin_last4).collect::<Vec<_>>(),
            last4
        );
        for (pin, left) in cards.iter().zip([0, 0, 700]) {
            assert_eq!(
                client.balance(pin).await.expect("balance").balance_minor,
                left
            );
        }
        // A card not needed for the amount is untouched.
        let unused: Vec<String> = pool
            .iter()
            .filter(|p| !cards.contains(p))
            .cloned()
            .collect();
        let spare = pick_by_shard(&unused, SHARDS, &[1, 2]);
        let paid = client.pay(2, 400, &spare).await.expect("pay");
        assert_eq!(
            paid.parts()
                .iter()
                .map(|p| p.taken_minor)
                .collect::<Vec<_>>(),
            vec![400, 0]
        );
        assert_eq!(
            client
                .balance(&spare[1])
                .await
                .expect("balance")
                .balance_minor,
            1000
        );

        let retry = client.pay(1, 2300, &cards).await.expect("retry");
        assert!(retry.replayed);
        assert_eq!(retry.parts(), first.parts());
        assert_eq!(retry.remaining_minor(), first.remaining_minor());
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.merchants[0].owed_minor, 2700);
        let audit = principals.operator.audit().await.expect("audit");
        assert!(audit.ok, "{:?}", audit.problems);
    });
}

#[test]
fn a_bad_card_or_a_shortfall_declines_the_whole_payment_and_debits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(8).await;
        let pool = active_cards(&principals, 40, 1000, 1).await;
        let unsold = principals
            .operator
            .issue(1, 1000)
            .await
            .expect("issue")
            .pins
            .remove(0);
        let good = pick_by_shard(&pool, SHARDS, &[0, 1, 2]);

        // Position names the offending card (1-based), across shards.
        let with_unsold = vec![good[0].clone(), good[1].clone(), unsold.clone()];
        let declined = client.pay(1, 100, &with_unsold).await.expect("answer");
        assert_eq!(declined.reason(), Some(DeclineReason::InvalidCard));
        assert_eq!(declined.position().map(|p| p.number()), Some(3));

        let with_unknown = vec![good[0].clone(), "79927398713".to_string(), unsold.clone()];
        let declined = client.pay(2, 100, &with_unknown).await.expect("answer");
        assert_eq!(declined.reason(), Some(DeclineReason::InvalidCard));
        assert_eq!(
            declined.position().map(|p| p.number()),
            Some(2),
            "the first bad card is named"
        );

        let short = client.pay(3, 3001, &good).await.expect("answer");
        assert_eq!(short.reason(), Some(DeclineReason::InsufficientFunds));
        assert_eq!(short.remaining_minor(), 0, "a decline shows no balance");
        assert_eq!(short.position(), None);

        for pin in &good {
            let balance = client.balance(pin).await.expect("balance");
            assert_eq!(
                (balance.balance_minor, balance.available_minor),
                (1000, 1000),
                "nothing debited or held"
            );
        }
        assert_eq!(
            principals
                .operator
                .report()
                .await
                .expect("report")
                .totals
                .merchant_owed_minor,
            0
        );
        assert!(principals.operator.audit().await.expect("audit").ok);

        // Request limits: 11 PINs (limit 10), a PIN twice.
        let eleven: Vec<String> = pool[..11].to_vec();
        let error = client.pay(4, 100, &eleven).await.expect_err("refused");
        assert_eq!(error.server_code(), Some(ErrorCode::LimitExceeded));
        let twice = vec![good[0].clone(), good[1].clone(), good[0].clone()];
        let error = client.pay(5, 100, &twice).await.expect_err("refused");
        assert_eq!(error.server_code(), Some(ErrorCode::DuplicatePin));
        let ten: Vec<String> = pool[..10].to_vec();
        let paid = client.pay(6, 9500, &ten).await.expect("pay");
        assert!(paid.is_approved(), "ten cards are allowed: {paid:?}");
        assert_eq!(paid.parts().len(), 10);
    });
}

#[test]
fn cards_on_one_shard_commit_locally_and_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(8).await;
        let pool = active_cards(&principals, 40, 1000, 1).await;
        let same = pick_by_shard(&pool, SHARDS, &[3, 3, 3]);
        let paid = client.pay(1, 2500, &same).await.expect("pay");
        assert_eq!(
            paid.parts()
                .iter()
                .map(|p| p.taken_minor)
                .collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let short = client.pay(2, 501, &same).await.expect("answer");
        assert_eq!(
            short.reason(),
            Some(DeclineReason::Exhausted),
            "the first card is spent"
        );
        assert_eq!(short.position().map(|p| p.number()), Some(1));
        let rest = vec![same[2].clone()];
        let short = client.pay(3, 501, &rest).await.expect("answer");
        assert_eq!(short.reason(), Some(DeclineReason::InsufficientFunds));
        assert_eq!(
            client
                .balance(&same[2])
                .await
                .expect("balance")
                .balance_minor,
            500
        );
        let stats = principals.operator.stats().await.expect("stats");
        assert_eq!(stats.shards.len(), SHARDS);
        for shard in &stats.shards {
            // Every card sits in memory: at least 16-byte key + 40-byte card.
            assert!(shard.card_map_bytes >= shard.cards * 56, "{shard:?}");
        }
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn concurrent_overlapping_payments_never_overdraw_or_deadlock() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Most of these payments meet a spent card again and again; each such
    // repeat counts toward the lockout (PROTOCOL.md §9.6), which this test
    // is not about.
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: SHARDS,
            limits: vec!["pin_failures_max = 100000".into()],
            ..ServerOptions::default()
        },
    );
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(3).await;
        const CARDS: usize = 6;
        const FACE: u64 = 2000;
        let pins = Arc::new(active_cards(&principals, CARDS as u32, FACE, 1).await);
        let mut tasks = Vec::new();
        for connection in 0..4u64 {
            let client = Arc::new(principals.merchant(3).await);
            for lane in 0..8u64 {
                let (client, pins) = (client.clone(), pins.clone());
                tasks.push(tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    for step in 0..40u64 {
                        let request_id = (connection << 40) | (lane << 20) | step;
                        let first = ((request_id * 7 + step * 3) % CARDS as u64) as usize;
                        let count = 1 + (step as usize + lane as usize) % 3;
                        let cards: Vec<String> = (0..count)
                            .map(|i| pins[(first + i * 2) % CARDS].clone())
                            .collect();
                        let amount = 5 + (request_id % 37);
                        let paid = client
                            .pay(request_id, amount, &cards)
                            .await
                            .expect("answer");
                        outcomes.push((cards, amount, paid));
                    }
                    outcomes
                }));
            }
        }
        let mut taken_per_card: HashMap<String, u64> = HashMap::new();
        let (mut approved, mut approved_minor) = (0, 0u64);
        for task in tasks {
            for (cards, amount, paid) in task.await.expect("task") {
                if paid.is_approved() {
                    approved += 1;
                    approved_minor += amount;
                    assert_eq!(
                        paid.parts().iter().map(|p| p.taken_minor).sum::<u64>(),
                        amount
                    );
                    for (pin, part) in cards.iter().zip(paid.parts()) {
                        *taken_per_card.entry(pin.clone()).or_insert(0) += part.taken_minor;
                    }
                } else {
                    assert!(matches!(
                        paid.reason(),
                        Some(DeclineReason::InsufficientFunds | DeclineReason::Exhausted)
                    ));
                }
            }
        }
        assert!(approved > 200, "{approved} approved");
        for pin in pins.iter() {
            let balance = client.balance(pin).await.expect("balance");
            let taken = taken_per_card.get(pin).copied().unwrap_or(0);
            assert_eq!(
                balance.balance_minor,
                FACE - taken,
                "every approved take landed, nothing else"
            );
            assert_eq!(
                balance.available_minor, balance.balance_minor,
                "no hold left behind"
            );
        }
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.totals.merchant_owed_minor, approved_minor);
        let audit = principals.operator.audit().await.expect("audit");
        assert!(audit.ok, "{:?}", audit.problems);
    });
}

#[test]
fn the_cli_prints_parts_for_combined_payments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    let (pool, merchant_key) = runtime().block_on(async {
        let principals = server.principals().await;
        let key = principals
            .key_file(dir.path(), 4, kessai::protocol::Role::Merchant, &[])
            .await;
        (active_cards(&principals, 64, 500, 1).await, key)
    });
    let cards = pick_by_shard(&pool, SHARDS, &[0, 1]);
    let (status, paid) = server.cli_as(
        &merchant_key,
        &[
            "pay",
            "--amount",
            "800",
            "--request-id",
            "77",
            &cards[0],
            &cards[1],
        ],
    );
    assert_eq!(status, 0, "{paid}");
    assert_eq!(paid["status"], "approved");
    assert_eq!(paid["remaining_minor"], 200);
    assert_eq!(paid["parts"][0]["pin_last4"], cards[0][12..]);
    assert_eq!(paid["parts"][0]["taken_minor"], 500);
    assert_eq!(paid["parts"][0]["remaining_minor"], 0);
    assert_eq!(paid["parts"][1]["taken_minor"], 300);
    assert_eq!(paid["parts"][1]["remaining_minor"], 200);
    let (status, declined) = server.cli_as(
        &merchant_key,
        &[
            "pay",
            "--amount",
            "300",
            "--request-id",
            "78",
            &cards[0],
            &cards[1],
        ],
    );
    assert_eq!(status, 0);
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["reason"], "exhausted");
    assert_eq!(declined["position"], 1);
}
