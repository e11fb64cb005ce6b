//! The trust boundary, against a real engine over TCP: principals and roles,
//! revocation, the handshake, PIN guessing, and no secret at rest.

mod common;

use common::{Raw, Server, ServerOptions, active_cards, guess, raw_connection, runtime};
use kessai::auth::Key;
use kessai::client::Client;
use kessai::protocol::{
    AuthHello, AuthProof, ErrorCode, IssueRequest, PayRequest, Request, Response, Role,
};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn code(result: Result<impl std::fmt::Debug, kessai::client::ClientError>) -> Option<ErrorCode> {
    result.expect_err("refused").server_code()
}

#[test]
fn a_hundred_thousand_guesses_find_nothing_and_lock_only_the_guesser() {
    const GUESSES: u64 = 100_000;
    const FAILURES_MAX: u64 = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 100, 1000, 1).await;
        let honest = principals.merchant(2).await;
        let guesser_key = principals.key(666, Role::Merchant, &[]).await;

        // The honest merchant pays the whole time the guesser guesses.
        let done = Arc::new(AtomicBool::new(false));
        let honest_task = {
            let (done, pins) = (done.clone(), pins.clone());
            tokio::spawn(async move {
                let mut approved = 0u64;
                let mut request_id = 0u64;
                while !done.load(Ordering::Relaxed) {
                    request_id += 1;
                    let card = &pins[request_id as usize % pins.len()];
                    let paid = honest
                        .pay(request_id, 1, std::slice::from_ref(card))
                        .await
                        .expect("the honest merchant is served");
                    assert!(paid.is_approved(), "{paid:?}");
                    approved += 1;
                }
                approved
            })
        };

        // Four connections, 512 guesses in flight each: pay and balance.
        let (failures, locked, hits) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let next = Arc::new(AtomicU64::new(0));
        let mut lanes = Vec::new();
        for connection in 0..4u64 {
            let client = Arc::new(
                Client::connect_as(server.addr, &guesser_key)
                    .await
                    .expect("guesser"),
            );
            for lane in 0..128u64 {
                let (client, next) = (client.clone(), next.clone());
                let (failures, locked, hits) = (failures.clone(), locked.clone(), hits.clone());
                lanes.push(tokio::spawn(async move {
                    let mut state = ((connection << 32) | lane).wrapping_mul(0x9E37_79B9) | 1;
                    while next.fetch_add(1, Ordering::Relaxed) < GUESSES {
                        let pin = guess(&mut state);
                        let outcome = if state % 2 == 0 {
                            // Client request ids are below 2^63 (the rest
                            // name order ids).
                            client
                                .pay(state >> 1, 1, std::slice::from_ref(&pin))
                                .await
                                .map(|paid| paid.reason())
                        } else {
                            client.balance(&pin).await.map(|_| None)
                        };
                        let counter = match outcome {
                            Ok(None) => &hits,
                            Ok(Some(kessai::card::DeclineReason::InvalidCard)) => &failures,
                            Err(error) if error.server_code() == Some(ErrorCode::InvalidCard) => {
                                &failures
                            }
                            Err(error) if error.server_code() == Some(ErrorCode::LockedOut) => {
                                &locked
                            }
                            other => panic!("unexpected answer to a guess: {other:?}"),
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        for lane in lanes {
            lane.await.expect("lane");
        }
        done.store(true, Ordering::Relaxed);
        let honest_approved = honest_task.await.expect("honest merchant");

        let (failures, locked, hits) = (
            failures.load(Ordering::Relaxed),
            locked.load(Ordering::Relaxed),
            hits.load(Ordering::Relaxed),
        );
        assert_eq!(hits, 0, "no guess found a card");
        assert_eq!(failures + locked, GUESSES);
        assert!(
            failures <= FAILURES_MAX,
            "the lock engaged after {failures} failures, more than {FAILURES_MAX}"
        );
        assert_eq!(failures, FAILURES_MAX, "and not before the limit");
        assert!(honest_approved > 0, "the honest merchant was served");
        // The lockout holds on a new connection too, and for good PINs.
        let again = Client::connect_as(server.addr, &guesser_key)
            .await
            .expect("guesser");
        assert_eq!(
            code(again.pay(1, 1, &pins[..1]).await),
            Some(ErrorCode::LockedOut)
        );
        // Nothing moved but the honest merchant's payments.
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.totals.merchant_owed_minor, honest_approved);
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn requests_outside_a_role_or_before_the_handshake_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 2, 1000, 42).await;
        let unsold = principals
            .operator
            .issue(1, 1000)
            .await
            .expect("issue")
            .pins;
        let merchant = principals.merchant(5).await;
        let hq = principals.store(42).await;

        // Anonymous: every request refused, the handshake still possible.
        let anonymous = Client::connect(server.addr).await.expect("connect");
        assert_eq!(
            code(anonymous.ping().await),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            code(anonymous.pay(1, 1, &pins[..1]).await),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            code(anonymous.issue(1, 1000).await),
            Some(ErrorCode::Unauthenticated)
        );
        let key = principals.key(5, Role::Merchant, &[]).await;
        anonymous.authenticate(&key).await.expect("handshake");
        anonymous.ping().await.expect("now served");

        let forbidden = Some(ErrorCode::Forbidden);
        assert_eq!(code(merchant.activate(42, 0, &unsold).await), forbidden);
        assert_eq!(code(merchant.issue(1, 1000).await), forbidden);
        assert_eq!(code(merchant.report().await), forbidden);
        assert_eq!(code(hq.activate(43, 0, &unsold).await), forbidden);
        assert_eq!(code(hq.pay(1, 1, &pins[..1]).await), forbidden);
        assert_eq!(code(hq.issue(1, 1000).await), forbidden);
        let stranger = Key::generate(9);
        assert_eq!(
            code(merchant.principal_add(&stranger, Role::Operator, &[]).await),
            forbidden
        );
        assert_eq!(
            code(principals.operator.pay(1, 1, &pins[..1]).await),
            forbidden
        );

        // None of it changed anything.
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.totals.merchant_owed_minor, 0);
        assert_eq!(report.totals.cards, 3);
        assert_eq!(report.totals.cards_active, 2);
        let principals_now = principals.operator.principal_list().await.expect("list");
        assert_eq!(principals_now.len(), 3, "{principals_now:?}");
        // The unsold card is still unsold.
        let balance = merchant.balance(&unsold[0]).await;
        assert_eq!(code(balance), Some(ErrorCode::InvalidCard));
    });
}

#[test]
fn a_revoked_key_is_refused_on_the_connection_it_has_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, 1000, 1).await;
        let merchant = principals.merchant(5).await;
        assert!(merchant.pay(1, 10, &pins).await.expect("pay").is_approved());
        let revoked = principals
            .operator
            .principal_revoke(5)
            .await
            .expect("revoke");
        assert!(revoked.revoked);
        assert_eq!(
            code(merchant.pay(2, 10, &pins).await),
            Some(ErrorCode::Unauthenticated)
        );
        // The connection is closed, and a new one cannot authenticate.
        assert!(merchant.ping().await.is_err());
        let key = principals.key(5, Role::Merchant, &[]).await;
        assert!(Client::connect_as(server.addr, &key).await.is_err());
        // The last operator cannot be revoked; a revoked id is not reused.
        assert_eq!(
            code(principals.operator.principal_revoke(0).await),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(
                principals
                    .operator
                    .principal_add(&Key::generate(5), Role::Merchant, &[])
                    .await
            ),
            Some(ErrorCode::InvalidArgument)
        );
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.totals.merchant_owed_minor, 10);
    });
}

