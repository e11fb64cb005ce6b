//! Activation reversal and refunds, against the real engine over TCP: every
//! path and decline, retries (also after `kill -9`), a refund of a
//! two-phase payment crashed at each crash point, and a reversal racing a
//! payment on the same card. Every test ends with a passing audit.

mod common;

use common::{Server, ServerOptions, active_cards, pick_by_shard, runtime};
use kessai::card::DeclineReason;
use kessai::protocol::{ActivationResult, ErrorCode, ReversalStatus, Role};
use kessai::twopc::crashpoint::{CrashPoint, ENV_VAR};
use std::time::Duration;

const SHARDS: usize = 4;
const FACE: u64 = 1000;
const STORE: u32 = 5;

fn code<T: std::fmt::Debug>(result: Result<T, kessai::client::ClientError>) -> Option<ErrorCode> {
    result.expect_err("refused").server_code()
}

fn with_limits(limits: &[&str]) -> ServerOptions<'static> {
    ServerOptions {
        shards: SHARDS,
        limits: limits.iter().map(|l| l.to_string()).collect(),
        ..ServerOptions::default()
    }
}

async fn audit_ok(principals: &common::Principals) -> kessai::protocol::Totals {
    let audit = principals.operator.audit().await.expect("audit");
    assert!(audit.ok, "{:?}", audit.problems);
    audit.totals
}

#[test]
fn a_reversed_sale_is_worthless_and_off_the_store_debt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        with_limits(&["activation_reversal_window_ms = 1500"]),
    );
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 6, FACE, STORE).await;
        let hq = principals.store(STORE).await;
        let merchant = principals.merchant(9).await;

        let reversed = hq
            .reverse_activation(STORE, 1, &pins[0])
            .await
            .expect("reverse");
        assert_eq!(reversed.status, ReversalStatus::Reversed);
        assert_eq!((reversed.amount_minor, reversed.replayed), (FACE, false));
        let again = hq
            .reverse_activation(STORE, 1, &pins[0])
            .await
            .expect("retry");
        assert_eq!(
            (again.status, again.amount_minor),
            (ReversalStatus::Reversed, FACE)
        );
        assert!(again.replayed, "a retry gets the first answer");
        // Unsold again: a merchant cannot tell it from an unknown PIN.
        let paid = merchant.pay(1, 100, &pins[0..1]).await.expect("pay");
        assert_eq!(paid.reason(), Some(DeclineReason::InvalidCard));
        assert_eq!(
            code(merchant.balance(&pins[0]).await),
            Some(ErrorCode::InvalidCard)
        );

        // Declines: another sale, a spent card, an unknown card.
        let other_sale = hq
            .reverse_activation(STORE, 2, &pins[1])
            .await
            .expect("answer");
        assert_eq!(other_sale.reason, Some(DeclineReason::NotThisSale));
        assert!(
            merchant
                .pay(2, 1, &pins[2..3])
                .await
                .expect("pay")
                .is_approved()
        );
        let spent = hq
            .reverse_activation(STORE, 1, &pins[2])
            .await
            .expect("answer");
        assert_eq!(spent.reason, Some(DeclineReason::AlreadySpent));
        let unknown_pin = principals
            .operator
            .issue(1, FACE)
            .await
            .expect("issue")
            .pins;
        let unsold = hq
            .reverse_activation(STORE, 1, &unknown_pin[0])
            .await
            .expect("ok");
        assert_eq!(
            unsold.status,
            ReversalStatus::Forestalled,
            "never activated"
        );
        // Roles and stores.
        let other_hq = principals.store(STORE + 1).await;
        let forbidden = other_hq.reverse_activation(STORE, 1, &pins[3]).await;
        assert_eq!(code(forbidden), Some(ErrorCode::Forbidden));
        let as_merchant = merchant.reverse_activation(STORE, 1, &pins[3]).await;
        assert_eq!(code(as_merchant), Some(ErrorCode::Forbidden));
        let bad_pin = hq.reverse_activation(STORE, 1, "12345678901").await;
        assert_eq!(code(bad_pin), Some(ErrorCode::InvalidPin));

        // The report: the store owes for five cards, one reversed.
        let report = principals.operator.report().await.expect("report");
        let line = report
            .stores
            .iter()
            .find(|l| l.store_id == STORE)
            .expect("line");
        assert_eq!(line.owed_minor, 5 * FACE);
        assert_eq!(line.reversed_minor, FACE);
        assert_eq!(line.cards_activated, 5);
        // The store's statement: six sales, the one reversal of 1000 and
        // the forestalled one (0), re-adding to what the store owes.
        let statement = principals
            .operator
            .store_statement(STORE, 0, u64::MAX, None, 100)
            .await
            .expect("statement");
        use kessai::protocol::StoreEntryKind::{Activation, Reversal};
        let amounts = |kind| -> Vec<u64> {
            let lines = statement.lines.iter().filter(|l| l.line.kind == kind);
            lines.map(|l| l.amount_minor).collect()
        };
        assert_eq!(amounts(Activation), [FACE; 6]);
        let mut reversals = amounts(Reversal);
        reversals.sort_unstable();
        assert_eq!(reversals, [0, FACE]);
        assert_eq!(6 * FACE - FACE, line.owed_minor);
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.store_reversed_minor, FACE);
        assert_eq!(totals.cards_reversed, 2, "one undone, one forestalled");

        // Past the window, an unspent sale stays sold.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let late = hq
            .reverse_activation(STORE, 1, &pins[4])
            .await
            .expect("answer");
        assert_eq!(late.reason, Some(DeclineReason::WindowClosed));
        assert_eq!(
            merchant
                .balance(&pins[4])
                .await
                .expect("sold")
                .balance_minor,
            FACE
        );
        audit_ok(&principals).await;
    });
}

