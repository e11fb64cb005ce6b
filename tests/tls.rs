//! The full path over TLS, with a certificate generated here (rcgen): the
//! engine serves TLS, a client that trusts the certificate is served, and
//! neither a plain-TCP client nor one trusting another CA gets anywhere.

mod common;

use common::{Principals, Server, ServerOptions, certificate, runtime};
use kessai::auth::Key;
use kessai::client::{Client, Connect, TlsClient};
use kessai::protocol::Role;
use std::path::Path;

fn over_tls(ca: &Path, key: Option<Key>) -> Connect {
    Connect {
        key,
        tls: Some(TlsClient::from_ca_file(ca, None).expect("CA")),
    }
}

#[test]
fn the_full_path_runs_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, cert_key) = certificate(dir.path(), "engine");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: 2,
            tls: Some((cert.clone(), cert_key)),
            ..ServerOptions::default()
        },
    );
    runtime().block_on(async {
        let operator_key = Key::read(&server.operator_key_path()).expect("operator key");
        let operator = Client::connect_with(server.addr, &over_tls(&cert, Some(operator_key)))
            .await
            .expect("operator over TLS");
        let principals = Principals::with_operator(server.addr, operator);
        let hq_key = principals.key(42, Role::StoreHq, &[42]).await;
        let merchant_key = principals.key(5, Role::Merchant, &[]).await;
        let operator = &principals.operator;
        let pins = operator.issue(2, 1000).await.expect("issue").pins;
        let hq = Client::connect_with(server.addr, &over_tls(&cert, Some(hq_key)))
            .await
            .expect("store hq over TLS");
        hq.activate(42, 1, &pins).await.expect("activate");
        let merchant =
            Client::connect_with(server.addr, &over_tls(&cert, Some(merchant_key.clone())))
                .await
                .expect("merchant over TLS");
        let paid = merchant.pay(1, 1500, &pins).await.expect("pay");
        assert!(paid.is_approved(), "{paid:?}");
        assert_eq!(paid.remaining_minor(), 500);
        let audit = operator.audit().await.expect("audit");
        assert!(audit.ok, "{:?}", audit.problems);
        assert_eq!(audit.totals.merchant_owed_minor, 1500);

        // Plain TCP to a TLS engine: the handshake never completes.
        let plain = Client::connect(server.addr).await.expect("tcp connects");
        let attempt = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            plain.authenticate(&merchant_key),
        )
        .await;
        assert!(
            !matches!(attempt, Ok(Ok(_))),
            "no authentication over plain TCP"
        );
        // A client that trusts another CA refuses the engine's certificate.
        let (other_ca, _) = certificate(dir.path(), "other");
        let refused =
            Client::connect_with(server.addr, &over_tls(&other_ca, Some(merchant_key))).await;
        assert!(refused.is_err(), "an unknown CA is refused");
    });

    // The CLI takes the same CA.
    let out = std::process::Command::new(common::kessai_bin())
        .args([
            "audit",
            "--json",
            "--addr",
            &server.addr.to_string(),
            "--key",
        ])
        .arg(server.operator_key_path())
        .arg("--tls-ca")
        .arg(&cert)
        .output()
        .expect("run kessai");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(audit["ok"], true);
}

#[test]
fn a_tls_handshake_that_never_starts_loses_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, cert_key) = certificate(dir.path(), "engine");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: 1,
            tls: Some((cert, cert_key)),
            limits: vec![
                "handshake_timeout_ms = 500".into(),
                "max_connections_per_peer = 4".into(),
            ],
            ..ServerOptions::default()
        },
    );
    // Four sockets that never send a ClientHello take every slot this
    // address has; at the handshake deadline the engine closes them (TLS
    // has no frame to say why).
    let mut silent: Vec<common::Raw> = (0..4).map(|_| common::Raw::connect(server.addr)).collect();
    for raw in &mut silent {
        assert!(raw.closed_by_engine(), "a silent TLS socket is closed");
    }
}
