//! The worked examples of docs/PROTOCOL.md, asserted byte for byte: the
//! encoder must produce them, and the document must still show them.

use kessai::auth::Key;
use kessai::card::DeclineReason;
use kessai::ids::Position;
use kessai::protocol::{
    AuthChallenge, AuthHello, AuthProof, AuthWelcome, ErrorCode, PayPart, PayRequest, PayResponse,
    Request, Response, Role,
};

const MAX_FRAME_BYTES: usize = 1 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bytes of each fenced block under `heading` in PROTOCOL.md (up to
/// the next heading): each line's leading two-digit hex tokens (the rest
/// is commentary).
fn documented_blocks(heading: &str) -> Vec<Vec<u8>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))
        + heading.len();
    let section = &doc[at..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    section
        .split("```text\n")
        .skip(1)
        .map(|rest| {
            rest[..rest.find("```").expect("block end")]
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
        })
        .collect()
}

fn documented_block(heading: &str) -> Vec<u8> {
    documented_blocks(heading).remove(0)
}

/// The payment of §3.1: request 1001, 500 yen from one card.
fn pay_body() -> PayRequest {
    PayRequest {
        request_id: 1001,
        amount_minor: 500,
        pins: vec!["79927398713".into()],
    }
}

fn pay_request() -> Request {
    Request::Pay(pay_body())
}

#[test]
fn the_pay_request_example_is_what_the_encoder_writes() {
    let mut out = Vec::new();
    pay_request()
        .encode(&mut out, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(
        hex(&out),
        "00 00 00 1A 04 00 00 00 00 00 00 00 01 E9 07 F4 03 01 0B \
         37 39 39 32 37 33 39 38 37 31 33"
    );
    assert_eq!(
        out,
        documented_block("### 3.1 Worked example: a Pay request")
    );
}

/// The answer of §3.2: 500 taken, 500 left on card …8713.
fn approved_reply() -> PayResponse {
    PayResponse::approved(
        500,
        vec![PayPart {
            pin_last4: 8713,
            taken_minor: 500,
            remaining_minor: 500,
        }],
    )
}

#[test]
fn the_approved_reply_example_is_what_the_encoder_writes() {
    let approved = approved_reply();
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
    let mut again = approved;
    again.replayed = true;
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
    );
    let mut out = Vec::new();
    Response::Paid(declined)
        .encode(&mut out, 1, MAX_FRAME_BYTES)
        .expect("encode");
    let (header, body) = out.split_at(13);
    assert_eq!(hex(header), "00 00 00 13 04 00 00 00 00 00 00 00 01");
    assert_eq!(hex(body), "01 01 03 01 01 F4 03 00 00 00");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    assert!(doc.contains(&format!("`{}` then body", hex(header))));
    assert!(doc.contains(&format!("`{}`", hex(body))));
}

