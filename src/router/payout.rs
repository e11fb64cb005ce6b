//! Payouts: the operator closes what the center owes a merchant up to a
//! cut-off into one payout ([`crate::settlement`] decides what it closes
//! and pays), confirms it paid, lists payouts and shows what one contains.
//! All run in the admin lane and read the merchant's records directly,
//! through the [`Store`] interface, on the blocking pool (`blocking.rs`:
//! a scan of a long period must not hold the lane's executor).
//!
//! Creating one runs under the request's claim and the merchant's (one
//! payout of a merchant at a time, so two cannot close the same period),
//! reads the last payout and the period's payments and refunds, and the
//! merchant's home shard writes the payout, the request's record and the
//! books (paid out, fees) in one write: a crash leaves all of it or none
//! (crash point `payout-scanned` sits between the read and the write).

use crate::auth::Registry;
use crate::config::Fees;
use crate::idempotency::{self, ClaimGuard, Claims};
use crate::ids::PaymentId;
use crate::operation::blocking::{self, SharedStore};
use crate::protocol::{
    ErrorCode, ErrorResponse, PayoutConfirmRequest, PayoutConfirmResponse, PayoutCreateRequest,
    PayoutCreateResponse, PayoutListRequest, PayoutListResponse, PayoutShowRequest,
    PayoutShowResponse, PayoutStatus, Response,
};
use crate::settlement;
use crate::shard::{ShardGone, Shards};
use crate::storage::records::{self, PayoutRecord};
use crate::storage::{Cf, StorageError, Store};
use crate::twopc::crashpoint::{self, CrashPoint};

/// A payout request, validated.
#[derive(Debug)]
pub enum PayoutCommand {
    Create(PayoutCreateRequest),
    Confirm(PayoutConfirmRequest),
    List(PayoutListRequest),
    Show(PayoutShowRequest),
}

/// What payouts need besides their request.
pub struct Payouts {
    /// Payout requests being processed, by (operator, request id).
    pub claims: Claims,
    /// Merchants with a payout being created or confirmed.
    pub merchant_claims: Claims,
    pub fees: Fees,
    /// The default cut-off is this far before now: a business delay only
    /// (a payout is exact at any cut-off, see `ShardMachine::stamp`).
    pub settle_ms: u64,
}

fn invalid(message: impl Into<String>) -> Response {
    Response::error(ErrorCode::InvalidArgument, message)
}

fn failed(error: StorageError) -> Response {
    tracing::error!(%error, "payout storage read failed");
    Response::Error(ErrorResponse::new(
        ErrorCode::Internal,
        "storage read failed",
    ))
}

/// The merchant's claim key (a namespace of its own).
fn merchant_key(merchant_id: u32) -> PaymentId {
    PaymentId {
        merchant_id,
        request_id: 0,
    }
}

pub(super) async fn run(
    shards: &Shards,
    storage: &SharedStore,
    registry: &Registry,
    payouts: &Payouts,
    operator: u32,
    command: PayoutCommand,
) -> Result<Response, ShardGone> {
    let merchant_id = match &command {
        PayoutCommand::Create(body) => body.merchant_id,
        PayoutCommand::Confirm(body) => body.merchant_id,
        PayoutCommand::List(body) => body.merchant_id,
        PayoutCommand::Show(body) => body.merchant_id,
    };
    if let Some(refusal) = super::unknown_merchant(registry, merchant_id) {
        return Ok(refusal);
    }
    match command {
        PayoutCommand::Create(body) => create(shards, storage, payouts, operator, body).await,
        PayoutCommand::Confirm(body) => confirm(shards, storage, payouts, body).await,
        PayoutCommand::List(body) => {
            let listed = blocking::read(storage, move |store| list(store, body)).await?;
            Ok(listed.unwrap_or_else(failed))
        }
        PayoutCommand::Show(body) => {
            let shown = blocking::read(storage, move |store| show(store, body)).await?;
            Ok(shown.unwrap_or_else(failed))
        }
    }
}

async fn create(
    shards: &Shards,
    storage: &SharedStore,
    payouts: &Payouts,
    operator: u32,
    body: PayoutCreateRequest,
) -> Result<Response, ShardGone> {
    let request = PaymentId {
        merchant_id: operator,
        request_id: body.request_id,
    };
    if let Err(busy) = idempotency::claim(&payouts.claims, request) {
        return Ok(Response::Error(busy));
    }
    let _claim = ClaimGuard::new(&payouts.claims, request);
    // Each read below runs on the blocking pool, never on the admin lane's
    // executor, which every operator request shares (`blocking.rs`).
    let asked = body.clone();
    let replayed = blocking::read(storage, move |store| replay(store, request, &asked)).await?;
    match replayed {
        Ok(Some(answer)) => return Ok(answer),
        Ok(None) => {}
        Err(error) => return Ok(failed(error)),
    }
    let merchant = body.merchant_id;
    if let Err(busy) = idempotency::claim(&payouts.merchant_claims, merchant_key(merchant)) {
        return Ok(Response::Error(busy));
    }
    let _merchant = ClaimGuard::new(&payouts.merchant_claims, merchant_key(merchant));
    let now_ms = crate::clock::now_ms();
    let until_ms = body
        .until_ms
        .unwrap_or(now_ms.saturating_sub(payouts.settle_ms));
    if until_ms > now_ms {
        return Ok(invalid("the cut-off must not be in the future"));
    }
    // The cut-off becomes a point in every shard's commit order: from here
    // on every payment and refund stamped at or before it is on disk, and
    // none will be stamped so again (`ShardMachine::stamp`).
    shards.seal(until_ms).await?;
    // A period can be a long scan: off the lane's executor (`blocking.rs`).
    let fee_bps = payouts.fees.bps_of(merchant);
    let closed = blocking::read(storage, move |store| {
        settlement::close_since_last(store, merchant, until_ms, fee_bps, now_ms)
    })
    .await?;
    let (seq, record) = match closed {
        Ok(Ok(closed)) => closed,
        Ok(Err(reason)) => {
            let declined = PayoutCreateResponse::declined(reason);
            return Ok(Response::PayoutCreated(declined));
        }
        Err(error) => return Ok(failed(error)),
    };
    crashpoint::reached(CrashPoint::PayoutScanned);
    let info = settlement::info(merchant, seq, &record);
    let home = merchant_key(merchant).home_shard(shards.count());
    shards
        .record_payout(home, merchant, seq, record, Some(request), true)
        .await?
        .get()
        .await?;
    Ok(Response::PayoutCreated(PayoutCreateResponse {
        status: PayoutStatus::Created,
        reason: None,
        payout: Some(info),
        replayed: false,
    }))
}