/// The store HQ never got its activation reply and reversed blindly: the
/// card ends up unsold whichever arrives first, also across `kill -9`.
#[test]
fn a_reversal_before_its_activation_refuses_it_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    let rt = runtime();
    let (principals, pins) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = principals
            .operator
            .issue(2, FACE)
            .await
            .expect("issue")
            .pins;
        let hq = principals.store(STORE).await;
        let blind = hq
            .reverse_activation(STORE, 77, &pins[0])
            .await
            .expect("reverse");
        assert_eq!(
            (blind.status, blind.amount_minor),
            (ReversalStatus::Forestalled, 0)
        );
        let late = hq.activate(STORE, 77, &pins[0..1]).await.expect("activate");
        assert_eq!(
            late.results,
            [ActivationResult::Declined {
                reason: DeclineReason::ActivationReversed
            }]
        );
        (principals, pins)
    });
    server.kill9();
    let server = Server::start(dir.path(), SHARDS);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let hq = principals.store(STORE).await;
        let late = hq.activate(STORE, 77, &pins[0..1]).await.expect("activate");
        assert_eq!(
            late.results,
            [ActivationResult::Declined {
                reason: DeclineReason::ActivationReversed
            }],
            "the reversal survived kill -9"
        );
        let retry = hq
            .reverse_activation(STORE, 77, &pins[0])
            .await
            .expect("retry");
        assert_eq!(retry.status, ReversalStatus::Forestalled);
        assert!(retry.replayed);
        // Another sale of the card is a sale like any other; reversing it
        // too does not let the first one in.
        let resold = hq.activate(STORE, 78, &pins[0..1]).await.expect("activate");
        assert!(matches!(
            resold.results[0],
            ActivationResult::Activated { .. }
        ));
        let undone = hq
            .reverse_activation(STORE, 78, &pins[0])
            .await
            .expect("reverse");
        assert_eq!(undone.status, ReversalStatus::Reversed);
        let late = hq.activate(STORE, 77, &pins[0..1]).await.expect("activate");
        assert!(matches!(late.results[0], ActivationResult::Declined { .. }));
        let totals = audit_ok(&principals).await;
        assert_eq!((totals.activated_minor, totals.store_owed_minor), (0, 0));
    });
}

/// A reversal and a full payment sent at once on each of many cards: each
/// card goes one way, never both, and the books agree.
#[test]
fn a_reversal_racing_a_payment_lets_exactly_one_win() {
    const CARDS: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, CARDS as u32, FACE, STORE).await;
        let hq = std::sync::Arc::new(principals.store(STORE).await);
        let merchant = std::sync::Arc::new(principals.merchant(9).await);
        let mut races = Vec::new();
        for (index, pin) in pins.iter().enumerate() {
            let (hq, merchant, pin) = (hq.clone(), merchant.clone(), pin.clone());
            races.push(tokio::spawn(async move {
                let single = [pin.clone()];
                let request_id = index as u64;
                let (reversed, paid) = tokio::join!(
                    hq.reverse_activation(STORE, 1, &pin),
                    merchant.pay(request_id, FACE, &single)
                );
                (reversed.expect("reverse"), paid.expect("pay"))
            }));
        }
        let (mut reversals, mut payments) = (0, 0);
        for race in races {
            let (reversed, paid) = race.await.expect("race");
            match (reversed.status, paid.is_approved()) {
                (ReversalStatus::Reversed, false) => {
                    assert_eq!(paid.reason(), Some(DeclineReason::InvalidCard));
                    reversals += 1;
                }
                (ReversalStatus::Declined, true) => {
                    assert_eq!(reversed.reason, Some(DeclineReason::AlreadySpent));
                    payments += 1;
                }
                other => panic!("both or neither won: {other:?}"),
            }
        }
        assert_eq!(reversals + payments, CARDS);
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.merchant_owed_minor, payments as u64 * FACE);
        assert_eq!(totals.store_owed_minor, payments as u64 * FACE);
        assert_eq!(totals.store_reversed_minor, reversals as u64 * FACE);
    });
}

