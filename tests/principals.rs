//! The principal list in pages: fourteen store HQs of 4,096 stores each
//! (57,344 stores, ids of five-byte varints: some 287 KB, more than the
//! default frame) among merchants list whole, every principal once and in
//! order, through the client and through `kessai principal list`; again
//! after a restart with the smallest frame (1024 bytes), where every HQ is
//! split across pages. A store belongs to one HQ: another HQ naming it is
//! refused, revoked holder or not, after the restart too.

mod common;

use common::{Server, ServerOptions, free_local_addr, raw_connection, runtime, scrape};
use kessai::auth::Key;
use kessai::client::Client;
use kessai::protocol::{
    ErrorCode, KIND_PRINCIPAL_LIST, PrincipalInfo, PrincipalListRef, Response, Role, frame,
};
use serde_json::{Value, json};
use std::net::SocketAddr;

const HQS: u32 = 14;
const STORES_PER_HQ: u32 = 4096;
/// Store ids of five-byte varints, so the stores outgrow the default frame.
const FIRST_STORE: u32 = 1 << 30;
/// Store HQ `i` is principal `100 + 10 i`, merchant `i` is `105 + 10 i`.
const FIRST_ID: u32 = 100;

fn hq_id(index: u32) -> u32 {
    FIRST_ID + 10 * index
}

fn stores_of(index: u32) -> Vec<u32> {
    let first = FIRST_STORE + index * STORES_PER_HQ;
    (first..first + STORES_PER_HQ).collect()
}

/// Registers the HQs and merchants; revokes every third of each. Returns
/// every principal as the list should show it, the operator first.
async fn register(operator: &Client) -> Vec<PrincipalInfo> {
    let mut expected = vec![PrincipalInfo {
        id: 0,
        role: Role::Operator,
        stores: vec![],
        revoked: false,
    }];
    for index in 0..HQS {
        for (id, role, stores) in [
            (hq_id(index), Role::StoreHq, stores_of(index)),
            (hq_id(index) + 5, Role::Merchant, vec![]),
        ] {
            let info = operator
                .principal_add(&Key::generate(id), role, &stores)
                .await
                .expect("add");
            let info = if index % 3 == 1 {
                operator.principal_revoke(id).await.expect("revoke")
            } else {
                info
            };
            expected.push(info);
        }
    }
    expected
}

/// Reads the list page by page, as a client author would; returns the
/// principals joined and the number of pages.
async fn every_page(operator: &Client) -> (Vec<PrincipalInfo>, usize) {
    let (mut all, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = operator
            .principal_list_page(after, u32::MAX)
            .await
            .expect("page");
        pages += 1;
        let next = page.next;
        page.append_to(&mut all);
        match next {
            Some(next) => after = Some(next),
            None => return (all, pages),
        }
    }
}

fn as_json(principals: &[PrincipalInfo]) -> Value {
    let entries: Vec<Value> = principals
        .iter()
        .map(|p| json!({ "id": p.id, "role": p.role.name(), "stores": p.stores, "revoked": p.revoked }))
        .collect();
    json!(entries)
}

/// The client's list, the pages read one by one and the CLI's list all
/// show `expected`, each principal once, in order; returns the pages.
async fn check_the_list(server: &Server, expected: &[PrincipalInfo]) -> usize {
    let operator = server.principals().await.operator;
    assert_eq!(
        operator.principal_list().await.expect("list"),
        expected,
        "the client"
    );
    let (paged, pages) = every_page(&operator).await;
    assert_eq!(paged, expected, "page by page");
    let (status, listed) = server.cli(&["principal", "list"]);
    assert_eq!(status, 0, "{listed}");
    assert_eq!(listed["principals"], as_json(expected), "the CLI");
    pages
}

/// Adding a store HQ with `store` is refused, naming the store and `hq`.
async fn assert_store_refused(operator: &Client, store: u32, hq: u32) {
    let refused = operator
        .principal_add(&Key::generate(9999), Role::StoreHq, &[7, store])
        .await
        .expect_err("a store held by another HQ");
    assert_eq!(refused.server_code(), Some(ErrorCode::InvalidArgument));
    let named = format!("store {store} belongs to store HQ {hq}");
    assert!(refused.to_string().contains(&named), "{refused}");
}

fn metrics_server(dir: &std::path::Path, metrics: SocketAddr, limits: &[&str]) -> Server {
    Server::start_with(
        dir,
        ServerOptions {
            metrics_listen: Some(metrics),
            limits: limits.iter().map(|l| l.to_string()).collect(),
            ..ServerOptions::default()
        },
    )
}

#[test]
fn fifty_seven_thousand_stores_list_in_pages_that_fit_a_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_local_addr();
    let server = metrics_server(dir.path(), metrics, &[]);
    let rt = runtime();
    let expected = rt.block_on(async {
        let operator = server.principals().await.operator;
        let expected = register(&operator).await;

        // A first page stops short of the frame and says where to go on.
        let first = operator
            .principal_list_page(None, 1000)
            .await
            .expect("page");
        assert!(first.principals.len() < expected.len());
        assert!(first.next.is_some());
        let one = operator.principal_list_page(None, 1).await.expect("page");
        assert_eq!(one.principals, expected[..1]);
        let next = Some(PrincipalListRef { id: 0, store: None });
        assert_eq!(one.next, next);
        let empty = operator.principal_list_page(None, 0).await;
        let empty = empty.expect_err("a page of no principals");
        assert_eq!(empty.server_code(), Some(ErrorCode::LimitExceeded));

        let pages = check_the_list(&server, &expected).await;
        assert!(pages >= 2, "{pages} pages");
        let served = scrape(metrics)["kessai_principal_list_pages_total"];
        assert_eq!(served, (2 + 3 * pages) as f64, "every page counted");

        // Store HQ 0 holds its stores; revoked HQ 1 keeps its own.
        assert_store_refused(&operator, FIRST_STORE + 5, hq_id(0)).await;
        assert_store_refused(&operator, FIRST_STORE + STORES_PER_HQ, hq_id(1)).await;
        expected
    });

    // A client from before paging sends an empty body: malformed, closed.
    let key = Key::read(&server.operator_key_path()).expect("operator key");
    let mut raw = raw_connection(server.addr, &key);
    let mut old = Vec::new();
    frame::encode(&mut old, KIND_PRINCIPAL_LIST, 3, &(), 1 << 20).expect("encode");
    std::io::Write::write_all(&mut raw.stream, &old).expect("write");
    let (correlation_id, reply) = raw.next();
    assert_eq!(correlation_id, 3);
    assert!(
        matches!(&reply, Response::Error(e) if e.error_code() == Some(ErrorCode::MalformedFrame)),
        "{reply:?}"
    );
    assert!(raw.closed_by_engine());

    // The smallest frame: no store HQ fits a page whole any more.
    server.kill9();
    let small = [
        "max_frame_bytes = 1024",
        "max_report_lines = 10",
        "max_issue_per_request = 50",
    ];
    let server = metrics_server(dir.path(), free_local_addr(), &small);
    rt.block_on(async {
        let pages = check_the_list(&server, &expected).await;
        let stores_bytes = (HQS * STORES_PER_HQ * 5) as usize;
        assert!(pages > stores_bytes / 1024, "{pages} pages");
        let operator = server.principals().await.operator;
        assert_store_refused(&operator, FIRST_STORE + 5, hq_id(0)).await;
        let last = FIRST_STORE + HQS * STORES_PER_HQ - 1;
        assert_store_refused(&operator, last, hq_id(HQS - 1)).await;
    });
}
