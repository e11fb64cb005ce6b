//! Authorizations: a payment whose decision waits.
//!
//! **Authorize** runs phase one of a payment ([`crate::twopc::TwoPhase`]: every
//! shard holds up to the amount on its cards and votes), and decides the
//! same way. Approved, the authorization's home shard records it, open,
//! with what each card keeps held (the payment's split) and its deadline,
//! in the payment record under the authorization's id and in the index of
//! deadlines, in one write (crash point `after-decision`); then each shard
//! trims its holds to what they keep, and they stand. Held money cannot be
//! spent by anyone else, and the audit knows these holds are not dangling.
//!
//! **Capture** of C (at most what was authorized) is phase two deferred:
//! the home shard records the payment approved with C taken from the held
//! cards in order (the authorization becomes the payment, refundable as
//! such), the capture under its own id, and drops the index entry, in one
//! write; then each shard commits (takes and releases the rest; crash
//! point `mid-commit` after the first). **Void**, and the release of an
//! authorization past `authorization_ttl_ms`, record it closed and abort
//! its holds. Recovery at start keeps the holds of open authorizations
//! (re-trimming them if a crash came before the trim), applies captures
//! and voids already decided, and the sweep releases what expired while
//! the engine was down.

use super::{Coordinator, Decided, ShardOp, authorize, drive};
use crate::card::DeclineReason;
use crate::config::CARDS_PER_PAYMENT_MAX;
use crate::idempotency::{self, ClaimGuard};
use crate::ids::{CardRef, OperationId, PaymentId};
use crate::order::OrderId;
use crate::protocol::{
    AuthorizationStatus, AuthorizeResponse, CapturePart, CaptureResponse, CaptureStatus, ErrorCode,
    ErrorResponse, HeldPart, PayResponse, Response, VoidResponse, VoidStatus,
};
use crate::shard::ShardGone;
use crate::state_machine::{AuthorizationStep, IndexChange, Take, split_payment};
use crate::storage::records::{
    self, AuthorizationTerms, OperationRecord, PaymentRecord, RecordedOutcome, RecordedPart,
};
use crate::storage::{Cf, StorageError, Store};
use crate::twopc::TwoPhase;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Open authorizations by deadline: what the release sweep looks at.
#[derive(Default)]
pub struct OpenAuthorizations {
    by_deadline: Mutex<BTreeSet<(u64, PaymentId)>>,
}