#[test]
fn refunds_return_money_in_reverse_order_within_what_was_paid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    let rt = runtime();
    let (principals, cards) = rt.block_on(async {
        let principals = server.principals().await;
        let pool = active_cards(&principals, 40, FACE, STORE).await;
        // Two cards on two shards (two-phase), and one on its own.
        let cards = pick_by_shard(&pool, SHARDS, &[0, 2, 1]);
        let merchant = principals.merchant(9).await;
        let paid = merchant.pay(10, 1500, &cards[0..2]).await.expect("pay");
        assert!(paid.is_approved());
        assert!(
            merchant
                .pay(11, FACE, &cards[2..3])
                .await
                .expect("pay")
                .is_approved()
        );

        // Partial: from the last card taken from first.
        let first = merchant.refund(100, 10, 700).await.expect("refund");
        assert!(first.is_refunded(), "{first:?}");
        let parts: Vec<u64> = first.parts.iter().map(|p| p.refunded_minor).collect();
        assert_eq!(parts, [200, 500]);
        assert_eq!(first.payment_refunded_minor, 700);
        assert_eq!(
            merchant.balance(&cards[0]).await.expect("b").balance_minor,
            200
        );
        assert_eq!(
            merchant.balance(&cards[1]).await.expect("b").balance_minor,
            1000
        );
        // A retry gets the first answer; the id reused otherwise is refused.
        let again = merchant.refund(100, 10, 700).await.expect("retry");
        assert!(again.replayed);
        assert_eq!(again.parts, first.parts);
        assert_eq!(
            code(merchant.refund(100, 10, 701).await),
            Some(ErrorCode::InvalidArgument)
        );
        // Refund ids are their own namespace: 10 names a payment and a refund.
        let rest = merchant.refund(10, 10, 800).await.expect("refund");
        assert_eq!(
            rest.parts
                .iter()
                .map(|p| p.refunded_minor)
                .collect::<Vec<_>>(),
            [800, 0]
        );
        let over = merchant.refund(101, 10, 1).await.expect("answer");
        assert_eq!(over.reason, Some(DeclineReason::ExceedsRefundable));
        // An exhausted card is active again after a refund.
        let whole = merchant.refund(102, 11, 300).await.expect("refund");
        assert!(whole.is_refunded());
        let revived = merchant.balance(&cards[2]).await.expect("balance");
        assert_eq!(
            (revived.state.name(), revived.balance_minor),
            ("active", 300)
        );
        assert!(
            merchant
                .pay(12, 300, &cards[2..3])
                .await
                .expect("pay")
                .is_approved()
        );

        // Only the merchant's own approved payments.
        let other = principals.merchant(8).await;
        let theirs = other.refund(1, 10, 1).await.expect("answer");
        assert_eq!(theirs.reason, Some(DeclineReason::UnknownPayment));
        let declined = merchant.pay(13, 5000, &cards[0..1]).await.expect("pay");
        assert!(!declined.is_approved());
        let of_decline = merchant.refund(103, 13, 1).await.expect("answer");
        assert_eq!(of_decline.reason, Some(DeclineReason::UnknownPayment));
        assert_eq!(
            code(merchant.refund(104, 10, 0).await),
            Some(ErrorCode::InvalidAmount)
        );
        let hq = principals.store(STORE).await;
        assert_eq!(code(hq.refund(1, 10, 1).await), Some(ErrorCode::Forbidden));

        let report = principals.operator.report().await.expect("report");
        let line = report
            .merchants
            .iter()
            .find(|l| l.merchant_id == 9)
            .expect("line");
        assert_eq!(line.refunded_minor, 1800);
        assert_eq!(line.owed_minor, 1500 + FACE + 300 - 1800);
        audit_ok(&principals).await;
        (principals, cards)
    });
    // Every acknowledged refund survives kill -9, and its retry replays.
    server.kill9();
    let server = Server::start(dir.path(), SHARDS);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(9).await;
        let again = merchant.refund(100, 10, 700).await.expect("retry");
        assert!(again.replayed && again.is_refunded());
        assert_eq!(
            merchant.balance(&cards[0]).await.expect("b").balance_minor,
            1000
        );
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.merchant_refunded_minor, 1800);
    });
}

#[test]
fn a_refund_outside_its_window_is_declined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(dir.path(), with_limits(&["refund_window_days = 0"]));
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, FACE, STORE).await;
        let merchant = principals.merchant(9).await;
        assert!(
            merchant
                .pay(1, 100, &pins)
                .await
                .expect("pay")
                .is_approved()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let late = merchant.refund(2, 1, 100).await.expect("answer");
        assert_eq!(late.reason, Some(DeclineReason::WindowClosed));
        audit_ok(&principals).await;
    });
}

/// Starts an engine in `dir`, sells 40 cards, picks one on each of the
/// `shards` given, lets merchant 9 do `setup` with them, and stops the
/// engine: the state a crash test then works from.
fn two_cards_on_two_shards<S, F>(
    dir: &std::path::Path,
    shards: &[usize],
    setup: S,
) -> (common::Principals, Vec<String>)
where
    S: FnOnce(kessai::client::Client, Vec<String>) -> F,
    F: std::future::Future<Output = ()>,
{
    let server = Server::start(dir, SHARDS);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pool = active_cards(&principals, 40, FACE, STORE).await;
        let cards = pick_by_shard(&pool, SHARDS, shards);
        setup(principals.merchant(9).await, cards.clone()).await;
        (principals, cards)
    })
}

/// Restarts the engine in `dir` with `point` armed, sends merchant 9's
/// request (`work`), and checks the engine died at that point before
/// answering it.
fn die_at<W, F>(
    dir: &std::path::Path,
    point: CrashPoint,
    principals: common::Principals,
    work: W,
) -> common::Principals
where
    W: FnOnce(kessai::client::Client) -> F,
    F: std::future::Future<Output = Result<(), kessai::client::ClientError>>,
{
    let mut server = Server::start_with(
        dir,
        ServerOptions {
            shards: SHARDS,
            env: vec![(ENV_VAR, point.name())],
            ..ServerOptions::default()
        },
    );
    let principals = runtime().block_on(async {
        let principals = principals.reconnect(&server).await;
        let answer = work(principals.merchant(9).await).await;
        assert!(answer.is_err(), "{}: died before answering", point.name());
        principals
    });
    let status = server.wait_exit(Duration::from_secs(30)).expect("exited");
    assert!(!status.success(), "{}: aborted", point.name());
    let reached = format!("crash point {} reached", point.name());
    assert!(server.log().contains(&reached), "{}", point.name());
    principals
}