/// The first answer to a payout request made before, if it was.
fn replay(
    storage: &dyn Store,
    request: PaymentId,
    body: &PayoutCreateRequest,
) -> Result<Option<Response>, StorageError> {
    let Some(bytes) = storage.get(Cf::PayoutRequests, &request.to_bytes())? else {
        return Ok(None);
    };
    let (merchant, seq) = records::decode_payout_ref(&bytes)?;
    let record = payout(storage, merchant, seq)?.ok_or_else(|| {
        StorageError::Inconsistent(format!("payout {merchant}-{seq} of a request is missing"))
    })?;
    let same_until = body.until_ms.is_none_or(|until| until == record.until_ms);
    if merchant != body.merchant_id || !same_until {
        return Ok(Some(invalid(
            "this request id was already used for a different payout",
        )));
    }
    Ok(Some(Response::PayoutCreated(PayoutCreateResponse {
        status: PayoutStatus::Created,
        reason: None,
        payout: Some(settlement::info(merchant, seq, &record)),
        replayed: true,
    })))
}

fn payout(
    storage: &dyn Store,
    merchant: u32,
    seq: u64,
) -> Result<Option<PayoutRecord>, StorageError> {
    match storage.get(Cf::Payouts, &records::payout_key(merchant, seq))? {
        Some(bytes) => Ok(Some(PayoutRecord::decode(&bytes)?)),
        None => Ok(None),
    }
}

async fn confirm(
    shards: &Shards,
    storage: &SharedStore,
    payouts: &Payouts,
    body: PayoutConfirmRequest,
) -> Result<Response, ShardGone> {
    let merchant = body.merchant_id;
    if let Err(busy) = idempotency::claim(&payouts.merchant_claims, merchant_key(merchant)) {
        return Ok(Response::Error(busy));
    }
    let _merchant = ClaimGuard::new(&payouts.merchant_claims, merchant_key(merchant));
    let seq = body.seq;
    let found = blocking::read(storage, move |store| payout(store, merchant, seq)).await?;
    let mut record = match found {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(invalid("no such payout")),
        Err(error) => return Ok(failed(error)),
    };
    match &record.confirmed_reference {
        Some(reference) if *reference == body.reference => {
            return Ok(Response::PayoutConfirmed(PayoutConfirmResponse {
                payout: settlement::info(merchant, body.seq, &record),
                replayed: true,
            }));
        }
        Some(_) => return Ok(invalid("the payout was confirmed with another reference")),
        None => {}
    }
    record.confirmed_reference = Some(body.reference);
    record.confirmed_at_ms = crate::clock::now_ms();
    let info = settlement::info(merchant, body.seq, &record);
    let home = merchant_key(merchant).home_shard(shards.count());
    shards
        .record_payout(home, merchant, body.seq, record, None, false)
        .await?
        .get()
        .await?;
    crate::telemetry::payout_confirmed();
    Ok(Response::PayoutConfirmed(PayoutConfirmResponse {
        payout: info,
        replayed: false,
    }))
}

fn list(storage: &dyn Store, body: PayoutListRequest) -> Result<Response, StorageError> {
    let prefix = records::principal_prefix(body.merchant_id);
    let limit = body.limit as usize;
    let mut payouts = Vec::new();
    let mut more = false;
    if let Some(first) = body.after_seq.checked_add(1) {
        let start = records::payout_key(body.merchant_id, first);
        storage.scan_from(Cf::Payouts, &start, &mut |key, value| {
            if !key.starts_with(&prefix) {
                return Ok(false);
            }
            if payouts.len() == limit {
                more = true;
                return Ok(false);
            }
            let (_, seq) = records::decode_payout_key(key)?;
            let record = PayoutRecord::decode(value)?;
            payouts.push(settlement::info(body.merchant_id, seq, &record));
            Ok(true)
        })?;
    }
    let next = more.then(|| payouts.last().map(|p| p.seq)).flatten();
    Ok(Response::Payouts(PayoutListResponse { payouts, next }))
}

fn show(storage: &dyn Store, body: PayoutShowRequest) -> Result<Response, StorageError> {
    let Some(record) = payout(storage, body.merchant_id, body.seq)? else {
        return Ok(invalid("no such payout"));
    };
    let limit = body.limit as usize;
    let mut items = Vec::new();
    let mut more = false;
    settlement::visit_period(
        storage,
        body.merchant_id,
        record.from_ms,
        record.until_ms,
        body.after,
        &mut |item| {
            if items.len() == limit {
                more = true;
                return false;
            }
            items.push(item);
            true
        },
    )?;
    let next = more.then(|| items.last().map(|i| i.item)).flatten();
    Ok(Response::PayoutItems(PayoutShowResponse {
        payout: settlement::info(body.merchant_id, body.seq, &record),
        items,
        next,
    }))
}