#[test]
fn a_recorded_handshake_replayed_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    let key = runtime().block_on(async {
        let principals = server.principals().await;
        principals.key(5, Role::Merchant, &[]).await
    });
    // A handshake as an eavesdropper records it: hello, challenge, proof.
    let client_nonce = [3u8; 32];
    let hello = Request::AuthHello(AuthHello {
        principal: 5,
        client_nonce,
    });
    let mut first = Raw::connect(server.addr);
    first.send(1, &hello);
    let Response::Challenge(challenge) = first.next().1 else {
        panic!("a challenge");
    };
    let proof = Request::AuthProof(AuthProof {
        proof: key.proof(&client_nonce, &challenge.server_nonce),
    });
    first.send(2, &proof);
    assert!(matches!(first.next().1, Response::Welcome(_)));

    // Replayed on a new connection: the engine's nonce differs, the proof
    // fails, the connection closes, and nothing is served.
    let mut replay = Raw::connect(server.addr);
    replay.send(1, &hello);
    let Response::Challenge(second) = replay.next().1 else {
        panic!("a challenge");
    };
    assert_ne!(second.server_nonce, challenge.server_nonce);
    replay.send(2, &proof);
    replay.send(
        3,
        &Request::Issue(IssueRequest {
            count: 1,
            face_value_minor: 1,
        }),
    );
    match replay.next() {
        (2, Response::Error(error)) => {
            assert_eq!(error.error_code(), Some(ErrorCode::Unauthenticated));
        }
        other => panic!("the replayed proof is refused, got {other:?}"),
    }
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut replay.stream, &mut rest);
    assert!(rest.is_empty(), "closed without serving the issue");

    // An unknown principal gets the same challenge and the same refusal.
    let stranger = Key::generate(77);
    let mut unknown = Raw::connect(server.addr);
    unknown.send(
        1,
        &Request::AuthHello(AuthHello {
            principal: 77,
            client_nonce,
        }),
    );
    let Response::Challenge(third) = unknown.next().1 else {
        panic!("a challenge, even for an unknown principal");
    };
    let forged = stranger.proof(&client_nonce, &third.server_nonce);
    unknown.send(2, &Request::AuthProof(AuthProof { proof: forged }));
    let (_, refused) = unknown.next();
    assert!(
        matches!(refused, Response::Error(e) if e.error_code() == Some(ErrorCode::Unauthenticated))
    );
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_pin_and_no_secret_is_kept_in_the_data_dir_or_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: 2,
            // The command log's segments are searched too, every byte of
            // their preallocated size: keep them small.
            log: vec!["segment_bytes = 1048576".into()],
            ..ServerOptions::default()
        },
    );
    let keys_dir = tempfile::tempdir().expect("keys");
    let (pins, key_files) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 20, 1000, 42).await;
        let mut pins_all = pins.clone();
        pins_all.extend(principals.operator.issue(5, 700).await.expect("issue").pins);
        let merchant = principals.merchant(5).await;
        merchant.pay(1, 300, &pins[..2]).await.expect("pay");
        let _ = merchant.balance(&pins[3]).await;
        let mut state = 7u64;
        for request_id in 10..40 {
            // Guesses: PINs that must not be kept either.
            let pin = guess(&mut state);
            let _ = merchant
                .pay(request_id, 1, std::slice::from_ref(&pin))
                .await;
            pins_all.push(pin);
        }
        let files = vec![
            principals
                .key_file(keys_dir.path(), 5, Role::Merchant, &[])
                .await,
            principals
                .key_file(keys_dir.path(), common::hq_of(42), Role::StoreHq, &[42])
                .await,
        ];
        (pins_all, files)
    });
    let log_path = dir.path().join("engine.log");
    let operator_key = server.operator_key_path();
    server.kill9();
    // The operator key file is the one place its secret is meant to be, as
    // written at first start: the operator moves it away, as the README
    // says, and then nothing in the data dir may hold it.
    let moved = keys_dir.path().join("operator.key");
    std::fs::rename(&operator_key, &moved).expect("move the operator key");
    let mut secrets: Vec<String> = Vec::new();
    for file in key_files.iter().chain([&moved]) {
        let text = std::fs::read_to_string(file).expect("key file");
        let line = text
            .lines()
            .find(|l| l.starts_with("secret"))
            .expect("a secret line");
        secrets.push(line.split('"').nth(1).expect("quoted hex").to_string());
    }
    assert_eq!(secrets.len(), 3);

    let mut haystacks = files_under(&dir.path().join("data"));
    haystacks.push((log_path.clone(), std::fs::read(&log_path).expect("log")));
    assert!(haystacks.len() > 3, "the data dir holds RocksDB's files");
    for (path, bytes) in &haystacks {
        for pin in &pins {
            assert!(
                !contains(bytes, pin.as_bytes()),
                "a PIN in {}",
                path.display()
            );
        }
        for secret in &secrets {
            let raw = hex::decode(secret).expect("hex");
            assert!(
                !contains(bytes, secret.as_bytes()),
                "a secret in {}",
                path.display()
            );
            assert!(!contains(bytes, &raw), "a raw secret in {}", path.display());
        }
        let pin_secret = common::SECRET_HEX.as_bytes();
        assert!(
            !contains(bytes, pin_secret),
            "the PIN secret in {}",
            path.display()
        );
    }
}