/// A refund of a payment across shards dies at each crash point; after a
/// restart its credits are all applied, its retry replays, and the books
/// balance.
fn refund_crash_and_recover(point: CrashPoint) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let (principals, cards) =
        two_cards_on_two_shards(dir.path(), &[1, 3], |merchant, cards| async move {
            let paid = merchant.pay(7, 1700, &cards).await.expect("pay");
            assert!(paid.is_approved());
        });
    let principals = die_at(dir.path(), point, principals, |merchant| async move {
        merchant.refund(70, 7, 1200).await.map(drop)
    });

    let server = Server::start(dir.path(), SHARDS);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(9).await;
        // Taken 1000 + 700; refunded 700 then 500, in reverse order.
        assert_eq!(
            merchant.balance(&cards[0]).await.expect("b").balance_minor,
            500
        );
        assert_eq!(
            merchant.balance(&cards[1]).await.expect("b").balance_minor,
            1000
        );
        let retry = merchant.refund(70, 7, 1200).await.expect("retry");
        assert!(
            retry.replayed && retry.is_refunded(),
            "{}: {retry:?}",
            point.name()
        );
        assert_eq!(
            retry
                .parts
                .iter()
                .map(|p| p.refunded_minor)
                .collect::<Vec<_>>(),
            [500, 700]
        );
        assert_eq!(
            merchant.balance(&cards[0]).await.expect("b").balance_minor,
            500
        );
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.merchant_owed_minor, 500);
        assert_eq!(totals.merchant_refunded_minor, 1200);
    });
}

#[test]
fn a_refund_crashed_after_its_decision_is_applied_on_recovery() {
    refund_crash_and_recover(CrashPoint::AfterDecision);
}

#[test]
fn a_refund_crashed_mid_commit_is_applied_on_recovery() {
    refund_crash_and_recover(CrashPoint::MidCommit);
}

#[test]
fn the_cli_refunds_and_reverses_with_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    let rt = runtime();
    let (merchant_key, hq_key, pins) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 2, FACE, STORE).await;
        let merchant = principals.merchant(9).await;
        assert!(
            merchant
                .pay(1, 600, &pins[0..1])
                .await
                .expect("pay")
                .is_approved()
        );
        let merchant_key = principals
            .key_file(dir.path(), 9, Role::Merchant, &[])
            .await;
        let hq = common::hq_of(STORE);
        let hq_key = principals
            .key_file(dir.path(), hq, Role::StoreHq, &[STORE])
            .await;
        (merchant_key, hq_key, pins)
    });
    let (status, json) = server.cli_as(
        &merchant_key,
        &[
            "refund",
            "--payment-request-id",
            "1",
            "--request-id",
            "5",
            "--amount",
            "250",
        ],
    );
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["status"], "refunded");
    assert_eq!(json["amount_minor"], 250);
    assert_eq!(json["parts"][0]["refunded_minor"], 250);
    let (_, json) = server.cli_as(
        &merchant_key,
        &[
            "refund",
            "--payment-request-id",
            "1",
            "--request-id",
            "6",
            "--amount",
            "9999",
        ],
    );
    assert_eq!(json["status"], "declined");
    assert_eq!(json["reason"], "exceeds_refundable");
    let (status, json) = server.cli_as(
        &hq_key,
        &[
            "reverse-activation",
            "--store",
            &STORE.to_string(),
            "--pos-ref",
            "1",
            &pins[1],
        ],
    );
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["status"], "reversed");
    assert_eq!(json["amount_minor"], FACE);

    let (status, json) = server.cli_as(
        &merchant_key,
        &[
            "authorize",
            "--amount",
            "100",
            "--request-id",
            "7",
            &pins[0],
        ],
    );
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["status"], "authorized");
    assert_eq!(json["parts"][0]["held_minor"], 100);
    assert!(json["expires_at_ms"].as_u64().is_some_and(|at| at > 0));
    let capture = [
        "capture",
        "--authorization",
        "7",
        "--amount",
        "60",
        "--request-id",
        "1",
    ];
    let (status, json) = server.cli_as(&merchant_key, &capture);
    assert_eq!(status, 0, "{json}");
    assert_eq!(
        (json["status"].as_str(), json["released_minor"].as_u64()),
        (Some("captured"), Some(40))
    );
    let (_, json) = server.cli_as(
        &merchant_key,
        &["void", "--authorization", "7", "--request-id", "2"],
    );
    assert_eq!(json["status"], "declined");
    assert_eq!(json["reason"], "authorization_closed");
}

/// Cards sold with a validity expire after it, also when the engine was
/// down meanwhile: the sweep moves what they carried to breakage, a
/// payment naming one is declined `expired`, a refund of a payment from
/// one lands in breakage too, and the books still balance.
#[test]
fn cards_expire_after_their_validity_across_a_restart() {
    const DAYS: u64 = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = ["card_validity_days = 30", "expiry_sweep_interval_ms = 20"];
    let server = Server::start_with(dir.path(), with_limits(&limits));
    let rt = runtime();
    let (principals, pins) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 8, FACE, STORE).await;
        let merchant = principals.merchant(9).await;
        assert!(
            merchant
                .pay(1, 300, &pins[0..1])
                .await
                .expect("pay")
                .is_approved()
        );
        audit_ok(&principals).await;
        (principals, pins)
    });
    server.kill9();
    // A month and a day later.
    let offset = ((DAYS + 1) * kessai::card::DAY_MS).to_string();
    let mut options = with_limits(&limits);
    options.env = vec![(kessai::clock::OFFSET_ENV_VAR, offset.as_str())];
    let server = Server::start_with(dir.path(), options);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(9).await;
        let shown = merchant.balance(&pins[1]).await.expect("sold");
        assert_eq!((shown.state.name(), shown.balance_minor), ("expired", 0));
        let paid = merchant.pay(2, 100, &pins[1..2]).await.expect("pay");
        assert_eq!(paid.reason(), Some(DeclineReason::Expired));
        // The sweep reaches every card within a few rounds.
        let mut totals = audit_ok(&principals).await;
        for _ in 0..200 {
            if totals.cards_expired == 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            totals = audit_ok(&principals).await;
        }
        assert_eq!(totals.cards_expired, 8);
        assert_eq!(totals.balance_minor, 0);
        assert_eq!(totals.breakage_minor, 8 * FACE - 300);
        // Refunding the payment from the expired card: the money cannot
        // go back on the card, so it is breakage too.
        let refunded = merchant.refund(3, 1, 300).await.expect("refund");
        assert!(refunded.is_refunded(), "{refunded:?}");
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.breakage_minor, 8 * FACE);
        assert_eq!(totals.merchant_owed_minor, 0);
        // Cards sold now get the validity in force now, from now.
        let fresh = active_cards(&principals, 1, FACE, STORE).await;
        assert!(
            merchant
                .pay(4, 100, &fresh)
                .await
                .expect("pay")
                .is_approved()
        );
    });
}

