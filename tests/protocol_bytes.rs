//! The worked examples of docs/PROTOCOL.md §3, asserted byte for byte: the
//! encoder must produce them, and the document must still show them.

use kessai::card::DeclineReason;
use kessai::ids::Position;
use kessai::protocol::{ErrorCode, PayPart, PayRequest, PayResponse, Request, Response};

const MAX_FRAME_BYTES: usize = 1 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bytes of the first fenced block after `heading` in PROTOCOL.md:
/// each line's leading two-digit hex tokens (the rest is commentary).
fn documented_block(heading: &str) -> Vec<u8> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let section = &doc[doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))..];
    let start = section.find("```text\n").expect("a text block") + "```text\n".len();
    let block = &section[start..start + section[start..].find("```").expect("block end")];
    block
        .lines()
        .flat_map(|line| {
            line.split_whitespace()
                .map_while(|token| {
                    (token.len() == 2)
                        .then(|| u8::from_str_radix(token, 16).ok())
                        .flatten()
                })
                .collect::<Vec<u8>>()
        })
        .collect()
}

fn pay_request() -> Request {
    Request::Pay(PayRequest {
        merchant_id: 7,
        request_id: 1001,
        amount_minor: 500,
        pins: vec!["79927398713".into()],
    })
}

#[test]
fn the_pay_request_example_is_what_the_encoder_writes() {
    let mut out = Vec::new();
    pay_request()
        .encode(&mut out, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(
        hex(&out),
        "00 00 00 1B 04 00 00 00 00 00 00 00 01 07 E9 07 F4 03 01 0B \
         37 39 39 32 37 33 39 38 37 31 33"
    );
    assert_eq!(
        out,
        documented_block("### 3.1 Worked example: a Pay request")
    );
}

#[test]
fn the_approved_reply_example_is_what_the_encoder_writes() {
    let approved = PayResponse::approved(
        500,
        vec![PayPart {
            pin_last4: 8713,
            taken_minor: 500,
            remaining_minor: 500,
        }],
    );
    let mut out = Vec::new();
    Response::Paid(approved.clone())
        .encode(&mut out, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(
        hex(&out),
        "00 00 00 18 04 00 00 00 00 00 00 00 01 00 00 00 F4 03 F4 03 01 89 44 F4 03 F4 03 00"
    );
    assert_eq!(
        out,
        documented_block("### 3.2 Worked example: the approved reply")
    );

    // A replay differs in the last byte only.
    let mut replayed = Vec::new();
    let again = PayResponse {
        replayed: true,
        ..approved
    };
    Response::Paid(again)
        .encode(&mut replayed, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(replayed[..out.len() - 1], out[..out.len() - 1]);
    assert_eq!(replayed.last(), Some(&1));
}

#[test]
fn the_declined_reply_example_is_what_the_encoder_writes() {
    let declined = PayResponse::declined(
        DeclineReason::InsufficientFunds,
        Some(Position::from_index(0)),
        500,
        300,
    );
    let mut out = Vec::new();
    Response::Paid(declined)
        .encode(&mut out, 1, MAX_FRAME_BYTES)
        .expect("encode");
    let (header, body) = out.split_at(13);
    assert_eq!(hex(header), "00 00 00 14 04 00 00 00 00 00 00 00 01");
    assert_eq!(hex(body), "01 01 03 01 01 F4 03 AC 02 00 00");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    assert!(doc.contains(&format!("`{}` then body", hex(header))));
    assert!(
        doc.contains(&format!("body\n`{}`", hex(body)))
            || doc.contains(&format!("`{}`", hex(body)))
    );
}

#[test]
fn the_ping_and_overloaded_examples_are_what_the_encoder_writes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let mut ping = Vec::new();
    Request::Ping
        .encode(&mut ping, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(hex(&ping), "00 00 00 09 01 00 00 00 00 00 00 00 01");
    let mut pong = Vec::new();
    Response::Pong
        .encode(&mut pong, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(pong, ping);
    assert!(doc.contains(&format!("`{}`", hex(&ping))));

    let mut refused = Vec::new();
    Response::error(ErrorCode::Overloaded, "connection limit reached")
        .encode(&mut refused, 0, MAX_FRAME_BYTES)
        .expect("encode");
    let (header, body) = refused.split_at(13);
    assert_eq!(hex(header), "00 00 00 23 FF 00 00 00 00 00 00 00 00");
    assert_eq!(hex(&body[..2]), "0C 18");
    assert_eq!(&body[2..], b"connection limit reached");
    assert!(doc.contains(&format!("`{}`", hex(header))));
}