#[test]
fn a_request_pipelined_before_the_proof_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    let (pins, key) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, 1000, 1).await;
        (pins, principals.key(5, Role::Merchant, &[]).await)
    });
    let pay = Request::Pay(PayRequest {
        request_id: 1,
        amount_minor: 100,
        pins,
    });
    // A pay sent together with the hello, before any proof.
    let mut early = Raw::connect(server.addr);
    let hello = Request::AuthHello(AuthHello {
        principal: 5,
        client_nonce: [1; 32],
    });
    let mut bytes = Vec::new();
    hello.encode(&mut bytes, 1, 1 << 20).expect("encode");
    pay.encode(&mut bytes, 2, 1 << 20).expect("encode");
    early.stream.write_all(&bytes).expect("write");
    assert!(matches!(early.next().1, Response::Challenge(_)));
    let (id, refused) = early.next();
    assert_eq!(id, 2);
    assert!(
        matches!(refused, Response::Error(e) if e.error_code() == Some(ErrorCode::Unauthenticated))
    );
    // The same payment, authenticated, is the first one to count.
    let mut authed = raw_connection(server.addr, &key);
    authed.send(3, &pay);
    match authed.next().1 {
        Response::Paid(paid) => assert!(paid.is_approved() && !paid.replayed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rotated_key_replaces_the_old_one_and_the_merchant_keeps_its_books() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 1, 1000, 1).await;
        let old = principals.merchant(5).await;
        assert!(old.pay(1, 100, &pins).await.expect("pay").is_approved());
        let new_key = Key::generate(5);
        let info = principals
            .operator
            .principal_rotate(&new_key)
            .await
            .expect("rotate");
        assert!(!info.revoked && info.role == Role::Merchant);
        // The old key's connection is cut, and the old key no longer works.
        assert_eq!(
            code(old.pay(2, 100, &pins).await),
            Some(ErrorCode::Unauthenticated)
        );
        let old_key = principals.key(5, Role::Merchant, &[]).await;
        assert!(Client::connect_as(server.addr, &old_key).await.is_err());
        // The new key is the same merchant: a retry replays, books carry on.
        let renewed = Client::connect_as(server.addr, &new_key)
            .await
            .expect("new key");
        let retry = renewed.pay(1, 100, &pins).await.expect("retry");
        assert!(retry.replayed && retry.is_approved());
        assert!(renewed.pay(3, 50, &pins).await.expect("pay").is_approved());
        let report = principals.operator.report().await.expect("report");
        assert_eq!(report.merchants.len(), 1);
        assert_eq!(report.merchants[0].owed_minor, 150);
    });
}