/// A payment's reply is approved or declined with a reason, never both:
/// bytes that say both, or neither, do not decode.
#[test]
fn a_reply_both_approved_and_declined_does_not_decode() {
    let mut approved = Vec::new();
    Response::Paid(approved_reply())
        .encode(&mut approved, 1, MAX_FRAME_BYTES)
        .expect("encode");
    let (header, body) = approved.split_at(13);
    let kind = header[4];
    assert!(Response::decode(kind, body).is_ok());
    // Approved (00), with reason 03 (insufficient funds).
    let mut with_reason = vec![0x00, 0x01, 0x03];
    with_reason.extend_from_slice(&body[2..]);
    assert!(Response::decode(kind, &with_reason).is_err());
    // Approved, blaming card 1.
    let mut with_position = vec![0x00, 0x00, 0x01, 0x01];
    with_position.extend_from_slice(&body[3..]);
    assert!(Response::decode(kind, &with_position).is_err());
    // Declined (01) without a reason.
    let declined_bare = [0x01, 0x00, 0x00, 0xF4, 0x03, 0x00, 0x00, 0x00];
    assert!(Response::decode(kind, &declined_bare).is_err());
    // Declined with a reason, and parts.
    let mut declined_parts = vec![0x01, 0x01, 0x03];
    declined_parts.extend_from_slice(&body[2..]);
    assert!(Response::decode(kind, &declined_parts).is_err());
    // The documented decline decodes.
    let declined = [0x01, 0x01, 0x03, 0x01, 0x01, 0xF4, 0x03, 0x00, 0x00, 0x00];
    let Ok(Response::Paid(paid)) = Response::decode(kind, &declined) else {
        panic!("the documented decline decodes");
    };
    assert_eq!(paid.reason(), Some(DeclineReason::InsufficientFunds));
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

#[test]
fn the_handshake_example_is_what_client_and_engine_write() {
    let key = Key::from_file_text(&format!("principal = 5\nsecret = \"{}\"", "01".repeat(32)))
        .expect("key");
    assert_eq!(
        hex(&key.stored_key()),
        "9C 74 CF BC 18 36 B9 BB EA CE 7D 58 97 07 D0 7B 5F 6D 26 4D 93 50 8C 92 DB B2 78 56 C7 81 3C 72"
    );
    let (client_nonce, server_nonce) = ([0x11u8; 32], [0x22u8; 32]);
    let frame = |message: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        message(&mut out);
        out
    };
    let written = [
        frame(&|out| {
            Request::AuthHello(AuthHello {
                principal: 5,
                client_nonce,
            })
            .encode(out, 1, MAX_FRAME_BYTES)
            .expect("encode")
        }),
        frame(&|out| {
            Response::Challenge(AuthChallenge { server_nonce })
                .encode(out, 1, MAX_FRAME_BYTES)
                .expect("encode")
        }),
        frame(&|out| {
            Request::AuthProof(AuthProof {
                proof: key.proof(&client_nonce, &server_nonce),
            })
            .encode(out, 2, MAX_FRAME_BYTES)
            .expect("encode")
        }),
        frame(&|out| {
            Response::Welcome(AuthWelcome {
                principal: 5,
                role: Role::Merchant,
                stores: vec![],
            })
            .encode(out, 2, MAX_FRAME_BYTES)
            .expect("encode")
        }),
    ];
    assert_eq!(
        documented_blocks("### 9.2 Worked example").as_slice(),
        written.as_slice()
    );
    assert!(kessai::auth::keys::verify(
        &key.stored_key(),
        5,
        &client_nonce,
        &server_nonce,
        &key.proof(&client_nonce, &server_nonce)
    ));
}

#[test]
fn the_report_request_and_busy_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{ReportAccount, ReportRequest};
    let mut page = Vec::new();
    Request::Report(ReportRequest {
        limit: 1000,
        after: Some(ReportAccount::Store(42)),
        only: None,
    })
    .encode(&mut page, 7, MAX_FRAME_BYTES)
    .expect("encode");
    assert_eq!(page, documented_block("### 5.7 Report (6)"));

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let message = "the admin lane is full; nothing was done, retry shortly";
    let mut busy = Vec::new();
    Response::error(ErrorCode::Busy, message)
        .encode(&mut busy, 7, MAX_FRAME_BYTES)
        .expect("encode");
    let (header, body) = busy.split_at(13);
    assert_eq!(hex(header), "00 00 00 42 FF 00 00 00 00 00 00 00 07");
    assert_eq!(hex(&body[..2]), "11 37");
    assert_eq!(&body[2..], message.as_bytes());
    assert!(doc.contains(&format!("`{}`", hex(header))));
    assert!(doc.contains(&format!("`{}`", message)));
}

fn pay_batch_request() -> Request {
    use kessai::protocol::PayBatchRequest;
    Request::PayBatch(PayBatchRequest {
        payments: vec![
            pay_body(),
            PayRequest {
                request_id: 1002,
                amount_minor: 300,
                pins: vec!["79927398710".into()],
            },
        ],
    })
}