impl OpenAuthorizations {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, PaymentId)>> {
        // Every mutation is one insert or remove: a panic elsewhere cannot
        // leave the set half-changed.
        self.by_deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self, expires_at_ms: u64, authorization: PaymentId) {
        self.lock().insert((expires_at_ms, authorization));
    }

    fn close(&self, expires_at_ms: u64, authorization: PaymentId) {
        self.lock().remove(&(expires_at_ms, authorization));
    }

    /// Those due at `now_ms`, earliest first, at most `most`.
    fn due(&self, now_ms: u64, most: usize) -> Vec<(u64, PaymentId)> {
        self.lock()
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(most)
            .copied()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the index of open authorizations (at start).
pub(crate) fn load_open(
    store: &dyn Store,
    open: &OpenAuthorizations,
) -> Result<usize, StorageError> {
    let mut count = 0;
    store.scan(Cf::Authorizations, &mut |key, _| {
        let (expires_at_ms, authorization) = records::decode_authorization_key(key)?;
        open.open(expires_at_ms, authorization);
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// Whether `record` can answer an authorization retried under its id: it
/// was one, or it is the abort recovery presumed for a request that died
/// before deciding (its hold records cannot tell a payment from an
/// authorization, and an abort is the definitive answer to either).
pub fn answers_an_authorization(record: &PaymentRecord) -> bool {
    record.authorization.is_some()
        || matches!(
            record.outcome,
            RecordedOutcome::Declined {
                reason: DeclineReason::Aborted,
                ..
            }
        )
}

/// The first answer to an authorization, rebuilt from its record.
pub fn authorize_response_of(record: &PaymentRecord, replayed: bool) -> AuthorizeResponse {
    let terms = record.authorization.as_ref();
    let held = terms.map_or(&[][..], |t| &t.held_minor[..]);
    let response = match &record.outcome {
        // Declined before it ever opened: it kept nothing.
        RecordedOutcome::Declined {
            reason, position, ..
        } if held.is_empty() => {
            AuthorizeResponse::declined(*reason, *position, record.amount_minor)
        }
        _ => AuthorizeResponse {
            status: AuthorizationStatus::Authorized,
            reason: None,
            position: None,
            amount_minor: record.amount_minor,
            parts: record
                .cards
                .iter()
                .zip(held)
                .map(|(card, &held_minor)| HeldPart {
                    pin_last4: card.last4,
                    held_minor,
                })
                .collect(),
            expires_at_ms: terms.map_or(0, |t| t.expires_at_ms),
            replayed: false,
        },
    };
    AuthorizeResponse {
        replayed,
        ..response
    }
}

/// The answer to a capture, rebuilt from the captured authorization.
pub fn capture_response_of(record: &PaymentRecord, replayed: bool) -> CaptureResponse {
    let RecordedOutcome::Approved { parts } = &record.outcome else {
        return CaptureResponse::declined(DeclineReason::AuthorizationClosed, 0);
    };
    let captured_minor: u64 = parts.iter().map(|p| p.taken_minor).sum();
    CaptureResponse {
        status: CaptureStatus::Captured,
        reason: None,
        amount_minor: captured_minor,
        parts: record
            .cards
            .iter()
            .zip(parts)
            .map(|(card, part)| CapturePart {
                pin_last4: card.last4,
                taken_minor: part.taken_minor,
            })
            .collect(),
        released_minor: held_total(record) - captured_minor,
        replayed,
    }
}

fn held_total(record: &PaymentRecord) -> u64 {
    record
        .authorization
        .as_ref()
        .map_or(0, |terms| terms.held_minor.iter().sum())
}

/// The answer to a void, rebuilt from the voided authorization.
pub fn void_response_of(record: &PaymentRecord, replayed: bool) -> VoidResponse {
    VoidResponse {
        status: VoidStatus::Voided,
        reason: None,
        released_minor: held_total(record),
        replayed,
    }
}

fn invalid(message: &str) -> ErrorResponse {
    ErrorResponse::new(ErrorCode::InvalidArgument, message.to_string())
}

fn storage_failed(error: impl std::fmt::Display) -> ErrorResponse {
    tracing::error!(%error, "authorization lookup failed");
    ErrorResponse::new(ErrorCode::Internal, "storage read failed")
}

/// How an open authorization closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Capture(u64),
    Void,
    /// Past its deadline.
    Release,
}

/// An authorization closed by [`close`]: its new record, its terms, and
/// what to take from each card (in its order; all 0 unless captured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub record: PaymentRecord,
    pub terms: AuthorizationTerms,
    pub takes: [u64; CARDS_PER_PAYMENT_MAX],
}

/// Why [`close`] did not close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotClosed {
    Declined(DeclineReason),
    /// A release before the deadline.
    NotDue,
}

/// The rules of closing an authorization, pure: `record` is what is
/// stored under its id (if anything).
pub fn close(
    record: Option<PaymentRecord>,
    closing: Closing,
    now_ms: u64,
) -> Result<Closed, NotClosed> {
    let Some(mut record) = record else {
        return Err(NotClosed::Declined(DeclineReason::UnknownAuthorization));
    };
    let Some(terms) = record.authorization.clone() else {
        return Err(NotClosed::Declined(DeclineReason::UnknownAuthorization));
    };
    if !record.is_open_authorization() {
        return Err(NotClosed::Declined(DeclineReason::AuthorizationClosed));
    }
    let due = now_ms >= terms.expires_at_ms;
    let takes = match closing {
        Closing::Capture(_) if due => {
            return Err(NotClosed::Declined(DeclineReason::AuthorizationExpired));
        }
        Closing::Capture(amount_minor) if amount_minor > record.amount_minor => {
            return Err(NotClosed::Declined(DeclineReason::ExceedsAuthorized));
        }
        Closing::Release if !due => return Err(NotClosed::NotDue),
        Closing::Capture(amount_minor) => {
            let Ok(takes) = split_payment(amount_minor, &terms.held_minor) else {
                unreachable!("the holds cover what was authorized");
            };
            record.at_ms = now_ms;
            record.outcome = RecordedOutcome::Approved {
                parts: takes[..record.cards.len()]
                    .iter()
                    .map(|&taken_minor| RecordedPart {
                        taken_minor,
                        // Not known here: the cards' balances are the
                        // shards'. The capture's answer does not show them.
                        remaining_minor: 0,
                    })
                    .collect(),
            };
            takes
        }
        Closing::Void | Closing::Release => {
            let reason = if closing == Closing::Void {
                DeclineReason::AuthorizationClosed
            } else {
                DeclineReason::AuthorizationExpired
            };
            record.outcome = RecordedOutcome::Declined {
                reason,
                position: None,
                available_minor: 0,
            };
            [0; CARDS_PER_PAYMENT_MAX]
        }
    };
    Ok(Closed {
        record,
        terms,
        takes,
    })
}

impl Closed {
    /// What the home shard writes: the closed record, the index entry
    /// gone, and the capture or void that closed it.
    pub fn step(
        &self,
        authorization: PaymentId,
        operation: Option<OperationId>,
        closing: Closing,
    ) -> AuthorizationStep {
        let captured_minor = match closing {
            Closing::Capture(amount_minor) => Some(amount_minor),
            _ => None,
        };
        AuthorizationStep {
            authorization,
            record: self.record.clone(),
            index: IndexChange::Close(self.terms.expires_at_ms),
            operation: operation.map(|operation| {
                let record = OperationRecord {
                    authorization_request_id: authorization.request_id,
                    captured_minor,
                };
                (operation, record)
            }),
            // Written when it opened.
            order_id: None,
        }
    }
}

/// A closed authorization as a step machine: its step on its home shard
/// (the closed record, the index entry gone, the capture or void that
/// closed it, in one write), then phase two: a capture commits what each
/// card gives (`closed.takes`, by position) and releases the rest; a void
/// or release aborts every hold. The reply is the closed record.
pub fn close_holds(
    authorization: PaymentId,
    operation: Option<OperationId>,
    closing: Closing,
    closed: Closed,
    shard_count: usize,
) -> Decided<PaymentRecord> {
    let step = closed.step(authorization, operation, closing);
    let Closed { record, takes, .. } = closed;
    let cards = record.cards.clone();
    let two_phase = TwoPhase::new(authorization, record.amount_minor, cards, shard_count);
    let tell = two_phase
        .participants()
        .iter()
        .map(|participant| {
            let cards = participant.cards.iter();
            let op = if let Closing::Capture(_) = closing {
                let takes = cards
                    .map(|(position, card)| Take {
                        key: card.key,
                        take_minor: takes[position.index()],
                    })
                    .collect();
                ShardOp::Commit {
                    payment: authorization,
                    takes,
                }
            } else {
                ShardOp::Abort {
                    payment: authorization,
                    keys: cards.map(|(_, card)| card.key).collect(),
                    declined: false,
                }
            };
            (participant.shard, op)
        })
        .collect();
    let home = authorization.home_shard(shard_count);
    Decided::new(
        Some((home, ShardOp::RecordAuthorization(step))),
        tell,
        record,
    )
}

/// An approved authorization's record, open until `now_ms + ttl_ms`.
pub fn opened(
    two_phase: &TwoPhase,
    decision: &PayResponse,
    now_ms: u64,
    ttl_ms: u64,
) -> PaymentRecord {
    let mut record = two_phase.record(decision, now_ms);
    record.outcome = RecordedOutcome::Authorized;
    record.authorization = Some(AuthorizationTerms {
        held_minor: decision.parts().iter().map(|p| p.taken_minor).collect(),
        expires_at_ms: now_ms.saturating_add(ttl_ms),
    });
    record
}

/// A declined authorization's record (kept so a retry is answered the
/// same; it never opened, so it kept nothing).
pub fn declined(two_phase: &TwoPhase, decision: &PayResponse, now_ms: u64) -> PaymentRecord {
    let mut record = two_phase.record(decision, now_ms);
    record.authorization = Some(AuthorizationTerms {
        held_minor: Vec::new(),
        expires_at_ms: 0,
    });
    record
}

/// The answer to an authorization whose id was used before: the first
/// answer when it is the same authorization.
fn replay_authorization(
    record: &PaymentRecord,
    amount_minor: u64,
    cards: &[CardRef],
) -> Result<AuthorizeResponse, ErrorResponse> {
    let same = record.amount_minor == amount_minor
        && record.cards.len() == cards.len()
        && record.cards.iter().zip(cards).all(|(a, b)| a.key == b.key);
    match (answers_an_authorization(record), same) {
        (true, true) => Ok(authorize_response_of(record, true)),
        (true, false) => Err(invalid(
            "this request id was already used for a different authorization",
        )),
        (false, _) => Err(invalid("this request id was already used for a payment")),
    }
}

type Answer<T> = Result<Result<T, ErrorResponse>, ShardGone>;

impl Coordinator {
    /// Reads the open authorizations' deadlines (at start); how many.
    pub fn load_open_authorizations(&self) -> Result<usize, StorageError> {
        load_open(self.storage.as_ref(), &self.open_authorizations)
    }

    /// Holds `amount_minor` across `cards` under the id `authorization`.
    pub async fn authorize(
        &self,
        authorization: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
        order_id: Option<OrderId>,
    ) -> Response {
        let run = self.run_authorize(authorization, amount_minor, cards, order_id);
        match run.await {
            Ok(Ok(authorized)) => Response::Authorized(authorized),
            Ok(Err(error)) => Response::Error(error),
            Err(ShardGone) => Response::error(ErrorCode::Internal, "engine is shutting down"),
        }
    }

    async fn run_authorize(
        &self,
        authorization: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
        order_id: Option<OrderId>,
    ) -> Answer<AuthorizeResponse> {
        if let Err(locked) = self
            .guard
            .check(authorization.merchant_id, crate::clock::now_ms())
        {
            return Ok(Err(locked.refusal()));
        }
        if let Err(busy) = idempotency::claim(&self.claims, authorization) {
            return Ok(Err(busy));
        }
        let _claim = ClaimGuard::new(&self.claims, authorization);
        match self.lookup(authorization).await {
            Err(error) => return Ok(Err(error)),
            Ok(Some(record)) => return Ok(replay_authorization(&record, amount_minor, &cards)),
            Ok(None) => {}
        }
        let shard_count = self.shards.count();
        let two_phase = TwoPhase::new(authorization, amount_minor, cards, shard_count);
        let ttl_ms = self.authorization_ttl_ms;
        let authorizing = authorize(two_phase, order_id, shard_count, ttl_ms);
        let response = drive(&self.shards, self.prepare_timeout, authorizing).await?;
        if response.status == AuthorizationStatus::Authorized {
            // Its record is durable. The release sweep may see it only
            // now: nothing can close it before, as this holds its claim.
            self.open_authorizations
                .open(response.expires_at_ms, authorization);
        }
        Ok(Ok(response))
    }

    /// Captures `amount_minor` of `authorization` under the id
    /// `operation`, or (`None`) voids it.
    pub async fn capture(
        &self,
        operation: OperationId,
        authorization: PaymentId,
        amount_minor: Option<u64>,
    ) -> Response {
        let closing = amount_minor.map_or(Closing::Void, Closing::Capture);
        match self
            .run_close(Some(operation), authorization, closing)
            .await
        {
            Ok(Ok(record)) => match closing {
                Closing::Capture(_) => Response::Captured(capture_response_of(&record, false)),
                _ => Response::Voided(void_response_of(&record, false)),
            },
            Ok(Err(Refused::Error(error))) => Response::Error(error),
            Ok(Err(Refused::Replay(record))) => match closing {
                Closing::Capture(_) => Response::Captured(capture_response_of(&record, true)),
                _ => Response::Voided(void_response_of(&record, true)),
            },
            Ok(Err(Refused::Declined(reason))) => match closing {
                Closing::Capture(amount) => {
                    Response::Captured(CaptureResponse::declined(reason, amount))
                }
                _ => Response::Voided(VoidResponse::declined(reason)),
            },
            Err(ShardGone) => Response::error(ErrorCode::Internal, "engine is shutting down"),
        }
    }

    /// Releases the open authorizations due at `now_ms` (at most `most`);
    /// returns how many it released. One busy with a capture or void is
    /// left for the next round.
    pub async fn release_due(&self, now_ms: u64, most: usize) -> Result<usize, ShardGone> {
        let mut released = 0;
        for (expires_at_ms, authorization) in self.open_authorizations.due(now_ms, most) {
            match self
                .run_close(None, authorization, Closing::Release)
                .await?
            {
                Ok(_) => released += 1,
                // Closed meanwhile (its index entry went in the same write
                // as its record): forget it here too.
                Err(Refused::Declined(_)) => {
                    self.open_authorizations.close(expires_at_ms, authorization);
                }
                Err(_) => {}
            }
        }
        Ok(released)
    }

    /// Closes an open authorization; the closed record, or why not.
    async fn run_close(
        &self,
        operation: Option<OperationId>,
        authorization: PaymentId,
        closing: Closing,
    ) -> Result<Result<PaymentRecord, Refused>, ShardGone> {
        let claimed = self.claim_operation(operation, authorization, closing);
        let _operation_claim = match claimed.await {
            Ok(claim) => claim,
            Err(refused) => return Ok(Err(refused)),
        };
        if let Err(busy) = idempotency::claim(&self.claims, authorization) {
            return Ok(Err(Refused::Error(busy)));
        }
        let _claim = ClaimGuard::new(&self.claims, authorization);
        let record = match self.lookup(authorization).await {
            Err(error) => return Ok(Err(Refused::Error(error))),
            Ok(record) => record,
        };
        let closed = match close(record, closing, crate::clock::now_ms()) {
            Ok(closed) => closed,
            Err(NotClosed::Declined(reason)) => return Ok(Err(Refused::Declined(reason))),
            Err(NotClosed::NotDue) => return Ok(Err(Refused::Error(invalid("not due yet")))),
        };
        let expires_at_ms = closed.terms.expires_at_ms;
        let shard_count = self.shards.count();
        let closing_holds = close_holds(authorization, operation, closing, closed, shard_count);
        let record = drive(&self.shards, self.prepare_timeout, closing_holds).await?;
        // Its record is durable: the release sweep forgets it. Nothing
        // closed it meanwhile: this holds its claim.
        self.open_authorizations.close(expires_at_ms, authorization);
        if closing == Closing::Release {
            tracing::info!(?authorization, "authorization released at its deadline");
        }
        Ok(Ok(record))
    }

    /// Claims a capture's or void's own id (a release has none), unless it
    /// was used before: then the first answer, or the refusal of a
    /// different operation under the same id.
    async fn claim_operation(
        &self,
        operation: Option<OperationId>,
        authorization: PaymentId,
        closing: Closing,
    ) -> Result<Option<ClaimGuard<'_, OperationId>>, Refused> {
        let Some(operation) = operation else {
            return Ok(None);
        };
        idempotency::claim(&self.operation_claims, operation).map_err(Refused::Error)?;
        let guard = ClaimGuard::new(&self.operation_claims, operation);
        match self.read(move |store| store.get_operation(operation)).await {
            Err(error) => Err(Refused::Error(storage_failed(error))),
            Ok(Some(prior)) => {
                let replayed = self.replay_operation(&prior, authorization, closing);
                Err(replayed.await)
            }
            Ok(None) => Ok(Some(guard)),
        }
    }

    /// The answer to a capture or void whose id was used before: the first
    /// answer when it is the same operation.
    async fn replay_operation(
        &self,
        prior: &OperationRecord,
        authorization: PaymentId,
        closing: Closing,
    ) -> Refused {
        let wanted = match closing {
            Closing::Capture(amount_minor) => Some(amount_minor),
            _ => None,
        };
        if prior.authorization_request_id != authorization.request_id
            || prior.captured_minor != wanted
        {
            return Refused::Error(invalid(
                "this request id was already used for a different capture or void",
            ));
        }
        match self.lookup(authorization).await {
            Ok(Some(record)) => Refused::Replay(record),
            Ok(None) => Refused::Error(storage_failed("an operation without its authorization")),
            Err(error) => Refused::Error(error),
        }
    }
}

/// Why a capture, void or release did not close the authorization now.
enum Refused {
    Error(ErrorResponse),
    Declined(DeclineReason),
    /// The operation was done before: its record, to answer from.
    Replay(PaymentRecord),
}
