//! Connection slots under attack, over real TCP (issue #19, case 3):
//! anonymous connections opened as fast as a client can open them do not
//! keep an honest client out, and one key cannot hold every serving slot
//! nor lock the operator out.
//!
//! The anonymous attack comes from 40 loopback addresses, as it would from
//! 40 hosts; the one-key test's connections all come from 127.0.0.1, with
//! `max_connections_per_peer` raised out of the way.

mod common;

use common::{Raw, Server, ServerOptions, runtime};
use kessai::client::Client;
use kessai::protocol::{AuthHello, AuthProof, ErrorCode, Request, Response, Role};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn server_with(dir: &std::path::Path, limits: &[&str]) -> Server {
    Server::start_with(
        dir,
        ServerOptions {
            limits: limits.iter().map(|l| l.to_string()).collect(),
            ..ServerOptions::default()
        },
    )
}

/// Source addresses the attack comes from (127.0.0.2 upward: Linux
/// routes all of 127/8 to the loopback device, so a client socket can
/// bind any of them; the engine still listens on 127.0.0.1 only).
const ATTACK_ADDRESSES: u8 = 40;
/// Connections each attacking address keeps open: under the per-address
/// limit, as in the attack this reproduces.
const ATTACK_PER_ADDRESS: usize = 50;

/// Keeps `ATTACK_PER_ADDRESS` anonymous connections open from `source`,
/// each with three bytes of a length prefix, reopening each as soon as the
/// engine closes it, until `stop`. Counts the connections it opened.
async fn hold_anonymous(
    source: std::net::Ipv4Addr,
    target: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut holders = tokio::task::JoinSet::new();
    for _ in 0..ATTACK_PER_ADDRESS {
        let (stop, opened) = (stop.clone(), opened.clone());
        holders.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket
                    .bind(std::net::SocketAddr::from((source, 0)))
                    .expect("bind a loopback source address");
                let Ok(mut stream) = socket.connect(target).await else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let _ = stream.write_all(&[0, 0, 0]).await;
                // Held until the engine closes it (eviction, deadline) or
                // the attack stops.
                let mut byte = [0u8; 64];
                loop {
                    tokio::select! {
                        read = stream.read(&mut byte) => match read {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        },
                        () = tokio::time::sleep(Duration::from_millis(50)) => {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                        }
                    }
                }
            }
        });
    }
    while holders.join_next().await.is_some() {}
}

#[test]
fn anonymous_connections_from_many_addresses_do_not_keep_a_client_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default pools, and the per-address limit above the attack's 50.
    let server = server_with(dir.path(), &["max_connections_per_peer = 64"]);
    let key = runtime().block_on(async {
        let principals = server.principals().await;
        principals.key(5, Role::Merchant, &[]).await
    });

    // 2,000 anonymous connections held open and reopened the moment the
    // engine closes one: eight times the handshake pool.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let attack = {
        let (stop, opened, target) = (stop.clone(), opened.clone(), server.addr);
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut addresses = tokio::task::JoinSet::new();
                for n in 0..ATTACK_ADDRESSES {
                    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + n);
                    addresses.spawn(hold_anonymous(source, target, stop.clone(), opened.clone()));
                }
                while addresses.join_next().await.is_some() {}
            })
        })
    };
    while opened.load(Ordering::Relaxed) < 2000 {
        std::thread::sleep(Duration::from_millis(10));
    }

    // Under the old engine (one pool, every slot held until the handshake
    // deadline) an honest client got in 3 times in 60. Now the attack's
    // addresses each hold many handshakes, so a newcomer evicts one of
    // theirs, never the honest client's single one.
    let tries = 30;
    let served = runtime().block_on(async {
        let mut served = 0;
        for _ in 0..tries {
            if let Ok(client) = Client::connect_as(server.addr, &key).await
                && client.ping().await.is_ok()
            {
                served += 1;
            }
        }
        served
    });
    let opened_during = opened.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    attack.join().expect("attack");
    eprintln!(
        "the attack opened {opened_during} connections; the honest client got in {served} of {tries}"
    );
    assert_eq!(served, tries, "the honest client was kept out");
    // The attack was real: the pool was full and turning over.
    let (status, stats) = server.cli(&["stats"]);
    assert_eq!(status, 0, "{stats}");
    assert!(opened_during > 2000, "{opened_during}");
}