/// Authorize across two shards, capture part (the rest released), refund
/// part of the capture; void another; and every decline on the way.
#[test]
fn authorizations_hold_then_capture_or_void() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pool = active_cards(&principals, 40, FACE, STORE).await;
        let cards = pick_by_shard(&pool, SHARDS, &[0, 3]);
        let merchant = principals.merchant(9).await;

        let held = merchant
            .authorize(20, 1500, &cards)
            .await
            .expect("authorize");
        assert!(held.is_authorized(), "{held:?}");
        let parts: Vec<u64> = held.parts.iter().map(|p| p.held_minor).collect();
        assert_eq!(parts, [1000, 500]);
        assert!(held.expires_at_ms > 0);
        let again = merchant.authorize(20, 1500, &cards).await.expect("retry");
        assert!(again.replayed && again.parts == held.parts);
        // Held money is nobody else's.
        let balance = merchant.balance(&cards[1]).await.expect("balance");
        assert_eq!(
            (balance.balance_minor, balance.available_minor),
            (1000, 500)
        );
        let other = merchant.pay(21, 600, &cards[1..2]).await.expect("pay");
        assert_eq!(other.reason(), Some(DeclineReason::InsufficientFunds));
        // The id is an authorization's, not a payment's.
        let as_payment = merchant.pay(20, 1500, &cards).await;
        assert_eq!(code(as_payment), Some(ErrorCode::InvalidArgument));
        let totals = audit_ok(&principals).await;
        assert_eq!(
            totals.held_minor, 1500,
            "an open authorization is not dangling"
        );

        // Declines of a capture.
        let over = merchant.capture(1, 20, 1501).await.expect("answer");
        assert_eq!(over.reason, Some(DeclineReason::ExceedsAuthorized));
        let unknown = merchant.capture(2, 999, 1).await.expect("answer");
        assert_eq!(unknown.reason, Some(DeclineReason::UnknownAuthorization));
        let theirs = principals
            .merchant(8)
            .await
            .capture(1, 20, 1)
            .await
            .expect("answer");
        assert_eq!(theirs.reason, Some(DeclineReason::UnknownAuthorization));

        let captured = merchant.capture(3, 20, 1200).await.expect("capture");
        assert!(captured.is_captured(), "{captured:?}");
        let taken: Vec<u64> = captured.parts.iter().map(|p| p.taken_minor).collect();
        assert_eq!((taken, captured.released_minor), (vec![1000, 200], 300));
        let replay = merchant.capture(3, 20, 1200).await.expect("retry");
        assert!(replay.replayed && replay.parts == captured.parts);
        let twice = merchant.capture(4, 20, 100).await.expect("answer");
        assert_eq!(twice.reason, Some(DeclineReason::AuthorizationClosed));
        assert_eq!(
            code(merchant.capture(3, 20, 1100).await),
            Some(ErrorCode::InvalidArgument)
        );
        let balance = merchant.balance(&cards[1]).await.expect("balance");
        assert_eq!((balance.balance_minor, balance.available_minor), (800, 800));
        // The authorization retried still gets its first answer.
        assert!(
            merchant
                .authorize(20, 1500, &cards)
                .await
                .expect("retry")
                .is_authorized()
        );

        // Captured, it is the payment 20: refund part of it, reverse order.
        let refunded = merchant.refund(30, 20, 300).await.expect("refund");
        let back: Vec<u64> = refunded.parts.iter().map(|p| p.refunded_minor).collect();
        assert_eq!(back, [100, 200]);

        // Void another authorization: everything held comes back.
        let second = merchant
            .authorize(40, 700, &cards[1..2])
            .await
            .expect("authorize");
        assert!(second.is_authorized());
        let voided = merchant.void(5, 40).await.expect("void");
        assert!(voided.is_voided() && voided.released_minor == 700);
        assert!(merchant.void(5, 40).await.expect("retry").replayed);
        let after_void = merchant.capture(6, 40, 1).await.expect("answer");
        assert_eq!(after_void.reason, Some(DeclineReason::AuthorizationClosed));
        let short = merchant.authorize(41, 5000, &cards).await.expect("answer");
        assert_eq!(short.reason, Some(DeclineReason::InsufficientFunds));
        let hq = principals.store(STORE).await;
        assert_eq!(code(hq.void(1, 40).await), Some(ErrorCode::Forbidden));

        let totals = audit_ok(&principals).await;
        assert_eq!(totals.held_minor, 0);
        assert_eq!(totals.merchant_owed_minor, 1200 - 300);
    });
}

