//! Payments over TCP against a real engine: every decline reason,
//! activation rules, idempotent retries (also across a restart).

mod common;

use common::{Server, active_cards, runtime};
use kessai::card::{CardState, DeclineReason};
use kessai::protocol::{ActivationResult, ErrorCode};

#[test]
fn every_decline_reason_is_typed_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = server.principals().await;
        let issued = principals.operator.issue(3, 500).await.expect("issue").pins;
        let store = principals.store(1).await;
        store.activate(1, 0, &issued[..2]).await.expect("activate");
        let (active, spent, unsold) = (&issued[0], &issued[1], &issued[2]);
        // A valid PIN (check digit right) that was never issued.
        let unknown = "79927398713".to_string();
        let merchant = principals.merchant(9).await;

        // An unknown PIN and an unsold card look the same to a merchant, and
        // a shortfall does not tell the balance.
        let cases = [
            (vec![unknown.clone()], 100, DeclineReason::InvalidCard),
            (vec![unsold.clone()], 100, DeclineReason::InvalidCard),
            (vec![active.clone()], 501, DeclineReason::InsufficientFunds),
        ];
        for (request_id, (pins, amount, reason)) in cases.into_iter().enumerate() {
            let paid = merchant
                .pay(request_id as u64, amount, &pins)
                .await
                .expect("answer");
            assert!(!paid.is_approved());
            assert_eq!(paid.reason(), Some(reason));
            assert_eq!(paid.position().map(|p| p.number()), Some(1));
            assert!(paid.parts().is_empty());
            assert_eq!(paid.remaining_minor(), 0, "a decline shows no balance");
        }
        // Spend a card to zero: it is exhausted, not merely short.
        let drained = merchant
            .pay(10, 500, std::slice::from_ref(spent))
            .await
            .expect("pay");
        assert!(drained.is_approved());
        let exhausted = merchant
            .pay(11, 1, std::slice::from_ref(spent))
            .await
            .expect("answer");
        assert_eq!(exhausted.reason(), Some(DeclineReason::Exhausted));
        assert_eq!(
            merchant.balance(spent).await.expect("balance").state,
            CardState::Exhausted
        );
        // Balance cannot tell an unsold card from an unknown PIN either.
        for pin in [unsold, &unknown] {
            let refused = merchant.balance(pin).await.expect_err("refused");
            assert_eq!(refused.server_code(), Some(ErrorCode::InvalidCard));
        }

        // The declines moved no money.
        assert_eq!(
            merchant
                .balance(active)
                .await
                .expect("balance")
                .balance_minor,
            500
        );
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.totals.merchant_owed_minor, 500);
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn activation_happens_once_and_books_the_store_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = principals
            .operator
            .issue(2, 3000)
            .await
            .expect("issue")
            .pins;
        let first = principals
            .store(8)
            .await
            .activate(8, 100, &pins)
            .await
            .expect("activate");
        assert!(first.results.iter().all(|r| *r
            == ActivationResult::Activated {
                face_value_minor: 3000
            }));
        // Again, mixed with a typo and an unknown PIN: each slot answers for
        // itself and the batch as a whole is not refused.
        let again = vec![
            pins[0].clone(),
            "79927398710".to_string(),
            "79927398713".to_string(),
        ];
        let second = principals
            .store(9)
            .await
            .activate(9, 101, &again)
            .await
            .expect("activate");
        assert_eq!(
            second.results,
            vec![
                ActivationResult::Declined {
                    reason: DeclineReason::AlreadyActive
                },
                ActivationResult::InvalidPin,
                ActivationResult::Declined {
                    reason: DeclineReason::UnknownPin
                },
            ]
        );
        let merchant = principals.merchant(1).await;
        assert_eq!(
            merchant
                .balance(&pins[0])
                .await
                .expect("balance")
                .balance_minor,
            3000
        );
        let report = principals.operator.report().await.expect("report");
        assert_eq!(
            report.stores.len(),
            1,
            "store 9 activated nothing: {report:?}"
        );
        assert_eq!(report.stores[0].store_id, 8);
        assert_eq!(report.stores[0].owed_minor, 6000);
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn a_retry_returns_the_first_answer_and_never_debits_twice_even_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let rt = runtime();
    let (principals, pins, first, declined) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, 1000, 1).await;
        let merchant = principals.merchant(77).await;
        let first = merchant.pay(5000, 400, &pins).await.expect("pay");
        assert!(first.is_approved() && !first.replayed);
        let retry = merchant.pay(5000, 400, &pins).await.expect("retry");
        assert!(retry.replayed);
        assert_eq!(retry.parts(), first.parts());
        // The same request id from another merchant is another payment.
        let other = principals
            .merchant(78)
            .await
            .pay(5000, 100, &pins)
            .await
            .expect("pay");
        assert!(other.is_approved() && !other.replayed);
        // A decline is an answer too, and is replayed as such even once the
        // money would be there.
        let declined = merchant.pay(5001, 900, &pins).await.expect("pay");
        assert_eq!(declined.reason(), Some(DeclineReason::InsufficientFunds));
        // Reusing a request id for a different payment is refused.
        let reused = merchant.pay(5000, 401, &pins).await.expect_err("refused");
        assert_eq!(reused.server_code(), Some(ErrorCode::InvalidArgument));
        assert_eq!(
            merchant
                .balance(&pins[0])
                .await
                .expect("balance")
                .balance_minor,
            500
        );
        (principals, pins, first, declined)
    });
    server.kill9();

    let server = Server::start(dir.path(), 3);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(77).await;
        let retry = merchant.pay(5000, 400, &pins).await.expect("retry");
        assert!(retry.replayed);
        assert_eq!(retry.parts(), first.parts());
        assert_eq!(retry.remaining_minor(), first.remaining_minor());
        let retry_declined = merchant.pay(5001, 900, &pins).await.expect("retry");
        assert!(retry_declined.replayed);
        assert_eq!(retry_declined.reason(), declined.reason());
        assert_eq!(
            merchant
                .balance(&pins[0])
                .await
                .expect("balance")
                .balance_minor,
            500
        );
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.totals.merchant_owed_minor, 500);
    });
}

#[test]
fn concurrent_duplicates_debit_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, 1000, 1).await;
        let client = std::sync::Arc::new(principals.merchant(3).await);
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let client = client.clone();
            let pins = pins.clone();
            tasks.push(tokio::spawn(async move { client.pay(99, 10, &pins).await }));
        }
        let mut fresh = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(paid) => {
                    assert!(paid.is_approved());
                    if !paid.replayed {
                        fresh += 1;
                    }
                }
                Err(error) => assert_eq!(error.server_code(), Some(ErrorCode::RequestInProgress)),
            }
        }
        assert_eq!(fresh, 1, "exactly one attempt executed");
        assert_eq!(
            client
                .balance(&pins[0])
                .await
                .expect("balance")
                .balance_minor,
            990
        );
    });
}
