//! Operational metrics, through the `metrics` facade, for Prometheus.
//!
//! `kessai serve` installs a Prometheus recorder when `metrics_listen` is set
//! (config key or `--metrics-listen`); it answers an HTTP `GET` on any path
//! with the text exposition format. Without it, every metric call is a no-op
//! costing a branch. In-process engines (tests, `kessai-load --spawn`) never
//! install one: a process has one global recorder.
//!
//! The hot path never reaches the recorder per request. A connection's
//! writer tallies the replies it encodes in fixed arrays ([`ReplyTally`])
//! and hands the sums over once per socket write; each shard writer holds
//! its histogram handles and records once per group commit.
//!
//! Counters count replies as they leave, so a replayed payment (a retry
//! answered from the record) counts again under its original outcome.

use crate::card::DeclineReason;
use crate::protocol::{
    ActivationResult, ErrorCode, ErrorResponse, PayResponse, PayResult, Response, ReversalStatus,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::net::SocketAddr;

/// Payment replies, `outcome` = `approved` or the decline reason.
pub const PAYMENTS_TOTAL: &str = "kessai_payments_total";
/// Batch frames of payments answered (their payments count in
/// `kessai_payments_total` and `kessai_errors_total`, one by one).
pub const PAY_BATCHES_TOTAL: &str = "kessai_pay_batches_total";
/// Per-card activation results, `outcome` = `activated`, `invalid_pin` or
/// the decline reason.
pub const ACTIVATIONS_TOTAL: &str = "kessai_activations_total";
/// Activation reversal replies, `outcome` = `reversed`, `forestalled` or
/// the decline reason.
pub const REVERSALS_TOTAL: &str = "kessai_reversals_total";
/// Refund replies, `outcome` = `refunded` or the decline reason.
pub const REFUNDS_TOTAL: &str = "kessai_refunds_total";
/// Authorizations released at their deadline (never captured).
pub const AUTHORIZATIONS_RELEASED_TOTAL: &str = "kessai_authorizations_released_total";
/// Authorization replies, `outcome` = `authorized` or the decline reason.
pub const AUTHORIZATIONS_TOTAL: &str = "kessai_authorizations_total";
/// Capture and void replies, `operation` = `capture` or `void`, `outcome`
/// = `captured`, `voided` or the decline reason.
pub const CAPTURES_TOTAL: &str = "kessai_captures_total";
/// Payout creation replies, `outcome` = `created` or the decline reason.
pub const PAYOUTS_TOTAL: &str = "kessai_payouts_total";
/// Statement pages served.
pub const STATEMENT_PAGES_TOTAL: &str = "kessai_statement_pages_total";
/// Payouts confirmed paid.
pub const PAYOUTS_CONFIRMED_TOTAL: &str = "kessai_payouts_confirmed_total";
/// Remittance replies, `outcome` = `remitted` or the decline reason.
pub const REMITTANCES_TOTAL: &str = "kessai_remittances_total";
/// Cards expired by the sweep (their balance went to breakage).
pub const CARDS_EXPIRED_TOTAL: &str = "kessai_cards_expired_total";
/// ISO 8583 responses, `mti` = the response's MTI, `code` = its DE 39.
pub const ISO8583_RESPONSES_TOTAL: &str = "kessai_iso8583_responses_total";
/// Error replies, `code` = the error code's name.
pub const ERRORS_TOTAL: &str = "kessai_errors_total";
/// Client connections being served.
pub const CONNECTIONS_OPEN: &str = "kessai_connections_open";
/// Connections refused at accept, `limit` = `max_connections` or
/// `max_connections_per_peer`.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "kessai_connections_refused_total";
/// Operations per group commit, `shard` = shard number.
pub const GROUP_COMMIT_OPS: &str = "kessai_group_commit_ops";
/// Duration of one group commit's durable write (the command log append,
/// then the unsynced RocksDB write), `shard` = shard number.
pub const GROUP_COMMIT_SYNC_US: &str = "kessai_group_commit_sync_us";
/// Duration of one command log write and `fdatasync` (every shard's
/// records of one group commit).
pub const LOG_SYNC_US: &str = "kessai_log_sync_us";
/// Bytes written per command log sync.
pub const LOG_SYNC_BYTES: &str = "kessai_log_sync_bytes";
/// Duration of one checkpoint (RocksDB flush, then log trim).
pub const LOG_CHECKPOINT_US: &str = "kessai_log_checkpoint_us";
/// Two-phase payments decided, `decision` = `commit` or `abort`.
pub const TWOPC_DECISIONS_TOTAL: &str = "kessai_twopc_decisions_total";
/// Handshakes finished, `outcome` = `ok` or `failed`.
pub const AUTH_TOTAL: &str = "kessai_auth_total";
/// PINs that named no sold card (or failed their check digit).
pub const PIN_FAILURES_TOTAL: &str = "kessai_pin_failures_total";
/// Principals locked out for too many PIN failures.
pub const LOCKOUTS_TOTAL: &str = "kessai_lockouts_total";
/// Principals changed, `change` = `add`, `revoke` or `rotate`.
pub const PRINCIPAL_CHANGES_TOTAL: &str = "kessai_principal_changes_total";
/// PrincipalList pages served.
pub const PRINCIPAL_LIST_PAGES_TOTAL: &str = "kessai_principal_list_pages_total";

/// Installs the global Prometheus recorder and its HTTP endpoint on the
/// current tokio runtime.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|error| format!("cannot serve metrics on {listen}: {error}"))?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PAYMENTS_TOTAL, "payment replies by outcome");
    describe_counter!(ACTIVATIONS_TOTAL, "card activation results by outcome");
    describe_counter!(ERRORS_TOTAL, "error replies by code");
    describe_gauge!(CONNECTIONS_OPEN, "client connections being served");
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "connections refused or evicted, by the limit that did it"
    );
    describe_histogram!(GROUP_COMMIT_OPS, Unit::Count, "operations per group commit");
    describe_histogram!(
        GROUP_COMMIT_SYNC_US,
        Unit::Microseconds,
        "synced write time per group commit"
    );
    describe_histogram!(
        LOG_SYNC_US,
        Unit::Microseconds,
        "command log write and fdatasync time, all shards' records at once"
    );
    describe_histogram!(LOG_SYNC_BYTES, Unit::Bytes, "bytes per command log sync");
    describe_histogram!(
        LOG_CHECKPOINT_US,
        Unit::Microseconds,
        "checkpoint time: RocksDB flush and log trim"
    );
    describe_counter!(TWOPC_DECISIONS_TOTAL, "two-phase payments decided");
    describe_counter!(AUTH_TOTAL, "handshakes by outcome");
    describe_counter!(PIN_FAILURES_TOTAL, "PIN checks that failed");
    describe_counter!(LOCKOUTS_TOTAL, "principals locked out for PIN failures");
    describe_counter!(PRINCIPAL_CHANGES_TOTAL, "principals added or revoked");
    describe_counter!(PRINCIPAL_LIST_PAGES_TOTAL, "principal list pages served");
    describe_counter!(
        ISO8583_RESPONSES_TOTAL,
        "ISO 8583 responses by MTI and response code (DE 39)"
    );
}

