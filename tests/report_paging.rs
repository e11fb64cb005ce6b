//! Report in pages: 40,000 stores (ten HQs of 4,000 stores, a one-yen card
//! each) report whole through `kessai report`, one store or one merchant
//! reports on its own, pages are capped at the engine's limit, and all of it
//! again after a restart. (Unpaged, this report did not fit a frame.)

mod common;

use common::{Server, runtime};
use kessai::client::Client;
use kessai::protocol::{ActivationResult, ErrorCode, ReportAccount, ReportRequest, Role};
use std::sync::Arc;

const HQS: u32 = 10;
const STORES_PER_HQ: u32 = 4000;
const STORES: u32 = HQS * STORES_PER_HQ;

fn check_whole_report(server: &Server) {
    let (status, report) = server.cli(&["report"]);
    assert_eq!(status, 0, "{report}");
    let stores = report["stores"].as_array().expect("stores");
    assert_eq!(stores.len(), STORES as usize);
    for (line, store_id) in stores.iter().zip(1..=STORES) {
        assert_eq!(line["store_id"], store_id);
        assert_eq!(line["owed_minor"], 1);
        assert_eq!(line["cards_activated"], 1);
    }
    assert_eq!(
        report["merchants"],
        serde_json::json!([{ "merchant_id": 5, "owed_minor": 1, "refunded_minor": 0, "paid_out_minor": 0, "fees_minor": 0 }])
    );
    assert_eq!(report["totals"]["store_owed_minor"], STORES);
    assert_eq!(report["totals"]["activated_minor"], STORES);
}

#[test]
fn forty_thousand_stores_report_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = server.principals().await;
        let mut pins = Vec::new();
        while pins.len() < STORES as usize {
            let issued = principals.operator.issue(10_000, 1).await.expect("issue");
            pins.extend(issued.pins);
        }
        for hq in 0..HQS {
            let stores: Vec<u32> = (1 + hq * STORES_PER_HQ..=(hq + 1) * STORES_PER_HQ).collect();
            let key = principals.key(3_000_000 + hq, Role::StoreHq, &stores).await;
            let client = Arc::new(Client::connect_as(server.addr, &key).await.expect("hq"));
            let mut activations = tokio::task::JoinSet::new();
            for store in stores {
                let pin = pins[store as usize - 1].clone();
                let client = client.clone();
                activations.spawn(async move { client.activate(store, 1, &[pin]).await });
            }
            while let Some(done) = activations.join_next().await {
                let activated = done.expect("task").expect("activate");
                assert!(matches!(
                    activated.results[..],
                    [ActivationResult::Activated { .. }]
                ));
            }
        }
        let merchant = principals.merchant(5).await;
        assert!(
            merchant
                .pay(1, 1, &pins[..1])
                .await
                .expect("pay")
                .is_approved()
        );

        // A page of the most lines the engine sends (its limit, 1,000, even
        // when asked for more) carries its cursor; an empty page is refused.
        let page = principals
            .operator
            .report_page(ReportRequest {
                limit: 5000,
                after: None,
                only: None,
            })
            .await
            .expect("page");
        assert_eq!(page.stores.len(), 1000);
        assert_eq!(page.next, Some(ReportAccount::Store(1000)));
        let empty = principals
            .operator
            .report_page(ReportRequest {
                limit: 0,
                after: None,
                only: None,
            })
            .await
            .expect_err("a page of no lines");
        assert_eq!(empty.server_code(), Some(ErrorCode::LimitExceeded));
    });

    check_whole_report(&server);
    let (_, one_store) = server.cli(&["report", "--store", "12345"]);
    assert_eq!(
        one_store["stores"],
        serde_json::json!([{ "store_id": 12345, "cards_activated": 1, "owed_minor": 1, "reversed_minor": 0, "remitted_minor": 0 }])
    );
    assert_eq!(one_store["merchants"], serde_json::json!([]));
    let (_, one_merchant) = server.cli(&["report", "--merchant", "5"]);
    assert_eq!(one_merchant["stores"], serde_json::json!([]));
    assert_eq!(
        one_merchant["merchants"],
        serde_json::json!([{ "merchant_id": 5, "owed_minor": 1, "refunded_minor": 0, "paid_out_minor": 0, "fees_minor": 0 }])
    );
    let (_, nobody) = server.cli(&["report", "--store", "40001"]);
    assert_eq!(nobody["stores"], serde_json::json!([]));

    server.kill9();
    let server = Server::start(dir.path(), 4);
    check_whole_report(&server);
}
