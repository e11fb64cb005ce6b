//! The Prometheus endpoint of a real engine process: scraped over HTTP,
//! its counters match what the clients were told.

mod common;

use common::{
    Server, ServerOptions, active_cards, free_local_addr, pick_by_shard, runtime, scrape,
};
use std::collections::HashMap;

const SHARDS: usize = 4;

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

/// The sample of `name` with the single label `label="label_value"`.
fn labelled(samples: &HashMap<String, f64>, name: &str, label: &str, label_value: &str) -> f64 {
    value(samples, &format!("{name}{{{label}=\"{label_value}\"}}"))
}

#[test]
fn counters_match_what_clients_were_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_addr = free_local_addr();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: SHARDS,
            metrics_listen: Some(metrics_addr),
            ..ServerOptions::default()
        },
    );
    runtime().block_on(async {
        let principals = server.principals().await;
        let client = principals.merchant(2).await;
        let pool = active_cards(&principals, 40, 1000, 3).await;
        // Activating one again is declined.
        let store = principals.store(3).await;
        let again = store.activate(3, 0, &pool[..1]).await.expect("activate");
        assert!(matches!(
            again.results[0],
            kessai::protocol::ActivationResult::Declined { .. }
        ));
        for request_id in 1..=3 {
            let paid = client.pay(request_id, 100, &pool[..1]).await;
            assert!(paid.expect("pay").is_approved());
        }
        // A retry replays (and counts again as approved).
        assert!(client.pay(3, 100, &pool[..1]).await.expect("pay").replayed);
        let short = client.pay(10, 5000, &pool[1..2]).await.expect("pay");
        assert!(!short.is_approved());
        // A two-phase payment over two shards.
        let pair = pick_by_shard(&pool[2..], SHARDS, &[0, 1]);
        assert!(
            client
                .pay(11, 1500, &pair)
                .await
                .expect("pay")
                .is_approved()
        );
        // A typo in a PIN is an error reply, not a decline.
        let mut typo = pool[5].clone();
        let last = typo.pop().expect("digit");
        typo.push(if last == '0' { '1' } else { '0' });
        assert!(client.balance(&typo).await.is_err());
        // An unknown PIN is a PIN failure too; a store HQ activating for
        // another store is forbidden.
        let unknown = client.balance("79927398713").await.expect_err("unknown");
        assert_eq!(
            unknown.server_code(),
            Some(kessai::protocol::ErrorCode::InvalidCard)
        );
        let other_store = store.activate(4, 0, &pool[..1]).await.expect_err("refused");
        assert_eq!(
            other_store.server_code(),
            Some(kessai::protocol::ErrorCode::Forbidden)
        );
        // A batch: each payment counts as itself, the batch once.
        let item = |request_id, pin: &String| kessai::protocol::PayRequest {
            request_id,
            amount_minor: 1,
            pins: vec![pin.clone()],
        };
        let fresh: Vec<&String> = pool[6..].iter().filter(|pin| !pair.contains(pin)).collect();
        let results = client
            .pay_batch(vec![
                item(20, fresh[0]),
                item(21, fresh[1]),
                item(22, &typo),
            ])
            .await
            .expect("batch");
        assert_eq!(results.len(), 3);

        let samples = scrape(metrics_addr);
        let payments = |outcome| labelled(&samples, "kessai_payments_total", "outcome", outcome);
        assert_eq!(payments("approved"), 7.0);
        assert_eq!(value(&samples, "kessai_pay_batches_total"), 1.0);
        assert_eq!(payments("insufficient_funds"), 1.0);
        let activations =
            |outcome| labelled(&samples, "kessai_activations_total", "outcome", outcome);
        assert_eq!(activations("activated"), 40.0);
        assert_eq!(activations("already_active"), 1.0);
        let errors = labelled(&samples, "kessai_errors_total", "code", "invalid_pin");
        assert_eq!(errors, 2.0);
        let forbidden = labelled(&samples, "kessai_errors_total", "code", "forbidden");
        assert_eq!(forbidden, 1.0);
        // The typo (twice) and the unknown PIN, each a PIN failure.
        assert_eq!(value(&samples, "kessai_pin_failures_total"), 3.0);
        // The operator, the merchant, and two store HQ connections.
        assert_eq!(
            labelled(&samples, "kessai_auth_total", "outcome", "ok"),
            4.0
        );
        let added = labelled(&samples, "kessai_principal_changes_total", "change", "add");
        assert_eq!(added, 2.0, "the merchant and the store HQ");
        let commits = labelled(
            &samples,
            "kessai_twopc_decisions_total",
            "decision",
            "commit",
        );
        assert_eq!(commits, 1.0);
        assert!(value(&samples, "kessai_connections_open") >= 1.0);
        // Every shard has synced at least the activations' batch.
        for shard in 0..SHARDS {
            let label = shard.to_string();
            let commits = labelled(&samples, "kessai_group_commit_ops_count", "shard", &label);
            assert!(commits >= 1.0, "shard {shard}: {commits}");
        }
    });
}

#[test]
fn a_taken_metrics_port_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    std::fs::write(
        dir.path().join("kessai.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"{addr}\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let output = std::process::Command::new(common::kessai_bin())
        .args(["serve", "--config"])
        .arg(dir.path().join("kessai.toml"))
        .output()
        .expect("run kessai serve");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot serve metrics"), "{stderr}");
}
