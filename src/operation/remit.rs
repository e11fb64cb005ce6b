//! Remittance: a store HQ paid the center toward its stores' debt. The
//! operator records it; it runs in the admin lane, and its one read (the
//! replay's lookup) on the blocking pool ([`super::blocking`]).
//!
//! [`remit`] is the prologue (claims, replay, the HQ's stores); [`Remit`]
//! is the step machine that follows, which the simulation runs too. Under
//! the remittance's claim (a retry waits its turn, then replays) and
//! the HQ's (remittances of one HQ are decided one at a time, so two cannot
//! both spend the same debt), the stores' books are read from every shard,
//! the amount is allocated to them ([`ledger::allocate_remittance`]: by
//! store, each up to its debt), and the remittance's home shard writes its
//! record and credits the stores' `remitted` books in one write. A
//! remittance larger than what is owed is declined and not recorded (more
//! may be owed later). Activations can only add to a debt meanwhile; a
//! reversal that lands after a remittance can leave a store in credit.

use super::blocking::{self, SharedStore};
use super::{Decided, Operation, Round, ShardAnswer, ShardOp, Step, drive};
use crate::auth::Registry;
use crate::card::DeclineReason;
use crate::idempotency::{self, ClaimGuard, Claims};
use crate::ids::{PaymentId, RemittanceId, ShardId, StoreId};
use crate::ledger::{self, StoreShares};
use crate::protocol::{
    ErrorCode, ErrorResponse, RemitAllocation, RemitRequest, RemitResponse, RemitStatus, Response,
    Role,
};
use crate::shard::{ShardGone, Shards};
use crate::storage::StorageError;
use crate::storage::records::RemittanceRecord;
use std::time::Duration;

/// What a remittance needs besides its request.
pub struct Remittances {
    /// Remittances being processed, by id.
    pub claims: Claims<RemittanceId>,
    /// Store HQs with a remittance being decided, by HQ id.
    pub hq_claims: Claims,
}

fn answer_of(record: &RemittanceRecord, replayed: bool) -> RemitResponse {
    RemitResponse {
        status: RemitStatus::Remitted,
        reason: None,
        amount_minor: record.amount_minor,
        allocations: record
            .allocations
            .iter()
            .map(|&(store_id, amount_minor)| RemitAllocation {
                store_id,
                amount_minor,
            })
            .collect(),
        owed_before_minor: record.owed_before_minor,
        replayed,
    }
}

fn invalid(message: &str) -> Response {
    Response::error(ErrorCode::InvalidArgument, message.to_string())
}

pub(crate) async fn remit(
    shards: &Shards,
    storage: &SharedStore,
    registry: &Registry,
    remittances: &Remittances,
    operator: u32,
    request: RemitRequest,
) -> Result<Response, ShardGone> {
    let id = RemittanceId {
        operator_id: operator,
        request_id: request.request_id,
    };
    if let Err(busy) = idempotency::claim(&remittances.claims, id) {
        return Ok(Response::Error(busy));
    }
    let _claim = ClaimGuard::new(&remittances.claims, id);
    // Off the lane's executor: a RocksDB read blocks its thread.
    let found = blocking::read(storage, move |store| store.get_remittance(id)).await?;
    if let Some(replayed) = replay(found, &request) {
        return Ok(replayed);
    }
    let Some(hq) = registry
        .get(request.store_hq_id)
        .filter(|p| p.role == Role::StoreHq && !p.is_revoked())
    else {
        return Ok(invalid("store_hq_id names no store HQ"));
    };
    let hq_key = PaymentId {
        merchant_id: request.store_hq_id,
        request_id: 0,
    };
    if let Err(busy) = idempotency::claim(&remittances.hq_claims, hq_key) {
        return Ok(Response::Error(busy));
    }
    let _hq_claim = ClaimGuard::new(&remittances.hq_claims, hq_key);
    let remit = Remit::new(id, request, hq.stores.clone(), shards.count());
    // No round of a remittance is timed.
    let answer = drive(shards, Duration::ZERO, remit).await?;
    Ok(Response::Remitted(answer))
}

/// A remittance after its prologue: read every shard's shares of the HQ's
/// stores (durable books: each answer waits for its shard's batch),
/// allocate the amount to their debts, then record it on its home shard,
/// which credits the stores in the same write ([`Decided`]).
#[derive(Debug)]
pub struct Remit {
    id: RemittanceId,
    request: RemitRequest,
    stores: Vec<StoreId>,
    shard_count: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    New,
    Reading {
        round: Round,
        sums: Vec<StoreShares>,
    },
    Recording(Box<Decided<RemitResponse>>),
}

