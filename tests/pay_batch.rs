//! Batch frames of payments over TCP against a real engine: each payment
//! of a batch gets exactly what it would have got alone, in order; retries
//! replay (also after `kill -9`); a batch whose reply could not fit a frame
//! is refused whole before anything is applied; `busy` is per payment.

mod common;

use common::{Server, ServerOptions, active_cards, pick_by_shard, runtime};
use kessai::card::DeclineReason;
use kessai::protocol::{ErrorCode, PayRequest, PayResponse, PayResult};

fn payment(request_id: u64, amount_minor: u64, pins: &[&String]) -> PayRequest {
    PayRequest {
        request_id,
        amount_minor,
        pins: pins.iter().map(|pin| pin.to_string()).collect(),
    }
}

fn paid(result: &PayResult) -> &PayResponse {
    match result {
        PayResult::Paid(paid) => paid,
        PayResult::Error(error) => panic!("expected a payment answer, got {error:?}"),
    }
}

fn error_code(result: &PayResult) -> Option<ErrorCode> {
    match result {
        PayResult::Error(error) => error.error_code(),
        PayResult::Paid(paid) => panic!("expected an error, got {paid:?}"),
    }
}

#[test]
fn each_payment_of_a_batch_gets_its_own_answer_in_order_and_retries_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let (principals, pins, batch, first) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 600, 500, 1).await;
        let merchant = principals.merchant(5).await;
        let pair = pick_by_shard(&pins[300..], 4, &[0, 1]);
        let unknown = "79927398713".to_string();
        let bad_check_digit = "79927398710".to_string();
        let mut batch = vec![
            payment(1, 100, &[&pins[0]]),
            // Two shards: a two-phase payment inside the batch.
            payment(2, 600, &[&pair[0], &pair[1]]),
            payment(3, 100, &[&unknown]),
            payment(4, 100, &[&bad_check_digit]),
            payment(1, 100, &[&pins[2]]),
            payment(5, 501, &[&pins[3]]),
        ];
        // And many ordinary ones, one yen from each remaining card.
        let spare: Vec<&String> = pins[4..].iter().filter(|pin| !pair.contains(pin)).collect();
        for (n, pin) in spare.iter().enumerate() {
            batch.push(payment(100 + n as u64, 1, &[pin]));
        }
        let results = merchant.pay_batch(batch.clone()).await.expect("batch");
        assert_eq!(results.len(), batch.len(), "one result per payment");
        let approved = paid(&results[0]);
        assert!(approved.is_approved());
        assert_eq!(approved.remaining_minor(), 400);
        let two_card = paid(&results[1]);
        assert!(two_card.is_approved(), "{two_card:?}");
        assert_eq!(two_card.parts().len(), 2);
        assert_eq!(two_card.remaining_minor(), 400);
        assert_eq!(paid(&results[2]).reason(), Some(DeclineReason::InvalidCard));
        assert_eq!(error_code(&results[3]), Some(ErrorCode::InvalidPin));
        assert_eq!(error_code(&results[4]), Some(ErrorCode::InvalidArgument));
        assert_eq!(
            paid(&results[5]).reason(),
            Some(DeclineReason::InsufficientFunds)
        );
        for result in &results[6..] {
            let one = paid(result);
            assert!(one.is_approved() && one.remaining_minor() == 499, "{one:?}");
        }

        // The same batch again: every recorded outcome replays, nothing is
        // paid twice; the refusals are refused again.
        let again = merchant.pay_batch(batch.clone()).await.expect("batch");
        for (index, (before, after)) in results.iter().zip(&again).enumerate() {
            match (before, after) {
                (PayResult::Paid(before), PayResult::Paid(after)) if before.is_approved() => {
                    assert!(after.replayed, "payment {index} replays");
                    let mut first = after.clone();
                    first.replayed = false;
                    assert_eq!(first, *before);
                }
                (PayResult::Paid(before), PayResult::Paid(after)) => {
                    assert_eq!(before.reason(), after.reason(), "payment {index}");
                }
                (PayResult::Error(before), PayResult::Error(after)) => {
                    assert_eq!(before.code, after.code, "payment {index}");
                }
                other => panic!("payment {index} changed kind: {other:?}"),
            }
        }
        // A payment of a batch and the same request sent alone are one.
        let alone = merchant.pay(1, 100, &pins[..1]).await.expect("pay");
        assert!(alone.replayed && alone.remaining_minor() == 400);
        let first = merchant.balance(&pins[0]).await.expect("balance");
        (principals, pins, batch, first.balance_minor)
    });
    assert_eq!(first, 400);

    // Acknowledged batches survive kill -9.
    server.kill9();
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(5).await;
        let results = merchant.pay_batch(batch.clone()).await.expect("batch");
        let replayed = results
            .iter()
            .filter(|result| {
                matches!(result, PayResult::Paid(paid) if paid.replayed && paid.is_approved())
            })
            .count();
        assert_eq!(replayed, batch.len() - 4, "every approved payment replays");
        let balance = merchant.balance(&pins[0]).await.expect("balance");
        assert_eq!(balance.balance_minor, 400);
    });
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!((status, &audit["ok"]), (0, &serde_json::json!(true)));
}

