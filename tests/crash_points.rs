//! Crash the real engine at each named point of the two-phase commit,
//! restart it, and check the payment is fully applied or fully absent, a
//! retry gets the definitive outcome, and the audit (no dangling holds
//! included) passes.

mod common;

use common::{Server, ServerOptions, active_cards, pick_by_shard, runtime};
use kessai::card::DeclineReason;
use kessai::twopc::crashpoint::{CrashPoint, ENV_VAR};
use std::time::Duration;

const SHARDS: usize = 4;
const FACE: u64 = 1000;
const AMOUNT: u64 = 1700;

/// What the payment should look like after recovery.
enum Expect {
    Absent,
    Applied,
}

fn crash_and_recover(point: CrashPoint, expect: Expect) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    // Prepare cards with an unarmed engine.
    let server = Server::start(dir.path(), SHARDS);
    let (principals, cards) = rt.block_on(async {
        let principals = server.principals().await;
        principals.merchant(6).await;
        let pool = active_cards(&principals, 40, FACE, 1).await;
        (principals, pick_by_shard(&pool, SHARDS, &[1, 3]))
    });
    drop(server);

    // Armed: the combined payment kills the engine at `point`.
    let mut server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: SHARDS,
            env: vec![(ENV_VAR, point.name())],
            ..ServerOptions::default()
        },
    );
    let (principals, answer) = rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let client = principals.merchant(6).await;
        let answer = client.pay(4242, AMOUNT, &cards).await;
        (principals, answer)
    });
    assert!(
        answer.is_err(),
        "{}: the engine died before answering, got {answer:?}",
        point.name()
    );
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("engine exited");
    assert!(
        !status.success(),
        "{}: aborted, not exited cleanly",
        point.name()
    );
    let reached = format!("crash point {} reached", point.name());
    assert!(
        server.log().contains(&reached),
        "{}: crashed at the armed point",
        point.name()
    );
    drop(server);

    // Recovery.
    let server = Server::start(dir.path(), SHARDS);
    rt.block_on(async {
        let principals = principals.reconnect(&server).await;
        let client = principals.merchant(6).await;
        let audit = principals.operator.audit().await.expect("audit");
        assert!(audit.ok, "{}: {:?}", point.name(), audit.problems);
        assert_eq!(
            audit.totals.held_minor,
            0,
            "{}: no hold survives recovery",
            point.name()
        );

        let balances = [
            client.balance(&cards[0]).await.expect("balance"),
            client.balance(&cards[1]).await.expect("balance"),
        ];
        let owed = principals
            .operator
            .report()
            .await
            .expect("report")
            .totals
            .merchant_owed_minor;
        let retry = client.pay(4242, AMOUNT, &cards).await.expect("retry");
        assert!(
            retry.replayed,
            "{}: the retry gets the recorded outcome",
            point.name()
        );
        match expect {
            Expect::Absent => {
                assert_eq!(
                    balances.map(|b| b.balance_minor),
                    [FACE, FACE],
                    "{}",
                    point.name()
                );
                assert_eq!(owed, 0);
                assert_eq!(retry.reason(), Some(DeclineReason::Aborted));
            }
            Expect::Applied => {
                assert_eq!(
                    balances.map(|b| b.balance_minor),
                    [0, 2 * FACE - AMOUNT],
                    "{}",
                    point.name()
                );
                assert_eq!(owed, AMOUNT);
                assert!(retry.is_approved());
                assert_eq!(
                    retry
                        .parts()
                        .iter()
                        .map(|p| p.taken_minor)
                        .collect::<Vec<_>>(),
                    vec![FACE, AMOUNT - FACE]
                );
            }
        }
        assert!(
            balances
                .iter()
                .all(|b| b.available_minor == b.balance_minor)
        );
        // The retry changed nothing, and the engine carries on normally.
        let after = client.balance(&cards[1]).await.expect("balance");
        assert_eq!(after.balance_minor, balances[1].balance_minor);
        let next = client.pay(4243, 100, &cards[1..]).await.expect("pay");
        assert!(next.is_approved(), "{next:?}");
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn crash_after_prepare_leaves_the_payment_absent() {
    crash_and_recover(CrashPoint::AfterPrepare, Expect::Absent);
}

#[test]
fn crash_after_decision_applies_the_payment_on_recovery() {
    crash_and_recover(CrashPoint::AfterDecision, Expect::Applied);
}

#[test]
fn crash_mid_commit_applies_the_payment_on_recovery() {
    crash_and_recover(CrashPoint::MidCommit, Expect::Applied);
}

#[test]
fn an_unknown_crash_point_name_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kessai.toml"), "").expect("config");
    let output = std::process::Command::new(common::kessai_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env(ENV_VAR, "after-lunch")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("names no crash point"));
}