impl Remit {
    pub fn new(
        id: RemittanceId,
        request: RemitRequest,
        stores: Vec<StoreId>,
        shard_count: usize,
    ) -> Remit {
        Remit {
            id,
            request,
            stores,
            shard_count,
            state: State::New,
        }
    }

    fn decide(&mut self, sums: &[StoreShares], now_ms: u64) -> Step<RemitResponse> {
        let debts: Vec<_> = self
            .stores
            .iter()
            .zip(sums)
            .map(|(&store, shares)| (store, shares.debt_minor()))
            .collect();
        let owed_before_minor = debts.iter().map(|(_, debt)| debt).sum();
        let amount_minor = self.request.amount_minor;
        let Some(allocations) = ledger::allocate_remittance(&debts, amount_minor) else {
            return Step::Done(exceeds_owed(amount_minor, owed_before_minor));
        };
        let record = RemittanceRecord {
            store_hq_id: self.request.store_hq_id,
            amount_minor,
            reference: std::mem::take(&mut self.request.reference),
            at_ms: now_ms,
            allocations,
            owed_before_minor,
        };
        let answer = answer_of(&record, false);
        let home = self.id.home_shard(self.shard_count);
        let op = ShardOp::RecordRemittance {
            remittance: self.id,
            record,
        };
        let mut decided = Decided::new(Some((home, op)), Vec::new(), answer);
        let step = decided.start(now_ms);
        self.state = State::Recording(Box::new(decided));
        step
    }
}

impl Operation for Remit {
    type Reply = RemitResponse;

    fn start(&mut self, _now_ms: u64) -> Step<RemitResponse> {
        assert!(matches!(self.state, State::New), "started once");
        let asks: Vec<_> = (0..self.shard_count)
            .map(|shard| {
                let op = ShardOp::ReadStoreShares(self.stores.clone());
                (ShardId::from_index(shard), op)
            })
            .collect();
        self.state = State::Reading {
            round: Round::of(asks.len()),
            sums: vec![StoreShares::default(); self.stores.len()],
        };
        Step::Ask { asks, timed: false }
    }

    fn on_answer(&mut self, index: usize, answer: ShardAnswer, now_ms: u64) -> Step<RemitResponse> {
        let (round, sums) = match &mut self.state {
            State::Reading { round, sums } => (round, sums),
            State::Recording(decided) => return decided.on_answer(index, answer, now_ms),
            State::New => panic!("an answer before the remittance started"),
        };
        let ShardAnswer::Shares(shares) = answer else {
            panic!("a shard answers each operation in its own kind: {answer:?}");
        };
        assert_eq!(shares.len(), sums.len(), "one share per store asked");
        for (sum, share) in sums.iter_mut().zip(&shares) {
            sum.add(share);
        }
        round.answer();
        if !round.complete() {
            return Step::Wait;
        }
        let sums = std::mem::take(sums);
        self.decide(&sums, now_ms)
    }

    fn on_timeout(&mut self, _now_ms: u64) -> Step<RemitResponse> {
        unreachable!("a remittance's rounds are not timed")
    }

    fn resume(&mut self, now_ms: u64) -> Step<RemitResponse> {
        match &mut self.state {
            State::Recording(decided) => decided.resume(now_ms),
            state => panic!("resumed while {state:?}"),
        }
    }
}

/// The answer to a remittance whose id was used before (`found`: the first
/// answer when it is the same remittance), or to a failed lookup; `None`
/// for a new one.
pub fn replay(
    found: Result<Option<RemittanceRecord>, StorageError>,
    request: &RemitRequest,
) -> Option<Response> {
    match found {
        Err(error) => {
            tracing::error!(%error, "remittance lookup failed");
            let failed = ErrorResponse::new(ErrorCode::Internal, "storage read failed");
            Some(Response::Error(failed))
        }
        Ok(Some(record)) => {
            let same = record.store_hq_id == request.store_hq_id
                && record.amount_minor == request.amount_minor
                && record.reference == request.reference;
            Some(if same {
                Response::Remitted(answer_of(&record, true))
            } else {
                invalid("this request id was already used for a different remittance")
            })
        }
        Ok(None) => None,
    }
}

/// The decline of a remittance above what the HQ's stores owe.
fn exceeds_owed(amount_minor: u64, owed_before_minor: u64) -> RemitResponse {
    RemitResponse {
        status: RemitStatus::Declined,
        reason: Some(DeclineReason::ExceedsOwed),
        amount_minor,
        allocations: Vec::new(),
        owed_before_minor,
        replayed: false,
    }
}