#[test]
fn a_batch_whose_reply_could_not_fit_a_frame_is_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            limits: vec![
                "max_frame_bytes = 4096".into(),
                "max_issue_per_request = 100".into(),
                "max_report_lines = 64".into(),
                "max_payments_per_batch = 100".into(),
            ],
            ..ServerOptions::default()
        },
    );
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 100, 500, 1).await;
        let merchant = principals.merchant(5).await;
        let batch = |count: usize| -> Vec<PayRequest> {
            (0..count)
                .map(|n| payment(n as u64, 1, &[&pins[n % pins.len()]]))
                .collect()
        };
        // 100 payments are within the count, but their worst-case reply is
        // not within 4 KiB; 101 are past the count.
        for count in [100, 101] {
            let refused = merchant.pay_batch(batch(count)).await.expect_err("refused");
            assert_eq!(refused.server_code(), Some(ErrorCode::LimitExceeded));
        }
        for pin in &pins {
            assert_eq!(
                merchant.balance(pin).await.expect("balance").balance_minor,
                500
            );
        }
        // 40 fit, and are paid.
        let results = merchant.pay_batch(batch(40)).await.expect("batch");
        assert!(results.iter().all(|result| paid(result).is_approved()));
    });
}

#[test]
fn a_full_shard_answers_busy_per_payment_and_a_retry_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            limits: vec!["shard_mailbox_capacity = 1".into()],
            ..ServerOptions::default()
        },
    );
    const MERCHANTS: u32 = 8;
    const PAYMENTS: usize = 500;
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1000, 1000, 1).await;
        // Every merchant pipelines four batches at once on its connection.
        let mut batches = tokio::task::JoinSet::new();
        let mut merchants = Vec::new();
        for merchant_id in 0..MERCHANTS {
            let merchant = std::sync::Arc::new(principals.merchant(100 + merchant_id).await);
            merchants.push(merchant.clone());
            for round in 0..4u64 {
                let batch: Vec<PayRequest> = (0..PAYMENTS)
                    .map(|n| {
                        let id = round * PAYMENTS as u64 + n as u64;
                        payment(id, 1, &[&pins[(id as usize * 7 + n) % pins.len()]])
                    })
                    .collect();
                let merchant = merchant.clone();
                batches.spawn(async move {
                    let results = merchant.pay_batch(batch.clone()).await.expect("batch");
                    (merchant_id as usize, batch, results)
                });
            }
        }
        let (mut approved, mut busy) = (0, 0);
        while let Some(done) = batches.join_next().await {
            let (merchant_id, sent, answers) = done.expect("task");
            let mut retry = Vec::new();
            for (request, result) in sent.into_iter().zip(answers) {
                match result {
                    PayResult::Paid(paid) if paid.is_approved() => approved += 1,
                    PayResult::Error(error) if error.error_code() == Some(ErrorCode::Busy) => {
                        busy += 1;
                        retry.push(request);
                    }
                    other => panic!("neither approved nor busy: {other:?}"),
                }
            }
            // Busy did nothing: the retry is a first attempt, and is paid.
            for chunk in retry.chunks(20) {
                let results = merchants[merchant_id]
                    .pay_batch(chunk.to_vec())
                    .await
                    .expect("retry");
                for result in results {
                    match result {
                        PayResult::Paid(paid) => assert!(paid.is_approved() && !paid.replayed),
                        PayResult::Error(error) => {
                            assert_eq!(error.error_code(), Some(ErrorCode::Busy));
                        }
                    }
                }
            }
        }
        eprintln!("batches under a one-message mailbox: {approved} approved, {busy} busy");
        assert_eq!(approved + busy, MERCHANTS as usize * 4 * PAYMENTS);
        assert!(busy > 0, "the flood never met the mailbox limit");
    });
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!((status, &audit["ok"]), (0, &serde_json::json!(true)));
}

