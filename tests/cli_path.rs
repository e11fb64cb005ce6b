//! The full path through the `kessai` command line, as the README's
//! quickstart drives it: issue → activate → pay → balance → report → audit.

mod common;

use common::Server;

#[test]
fn issue_activate_pay_balance_report_audit_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let pins_file = dir.path().join("pins.txt");
    let pins_path = pins_file.to_str().expect("utf8 path");

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

    // An issued, unsold card is worthless.
    let (status, unsold) = server.cli(&[
        "pay",
        "--merchant",
        "5",
        "--amount",
        "100",
        "--request-id",
        "1",
        &pins[0],
    ]);
    assert_eq!(status, 0, "a decline is a clean answer");
    assert_eq!(unsold["status"], "declined");
    assert_eq!(unsold["reason"], "not_active");

    let (status, activated) = server.cli(&[
        "activate",
        "--store",
        "42",
        "--pos-ref",
        "7001",
        &pins[0],
        &pins[1],
    ]);
    assert_eq!(status, 0, "{activated}");
    assert_eq!(activated["activated"], 2);

    let (status, paid) = server.cli(&[
        "pay",
        "--merchant",
        "5",
        "--amount",
        "300",
        "--request-id",
        "2",
        &pins[0],
    ]);
    assert_eq!(status, 0, "{paid}");
    assert_eq!(paid["status"], "approved");
    assert_eq!(paid["remaining_minor"], 700);
    assert_eq!(paid["parts"][0]["pin_last4"], pins[0][12..]);

    let (status, declined) = server.cli(&[
        "pay",
        "--merchant",
        "5",
        "--amount",
        "701",
        "--request-id",
        "3",
        &pins[0],
    ]);
    assert_eq!(status, 0);
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["reason"], "insufficient_funds");
    assert_eq!(declined["remaining_minor"], 700);

    let (status, balance) = server.cli(&["balance", &pins[0]]);
    assert_eq!(status, 0);
    assert_eq!(balance["balance_minor"], 700);
    assert_eq!(balance["state"], "active");
    let (_, unsold_balance) = server.cli(&["balance", &pins[2]]);
    assert_eq!(unsold_balance["state"], "issued");
    assert_eq!(unsold_balance["balance_minor"], 0);

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
}

#[test]
fn cli_errors_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    // A typo in the PIN (bad check digit) is caught before any lookup.
    let (status, typo) = server.cli(&["balance", "79927398710"]);
    assert_eq!(status, 1);
    assert!(
        typo["error"]
            .as_str()
            .expect("message")
            .contains("check digit"),
        "{typo}"
    );
    let (status, unknown) = server.cli(&["balance", "79927398713"]);
    assert_eq!(status, 1);
    assert!(
        unknown["error"]
            .as_str()
            .expect("message")
            .contains("unknown_pin"),
        "{unknown}"
    );
    let (status, zero) = server.cli(&[
        "pay",
        "--merchant",
        "1",
        "--amount",
        "0",
        "--request-id",
        "1",
        "79927398713",
    ]);
    assert_eq!(status, 1);
    assert!(
        zero["error"]
            .as_str()
            .expect("message")
            .contains("invalid_amount"),
        "{zero}"
    );

    // No engine at the address.
    let addr = server.addr;
    drop(server);
    let (status, gone) = common::cli_at(addr, &["report"]);
    assert_eq!(status, 1);
    assert!(gone["error"].is_string());
}