#[test]
fn the_pay_batch_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{ErrorResponse, PayBatchResponse, PayResult};
    let mut request = Vec::new();
    pay_batch_request()
        .encode(&mut request, 2, MAX_FRAME_BYTES)
        .expect("encode");
    let approved = approved_reply();
    let mut reply = Vec::new();
    Response::PaidBatch(PayBatchResponse {
        results: vec![
            PayResult::Paid(approved),
            PayResult::error(ErrorResponse::new(ErrorCode::InvalidPin, "bad check digit")),
        ],
    })
    .encode(&mut reply, 2, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.12 PayBatch (15)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(request, blocks[0]);
    assert_eq!(reply, blocks[1]);
}

#[test]
fn the_reverse_activation_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{ReversalStatus, ReverseActivationRequest, ReverseActivationResponse};
    let mut request = Vec::new();
    Request::ReverseActivation(ReverseActivationRequest {
        store_id: 42,
        pos_ref: 9001,
        pin: "79927398713".into(),
    })
    .encode(&mut request, 3, MAX_FRAME_BYTES)
    .expect("encode");
    let mut reply = Vec::new();
    Response::ActivationReversed(ReverseActivationResponse {
        status: ReversalStatus::Reversed,
        reason: None,
        amount_minor: 1000,
        replayed: false,
    })
    .encode(&mut reply, 3, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.13 ReverseActivation (16)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

#[test]
fn the_refund_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{RefundPart, RefundRequest, RefundResponse, RefundStatus};
    let mut request = Vec::new();
    Request::Refund(RefundRequest {
        request_id: 2001,
        payment_request_id: 1003,
        amount_minor: 1000,
    })
    .encode(&mut request, 4, MAX_FRAME_BYTES)
    .expect("encode");
    // Payment 1003 took 500 from card …8713, then 800 from card …1486:
    // the refund gives back the later take first.
    let mut reply = Vec::new();
    Response::Refunded(RefundResponse {
        status: RefundStatus::Refunded,
        reason: None,
        amount_minor: 1000,
        parts: vec![
            RefundPart {
                pin_last4: 8713,
                refunded_minor: 200,
            },
            RefundPart {
                pin_last4: 1486,
                refunded_minor: 800,
            },
        ],
        payment_refunded_minor: 1000,
        replayed: false,
    })
    .encode(&mut reply, 4, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.14 Refund (17)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

/// The inline declines of §5.13 and §5.14 pin the new decline indexes.
#[test]
fn the_reversal_and_refund_declines_are_what_the_encoder_writes() {
    use kessai::protocol::{RefundResponse, ReverseActivationResponse};
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let body_of = |response: Response| {
        let mut out = Vec::new();
        response
            .encode(&mut out, 1, MAX_FRAME_BYTES)
            .expect("encode");
        hex(&out[13..])
    };
    let late = body_of(Response::ActivationReversed(
        ReverseActivationResponse::declined(DeclineReason::WindowClosed),
    ));
    assert_eq!(late, "02 01 0A 00 00");
    let too_much = body_of(Response::Refunded(RefundResponse::declined(
        DeclineReason::ExceedsRefundable,
        301,
    )));
    assert_eq!(too_much, "01 01 0C AD 02 00 00 00");
    for body in [late, too_much] {
        assert!(doc.contains(&format!("`{body}`")), "{body} in PROTOCOL.md");
    }
}

#[test]
fn the_authorize_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{AuthorizationStatus, AuthorizeRequest, AuthorizeResponse, HeldPart};
    let mut request = Vec::new();
    Request::Authorize(AuthorizeRequest {
        request_id: 3001,
        amount_minor: 1300,
        pins: vec!["79927398713".into(), "4539578763621486".into()],
    })
    .encode(&mut request, 5, MAX_FRAME_BYTES)
    .expect("encode");
    // Card …8713 holds all its 500, card …1486 the remaining 800; ten
    // minutes after 1 767 225 000 000 the hold is released.
    let mut reply = Vec::new();
    Response::Authorized(AuthorizeResponse {
        status: AuthorizationStatus::Authorized,
        reason: None,
        position: None,
        amount_minor: 1300,
        parts: vec![
            HeldPart {
                pin_last4: 8713,
                held_minor: 500,
            },
            HeldPart {
                pin_last4: 1486,
                held_minor: 800,
            },
        ],
        expires_at_ms: 1_767_225_600_000,
        replayed: false,
    })
    .encode(&mut reply, 5, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.15 Authorize (18)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

#[test]
fn the_capture_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{CapturePart, CaptureRequest, CaptureResponse, CaptureStatus};
    let mut request = Vec::new();
    Request::Capture(CaptureRequest {
        request_id: 4001,
        authorization_request_id: 3001,
        amount_minor: 1000,
    })
    .encode(&mut request, 6, MAX_FRAME_BYTES)
    .expect("encode");
    // The authorization of §5.15: the cards give in its order, and the
    // 300 not captured is released.
    let mut reply = Vec::new();
    Response::Captured(CaptureResponse {
        status: CaptureStatus::Captured,
        reason: None,
        amount_minor: 1000,
        parts: vec![
            CapturePart {
                pin_last4: 8713,
                taken_minor: 500,
            },
            CapturePart {
                pin_last4: 1486,
                taken_minor: 500,
            },
        ],
        released_minor: 300,
        replayed: false,
    })
    .encode(&mut reply, 6, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.16 Capture (19)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

#[test]
fn the_void_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{VoidRequest, VoidResponse, VoidStatus};
    let mut request = Vec::new();
    Request::Void(VoidRequest {
        request_id: 4002,
        authorization_request_id: 3002,
    })
    .encode(&mut request, 7, MAX_FRAME_BYTES)
    .expect("encode");
    let mut reply = Vec::new();
    Response::Voided(VoidResponse {
        status: VoidStatus::Voided,
        reason: None,
        released_minor: 700,
        replayed: false,
    })
    .encode(&mut reply, 7, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.17 Void (20)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

/// The inline declines of §5.15 to §5.17 pin the authorization decline
/// indexes.
#[test]
fn the_authorization_declines_are_what_the_encoder_writes() {
    use kessai::protocol::{AuthorizeResponse, CaptureResponse, VoidResponse};
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let body_of = |response: Response| {
        let mut out = Vec::new();
        response
            .encode(&mut out, 1, MAX_FRAME_BYTES)
            .expect("encode");
        hex(&out[13..])
    };
    let short = body_of(Response::Authorized(AuthorizeResponse::declined(
        DeclineReason::InsufficientFunds,
        None,
        1300,
    )));
    assert_eq!(short, "01 01 03 00 94 0A 00 00 00");
    let too_much = body_of(Response::Captured(CaptureResponse::declined(
        DeclineReason::ExceedsAuthorized,
        1400,
    )));
    assert_eq!(too_much, "01 01 11 F8 0A 00 00 00");
    let closed = body_of(Response::Voided(VoidResponse::declined(
        DeclineReason::AuthorizationClosed,
    )));
    assert_eq!(closed, "01 01 0F 00 00");
    for body in [short, too_much, closed] {
        assert!(doc.contains(&format!("`{body}`")), "{body} in PROTOCOL.md");
    }
    // The other new reasons, by their documented indexes.
    for (reason, index) in [
        (DeclineReason::UnknownAuthorization, 14),
        (DeclineReason::AuthorizationExpired, 16),
    ] {
        let body = body_of(Response::Voided(VoidResponse::declined(reason)));
        assert_eq!(body, format!("01 01 {index:02X} 00 00"));
        assert!(
            doc.contains(&format!("| {index}    | {reason:?} ")),
            "{reason:?}"
        );
    }
}

#[test]
fn the_remit_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{RemitAllocation, RemitRequest, RemitResponse, RemitStatus};
    let mut request = Vec::new();
    Request::Remit(RemitRequest {
        request_id: 6001,
        store_hq_id: 7,
        amount_minor: 150_000,
        reference: "BANK-0001".into(),
    })
    .encode(&mut request, 8, MAX_FRAME_BYTES)
    .expect("encode");
    // Stores 42 (owing 100 000) and 43 (owing 80 000), in ascending store
    // id order: 42 is paid off in full, 43 for the remaining 50 000.
    let mut reply = Vec::new();
    Response::Remitted(RemitResponse {
        status: RemitStatus::Remitted,
        reason: None,
        amount_minor: 150_000,
        allocations: vec![
            RemitAllocation {
                store_id: 42,
                amount_minor: 100_000,
            },
            RemitAllocation {
                store_id: 43,
                amount_minor: 50_000,
            },
        ],
        owed_before_minor: 180_000,
        replayed: false,
    })
    .encode(&mut reply, 8, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.18 Remit (21)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

/// The inline decline of §5.18 pins the `ExceedsOwed` index.
#[test]
fn the_remit_decline_is_what_the_encoder_writes() {
    use kessai::protocol::{RemitResponse, RemitStatus};
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let mut out = Vec::new();
    Response::Remitted(RemitResponse {
        status: RemitStatus::Declined,
        reason: Some(DeclineReason::ExceedsOwed),
        amount_minor: 200_000,
        allocations: Vec::new(),
        owed_before_minor: 180_000,
        replayed: false,
    })
    .encode(&mut out, 1, MAX_FRAME_BYTES)
    .expect("encode");
    let body = hex(&out[13..]);
    assert_eq!(body, "01 01 12 C0 9A 0C 00 A0 FE 0A 00");
    assert!(doc.contains(&format!("`{body}`")), "{body} in PROTOCOL.md");
    assert_eq!(DeclineReason::ExceedsOwed.name(), "exceeds_owed");
    assert!(
        doc.contains("| 18    | ExceedsOwed       | `exceeds_owed` "),
        "ExceedsOwed in §5.10"
    );
}

/// Payout 5-2 of §5.19: three payments (10 000) and a refund (1000) since
/// merchant 5's first payout, at 250 bps.
fn payout_5_2() -> kessai::protocol::PayoutInfo {
    kessai::protocol::PayoutInfo {
        merchant_id: 5,
        seq: 2,
        from_ms: 1_767_139_200_000,
        until_ms: 1_767_225_600_000,
        payments: 3,
        payments_minor: 10_000,
        refunds: 1,
        refunds_minor: 1_000,
        fee_bps: 250,
        fee_minor: 225,
        carried_in_minor: 0,
        amount_minor: 8_775,
        carried_out_minor: 0,
        created_at_ms: 1_767_225_900_000,
        confirmed_reference: None,
        confirmed_at_ms: 0,
    }
}

#[test]
fn the_payout_create_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{PayoutCreateRequest, PayoutCreateResponse, PayoutStatus};
    let mut request = Vec::new();
    Request::PayoutCreate(PayoutCreateRequest {
        request_id: 7001,
        merchant_id: 5,
        until_ms: Some(1_767_225_600_000),
    })
    .encode(&mut request, 9, MAX_FRAME_BYTES)
    .expect("encode");
    let payout = payout_5_2();
    // 2.5 % of 10 000 − 1000, rounded down; paid: the rest.
    assert_eq!(
        payout.fee_minor,
        (payout.payments_minor - payout.refunds_minor) * u64::from(payout.fee_bps) / 10_000
    );
    assert_eq!(
        payout.amount_minor,
        payout.payments_minor - payout.refunds_minor - payout.fee_minor
    );
    let mut reply = Vec::new();
    Response::PayoutCreated(PayoutCreateResponse {
        status: PayoutStatus::Created,
        reason: None,
        payout: Some(payout),
        replayed: false,
    })
    .encode(&mut reply, 9, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.19 PayoutCreate (22)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

/// The inline declines of §5.19 pin the payout decline indexes.
#[test]
fn the_payout_declines_are_what_the_encoder_writes() {
    use kessai::protocol::PayoutCreateResponse;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    for (reason, name, body, row) in [
        (
            DeclineReason::PeriodClosed,
            "period_closed",
            "01 01 13 00 00",
            "| 19    | PeriodClosed      | `period_closed` ",
        ),
        (
            DeclineReason::NothingToPay,
            "nothing_to_pay",
            "01 01 14 00 00",
            "| 20    | NothingToPay      | `nothing_to_pay` ",
        ),
    ] {
        let mut out = Vec::new();
        Response::PayoutCreated(PayoutCreateResponse::declined(reason))
            .encode(&mut out, 1, MAX_FRAME_BYTES)
            .expect("encode");
        assert_eq!(hex(&out[13..]), body);
        assert!(doc.contains(&format!("`{body}`")), "{body} in PROTOCOL.md");
        assert_eq!(reason.name(), name);
        assert!(doc.contains(row), "{reason:?} in §5.10");
    }
}

#[test]
fn the_payout_confirm_and_list_requests_are_what_the_encoder_writes() {
    use kessai::protocol::{PayoutConfirmRequest, PayoutListRequest};
    let mut confirm = Vec::new();
    Request::PayoutConfirm(PayoutConfirmRequest {
        merchant_id: 5,
        seq: 2,
        reference: "BANK-0002".into(),
    })
    .encode(&mut confirm, 10, MAX_FRAME_BYTES)
    .expect("encode");
    let mut list = Vec::new();
    Request::PayoutList(PayoutListRequest {
        merchant_id: 5,
        after_seq: 0,
        limit: 100,
    })
    .encode(&mut list, 11, MAX_FRAME_BYTES)
    .expect("encode");
    assert_eq!(
        hex(&confirm),
        hex(&documented_block("### 5.20 PayoutConfirm (23)"))
    );
    assert_eq!(
        hex(&list),
        hex(&documented_block("### 5.21 PayoutList (24)"))
    );
}

#[test]
fn the_payout_show_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{
        PayoutItem, PayoutItemKind, PayoutItemRef, PayoutShowRequest, PayoutShowResponse,
    };
    let mut request = Vec::new();
    Request::PayoutShow(PayoutShowRequest {
        merchant_id: 5,
        seq: 2,
        after: None,
        limit: 2,
    })
    .encode(&mut request, 12, MAX_FRAME_BYTES)
    .expect("encode");
    let payment = |request_id, amount_minor, at_ms| PayoutItem {
        item: PayoutItemRef {
            kind: PayoutItemKind::Payment,
            request_id,
        },
        amount_minor,
        at_ms,
    };
    // The first page of two: payment 1003 and refund 2001 follow.
    let mut reply = Vec::new();
    Response::PayoutItems(PayoutShowResponse {
        payout: payout_5_2(),
        items: vec![
            payment(1001, 5000, 1_767_160_000_000),
            payment(1002, 3000, 1_767_170_000_000),
        ],
        next: Some(PayoutItemRef {
            kind: PayoutItemKind::Payment,
            request_id: 1002,
        }),
    })
    .encode(&mut reply, 12, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.22 PayoutShow (25)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
}

#[test]
fn the_statement_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{
        KIND_STATEMENT, StatementKind, StatementLine, StatementRef, StatementRequest,
        StatementResponse,
    };
    // Merchant 5's statement for payout 5-2's period, after payment 1002.
    let mut request = Vec::new();
    Request::Statement(StatementRequest {
        merchant_id: 5,
        from_ms: 1_767_139_200_000,
        to_ms: 1_767_225_600_000,
        after: Some(StatementRef {
            kind: StatementKind::Payment,
            id: 1002,
        }),
        limit: 1000,
    })
    .encode(&mut request, 13, MAX_FRAME_BYTES)
    .expect("encode");
    let line = |kind, id, amount_minor, fee_minor, at_ms| StatementLine {
        line: StatementRef { kind, id },
        amount_minor,
        fee_minor,
        at_ms,
    };
    // The last page: a payment, a refund, and payout 5-1, created five
    // minutes after its cut-off (this period's start).
    let mut reply = Vec::new();
    Response::Statement(StatementResponse {
        lines: vec![
            line(StatementKind::Payment, 1003, 2000, 0, 1_767_180_000_000),
            line(StatementKind::Refund, 2001, 1000, 0, 1_767_200_000_000),
            line(StatementKind::Payout, 1, 19_500, 500, 1_767_139_500_000),
        ],
        next: None,
    })
    .encode(&mut reply, 13, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.23 Statement (26)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
    assert_eq!(request[4], KIND_STATEMENT);

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    assert!(doc.contains(&format!("| {KIND_STATEMENT}   | Statement |")));
    assert!(doc.contains("`StatementKind`: `0 Payment`, `1 Refund`, `2 Payout` (§5.23)."));
    assert!(
        doc.contains("PayoutShow, Statement, StoreStatement, PrincipalAdd"),
        "§9.3"
    );
}

#[test]
fn the_store_statement_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{
        KIND_STORE_STATEMENT, StoreEntryKind, StoreStatementLine, StoreStatementRef,
        StoreStatementRequest, StoreStatementResponse,
    };
    // Store 42's statement for 2025-12-31 (UTC), the first page.
    let mut request = Vec::new();
    Request::StoreStatement(StoreStatementRequest {
        store_id: 42,
        from_ms: 1_767_139_200_000,
        to_ms: 1_767_225_600_000,
        after: None,
        limit: 1000,
    })
    .encode(&mut request, 14, MAX_FRAME_BYTES)
    .expect("encode");
    let line = |at_ms, kind, subject, request_id, amount_minor| StoreStatementLine {
        line: StoreStatementRef {
            at_ms,
            kind,
            subject,
            request_id,
        },
        amount_minor,
    };
    // The card's subject: the first 8 bytes of its PIN's keyed hash.
    let card = u64::from_be_bytes([0x3F, 0x1A, 0x9C, 0x0E, 0x5B, 0x7D, 0x24, 0x68]);
    // A sale, its reversal ten minutes later, and remittance 6001 of
    // operator 0 paying off 100 000: the only page.
    let mut reply = Vec::new();
    Response::StoreStatement(StoreStatementResponse {
        lines: vec![
            line(
                1_767_180_000_000,
                StoreEntryKind::Activation,
                card,
                9001,
                1000,
            ),
            line(
                1_767_180_600_000,
                StoreEntryKind::Reversal,
                card,
                9001,
                1000,
            ),
            line(
                1_767_200_000_000,
                StoreEntryKind::Remittance,
                0,
                6001,
                100_000,
            ),
        ],
        next: None,
    })
    .encode(&mut reply, 14, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 5.24 StoreStatement (27)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
    assert_eq!(request[4], KIND_STORE_STATEMENT);

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    assert!(doc.contains(&format!("| {KIND_STORE_STATEMENT}   | StoreStatement |")));
    assert!(doc.contains(&format!(
        "not a request kind (0, {}–254, or 255)",
        KIND_STORE_STATEMENT + 1
    )));
    assert!(
        doc.contains("`StoreEntryKind`: `0 Activation`, `1 Reversal`, `2 Remittance` (§5.24).")
    );
    for (index, variant) in ["Activation", "Reversal", "Remittance"].iter().enumerate() {
        assert!(
            doc.contains(&format!("| {index}     | {variant} ")),
            "§5.24 kinds table: {variant}"
        );
    }
    assert!(
        doc.contains("`kind,at_ms,subject,request_id,amount_minor`"),
        "§8.13"
    );
}

#[test]
fn the_principal_list_examples_are_what_the_encoder_writes() {
    use kessai::protocol::{
        KIND_PRINCIPAL_LIST, PrincipalInfo, PrincipalListRef, PrincipalListRequest,
        PrincipalListResponse,
    };
    // The page after merchant 5, up to 1000 principals.
    let mut request = Vec::new();
    Request::PrincipalList(PrincipalListRequest {
        after: Some(PrincipalListRef { id: 5, store: None }),
        limit: 1000,
    })
    .encode(&mut request, 3, MAX_FRAME_BYTES)
    .expect("encode");
    // Store HQ 42 whole, and store HQ 900 cut after its second store.
    let hq = |id, stores: &[u32]| PrincipalInfo {
        id,
        role: Role::StoreHq,
        stores: stores.to_vec(),
        revoked: false,
    };
    let mut reply = Vec::new();
    Response::Principals(PrincipalListResponse {
        principals: vec![hq(42, &[42, 43]), hq(900, &[901, 902])],
        next: Some(PrincipalListRef {
            id: 900,
            store: Some(902),
        }),
    })
    .encode(&mut reply, 3, MAX_FRAME_BYTES)
    .expect("encode");
    let blocks = documented_blocks("### 9.4 Managing principals (operator)");
    assert_eq!(blocks.len(), 2, "a request and a reply");
    assert_eq!(hex(&request), hex(&blocks[0]));
    assert_eq!(hex(&reply), hex(&blocks[1]));
    assert_eq!(request[4], KIND_PRINCIPAL_LIST);

    // A request from before paging (an empty body) does not decode.
    assert!(Request::decode(KIND_PRINCIPAL_LIST, &[]).is_err());

    // A role is one raw byte (§3), not a varint index.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    for role in Role::ALL {
        let byte = u8::from(role);
        assert_eq!(postcard::to_stdvec(&role).expect("encode"), [byte]);
        let name = format!("{role:?}");
        assert!(doc.contains(&format!("`{byte}` {name}")), "§3: {name}");
    }
    assert!(postcard::from_bytes::<Role>(&[0]).is_err());
    assert!(postcard::from_bytes::<Role>(&[4]).is_err());
    assert!(doc.contains(&format!(
        "| {KIND_PRINCIPAL_LIST}   | PrincipalList | `PrincipalListRequest`"
    )));
}

#[test]
fn the_order_pay_example_is_what_the_encoder_writes() {
    let request = Request::OrderPay(kessai::protocol::OrderPayRequest {
        order_id: "ORD-1".into(),
        amount_minor: 500,
        pins: vec!["79927398713".into()],
    });
    let mut out = Vec::new();
    request
        .encode(&mut out, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(
        hex(&out),
        "00 00 00 1E 1D 00 00 00 00 00 00 00 01 05 4F 52 44 2D 31 F4 03 01 0B \
         37 39 39 32 37 33 39 38 37 31 33"
    );
    assert_eq!(
        out,
        documented_block("### 5.25.1 Worked example: an OrderPay request")
    );
    // The answer is a Pay answer's body under the order kind.
    let mut paid = Vec::new();
    Response::Paid(approved_reply())
        .for_order()
        .encode(&mut paid, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!(paid[4], kessai::protocol::KIND_ORDER_PAY);
    let mut plain = Vec::new();
    Response::Paid(approved_reply())
        .encode(&mut plain, 1, MAX_FRAME_BYTES)
        .expect("encode");
    assert_eq!((&paid[..4], &paid[5..]), (&plain[..4], &plain[5..]));
}