/// Counts an ISO 8583 response (its MTI and DE 39, both from fixed sets).
pub fn iso8583_response(mti: &'static str, code: &'static str) {
    metrics::counter!(ISO8583_RESPONSES_TOTAL, "mti" => mti, "code" => code).increment(1);
}

/// Counts a finished handshake.
pub fn authenticated(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(AUTH_TOTAL, "outcome" => outcome).increment(1);
}

/// Counts a PIN failure.
pub fn pin_failure() {
    metrics::counter!(PIN_FAILURES_TOTAL).increment(1);
}

/// Counts a lockout.
pub fn locked_out() {
    metrics::counter!(LOCKOUTS_TOTAL).increment(1);
}

/// Counts a change to the principals: `add`, `revoke` or `rotate`.
pub fn principal_changed(change: &'static str) {
    metrics::counter!(PRINCIPAL_CHANGES_TOTAL, "change" => change).increment(1);
}

/// Counts a page of the principal list served.
pub fn principal_list_page() {
    metrics::counter!(PRINCIPAL_LIST_PAGES_TOTAL).increment(1);
}

/// Counts a payout confirmed paid.
pub fn payout_confirmed() {
    metrics::counter!(PAYOUTS_CONFIRMED_TOTAL).increment(1);
}

/// Counts authorizations released at their deadline.
pub fn authorizations_released(count: usize) {
    metrics::counter!(AUTHORIZATIONS_RELEASED_TOTAL).increment(count as u64);
}