#[test]
fn a_gathering_client_fills_batches_by_itself_and_each_call_gets_its_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = common::free_local_addr();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            metrics_listen: Some(metrics),
            ..ServerOptions::default()
        },
    );
    const CALLS: u64 = 2000;
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 500, 1000, 1).await;
        let key = principals
            .key(5, kessai::protocol::Role::Merchant, &[])
            .await;
        let merchant = kessai::client::Client::connect_as(server.addr, &key)
            .await
            .expect("connect")
            .gather_payments(256);
        let merchant = std::sync::Arc::new(merchant);
        let mut calls = tokio::task::JoinSet::new();
        for request_id in 0..CALLS {
            let (merchant, pin) = (merchant.clone(), pins[request_id as usize % 500].clone());
            calls.spawn(async move {
                // Amounts 1..=3, so each card's total is known.
                let amount = 1 + request_id % 3;
                let paid = merchant.pay(request_id, amount, &[pin]).await;
                (request_id, amount, paid.expect("answer"))
            });
        }
        let mut taken = std::collections::HashMap::new();
        while let Some(done) = calls.join_next().await {
            let (request_id, amount, paid) = done.expect("task");
            assert!(paid.is_approved(), "{request_id}: {paid:?}");
            assert_eq!(paid.amount_minor, amount);
            *taken.entry(request_id % 500).or_insert(0) += amount;
        }
        for (index, total) in taken {
            let balance = merchant
                .balance(&pins[index as usize])
                .await
                .expect("balance");
            assert_eq!(balance.balance_minor, 1000 - total);
        }
        // A repeated request id is answered alone, as a retry.
        let again = merchant.pay(7, 2, &pins[7..8]).await.expect("retry");
        assert!(again.replayed && again.is_approved());
        // The same new id twice at once: never two batch items; it is paid
        // once, and the twin is a replay or told it is in progress.
        let (first, twin) = tokio::join!(
            merchant.pay(CALLS, 5, &pins[9..10]),
            merchant.pay(CALLS, 5, &pins[9..10])
        );
        let mut paid_once = 0;
        for answer in [first, twin] {
            match answer {
                Ok(paid) if paid.is_approved() && !paid.replayed => paid_once += 1,
                Ok(paid) => assert!(paid.replayed, "{paid:?}"),
                Err(error) => assert_eq!(
                    error.server_code(),
                    Some(kessai::protocol::ErrorCode::RequestInProgress)
                ),
            }
        }
        assert_eq!(paid_once, 1);
    });
    let samples = common::scrape(metrics);
    let batches = samples["kessai_pay_batches_total"];
    eprintln!("{CALLS} concurrent calls went out in {batches} batch frames (and some alone)");
    assert!(batches >= 1.0, "the calls were gathered");
    assert!(
        batches < CALLS as f64 / 2.0,
        "most frames carried several payments"
    );
}
