//! Criterion benches for the pieces of the payment hot path.
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast look).
//!
//! The `group_commit` group is the one that explains the engine's shape: a
//! synced RocksDB write of N payments costs about as much as a write of one,
//! so the per-payment cost falls roughly as 1/N. Compare its per-element
//! throughput across batch sizes rather than absolute times, which vary
//! with the disk and with whatever else the machine is doing.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kessai::card::Card;
use kessai::ids::{CardRef, PaymentId, ShardId};
use kessai::ledger::ShardBooks;
use kessai::pin::{Pin, PinHasher, PinKey};
use kessai::protocol::{PayPart, PayRequest, PayResponse, Request, Response, frame};
use kessai::state_machine::{Cards, ShardMachine};
use kessai::storage::{Changes, Storage, Store};
use std::hint::black_box;

fn pins(c: &mut Criterion) {
    let text = "4539578763621486";
    let hasher = PinHasher::new(b"bench secret bench secret bench!");
    let pin = Pin::parse(text).expect("valid");
    c.bench_function("pin/parse_and_luhn", |b| {
        b.iter(|| Pin::parse(black_box(text)))
    });
    c.bench_function("pin/hmac_key", |b| b.iter(|| hasher.key(black_box(&pin))));
}

fn codec(c: &mut Criterion) {
    let request = Request::Pay(PayRequest {
        request_id: 123_456_789,
        amount_minor: 500,
        pins: vec!["4539578763621486".into()],
    });
    let mut encoded = Vec::new();
    request.encode(&mut encoded, 1, 1 << 20).expect("encode");
    let mut out = Vec::with_capacity(256);
    c.bench_function("codec/encode_pay_request", |b| {
        b.iter(|| {
            out.clear();
            request
                .encode(&mut out, black_box(1), 1 << 20)
                .expect("encode");
        })
    });
    c.bench_function("codec/parse_and_decode_pay_request", |b| {
        b.iter(|| {
            let (frame, _) = frame::parse(black_box(&encoded), 1 << 20)
                .expect("ok")
                .expect("frame");
            Request::decode(frame.kind, frame.body).expect("decode")
        })
    });
    let response = Response::Paid(PayResponse::approved(
        500,
        vec![PayPart {
            pin_last4: 1486,
            taken_minor: 500,
            remaining_minor: 2500,
        }],
    ));
    c.bench_function("codec/encode_pay_response", |b| {
        b.iter(|| {
            out.clear();
            response
                .encode(&mut out, black_box(1), 1 << 20)
                .expect("encode");
        })
    });
}

fn card_rules(c: &mut Criterion) {
    let mut card = Card::issued(u64::MAX / 2);
    card.activate(1, 0, 0, 0).expect("activate");
    c.bench_function("card/debit", |b| b.iter(|| card.debit(black_box(1))));
}

/// A shard with `CARDS` active cards of a large face value (never spent).
const CARDS: u8 = 251;

fn machine() -> ShardMachine {
    let mut machine = ShardMachine::new(ShardId(0), Cards::default(), ShardBooks::default());
    let mut setup = Changes::new();
    for byte in 0..CARDS {
        let key = PinKey([byte; 16]);
        machine.insert_card(key, 1 << 40, &mut setup);
        machine.activate(key, 1, 0, 0, 0, &mut setup);
    }
    machine
}

/// One single-card payment through the state machine, as a shard applies
/// it: the card, the payment record, and (once per batch) the book row.
fn pay_one(machine: &mut ShardMachine, changes: &mut Changes, index: u64) {
    let card = CardRef {
        key: PinKey([(index % u64::from(CARDS)) as u8; 16]),
        last4: 1,
    };
    let payment = PaymentId {
        merchant_id: 1,
        request_id: index,
    };
    let paid = machine
        .pay(payment, 1, &[card], None, None, 0, changes)
        .expect("a new payment is decided");
    assert!(paid.is_approved());
}

fn state_machine(c: &mut Criterion) {
    let mut machine = machine();
    let mut changes = Changes::new();
    let mut next = 0u64;
    c.bench_function("state_machine/pay_one_card", |b| {
        b.iter(|| {
            next += 1;
            if changes.len() > 4096 {
                changes.clear();
            }
            pay_one(&mut machine, &mut changes, black_box(next));
        })
    });
}

/// The pause an audit puts on one shard: a slice of the default
/// `audit_slice_cards` out of a million cards, against the whole walk in
/// one turn (what the engine did before audits were sliced).
fn audit(c: &mut Criterion) {
    const SHARD_CARDS: u32 = 1_000_000;
    let slice = kessai::config::Limits::default().audit_slice_cards;
    let mut machine = ShardMachine::new(ShardId(0), Cards::default(), ShardBooks::default());
    let mut setup = Changes::new();
    for n in 0..SHARD_CARDS {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&n.to_le_bytes());
        key[8..12].copy_from_slice(&n.wrapping_mul(0x9E37_79B9).to_le_bytes());
        let key = PinKey(key);
        machine.insert_card(key, 3000, &mut setup);
        machine.activate(key, n % 1000, 0, 0, 0, &mut setup);
        setup.clear();
    }
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(slice as u64));
    machine.begin_audit();
    group.bench_function(BenchmarkId::new("one_slice_of_1m_cards", slice), |b| {
        b.iter(|| {
            if machine.audit_slice(black_box(slice)) {
                machine.end_audit(|_| false);
                machine.begin_audit();
            }
        })
    });
    group.throughput(Throughput::Elements(u64::from(SHARD_CARDS)));
    group.sample_size(10);
    group.bench_function("whole_walk_of_1m_cards", |b| {
        b.iter(|| black_box(machine.audit_now(|_| false)))
    });
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let mut shard = machine();
    let mut group = c.benchmark_group("group_commit");
    group.sample_size(20);
    let mut next = 0u64;
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(
            BenchmarkId::new("synced_payments", batch),
            &batch,
            |b, &batch| {
                let mut changes = Changes::new();
                b.iter(|| {
                    changes.clear();
                    for _ in 0..batch {
                        next += 1;
                        pay_one(&mut shard, &mut changes, next);
                    }
                    shard.end_batch(&mut changes);
                    storage.commit(&changes).expect("commit");
                })
            },
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    pins,
    codec,
    card_rules,
    state_machine,
    audit,
    group_commit
);
criterion_main!(benches);