/// An open authorization keeps its holds across `kill -9`; one past its
/// deadline is released by the engine, also when the deadline passed
/// while the engine was down.
#[test]
fn authorizations_survive_restarts_and_are_released_at_their_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = [
        "authorization_ttl_ms = 60000",
        "expiry_sweep_interval_ms = 20",
    ];
    let server = Server::start_with(dir.path(), with_limits(&limits));
    let rt = runtime();
    let (principals, cards) = rt.block_on(async {
        let principals = server.principals().await;
        let pool = active_cards(&principals, 40, FACE, STORE).await;
        let cards = pick_by_shard(&pool, SHARDS, &[1, 2]);
        let merchant = principals.merchant(9).await;
        assert!(
            merchant
                .authorize(1, 1200, &cards)
                .await
                .expect("a")
                .is_authorized()
        );
        assert!(
            merchant
                .authorize(2, 300, &cards[1..2])
                .await
                .expect("a")
                .is_authorized()
        );
        (principals, cards)
    });
    server.kill9();
    // Within the deadline: the holds stand, and a capture works.
    let server = Server::start_with(dir.path(), with_limits(&limits));
    let principals = rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.held_minor, 1500, "holds kept across kill -9");
        let merchant = principals.merchant(9).await;
        let captured = merchant.capture(7, 2, 300).await.expect("capture");
        assert!(captured.is_captured(), "{captured:?}");
        principals
    });
    server.kill9();
    // Two minutes on: the first authorization is released at start-up.
    let mut options = with_limits(&limits);
    options.env = vec![(kessai::clock::OFFSET_ENV_VAR, "120000")];
    let server = Server::start_with(dir.path(), options);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let mut totals = audit_ok(&principals).await;
        for _ in 0..200 {
            if totals.held_minor == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            totals = audit_ok(&principals).await;
        }
        assert_eq!(totals.held_minor, 0, "released at its deadline");
        let merchant = principals.merchant(9).await;
        let late = merchant.capture(8, 1, 100).await.expect("answer");
        assert_eq!(late.reason, Some(DeclineReason::AuthorizationClosed));
        assert_eq!(
            merchant.balance(&cards[0]).await.expect("b").balance_minor,
            FACE
        );
        assert_eq!(
            merchant.balance(&cards[1]).await.expect("b").balance_minor,
            FACE - 300
        );
        assert_eq!(totals.merchant_owed_minor, 300);
    });
}

/// A capture across shards dies at each crash point; after a restart it
/// is applied, its retry replays, and the books balance.
fn capture_crash_and_recover(point: CrashPoint) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let (principals, cards) =
        two_cards_on_two_shards(dir.path(), &[0, 2], |merchant, cards| async move {
            let held = merchant
                .authorize(5, 1800, &cards)
                .await
                .expect("authorize");
            assert!(held.is_authorized());
        });
    let principals = die_at(dir.path(), point, principals, |merchant| async move {
        merchant.capture(50, 5, 1500).await.map(drop)
    });
    let server = Server::start(dir.path(), SHARDS);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(9).await;
        assert_eq!(
            merchant.balance(&cards[0]).await.expect("b").balance_minor,
            0
        );
        let second = merchant.balance(&cards[1]).await.expect("b");
        assert_eq!((second.balance_minor, second.available_minor), (500, 500));
        let retry = merchant.capture(50, 5, 1500).await.expect("retry");
        assert!(
            retry.replayed && retry.is_captured(),
            "{}: {retry:?}",
            point.name()
        );
        let totals = audit_ok(&principals).await;
        assert_eq!((totals.held_minor, totals.merchant_owed_minor), (0, 1500));
    });
}

#[test]
fn a_capture_crashed_after_its_decision_is_applied_on_recovery() {
    capture_crash_and_recover(CrashPoint::AfterDecision);
}

#[test]
fn a_capture_crashed_mid_commit_is_applied_on_recovery() {
    capture_crash_and_recover(CrashPoint::MidCommit);
}

/// A store HQ pays the center: the operator records it, it pays off the
/// HQ's stores by store, each up to its debt; more than is owed is
/// declined; a retry replays, also after kill -9; the report and the
/// audit follow.
#[test]
fn remittances_pay_off_the_stores_debt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SHARDS);
    let rt = runtime();
    let principals = rt.block_on(async {
        let principals = server.principals().await;
        // HQ 900 sells at two stores.
        let hq = 900;
        let hq_key = principals.key(hq, Role::StoreHq, &[31, 32]).await;
        let client = kessai::client::Client::connect_as(principals.addr, &hq_key)
            .await
            .expect("hq");
        for (store, count) in [(31, 2u32), (32, 3)] {
            let pins = principals
                .operator
                .issue(count, FACE)
                .await
                .expect("issue")
                .pins;
            let sold = client.activate(store, 1, &pins).await.expect("activate");
            assert_eq!(sold.results.len(), count as usize);
        }
        let operator = &principals.operator;
        let first = operator.remit(1, hq, 2500, "BANK-A").await.expect("remit");
        assert!(first.is_remitted(), "{first:?}");
        let paid: Vec<(u32, u64)> = first
            .allocations
            .iter()
            .map(|a| (a.store_id, a.amount_minor))
            .collect();
        assert_eq!(
            paid,
            [(31, 2000), (32, 500)],
            "by store, each up to its debt"
        );
        assert_eq!(first.owed_before_minor, 5000);
        let again = operator.remit(1, hq, 2500, "BANK-A").await.expect("retry");
        assert!(again.replayed && again.allocations == first.allocations);
        let other = operator.remit(1, hq, 2500, "BANK-B").await;
        assert_eq!(code(other), Some(ErrorCode::InvalidArgument));
        let over = operator.remit(2, hq, 2501, "BANK-C").await.expect("answer");
        assert_eq!(over.reason, Some(DeclineReason::ExceedsOwed));
        assert_eq!(over.owed_before_minor, 2500);
        // Typed refusals.
        let nobody = operator.remit(3, 12345, 1, "X").await;
        assert_eq!(code(nobody), Some(ErrorCode::InvalidArgument));
        let empty = operator.remit(4, hq, 1, "").await;
        assert_eq!(code(empty), Some(ErrorCode::InvalidArgument));
        let zero = operator.remit(5, hq, 0, "X").await;
        assert_eq!(code(zero), Some(ErrorCode::InvalidAmount));
        assert_eq!(
            code(client.remit(6, hq, 1, "X").await),
            Some(ErrorCode::Forbidden)
        );

        let report = operator.report().await.expect("report");
        let line = |store| {
            let line = report
                .stores
                .iter()
                .find(|l| l.store_id == store)
                .expect("line");
            (line.owed_minor, line.remitted_minor)
        };
        assert_eq!((line(31), line(32)), ((0, 2000), (2500, 500)));
        // Store 32's statement, one line a page: three sales and what the
        // remittance paid off, re-adding to what it owes.
        let (mut owed, mut after, mut pages) = (0i128, None, 0);
        loop {
            let page = operator
                .store_statement(32, 0, u64::MAX, after, 1)
                .await
                .expect("statement");
            pages += 1;
            for line in &page.lines {
                let amount = i128::from(line.amount_minor);
                owed += match line.line.kind {
                    kessai::protocol::StoreEntryKind::Activation => amount,
                    _ => -amount,
                };
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            (owed, pages),
            (2500, 4),
            "one line a page, the last says no more"
        );
        let totals = audit_ok(&principals).await;
        assert_eq!(
            (totals.store_owed_minor, totals.store_remitted_minor),
            (2500, 2500)
        );
        principals
    });
    server.kill9();
    let server = Server::start(dir.path(), SHARDS);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let again = principals
            .operator
            .remit(1, 900, 2500, "BANK-A")
            .await
            .expect("retry");
        assert!(again.replayed && again.is_remitted(), "survived kill -9");
        let rest = principals
            .operator
            .remit(7, 900, 2500, "BANK-D")
            .await
            .expect("remit");
        assert!(rest.is_remitted());
        let totals = audit_ok(&principals).await;
        assert_eq!(
            (totals.store_owed_minor, totals.store_remitted_minor),
            (0, 5000)
        );
    });
}

