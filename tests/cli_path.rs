//! The full path through the `kessai` command line, as the README's
//! quickstart drives it: the operator issues and registers principals,
//! store HQ 42 activates, merchant 5 pays; then balance, report, audit.

mod common;

use common::Server;
use std::path::Path;

fn key_arg(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

#[test]
fn issue_activate_pay_balance_report_audit_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let pins_file = dir.path().join("pins.txt");
    let pins_path = pins_file.to_str().expect("utf8 path");
    let hq_key = dir.path().join("hq42.key");
    let merchant_key = dir.path().join("m5.key");

    let (status, issued) = server.cli(&[
        "issue",
        "--count",
        "3",
        "--face-value",
        "1000",
        "--out",
        pins_path,
    ]);
    assert_eq!(status, 0, "{issued}");
    assert_eq!(issued["issued"], 3);
    let pins: Vec<String> = std::fs::read_to_string(&pins_file)
        .expect("pins file")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(pins.len(), 3);
    assert!(
        pins.iter()
            .all(|p| p.len() == 16 && kessai::pin::Pin::parse(p).is_ok())
    );

    // The PIN file is never overwritten: it is the only copy of the PINs.
    let (status, refused) = server.cli(&[
        "issue",
        "--count",
        "1",
        "--face-value",
        "1000",
        "--out",
        pins_path,
    ]);
    assert_eq!(status, 1, "{refused}");

    let (status, added) = server.cli(&[
        "principal",
        "add",
        "--role",
        "store-hq",
        "--id",
        "42",
        "--stores",
        "42,43",
        "--out",
        key_arg(&hq_key),
    ]);
    assert_eq!(status, 0, "{added}");
    assert_eq!(added["stores"], serde_json::json!([42, 43]));
    let (status, added) = server.cli(&[
        "principal",
        "add",
        "--role",
        "merchant",
        "--id",
        "5",
        "--out",
        key_arg(&merchant_key),
    ]);
    assert_eq!(status, 0, "{added}");
    let (_, listed) = server.cli(&["principal", "list"]);
    let roles: Vec<(u64, &str)> = listed["principals"]
        .as_array()
        .expect("principals")
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().expect("id"),
                p["role"].as_str().expect("role"),
            )
        })
        .collect();
    assert_eq!(roles, [(0, "operator"), (5, "merchant"), (42, "store-hq")]);

    // An issued, unsold card is worthless: the merchant cannot tell it from
    // a PIN that does not exist.
    let pay = |request_id: &str, amount: &str, pins: &[&str]| {
        let mut args = vec!["pay", "--amount", amount, "--request-id", request_id];
        args.extend_from_slice(pins);
        server.cli_as(&merchant_key, &args)
    };
    let (status, unsold) = pay("1", "100", &[&pins[0]]);
    assert_eq!(status, 0, "a decline is a clean answer");
    assert_eq!(unsold["status"], "declined");
    assert_eq!(unsold["reason"], "invalid_card");

    let (status, activated) = server.cli_as(
        &hq_key,
        &[
            "activate",
            "--store",
            "42",
            "--pos-ref",
            "7001",
            &pins[0],
            &pins[1],
        ],
    );
    assert_eq!(status, 0, "{activated}");
    assert_eq!(activated["activated"], 2);
    // Store 44 is not HQ 42's.
    assert_refused(
        server.cli_as(&hq_key, &["activate", "--store", "44", &pins[2]]),
        "forbidden",
    );

    let (status, paid) = pay("2", "300", &[&pins[0]]);
    assert_eq!(status, 0, "{paid}");
    assert_eq!(paid["status"], "approved");
    assert_eq!(paid["remaining_minor"], 700);
    assert_eq!(paid["parts"][0]["pin_last4"], pins[0][12..]);

    let (status, declined) = pay("3", "701", &[&pins[0]]);
    assert_eq!(status, 0);
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["reason"], "insufficient_funds");
    assert_eq!(declined["remaining_minor"], 0, "no balance in a decline");

    let (status, balance) = server.cli_as(&merchant_key, &["balance", &pins[0]]);
    assert_eq!(status, 0);
    assert_eq!(balance["balance_minor"], 700);
    assert_eq!(balance["state"], "active");
    assert_refused(
        server.cli_as(&merchant_key, &["balance", &pins[2]]),
        "invalid_card",
    );

    let (status, report) = server.cli(&["report"]);
    assert_eq!(status, 0);
    assert_eq!(report["stores"][0]["store_id"], 42);
    assert_eq!(report["stores"][0]["owed_minor"], 2000);
    assert_eq!(report["stores"][0]["cards_activated"], 2);
    assert_eq!(report["merchants"][0]["merchant_id"], 5);
    assert_eq!(report["merchants"][0]["owed_minor"], 300);
    assert_eq!(report["totals"]["balance_minor"], 1700);

    let (status, audit) = server.cli(&["audit"]);
    assert_eq!(status, 0, "{audit}");
    assert_eq!(audit["ok"], true);

    // Revoked: the merchant's key no longer works.
    let (status, revoked) = server.cli(&["principal", "revoke", "--id", "5"]);
    assert_eq!((status, &revoked["revoked"]), (0, &serde_json::json!(true)));
    assert_refused(pay("4", "1", &[&pins[1]]), "unauthenticated");
}

#[test]
fn cli_errors_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    let merchant_key = dir.path().join("m1.key");
    let (status, _) = server.cli(&[
        "principal",
        "add",
        "--role",
        "merchant",
        "--id",
        "1",
        "--out",
        key_arg(&merchant_key),
    ]);
    assert_eq!(status, 0);
    // A typo in the PIN (bad check digit) is caught before any lookup.
    assert_refused(
        server.cli_as(&merchant_key, &["balance", "79927398710"]),
        "check digit",
    );
    assert_refused(
        server.cli_as(&merchant_key, &["balance", "79927398713"]),
        "invalid_card",
    );
    assert_refused(
        server.cli_as(
            &merchant_key,
            &["pay", "--amount", "0", "--request-id", "1", "79927398713"],
        ),
        "invalid_amount",
    );
    // A merchant may not run the operator's commands.
    assert_refused(server.cli_as(&merchant_key, &["report"]), "forbidden");
    // Without a key nothing is answered.
    assert_refused(
        common::cli_at(server.addr, None, &["report"]),
        "unauthenticated",
    );

    // No engine at the address.
    let addr = server.addr;
    let operator_key = server.operator_key_path();
    drop(server);
    let (status, gone) = common::cli_at(addr, Some(&operator_key), &["report"]);
    assert_eq!(status, 1);
    assert!(gone["error"].is_string());
}

/// A CLI command that must fail (exit 1) with an error naming `what`.
fn assert_refused((status, output): (i32, serde_json::Value), what: &str) {
    assert_eq!(status, 1, "{output}");
    let message = output["error"].as_str().expect("an error message");
    assert!(message.contains(what), "{output}");
}
