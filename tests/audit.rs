//! The audit catches books that do not add up, says where, and makes
//! `kessai audit` exit non-zero.

mod common;

use common::{Server, active_cards, runtime};
use kessai::ids::ShardId;
use kessai::storage::records::BookKind;
use kessai::storage::{Changes, Storage, Store};

#[test]
fn tampered_books_fail_the_audit_and_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(9).await;
        let pins = active_cards(&principals, 2, 1000, 3).await;
        assert!(
            client
                .pay(1, 400, &pins[..1])
                .await
                .expect("pay")
                .is_approved()
        );
    });
    let (status, clean) = server.cli(&["audit"]);
    assert_eq!(
        (status, &clean["ok"]),
        (0, &serde_json::Value::Bool(true)),
        "{clean}"
    );
    server.kill9();

    // Behind the engine's back: a merchant credit no card paid for, and a
    // debt for a store that sold nothing. (Rows of a shard id the engine
    // never ran, so they add to the real rows instead of replacing them.)
    {
        let storage = Storage::open(&dir.path().join("data")).expect("open");
        let mut changes = Changes::new();
        changes.put_book(BookKind::MerchantOwed, 9, ShardId(200), 250);
        changes.put_book(BookKind::StoreOwed, 77, ShardId(200), 500);
        storage.commit(&changes).expect("commit");
    }

    let server = Server::start(dir.path(), 2);
    let (status, audit) = server.cli(&["audit"]);
    assert_eq!(status, 1, "a failed audit exits non-zero: {audit}");
    assert_eq!(audit["ok"], false);
    let problems: Vec<&str> = audit["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("conservation") && p.contains("difference -250")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("store 77:") && p.contains("owed 500")),
        "{problems:?}"
    );
}