/// A whole period with exact totals: sales, payments, a refund, a
/// remittance, a payout with a fee, what it contains, its confirmation; a
/// refund after it carried into the next; a crash while creating one; and
/// the audit's identities all along.
#[test]
fn payouts_close_a_period_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Cut-offs may be now (no settle margin); merchant 9 pays 2.5 %.
    let limits = [
        "payout_settle_ms = 0",
        "[fees]",
        "default_bps = 0",
        "[fees.merchant_bps]",
        "\"9\" = 250",
    ];
    let server = Server::start_with(dir.path(), with_limits(&limits));
    let rt = runtime();
    let (principals, pins) = rt.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 6, FACE, STORE).await;
        let merchant = principals.merchant(9).await;
        for (request, pin) in pins[..4].iter().enumerate() {
            let paid = merchant
                .pay(request as u64 + 1, 1000, std::slice::from_ref(pin))
                .await
                .expect("pay");
            assert!(paid.is_approved());
        }
        assert!(
            merchant
                .refund(50, 2, 400)
                .await
                .expect("refund")
                .is_refunded()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let operator = &principals.operator;
        let created = operator.payout_create(1, 9, None).await.expect("payout");
        let payout = created.payout.expect("created");
        assert_eq!((payout.seq, payout.payments, payout.refunds), (1, 4, 1));
        assert_eq!((payout.payments_minor, payout.refunds_minor), (4000, 400));
        assert_eq!(payout.fee_minor, 90, "2.5 % of 3600");
        assert_eq!(payout.amount_minor, 3510);
        let again = operator.payout_create(1, 9, None).await.expect("retry");
        assert!(again.replayed && again.payout.as_ref() == Some(&payout));
        // A store HQ is no merchant: payouts and statements
        // name merchants only.
        let hq_id = common::hq_of(STORE);
        assert_eq!(
            code(operator.payout_create(8, hq_id, None).await),
            Some(ErrorCode::InvalidArgument)
        );
        let statement = operator.statement(hq_id, 0, u64::MAX, None, 10).await;
        assert_eq!(code(statement), Some(ErrorCode::InvalidArgument));
        let nothing = operator.payout_create(2, 9, None).await.expect("answer");
        assert_eq!(nothing.reason, Some(DeclineReason::NothingToPay));
        // What it contains: every payment and the refund, by request id.
        let shown = operator.payout_show(9, 1, None, 3).await.expect("show");
        assert_eq!(shown.items.len(), 3);
        let rest = operator
            .payout_show(9, 1, shown.next, 10)
            .await
            .expect("show");
        let kinds: Vec<_> = shown
            .items
            .iter()
            .chain(&rest.items)
            .map(|i| (i.item.kind, i.item.request_id))
            .collect();
        use kessai::protocol::PayoutItemKind::{Payment, Refund};
        assert_eq!(
            kinds,
            [
                (Payment, 1),
                (Payment, 2),
                (Payment, 3),
                (Payment, 4),
                (Refund, 50)
            ]
        );
        assert_eq!(rest.next, None);
        let confirmed = operator
            .payout_confirm(9, 1, "BANK-777")
            .await
            .expect("confirm");
        assert_eq!(
            confirmed.payout.confirmed_reference.as_deref(),
            Some("BANK-777")
        );
        assert!(
            operator
                .payout_confirm(9, 1, "BANK-777")
                .await
                .expect("again")
                .replayed
        );
        let other = operator.payout_confirm(9, 1, "BANK-778").await;
        assert_eq!(code(other), Some(ErrorCode::InvalidArgument));
        // The store side: the HQ of STORE pays for its 6 cards.
        let hq = common::hq_of(STORE);
        assert!(
            operator
                .remit(1, hq, 6 * FACE, "HQ-1")
                .await
                .expect("remit")
                .is_remitted()
        );
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.merchant_paid_out_minor, 3510);
        assert_eq!(totals.fees_minor, 90);
        assert_eq!(totals.merchant_owed_minor, 0);
        assert_eq!(
            (totals.store_owed_minor, totals.store_remitted_minor),
            (0, 6000)
        );
        assert_eq!(totals.balance_minor, 6000 - 4000 + 400);

        // A refund after the payout nets against the next one: the period
        // has only it, so the next payout carries it forward.
        assert!(
            merchant
                .refund(51, 3, 600)
                .await
                .expect("refund")
                .is_refunded()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = operator.payout_create(3, 9, None).await.expect("payout");
        let second = second.payout.expect("created");
        assert_eq!(
            (second.seq, second.amount_minor, second.carried_out_minor),
            (2, 0, 600)
        );
        (principals, pins)
    });
    // A crash between reading the period and writing the payout leaves
    // nothing; the retry creates it whole.
    let principals = {
        drop(server);
        let mut options = with_limits(&limits);
        options.env = vec![(ENV_VAR, CrashPoint::PayoutScanned.name())];
        let mut server = Server::start_with(dir.path(), options);
        let principals = rt.block_on(async {
            let principals = principals.reconnect(&server).await;
            let merchant = principals.merchant(9).await;
            assert!(
                merchant
                    .pay(5, 1000, &pins[4..5])
                    .await
                    .expect("pay")
                    .is_approved()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(principals.operator.payout_create(4, 9, None).await.is_err());
            principals
        });
        assert!(
            server
                .wait_exit(Duration::from_secs(30))
                .is_some_and(|s| !s.success())
        );
        principals
    };
    let server = Server::start_with(dir.path(), with_limits(&limits));
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let list = principals
            .operator
            .payout_list(9, 0, 10)
            .await
            .expect("list");
        assert_eq!(list.payouts.len(), 2, "the crashed payout left nothing");
        let third = principals
            .operator
            .payout_create(4, 9, None)
            .await
            .expect("retry");
        let third = third.payout.expect("created");
        // 1000 paid, 600 carried in, fee 2.5 % of 1000.
        assert_eq!(
            (third.seq, third.carried_in_minor, third.fee_minor),
            (3, 600, 25)
        );
        assert_eq!(third.amount_minor, 375);
        let totals = audit_ok(&principals).await;
        assert_eq!(totals.merchant_paid_out_minor, 3510 + 375);
        assert_eq!(totals.fees_minor, 90 + 25);
        let paged = principals
            .operator
            .payout_list(9, 1, 1)
            .await
            .expect("list");
        assert_eq!((paged.payouts[0].seq, paged.next), (2, Some(2)));

        // One more payment, not paid out yet; then the statement of all
        // time, read in pages of two, re-adds to the report's balance.
        let merchant = principals.merchant(9).await;
        assert!(
            merchant
                .pay(6, 1000, &pins[5..6])
                .await
                .expect("pay")
                .is_approved()
        );
        let (mut lines, mut after) = (Vec::new(), None);
        loop {
            let page = principals
                .operator
                .statement(9, 0, u64::MAX, after, 2)
                .await
                .expect("statement");
            assert!(page.lines.len() <= 2);
            lines.extend(page.lines);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        use kessai::protocol::StatementKind::{Payment, Payout, Refund};
        let sum = |kind| -> i128 {
            lines
                .iter()
                .filter(|l| l.line.kind == kind)
                .map(|l| i128::from(l.amount_minor))
                .sum()
        };
        let fees: i128 = lines.iter().map(|l| i128::from(l.fee_minor)).sum();
        assert_eq!(
            (sum(Payment), sum(Refund), sum(Payout), fees),
            (6000, 1000, 3885, 115)
        );
        let count = |kind| lines.iter().filter(|l| l.line.kind == kind).count();
        assert_eq!((count(Payment), count(Refund), count(Payout)), (6, 2, 3));
        let report = principals.operator.report().await.expect("report");
        let line = report
            .merchants
            .iter()
            .find(|l| l.merchant_id == 9)
            .expect("line");
        let net = sum(Payment) - sum(Refund) - sum(Payout) - fees;
        assert_eq!(
            net,
            i128::from(line.owed_minor),
            "the statement re-adds to the report"
        );
        assert_eq!(line.owed_minor, 1000);
        // A period: only what was decided in it.
        let first = lines
            .iter()
            .find(|l| l.line.kind == Payout)
            .expect("payout")
            .at_ms;
        let before = principals
            .operator
            .statement(9, 0, first, None, 100)
            .await
            .expect("statement");
        assert!(before.lines.iter().all(|l| l.at_ms <= first));
        assert_eq!(
            before.lines.len(),
            4 + 1 + 1,
            "four payments, a refund, the payout"
        );
    });
    // The CSV an accountant opens re-adds to the same balance.
    let output = std::process::Command::new(common::kessai_bin())
        .args(["statement", "--merchant", "9", "--format", "csv"])
        .args(["--addr", &server.addr.to_string()])
        .arg("--key")
        .arg(server.operator_key_path())
        .env_remove("KESSAI_KEY")
        .output()
        .expect("run kessai");
    assert!(output.status.success(), "{output:?}");
    let csv = String::from_utf8(output.stdout).expect("utf-8");
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("kind,id,at_ms,amount_minor,fee_minor"));
    let mut net = 0i128;
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        let amount: i128 = fields[3].parse().expect("amount");
        let fee: i128 = fields[4].parse().expect("fee");
        net += if fields[0] == "payment" {
            amount
        } else {
            -amount
        } - fee;
    }
    assert_eq!(net, 1000, "the CSV re-adds to the report's owed_minor");
}
