//! Hostile and broken peers: every bad input gets an error frame or a
//! close, never a crash, and other connections keep being served.

mod common;

use common::{Server, active_cards, raw_connection, runtime};
use kessai::auth::Key;
use kessai::protocol::frame;
use kessai::protocol::{ErrorCode, KIND_PING, Request, Response};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Reads frames until the peer closes; returns the responses.
fn read_until_close(stream: &mut TcpStream) -> Vec<(u64, Response)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    decode_all(&bytes)
}

fn decode_all(bytes: &[u8]) -> Vec<(u64, Response)> {
    let mut responses = Vec::new();
    let mut at = 0;
    while let Ok(Some((frame, used))) = frame::parse(&bytes[at..], 1 << 24) {
        let response = Response::decode(frame.kind, frame.body).expect("engine frames decode");
        responses.push((frame.correlation_id, response));
        at += used;
    }
    responses
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => error.error_code(),
        _ => None,
    }
}

/// Sends `bytes` (after the handshake, as `key`, if given), half-closes,
/// and returns what came back before the close.
fn exchange(addr: SocketAddr, key: Option<&Key>, bytes: &[u8]) -> Vec<(u64, Response)> {
    let mut stream = match key {
        Some(key) => raw_connection(addr, key).stream,
        None => TcpStream::connect(addr).expect("connect"),
    };
    stream.write_all(bytes).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    read_until_close(&mut stream)
}

fn ping_frame(correlation_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Request::Ping
        .encode(&mut out, correlation_id, 1 << 20)
        .expect("encode");
    out
}

#[test]
fn bad_frames_get_an_error_or_a_close_and_others_are_unaffected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    let rt = runtime();
    // A healthy connection that lives through all the abuse.
    let (principals, healthy, pins, key) = rt.block_on(async {
        let principals = server.principals().await;
        let healthy = principals.merchant(1).await;
        let pins = active_cards(&principals, 2, 1000, 1).await;
        let key = principals
            .key(1, kessai::protocol::Role::Merchant, &[])
            .await;
        (principals, healthy, pins, key)
    });

    // Garbage: a length prefix of 0x47455420 ("GET ") is over the limit.
    let replies = exchange(server.addr, None, b"GET / HTTP/1.1\r\nHost: kessai\r\n\r\n");
    assert_eq!(replies.len(), 1);
    assert_eq!(error_code(&replies[0].1), Some(ErrorCode::FrameTooLarge));

    // Random bytes.
    let mut seed = 0x9E37_79B9_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect();
    // Whatever it decodes to, the engine answers or closes; it must survive.
    let _ = exchange(server.addr, None, &noise);
    let _ = exchange(server.addr, Some(&key), &noise);

    // Oversized frame: refused from its length prefix alone.
    let mut oversized = (10u32 << 20).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[KIND_PING; 64]);
    let replies = exchange(server.addr, None, &oversized);
    assert_eq!(error_code(&replies[0].1), Some(ErrorCode::FrameTooLarge));

    // Length too short to hold a header.
    let replies = exchange(server.addr, None, &[0, 0, 0, 2, 1, 1]);
    assert_eq!(error_code(&replies[0].1), Some(ErrorCode::MalformedFrame));

    // Truncated frame: a ping is answered, then the stream ends mid-frame.
    let mut truncated = ping_frame(5);
    truncated.extend_from_slice(&ping_frame(6)[..7]);
    let replies = exchange(server.addr, Some(&key), &truncated);
    assert_eq!(replies[0], (5, Response::Pong));
    assert_eq!(error_code(&replies[1].1), Some(ErrorCode::TruncatedFrame));
    // Before the handshake, the same ping is refused, and nothing else.
    let replies = exchange(server.addr, None, &truncated);
    assert_eq!(error_code(&replies[0].1), Some(ErrorCode::Unauthenticated));
    assert_eq!(error_code(&replies[1].1), Some(ErrorCode::TruncatedFrame));

    // Malformed body: a pay frame whose body is not a payment.
    let mut malformed = Vec::new();
    frame::encode(
        &mut malformed,
        kessai::protocol::KIND_PAY,
        8,
        &(1u8,),
        1 << 20,
    )
    .expect("encode");
    let replies = exchange(server.addr, Some(&key), &malformed);
    assert_eq!(replies[0].0, 8);
    assert_eq!(error_code(&replies[0].1), Some(ErrorCode::MalformedFrame));

    // Unknown message type: answered, and the connection stays usable.
    let mut unknown = Vec::new();
    frame::encode(&mut unknown, 0x42, 9, &(), 1 << 20).expect("encode");
    unknown.extend_from_slice(&ping_frame(10));
    let replies = exchange(server.addr, Some(&key), &unknown);
    assert_eq!(replies[0].0, 9);
    assert_eq!(
        error_code(&replies[0].1),
        Some(ErrorCode::UnknownMessageType)
    );
    assert_eq!(replies[1], (10, Response::Pong));

    // A peer that connects and leaves without a byte.
    drop(TcpStream::connect(server.addr).expect("connect"));

    // The healthy connection, and new ones, still work.
    rt.block_on(async {
        let paid = healthy.pay(1, 100, &pins[..1]).await.expect("pay");
        assert!(paid.is_approved());
        let fresh = principals.merchant(1).await;
        fresh.ping().await.expect("ping");
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn a_fatal_frame_comes_after_every_reply_owed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let rt = runtime();
    let (principals, key, pins) = rt.block_on(async {
        let principals = server.principals().await;
        let key = principals
            .key(6, kessai::protocol::Role::Merchant, &[])
            .await;
        let pins = active_cards(&principals, 8, 3000, 1).await;
        (principals, key, pins)
    });
    // 300 payments (every fourth combines two cards, usually on two shards
    // and so through 2PC), then an oversized frame, all in one write.
    let mut burst = Vec::new();
    for correlation_id in 1..=300u64 {
        let first = pins[correlation_id as usize % pins.len()].clone();
        let second = pins[(correlation_id as usize + 3) % pins.len()].clone();
        let request = Request::Pay(kessai::protocol::PayRequest {
            request_id: correlation_id,
            amount_minor: 2,
            pins: if correlation_id % 4 == 0 {
                vec![first, second]
            } else {
                vec![first]
            },
        });
        request
            .encode(&mut burst, correlation_id, 1 << 20)
            .expect("encode");
    }
    burst.extend_from_slice(&(10u32 << 20).to_be_bytes());
    burst.extend_from_slice(&[KIND_PING; 16]);
    let replies = exchange(server.addr, Some(&key), &burst);

    assert_eq!(replies.len(), 301, "every payment answered, then the error");
    let (last_id, last) = &replies[300];
    assert_eq!(*last_id, 0);
    assert_eq!(error_code(last), Some(ErrorCode::FrameTooLarge));
    let mut ids: Vec<u64> = replies[..300].iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=300).collect::<Vec<_>>());
    assert!(
        replies[..300]
            .iter()
            .all(|(_, r)| matches!(r, Response::Paid(p) if p.is_approved()))
    );
    // What the replies said is what the books hold: 300 × 2 yen.
    rt.block_on(async {
        let report = principals.operator.report().await.expect("report");
        let owed: u64 = report
            .merchants
            .iter()
            .filter(|m| m.merchant_id == 6)
            .map(|m| m.owed_minor)
            .sum();
        assert_eq!(owed, 600);
        assert!(principals.operator.audit().await.expect("audit").ok);
    });
}

