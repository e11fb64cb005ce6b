//! A load of merchant payments killed mid-flight, and the check that
//! follows a restart (tests/restart.rs on the file log, tests/jetstream.rs
//! on JetStream): every acknowledged payment is there with the answer it
//! was given, every request sent settles exactly once, and balances,
//! books and the audit agree.

use super::Principals;
use kessai::client::Client;
use kessai::protocol::PayResponse;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub const CARDS: usize = 24;
pub const WORKERS: usize = 8;
pub const FACE: u64 = 3000;
pub const AMOUNT: u64 = 7;

/// Every third request combines two cards (a two-phase payment when they
/// sit on different shards); the others use one.
pub fn cards_of(request_id: u64, pins: &[String]) -> Vec<String> {
    let first = request_id as usize % pins.len();
    if request_id.is_multiple_of(3) {
        vec![pins[first].clone(), pins[(first + 5) % pins.len()].clone()]
    } else {
        vec![pins[first].clone()]
    }
}

/// What a load sent, and what it heard back.
pub struct Load {
    pub sent: Vec<u64>,
    pub acked: Vec<(u64, PayResponse)>,
}

/// Pays from `pins` with `WORKERS` concurrent workers of merchant 1 while
/// `meanwhile` runs (on this thread); stops them after it.
/// `meanwhile` gets the count of answers so far.
pub fn load_while(
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
pub async fn check_everything(principals: &Principals, pins: &[String], load: &Load) {
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
        let mut first = paid.clone();
        first.replayed = true;
        assert_eq!(retry, first);
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
            for (pin, part) in cards.iter().zip(answer.parts()) {
                taken[pins.iter().position(|p| p == pin).expect("known pin")] += part.taken_minor;
            }
        } else {
            assert_eq!(
                answer.reason(),
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
