//! Remittance: a store HQ paid the center toward its stores' debt. The
//! operator records it; it runs in the admin lane, and its one read (the
//! replay's lookup) on the blocking pool (`blocking.rs`).
//!
//! Under the remittance's claim (a retry waits its turn, then replays) and
//! the HQ's (remittances of one HQ are decided one at a time, so two cannot
//! both spend the same debt), the stores' books are read from every shard,
//! the amount is allocated to them ([`ledger::allocate_remittance`]: by
//! store, each up to its debt), and the remittance's home shard writes its
//! record and credits the stores' `remitted` books in one write. A
//! remittance larger than what is owed is declined and not recorded (more
//! may be owed later). Activations can only add to a debt meanwhile; a
//! reversal that lands after a remittance can leave a store in credit.

use crate::auth::Registry;
use crate::card::DeclineReason;
use crate::idempotency::{self, ClaimGuard, Claims};
use crate::ids::{PaymentId, RemittanceId};
use crate::ledger;
use crate::operation::blocking::{self, SharedStore};
use crate::protocol::{
    ErrorCode, ErrorResponse, RemitAllocation, RemitRequest, RemitResponse, RemitStatus, Response,
    Role,
};
use crate::shard::{ShardGone, Shards};
use crate::storage::StorageError;
use crate::storage::records::RemittanceRecord;

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

pub(super) async fn remit(
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
    let shares = shards.store_shares(&hq.stores).await?;
    let debts: Vec<_> = hq
        .stores
        .iter()
        .zip(&shares)
        .map(|(&store, shares)| (store, shares.debt_minor()))
        .collect();
    let owed_before_minor = debts.iter().map(|(_, debt)| debt).sum();
    let Some(allocations) = ledger::allocate_remittance(&debts, request.amount_minor) else {
        return Ok(exceeds_owed(request.amount_minor, owed_before_minor));
    };
    let record = RemittanceRecord {
        store_hq_id: request.store_hq_id,
        amount_minor: request.amount_minor,
        reference: request.reference,
        at_ms: crate::clock::now_ms(),
        allocations,
        owed_before_minor,
    };
    let answer = answer_of(&record, false);
    let home = id.home_shard(shards.count());
    shards
        .record_remittance(home, id, record)
        .await?
        .get()
        .await?;
    Ok(Response::Remitted(answer))
}

/// The answer to a remittance whose id was used before (`found`: the first
/// answer when it is the same remittance), or to a failed lookup; `None`
/// for a new one.
fn replay(
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
fn exceeds_owed(amount_minor: u64, owed_before_minor: u64) -> Response {
    Response::Remitted(RemitResponse {
        status: RemitStatus::Declined,
        reason: Some(DeclineReason::ExceedsOwed),
        amount_minor,
        allocations: Vec::new(),
        owed_before_minor,
        replayed: false,
    })
}