/// A PIN with a wrong check digit: refused at the gateway, never reaching
/// a shard, but still a failure of the principal that sent it.
fn bad_check_digit(state: &mut u64) -> String {
    let mut pin = guess(state).into_bytes();
    let last = pin.last_mut().expect("digits");
    *last = b'0' + (*last - b'0' + 1) % 10;
    String::from_utf8(pin).expect("digits")
}

/// What a guess was answered: a failure counted, or the lock.
fn answer(
    result: Result<Option<kessai::card::DeclineReason>, kessai::client::ClientError>,
) -> &'static str {
    match result {
        Ok(Some(kessai::card::DeclineReason::InvalidCard)) => "failure",
        Err(error) if error.server_code() == Some(ErrorCode::LockedOut) => "locked",
        Err(error)
            if matches!(
                error.server_code(),
                Some(ErrorCode::InvalidCard | ErrorCode::InvalidPin)
            ) =>
        {
            "failure"
        }
        other => panic!("unexpected answer to a guess: {other:?}"),
    }
}

#[test]
fn pin_failures_and_locks_survive_kill_9() {
    const FAILURES_MAX: usize = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || ServerOptions {
        limits: vec![
            format!("pin_failures_max = {FAILURES_MAX}"),
            "lockout_ms = 3600000".into(),
        ],
        ..ServerOptions::default()
    };
    let server = Server::start_with(dir.path(), options());
    let (pins, guesser, honest) = runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 4, 1000, 1).await;
        let guesser = principals.key(666, Role::Merchant, &[]).await;
        let honest = principals.key(2, Role::Merchant, &[]).await;
        (pins, guesser, honest)
    });
    let mut state = 0x10c7;
    // Six failures: three PINs with a bad check digit (counted by the
    // gateway), three unknown PINs (counted by a shard).
    runtime().block_on(async {
        let client = Client::connect_as(server.addr, &guesser)
            .await
            .expect("guesser");
        for n in 0..3u64 {
            let pin = bad_check_digit(&mut state);
            assert_eq!(answer(client.balance(&pin).await.map(|_| None)), "failure");
            let pin = guess(&mut state);
            let paid = client.pay(n + 1, 1, std::slice::from_ref(&pin)).await;
            assert_eq!(answer(paid.map(|p| p.reason())), "failure");
        }
    });

    // A crash, then the four failures left: the count went on from six.
    server.kill9();
    let server = Server::start_with(dir.path(), options());
    runtime().block_on(async {
        let client = Client::connect_as(server.addr, &guesser)
            .await
            .expect("guesser");
        for n in 0..4u64 {
            let pin = guess(&mut state);
            let paid = client.pay(100 + n, 1, std::slice::from_ref(&pin)).await;
            assert_eq!(
                answer(paid.map(|p| p.reason())),
                "failure",
                "failure {}",
                7 + n
            );
        }
        assert_eq!(
            code(client.pay(200, 1, &pins[..1]).await),
            Some(ErrorCode::LockedOut),
            "the tenth failure locked it"
        );
    });

    // Another crash: the lock holds, for good PINs too, and only for the
    // guesser.
    server.kill9();
    let server = Server::start_with(dir.path(), options());
    runtime().block_on(async {
        let client = Client::connect_as(server.addr, &guesser)
            .await
            .expect("guesser");
        assert_eq!(
            code(client.balance(&pins[0]).await),
            Some(ErrorCode::LockedOut)
        );
        let honest = Client::connect_as(server.addr, &honest)
            .await
            .expect("honest");
        let paid = honest.pay(1, 1, &pins[..1]).await.expect("pay");
        assert!(paid.is_approved(), "{paid:?}");
    });
}

