//! The coordinator: what every operation across shards needs from the
//! engine (the shards, the claims of request ids, the PIN guard, the
//! store to replay from), and the prologue each runs before its step
//! machine: refuse a locked-out merchant, claim the request id, replay a
//! recorded outcome if there is one. Then [`super::drive`] runs the step
//! machine ([`super::pay`] for a payment across shards), and the claim is
//! released once the reply is known.
//!
//! Coordinators run as futures on the arbiter of the connection that asked
//! (one per payment, costing an allocation rather than an actor). A crash
//! anywhere is repaired at start by [`crate::twopc::recovery`].

use super::{drive, pay};
use crate::auth::Guard;
use crate::idempotency::{self, ClaimGuard, Claims, Watermarks};
use crate::ids::{CardRef, OperationId, PaymentId, RefundId};
use crate::order::OrderId;
use crate::protocol::{ErrorCode, ErrorResponse, Response};
use crate::shard::{Services, ShardGone, Shards};
use crate::storage::records::PaymentRecord;
use crate::storage::{StorageError, Store};
use crate::twopc::TwoPhase;
use std::sync::Arc;
use std::time::Duration;

/// What every two-phase payment needs.
pub struct Coordinator {
    pub(super) shards: Arc<Shards>,
    /// Read for replays and decisions: RocksDB in the engine, any store
    /// behind the same interface elsewhere.
    pub(super) storage: Arc<dyn Store + Send + Sync>,
    pub(super) claims: Arc<Claims>,
    pub(super) watermarks: Arc<Watermarks>,
    pub(super) guard: Arc<Guard>,
    pub(super) prepare_timeout: Duration,
    /// Refunds being processed, by refund id (a namespace of its own).
    pub(super) refund_claims: Claims<RefundId>,
    pub(super) refund_window_ms: u64,
    /// Captures and voids being processed, by their own ids.
    pub(super) operation_claims: Claims<OperationId>,
    pub(super) open_authorizations: super::authorization::OpenAuthorizations,
    pub(super) authorization_ttl_ms: u64,
}

impl Coordinator {
    /// Over `shards`, sharing the engine-wide state of `services`.
    pub fn new(
        shards: Arc<Shards>,
        services: &Services,
        prepare_timeout: Duration,
        refund_window_ms: u64,
        authorization_ttl_ms: u64,
    ) -> Coordinator {
        Coordinator {
            shards,
            storage: services.storage.clone(),
            claims: services.claims.clone(),
            watermarks: services.watermarks.clone(),
            guard: services.guard.clone(),
            prepare_timeout,
            refund_claims: Claims::new(),
            refund_window_ms,
            operation_claims: Claims::new(),
            open_authorizations: Default::default(),
            authorization_ttl_ms,
        }
    }

    /// Reads the store on tokio's blocking pool, not on the connection's
    /// arbiter: a read may wait for the disk, and every connection on that
    /// arbiter would wait with it.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Store) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        match super::blocking::read(&self.storage, read).await {
            Ok(result) => result,
            Err(ShardGone) => Err(StorageError::Io("read cancelled: shutting down".into())),
        }
    }

    /// The recorded outcome of `payment` (or an authorization), if any;
    /// no read at all for an id the watermarks show is new.
    pub(super) async fn lookup(
        &self,
        payment: PaymentId,
    ) -> Result<Option<PaymentRecord>, ErrorResponse> {
        if self.watermarks.first_sight(payment) {
            return Ok(None);
        }
        let read = self.read(move |store| store.get_payment(payment));
        read.await.map_err(idempotency::read_failed)
    }

    /// Pays `amount_minor` from `cards` (which span several shards).
    pub async fn pay(
        &self,
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
        order_id: Option<OrderId>,
    ) -> Response {
        // The shards count this payment's PIN failures as they prepare; a
        // merchant already locked out is refused before anything starts.
        if let Err(locked) = self
            .guard
            .check(payment.merchant_id, crate::clock::now_ms())
        {
            return Response::Error(locked.refusal());
        }
        if let Err(busy) = idempotency::claim(&self.claims, payment) {
            return Response::Error(busy);
        }
        let _claim = ClaimGuard::new(&self.claims, payment);
        let replayed = match self.lookup(payment).await {
            Ok(None) => None,
            Ok(Some(record)) => Some(idempotency::replay(&record, amount_minor, &cards)),
            Err(error) => Some(Err(error)),
        };
        if let Some(answer) = replayed {
            return answer.map_or_else(Response::Error, Response::Paid);
        }
        let two_phase = TwoPhase::new(payment, amount_minor, cards, self.shards.count());
        let shard_count = self.shards.count();
        let payment = pay(two_phase, order_id, shard_count);
        match drive(&self.shards, self.prepare_timeout, payment).await {
            Ok(paid) => {
                crate::telemetry::twopc_decided(paid.is_approved());
                Response::Paid(paid)
            }
            Err(ShardGone) => Response::error(ErrorCode::Internal, "engine is shutting down"),
        }
    }
}
