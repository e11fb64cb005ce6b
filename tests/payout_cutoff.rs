//! Payouts are exact at any cut-off: payments (single-shard and two-phase)
//! and refunds flow from four connections while the operator cuts a payout
//! every millisecond, with no settle delay. Every approved payment and
//! refund must land in exactly one payout: the payouts' sums equal what
//! the clients were told, each payout lists exactly the items it summed,
//! and the report and the audit agree.

mod common;

use common::{Server, active_cards, runtime, shard_of};
use kessai::protocol::{PayoutItemKind, PayoutStatus, RefundStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MERCHANT: u32 = 9;
const SHARDS: usize = 4;

/// What one paying connection was told: approved payments and refunds.
#[derive(Default, Debug)]
struct Told {
    payments: u64,
    payments_minor: u64,
    refunds: u64,
    refunds_minor: u64,
}

#[test]
fn payouts_cut_every_millisecond_close_every_payment_and_refund_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    runtime().block_on(async {
        let principals = Arc::new(server.principals().await);
        let pins = active_cards(&principals, 64, 3000, 42).await;
        let by_shard: Arc<Vec<Vec<String>>> = Arc::new(
            (0..SHARDS)
                .map(|shard| {
                    let on: Vec<String> = pins
                        .iter()
                        .filter(|pin| shard_of(pin, SHARDS) == shard)
                        .cloned()
                        .collect();
                    assert!(!on.is_empty(), "64 cards cover {SHARDS} shards");
                    on
                })
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut payers = Vec::new();
        for connection in 0..4u64 {
            let merchant = principals.merchant(MERCHANT).await;
            let (pins, by_shard, stop) = (pins.clone(), by_shard.clone(), stop.clone());
            payers.push(tokio::spawn(async move {
                let mut told = Told::default();
                let mut request_id = connection << 40;
                let mut refund_id = connection << 40;
                let mut turn = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    turn += 1;
                    request_id += 1;
                    let amount = 1 + (turn % 7) as u64;
                    // Every third payment combines two cards on two shards
                    // (two-phase commit: its record is written by its home
                    // shard after a round trip).
                    let cards = if turn.is_multiple_of(3) {
                        let (first, second) = (turn % SHARDS, (turn + 1) % SHARDS);
                        vec![
                            by_shard[first][turn % by_shard[first].len()].clone(),
                            by_shard[second][turn % by_shard[second].len()].clone(),
                        ]
                    } else {
                        vec![pins[turn % pins.len()].clone()]
                    };
                    let paid = merchant.pay(request_id, amount, &cards).await.expect("pay");
                    if !paid.is_approved() {
                        continue;
                    }
                    told.payments += 1;
                    told.payments_minor += amount;
                    if turn.is_multiple_of(4) {
                        refund_id += 1;
                        let refunded = merchant
                            .refund(refund_id, request_id, 1)
                            .await
                            .expect("refund");
                        assert_eq!(refunded.status, RefundStatus::Refunded, "{refunded:?}");
                        told.refunds += 1;
                        told.refunds_minor += 1;
                    }
                }
                told
            }));
        }

        // The operator cuts a payout every millisecond while they pay.
        let operator = &principals.operator;
        let started = Instant::now();
        let mut payout_request = 0u64;
        while started.elapsed() < Duration::from_secs(3) {
            payout_request += 1;
            let created = operator
                .payout_create(payout_request, MERCHANT, None)
                .await
                .expect("payout");
            assert!(
                created.status == PayoutStatus::Created
                    || created.reason.map(|r| r.name()) == Some("nothing_to_pay"),
                "{created:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut told = Told::default();
        for payer in payers {
            let one = payer.await.expect("payer");
            told.payments += one.payments;
            told.payments_minor += one.payments_minor;
            told.refunds += one.refunds;
            told.refunds_minor += one.refunds_minor;
        }
        assert!(told.payments > 100 && told.refunds > 10, "{told:?}");
        // A last payout closes everything decided so far.
        let last = operator
            .payout_create(payout_request + 1, MERCHANT, None)
            .await
            .expect("last payout");
        assert_eq!(last.status, PayoutStatus::Created, "{last:?}");

        // Every payout's sums, and the items it lists, add up to exactly
        // what the clients were told.
        let mut summed = Told::default();
        let (mut listed_payments, mut listed_refunds) = (0u64, 0u64);
        let (mut paid_out, mut fees) = (0u64, 0u64);
        let mut after_seq = 0;
        let mut payouts = 0;
        loop {
            let page = operator
                .payout_list(MERCHANT, after_seq, 500)
                .await
                .expect("list");
            for payout in &page.payouts {
                payouts += 1;
                summed.payments += payout.payments;
                summed.payments_minor += payout.payments_minor;
                summed.refunds += payout.refunds;
                summed.refunds_minor += payout.refunds_minor;
                paid_out += payout.amount_minor;
                fees += payout.fee_minor;
                let (mut items_minor, mut count) = ([0u64; 2], [0u64; 2]);
                let mut after = None;
                loop {
                    let shown = operator
                        .payout_show(MERCHANT, payout.seq, after, 1000)
                        .await
                        .expect("show");
                    for item in &shown.items {
                        let kind = usize::from(item.item.kind == PayoutItemKind::Refund);
                        items_minor[kind] += item.amount_minor;
                        count[kind] += 1;
                    }
                    match shown.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                assert_eq!(
                    (count, items_minor),
                    (
                        [payout.payments, payout.refunds],
                        [payout.payments_minor, payout.refunds_minor]
                    ),
                    "payout {} lists what it summed",
                    payout.seq
                );
                listed_payments += count[0];
                listed_refunds += count[1];
            }
            match page.next {
                Some(next) => after_seq = next,
                None => break,
            }
        }
        eprintln!("{payouts} payouts closed {told:?}");
        assert!(payouts > 50, "payouts were cut often: {payouts}");
        assert_eq!(
            (summed.payments, summed.payments_minor),
            (told.payments, told.payments_minor),
            "every approved payment is in exactly one payout"
        );
        assert_eq!(
            (summed.refunds, summed.refunds_minor),
            (told.refunds, told.refunds_minor),
            "every refund is in exactly one payout"
        );
        assert_eq!(
            (listed_payments, listed_refunds),
            (told.payments, told.refunds)
        );
        // Nothing is left to pay, and the books say what the payouts paid.
        let report = operator.report().await.expect("report");
        let line = report
            .merchants
            .iter()
            .find(|line| line.merchant_id == MERCHANT)
            .expect("the merchant's line");
        assert_eq!(line.owed_minor, 0, "{line:?}");
        assert_eq!((line.paid_out_minor, line.fees_minor), (paid_out, fees));
        let audit = operator.audit().await.expect("audit");
        assert!(audit.ok, "{:?}", audit.problems);
    });
}