/// Counts cards the expiry sweep expired.
pub fn cards_expired(count: usize) {
    metrics::counter!(CARDS_EXPIRED_TOTAL).increment(count as u64);
}

/// Counts a decided two-phase payment.
pub fn twopc_decided(approved: bool) {
    let decision = if approved { "commit" } else { "abort" };
    metrics::counter!(TWOPC_DECISIONS_TOTAL, "decision" => decision).increment(1);
}

const REASONS: usize = DeclineReason::ALL.len();
const CODES: usize = ErrorCode::ALL.len();

/// Reply counts gathered by one connection writer between socket writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplyTally {
    payments_approved: u64,
    pay_batches: u64,
    payments_declined: [u64; REASONS],
    activated: u64,
    activations_declined: [u64; REASONS],
    activations_invalid_pin: u64,
    activations_locked_out: u64,
    errors: [u64; CODES],
}

impl ReplyTally {
    pub fn count(&mut self, response: &Response) {
        match response {
            Response::Paid(paid) => self.paid(paid),
            Response::PaidBatch(batch) => {
                self.pay_batches += 1;
                for result in &batch.results {
                    match result {
                        PayResult::Paid(paid) => self.paid(paid),
                        PayResult::Error(error) => self.error(error),
                    }
                }
            }
            Response::Activated(activated) => {
                for result in &activated.results {
                    match result {
                        ActivationResult::Activated { .. } => self.activated += 1,
                        ActivationResult::Declined { reason } => {
                            self.activations_declined[reason_index(*reason)] += 1;
                        }
                        ActivationResult::InvalidPin => self.activations_invalid_pin += 1,
                        ActivationResult::LockedOut => self.activations_locked_out += 1,
                    }
                }
            }
            // Rare next to payments: counted as they leave, not tallied.
            Response::ActivationReversed(reversed) => {
                let outcome = match (reversed.reason, reversed.status) {
                    (Some(reason), _) => reason.name(),
                    (None, ReversalStatus::Forestalled) => "forestalled",
                    (None, _) => "reversed",
                };
                metrics::counter!(REVERSALS_TOTAL, "outcome" => outcome).increment(1);
            }
            Response::Authorized(authorized) => {
                let outcome = authorized.reason.map_or("authorized", DeclineReason::name);
                metrics::counter!(AUTHORIZATIONS_TOTAL, "outcome" => outcome).increment(1);
            }
            Response::Captured(captured) => {
                let outcome = captured.reason.map_or("captured", DeclineReason::name);
                let labels = [("operation", "capture"), ("outcome", outcome)];
                metrics::counter!(CAPTURES_TOTAL, &labels).increment(1);
            }
            Response::Voided(voided) => {
                let outcome = voided.reason.map_or("voided", DeclineReason::name);
                let labels = [("operation", "void"), ("outcome", outcome)];
                metrics::counter!(CAPTURES_TOTAL, &labels).increment(1);
            }
            Response::Statement(_) | Response::StoreStatement(_) => {
                metrics::counter!(STATEMENT_PAGES_TOTAL).increment(1)
            }
            Response::PayoutCreated(created) => {
                let outcome = created.reason.map_or("created", DeclineReason::name);
                metrics::counter!(PAYOUTS_TOTAL, "outcome" => outcome).increment(1);
            }
            Response::Remitted(remitted) => {
                let outcome = remitted.reason.map_or("remitted", DeclineReason::name);
                metrics::counter!(REMITTANCES_TOTAL, "outcome" => outcome).increment(1);
            }
            Response::Refunded(refunded) => {
                let outcome = refunded.reason.map_or("refunded", DeclineReason::name);
                metrics::counter!(REFUNDS_TOTAL, "outcome" => outcome).increment(1);
            }
            Response::Error(error) => self.error(error),
            _ => {}
        }
    }