#[test]
fn a_pipelined_burst_is_answered_completely_out_of_order_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 4);
    let rt = runtime();
    let (key, pins) = rt.block_on(async {
        let principals = server.principals().await;
        let key = principals
            .key(4, kessai::protocol::Role::Merchant, &[])
            .await;
        (key, active_cards(&principals, 8, 3000, 1).await)
    });
    // 2000 requests in one write: more than fits in one read, mixing
    // payments, balance inquiries and pings.
    let mut burst = Vec::new();
    for correlation_id in 1..=2000u64 {
        let pin = pins[correlation_id as usize % pins.len()].clone();
        let request = match correlation_id % 3 {
            0 => Request::Ping,
            1 => Request::Balance(kessai::protocol::BalanceRequest { pin }),
            _ => Request::Pay(kessai::protocol::PayRequest {
                request_id: correlation_id,
                amount_minor: 1,
                pins: vec![pin],
            }),
        };
        request
            .encode(&mut burst, correlation_id, 1 << 20)
            .expect("encode");
    }
    let mut stream = raw_connection(server.addr, &key).stream;
    stream.write_all(&burst).expect("write");
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut responses = Vec::new();
    while responses.len() < 2000 {
        let read = stream.read(&mut chunk).expect("read");
        assert!(read > 0, "closed after {} responses", responses.len());
        bytes.extend_from_slice(&chunk[..read]);
        let mut at = 0;
        while let Ok(Some((frame, used))) = frame::parse(&bytes[at..], 1 << 24) {
            responses.push((
                frame.correlation_id,
                Response::decode(frame.kind, frame.body).expect("decode"),
            ));
            at += used;
        }
        bytes.drain(..at);
    }
    let mut ids: Vec<u64> = responses.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
    let approved = responses
        .iter()
        .filter(|(_, r)| matches!(r, Response::Paid(p) if p.is_approved()))
        .count();
    assert_eq!(approved, 667);
}

/// docs/PROTOCOL.md §5.5: a payment's PINs are checked one at a time, in
/// order, each whole (syntax, then repeats) before the next; the first PIN
/// that fails either check is the answer. Authorize is checked the same.
#[test]
fn a_payments_pins_are_checked_one_at_a_time_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 2);
    runtime().block_on(async {
        let principals = server.principals().await;
        let merchant = principals.merchant(3).await;
        let (a, bad) = ("79927398713".to_string(), "123".to_string());
        let cases = [
            (
                [&a, &a, &bad],
                ErrorCode::DuplicatePin,
                "position 2 repeats position 1",
            ),
            ([&bad, &a, &a], ErrorCode::InvalidPin, "position 1"),
            ([&a, &bad, &a], ErrorCode::InvalidPin, "position 2"),
        ];
        for (request_id, (pins, code, names)) in (1..).zip(cases) {
            let pins: Vec<String> = pins.into_iter().cloned().collect();
            let paid = merchant.pay(request_id, 100, &pins).await;
            let authorized = merchant.authorize(request_id, 100, &pins).await;
            for refusal in [paid.map(|_| ()), authorized.map(|_| ())] {
                let Err(kessai::client::ClientError::Server(error)) = refusal else {
                    panic!("{pins:?} is refused");
                };
                assert_eq!(error.error_code(), Some(code), "{pins:?}: {error:?}");
                assert!(error.message.contains(names), "{pins:?}: {error:?}");
            }
        }
    });
}
