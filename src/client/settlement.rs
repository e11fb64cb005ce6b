//! The center's books (operator only): store HQs' remittances, merchants'
//! payouts, and merchants' and stores' statements.

use super::{Client, ClientError, unexpected};
use crate::protocol::{
    PayoutConfirmRequest, PayoutConfirmResponse, PayoutCreateRequest, PayoutCreateResponse,
    PayoutItemRef, PayoutListRequest, PayoutListResponse, PayoutShowRequest, PayoutShowResponse,
    RemitRequest, RemitResponse, Request, Response, StatementRef, StatementRequest,
    StatementResponse, StoreStatementRef, StoreStatementRequest, StoreStatementResponse,
};

impl Client {
    /// Records that store headquarters `store_hq_id` paid the center
    /// `amount_minor` (bank reference `reference`) toward its stores' debt
    /// (operator only). The amount goes to the HQ's stores in ascending
    /// store id order, each up to what it owes; more than they owe in all
    /// is declined `exceeds_owed`. `request_id` names the remittance (the
    /// operator's namespace): resending the identical remittance replays
    /// its answer.
    pub async fn remit(
        &self,
        request_id: u64,
        store_hq_id: u32,
        amount_minor: u64,
        reference: &str,
    ) -> Result<RemitResponse, ClientError> {
        let request = Request::Remit(RemitRequest {
            request_id,
            store_hq_id,
            amount_minor,
            reference: reference.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::Remitted(remitted) => Ok(remitted),
            other => Err(unexpected(other)),
        }
    }

    /// Closes everything the center owes merchant `merchant_id` up to
    /// `until_ms` (engine clock; `None`: now less the engine's
    /// `payout_settle_ms`) into one payout (operator only): the payments
    /// and refunds decided after the merchant's last payout's cut-off, less
    /// the merchant's fee and what earlier payouts carried. Declined
    /// `period_closed` or `nothing_to_pay`. `request_id` names the payout
    /// (the operator's namespace): resending the identical request replays
    /// its answer.
    pub async fn payout_create(
        &self,
        request_id: u64,
        merchant_id: u32,
        until_ms: Option<u64>,
    ) -> Result<PayoutCreateResponse, ClientError> {
        let request = Request::PayoutCreate(PayoutCreateRequest {
            request_id,
            merchant_id,
            until_ms,
        });
        match self.call_ok(&request).await? {
            Response::PayoutCreated(created) => Ok(created),
            other => Err(unexpected(other)),
        }
    }

    /// Marks payout (`merchant_id`, `seq`) paid with the bank's
    /// `reference` (operator only). Confirming again with the same
    /// reference replays; with another, it is `invalid_argument`.
    pub async fn payout_confirm(
        &self,
        merchant_id: u32,
        seq: u64,
        reference: &str,
    ) -> Result<PayoutConfirmResponse, ClientError> {
        let request = Request::PayoutConfirm(PayoutConfirmRequest {
            merchant_id,
            seq,
            reference: reference.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::PayoutConfirmed(confirmed) => Ok(confirmed),
            other => Err(unexpected(other)),
        }
    }

    /// One page of merchant `merchant_id`'s payouts after `after_seq` (0:
    /// from the first), at most `limit` (operator only).
    pub async fn payout_list(
        &self,
        merchant_id: u32,
        after_seq: u64,
        limit: u32,
    ) -> Result<PayoutListResponse, ClientError> {
        let request = Request::PayoutList(PayoutListRequest {
            merchant_id,
            after_seq,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::Payouts(payouts) => Ok(payouts),
            other => Err(unexpected(other)),
        }
    }

    /// Payout (`merchant_id`, `seq`) and one page of what it contains
    /// after `after` (`None`: from the start), at most `limit` items: its
    /// payments, then its refunds, each by request id (operator only).
    pub async fn payout_show(
        &self,
        merchant_id: u32,
        seq: u64,
        after: Option<PayoutItemRef>,
        limit: u32,
    ) -> Result<PayoutShowResponse, ClientError> {
        let request = Request::PayoutShow(PayoutShowRequest {
            merchant_id,
            seq,
            after,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::PayoutItems(items) => Ok(items),
            other => Err(unexpected(other)),
        }
    }

    /// One page of merchant `merchant_id`'s statement (operator only):
    /// its approved payments (what was captured), refunds and payouts
    /// with their engine-clock time in (`from_ms`, `to_ms`], after `after`
    /// (`None`: from the start), at most `limit` lines: payments, then
    /// refunds, each by request id, then payouts by number. `next` is where
    /// the next page starts when more may follow.
    pub async fn statement(
        &self,
        merchant_id: u32,
        from_ms: u64,
        to_ms: u64,
        after: Option<StatementRef>,
        limit: u32,
    ) -> Result<StatementResponse, ClientError> {
        let request = Request::Statement(StatementRequest {
            merchant_id,
            from_ms,
            to_ms,
            after,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::Statement(statement) => Ok(statement),
            other => Err(unexpected(other)),
        }
    }

    /// One page of store `store_id`'s statement (operator only): its
    /// journal (activations, reversals and what remittances paid off its
    /// debt) with the engine-clock time in (`from_ms`, `to_ms`], after
    /// `after` (`None`: from the start), at most `limit` lines, ordered by
    /// time, then kind, subject and reference. `next` is where the next
    /// page starts when more may follow.
    pub async fn store_statement(
        &self,
        store_id: u32,
        from_ms: u64,
        to_ms: u64,
        after: Option<StoreStatementRef>,
        limit: u32,
    ) -> Result<StoreStatementResponse, ClientError> {
        let request = Request::StoreStatement(StoreStatementRequest {
            store_id,
            from_ms,
            to_ms,
            after,
            limit,
        });
        match self.call_ok(&request).await? {
            Response::StoreStatement(statement) => Ok(statement),
            other => Err(unexpected(other)),
        }
    }
}