    fn paid(&mut self, paid: &PayResponse) {
        match paid.reason() {
            None => self.payments_approved += 1,
            Some(reason) => self.payments_declined[reason_index(reason)] += 1,
        }
    }

    fn error(&mut self, error: &ErrorResponse) {
        if let Some(code) = error.error_code() {
            self.errors[code_index(code)] += 1;
        }
    }

    /// Hands the counts to the recorder and starts over.
    pub fn flush(&mut self) {
        if *self == ReplyTally::default() {
            return;
        }
        add(
            PAYMENTS_TOTAL,
            "outcome",
            "approved",
            self.payments_approved,
        );
        if self.pay_batches > 0 {
            metrics::counter!(PAY_BATCHES_TOTAL).increment(self.pay_batches);
        }
        add(ACTIVATIONS_TOTAL, "outcome", "activated", self.activated);
        add(
            ACTIVATIONS_TOTAL,
            "outcome",
            "invalid_pin",
            self.activations_invalid_pin,
        );
        add(
            ACTIVATIONS_TOTAL,
            "outcome",
            "locked_out",
            self.activations_locked_out,
        );
        for (index, reason) in DeclineReason::ALL.into_iter().enumerate() {
            add(
                PAYMENTS_TOTAL,
                "outcome",
                reason.name(),
                self.payments_declined[index],
            );
            add(
                ACTIVATIONS_TOTAL,
                "outcome",
                reason.name(),
                self.activations_declined[index],
            );
        }
        for (index, code) in ErrorCode::ALL.into_iter().enumerate() {
            add(ERRORS_TOTAL, "code", code.name(), self.errors[index]);
        }
        *self = ReplyTally::default();
    }
}

fn add(name: &'static str, label: &'static str, value: &'static str, count: u64) {
    if count > 0 {
        metrics::counter!(name, label => value).increment(count);
    }
}

fn reason_index(reason: DeclineReason) -> usize {
    let index = reason as usize;
    debug_assert_eq!(DeclineReason::ALL[index], reason);
    index
}

fn code_index(code: ErrorCode) -> usize {
    let index = code as usize - 1;
    debug_assert_eq!(ErrorCode::ALL[index], code);
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ActivateResponse, PayPart, PayResponse};

    #[test]
    fn every_reason_and_code_has_its_own_slot() {
        for (index, reason) in DeclineReason::ALL.into_iter().enumerate() {
            assert_eq!(reason_index(reason), index);
        }
        for (index, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code_index(code), index);
        }
    }

    #[test]
    fn tally_counts_outcomes_and_resets_on_flush() {
        let mut tally = ReplyTally::default();
        let part = PayPart {
            pin_last4: 1234,
            taken_minor: 100,
            remaining_minor: 900,
        };
        tally.count(&Response::Paid(PayResponse::approved(100, vec![part])));
        tally.count(&Response::Paid(PayResponse::declined(
            DeclineReason::InsufficientFunds,
            Some(crate::ids::Position::from_index(0)),
            5000,
        )));
        tally.count(&Response::Activated(ActivateResponse {
            results: vec![
                ActivationResult::Activated {
                    face_value_minor: 1000,
                },
                ActivationResult::Declined {
                    reason: DeclineReason::AlreadyActive,
                },
                ActivationResult::InvalidPin,
            ],
        }));
        tally.count(&Response::error(ErrorCode::InvalidPin, "bad"));
        tally.count(&Response::Pong);

        assert_eq!(tally.payments_approved, 1);
        let insufficient = reason_index(DeclineReason::InsufficientFunds);
        assert_eq!(tally.payments_declined[insufficient], 1);
        assert_eq!(tally.payments_declined.iter().sum::<u64>(), 1);
        assert_eq!(tally.activated, 1);
        let already = reason_index(DeclineReason::AlreadyActive);
        assert_eq!(tally.activations_declined[already], 1);
        assert_eq!(tally.activations_invalid_pin, 1);
        assert_eq!(tally.errors[code_index(ErrorCode::InvalidPin)], 1);
        assert_eq!(tally.errors.iter().sum::<u64>(), 1);

        tally.flush();
        assert_eq!(tally, ReplyTally::default());
    }
}