#[test]
fn declines_repeated_on_a_spent_card_count_as_failures_and_stop() {
    const FAILURES_MAX: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            limits: vec![format!("pin_failures_max = {FAILURES_MAX}")],
            ..ServerOptions::default()
        },
    );
    runtime().block_on(async {
        let principals = server.principals().await;
        let pins = active_cards(&principals, 2, 1000, 1).await;
        let merchant = principals.merchant(5).await;
        let spent = merchant.pay(1, 1000, &pins[..1]).await.expect("pay");
        assert!(spent.is_approved(), "{spent:?}");

        // Every decline is recorded for its request id (a retry must get
        // the same answer), so each is a durable write: the first on a
        // card is an honest mistake, each repeat a failure like a guess.
        let mut declines = 0u64;
        let mut request_id = 100;
        let locked = loop {
            request_id += 1;
            match merchant.pay(request_id, 1, &pins[..1]).await {
                Ok(paid) => {
                    assert_eq!(paid.reason(), Some(kessai::card::DeclineReason::Exhausted));
                    declines += 1;
                    assert!(declines <= FAILURES_MAX + 1, "{declines} declines, no lock");
                }
                Err(error) => break error.server_code(),
            }
        };
        assert_eq!(locked, Some(ErrorCode::LockedOut));
        assert_eq!(declines, FAILURES_MAX + 1, "the first decline is free");

        // Another merchant still pays with the other card.
        let other = principals.merchant(6).await;
        let paid = other.pay(1, 10, &pins[1..2]).await.expect("pay");
        assert!(paid.is_approved(), "{paid:?}");
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}
