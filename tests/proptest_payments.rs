//! Property test: random sequences of concurrent single and combined
//! payments on a small set of cards, against an in-process engine over real
//! TCP and a real RocksDB.
//!
//! After every sequence: no balance went negative or above face value, money
//! is conserved (what left the cards is exactly what merchants are owed),
//! every approved payment is fully applied (its parts add up to its amount
//! and each card's balance is its face value less the parts taken from it),
//! no hold is left, and the engine's own audit agrees.

mod common;

use common::Principals;
use kessai::config::Config;
use kessai::engine::EngineHandle;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

const CARDS: usize = 5;
const FACE: u64 = 1000;

#[derive(Debug, Clone)]
struct Payment {
    /// Indexes into the card set; distinct, 1 to 3 of them.
    cards: Vec<usize>,
    amount_minor: u64,
}

/// 1 to 3 distinct cards, in a random order (the order of taking), and an
/// amount that one card alone may or may not cover.
fn payment() -> impl Strategy<Value = Payment> {
    let cards = proptest::sample::subsequence((0..CARDS).collect::<Vec<_>>(), 1..=3).prop_shuffle();
    (cards, 1u64..=700).prop_map(|(cards, amount_minor)| Payment {
        cards,
        amount_minor,
    })
}

/// Rounds of payments; the payments of a round run concurrently.
fn rounds() -> impl Strategy<Value = Vec<Vec<Payment>>> {
    proptest::collection::vec(proptest::collection::vec(payment(), 1..8), 1..6)
}

fn check(rounds: &[Vec<Payment>], shards: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("literal"),
        data_dir: dir.path().join("data"),
        shards,
        worker_threads: 2,
        ..Config::default()
    };
    let engine = EngineHandle::start(config).expect("engine");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        let principals = Principals::new(engine.addr, &engine.operator_key).await;
        let operator = &principals.operator;
        let pins = operator
            .issue(CARDS as u32, FACE)
            .await
            .expect("issue")
            .pins;
        let store = principals.store(1).await;
        store.activate(1, 0, &pins).await.expect("activate");
        let client = Arc::new(principals.merchant(2).await);
        let mut taken: HashMap<usize, u64> = HashMap::new();
        let mut approved_minor = 0u64;
        let mut request_id = 0u64;
        for round in rounds {
            let mut tasks = Vec::new();
            for payment in round {
                request_id += 1;
                let chosen: Vec<String> = payment.cards.iter().map(|&i| pins[i].clone()).collect();
                let (client, payment, id) = (client.clone(), payment.clone(), request_id);
                tasks.push(tokio::spawn(async move {
                    let paid = client.pay(id, payment.amount_minor, &chosen).await;
                    (payment, paid)
                }));
            }
            for task in tasks {
                let (payment, paid) = task.await.expect("task");
                let paid = paid.map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
                if paid.is_approved() {
                    prop_assert_eq!(paid.parts().len(), payment.cards.len());
                    prop_assert_eq!(
                        paid.parts().iter().map(|p| p.taken_minor).sum::<u64>(),
                        payment.amount_minor
                    );
                    approved_minor += payment.amount_minor;
                    for (&card, part) in payment.cards.iter().zip(paid.parts()) {
                        *taken.entry(card).or_insert(0) += part.taken_minor;
                    }
                }
            }
        }
        let mut total_balance = 0u64;
        for (index, pin) in pins.iter().enumerate() {
            let balance = client.balance(pin).await.expect("balance");
            let card_taken = taken.get(&index).copied().unwrap_or(0);
            prop_assert!(
                card_taken <= FACE,
                "card {} overdrawn by {}",
                index,
                card_taken - FACE
            );
            prop_assert_eq!(balance.balance_minor, FACE - card_taken, "card {}", index);
            prop_assert_eq!(
                balance.available_minor,
                balance.balance_minor,
                "hold left on card {}",
                index
            );
            total_balance += balance.balance_minor;
        }
        let report = operator.report().await.expect("report");
        prop_assert_eq!(report.totals.merchant_owed_minor, approved_minor);
        prop_assert_eq!(total_balance + approved_minor, FACE * CARDS as u64);
        let audit = operator.audit().await.expect("audit");
        prop_assert!(audit.ok, "audit: {:?}", audit.problems);
        Ok(())
    });
    engine.stop();
    result
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn concurrent_payments_conserve_money_and_apply_fully(rounds in rounds(), shards in 1usize..=4) {
        check(&rounds, shards)?;
    }
}
