//! The merchant's own order ids over the binary protocol, against a real
//! engine: pay and authorize by order id, replay on the same content, a
//! typed refusal on different content, each merchant's own namespace,
//! lookups (also after a restart), the CLI, and request ids from 2^63 on
//! refused (they name order ids).

mod common;

use common::{Server, active_cards, runtime};
use kessai::order::{CLIENT_REQUEST_ID_MAX, OrderId, payment_id};
use kessai::protocol::{ErrorCode, OrderStatus};

#[test]
fn an_order_id_pays_once_replays_and_is_looked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let runtime = runtime();
    let (pins, principals) = runtime.block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 4, 1000, 1).await;
        let merchant = principals.merchant(5).await;
        let other = principals.merchant(6).await;
        let order = "ORD-2026-000123";

        let paid = merchant
            .pay_order(order, 300, &pins[..1])
            .await
            .expect("paid");
        assert!(paid.is_approved() && !paid.replayed);
        let again = merchant
            .pay_order(order, 300, &pins[..1])
            .await
            .expect("replayed");
        assert!(again.is_approved() && again.replayed);
        assert_eq!(again.parts(), paid.parts());
        for (amount, cards) in [(301, &pins[..1]), (300, &pins[1..2])] {
            let refused = merchant
                .pay_order(order, amount, cards)
                .await
                .expect_err("different content");
            assert_eq!(refused.server_code(), Some(ErrorCode::InvalidArgument));
        }
        let refused = merchant
            .authorize_order(order, 300, &pins[..1])
            .await
            .expect_err("a payment's order id is no authorization");
        assert_eq!(refused.server_code(), Some(ErrorCode::InvalidArgument));
        // Another merchant's "ORD-2026-000123" is its own.
        let theirs = other
            .pay_order(order, 100, &pins[1..2])
            .await
            .expect("paid");
        assert!(theirs.is_approved() && !theirs.replayed);

        let found = merchant.order(order).await.expect("lookup").expect("found");
        assert_eq!(found.order_id, order);
        assert_eq!(found.status, OrderStatus::Approved);
        assert_eq!((found.amount_minor, found.taken_minor), (300, 300));
        assert!(!found.authorization);
        let parsed = OrderId::parse(order).expect("order id");
        assert_eq!(found.request_id, payment_id(5, &parsed).request_id);
        assert_eq!(merchant.order("ORD-none").await.expect("lookup"), None);

        // A binary refund names the payment by its derived request id.
        let refunded = merchant
            .refund(1, found.request_id, 100)
            .await
            .expect("refund");
        assert_eq!(refunded.payment_refunded_minor, 100);
        let found = merchant.order(order).await.expect("lookup").expect("found");
        assert_eq!(found.refunded_minor, 100);

        // An authorization by order id, then captured by its request id.
        let held = merchant
            .authorize_order("auth:7", 200, &pins[2..3])
            .await
            .expect("authorized");
        assert!(held.reason.is_none());
        let open = merchant
            .order("auth:7")
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(open.status, OrderStatus::Authorized);
        assert!(open.authorization && open.expires_at_ms > 0);
        merchant
            .capture(1, open.request_id, 150)
            .await
            .expect("captured");
        let captured = merchant
            .order("auth:7")
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(captured.status, OrderStatus::Approved);
        assert_eq!(captured.taken_minor, 150);

        // Bad order ids and client request ids past 2^63 - 1 are refused.
        for bad in ["", "has space", "ORD/1", &"x".repeat(51)] {
            let refused = merchant
                .pay_order(bad, 1, &pins[3..])
                .await
                .expect_err("bad order id");
            assert_eq!(refused.server_code(), Some(ErrorCode::InvalidArgument));
        }
        let refused = merchant
            .pay(CLIENT_REQUEST_ID_MAX + 1, 1, &pins[3..])
            .await
            .expect_err("a derived id");
        assert_eq!(refused.server_code(), Some(ErrorCode::InvalidArgument));
        assert!(
            merchant
                .pay(CLIENT_REQUEST_ID_MAX, 1, &pins[3..])
                .await
                .expect("the largest client id")
                .is_approved()
        );
        assert!(principals.operator.audit().await.expect("audit").ok);
        (pins, principals)
    });
    server.kill9();
    let server = Server::start(dir.path(), 4);
    let key = runtime.block_on(async {
        let principals = principals.reconnect(&server).await;
        let merchant = principals.merchant(5).await;
        let found = merchant
            .order("ORD-2026-000123")
            .await
            .expect("lookup")
            .expect("found after a crash");
        assert_eq!(found.refunded_minor, 100);
        principals
            .key_file(dir.path(), 7, kessai::protocol::Role::Merchant, &[])
            .await
    });
    // The CLI: pay by order id, replay, look it up.
    let pay = |order: &str| {
        server.cli_as(
            &key,
            &["pay", "--amount", "50", "--order-id", order, &pins[3]],
        )
    };
    let (status, first) = pay("cli-1");
    assert_eq!(status, 0, "{first}");
    assert_eq!(first["status"], "approved");
    let (_, again) = pay("cli-1");
    assert_eq!(again["replayed"], true);
    let (status, shown) = server.cli_as(&key, &["order", "cli-1"]);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["order_id"], "cli-1");
    assert_eq!(shown["taken_minor"], 50);
    let (_, missing) = server.cli_as(&key, &["order", "cli-2"]);
    assert_eq!(missing["found"], false);
}