#[test]
fn one_key_cannot_hold_every_slot_nor_keep_the_operator_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with(
        dir.path(),
        &[
            "max_connections = 32",
            "max_connections_per_principal = 8",
            "reserved_operator_connections = 4",
            "max_connections_per_peer = 4096",
        ],
    );
    let runtime = runtime();
    let principals = runtime.block_on(server.principals());
    let keys: Vec<_> = (5..=8)
        .map(|id| runtime.block_on(principals.key(id, Role::Merchant, &[])))
        .collect();
    // `principals` holds one operator connection: 1 of 32.

    // One key: eight connections served, the ninth refused by name.
    let mut first: Vec<Raw> = (0..8)
        .map(|_| handshake(&server, &keys[0]).expect("served"))
        .collect();
    let Err(refused) = handshake(&server, &keys[0]) else {
        panic!("the ninth is served");
    };
    assert!(refused.contains("principal"), "{refused}");

    // Three more keys, eight tries each: the 28 slots a non-operator may
    // take (32 less 4 reserved) run out with the operator's one open, at
    // the last key's fourth: 8 + 8 + 8 + 3 = 27 merchant connections.
    let mut others = Vec::new();
    let mut refusals = Vec::new();
    for key in &keys[1..] {
        for _ in 0..8 {
            match handshake(&server, key) {
                Ok(raw) => others.push(raw),
                Err(message) => refusals.push(message),
            }
        }
    }
    assert_eq!(first.len() + others.len(), 27);
    assert_eq!(refusals.len(), 5);
    assert!(
        refusals.iter().all(|m| m.contains("serves as many")),
        "{refusals:?}"
    );

    // Every merchant connection still works, and an operator gets in on a
    // reserved slot (the CLI opens a connection of its own).
    for raw in first.iter_mut().chain(others.iter_mut()) {
        raw.send(3, &Request::Ping);
        assert_eq!(raw.next(), (3, Response::Pong));
    }
    let (status, stats) = server.cli(&["stats"]);
    assert_eq!(status, 0, "{stats}");

    // Once the first key lets go, the last gets its fourth connection (a
    // slot counts free once the closed connection's task has ended, so
    // allow it a moment).
    drop(first);
    runtime.block_on(async {
        for attempt in 0.. {
            match Client::connect_as(server.addr, &keys[3]).await {
                Ok(client) => {
                    client.ping().await.expect("served");
                    break;
                }
                Err(error) if attempt < 50 => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("still refused: {error}"),
            }
        }
    });
}

/// Does the handshake as `key` by hand (as `Client::connect_as` does):
/// the served connection, or the `overloaded` message that closed it.
fn handshake(server: &Server, key: &kessai::auth::Key) -> Result<Raw, String> {
    let mut raw = Raw::connect(server.addr);
    let client_nonce = [9u8; 32];
    raw.send(
        1,
        &Request::AuthHello(AuthHello {
            principal: key.principal,
            client_nonce,
        }),
    );
    let Response::Challenge(challenge) = raw.next().1 else {
        panic!("no challenge");
    };
    let proof = key.proof(&client_nonce, &challenge.server_nonce);
    raw.send(2, &Request::AuthProof(AuthProof { proof }));
    match raw.next().1 {
        Response::Welcome(_) => Ok(raw),
        Response::Error(error) if error.code == ErrorCode::Overloaded as u16 => {
            assert!(raw.closed_by_engine(), "a refused connection is closed");
            Err(error.message)
        }
        other => panic!("expected welcome or overloaded, got {other:?}"),
    }
}
