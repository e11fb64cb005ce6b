//! The serde shapes of payment records on disk, frozen per format
//! (`payments.rs` reads them all and writes format 4), and the stable
//! one-byte codes of decline reasons they store.

use super::payments::{PaymentRecord, RecordedOutcome, RecordedPart};
use crate::card::DeclineReason;
use crate::ids::{CardRef, Position};
use crate::pin::{PIN_KEY_BYTES, PinKey};
use serde::{Deserialize, Serialize};

/// Stable one-byte codes for decline reasons on disk (independent of the
/// enum's declaration order, which the wire uses).
fn reason_code(reason: DeclineReason) -> u8 {
    match reason {
        DeclineReason::UnknownPin => 1,
        DeclineReason::NotActive => 2,
        DeclineReason::AlreadyActive => 3,
        DeclineReason::InsufficientFunds => 4,
        DeclineReason::Exhausted => 5,
        DeclineReason::Aborted => 6,
        DeclineReason::InvalidCard => 7,
        DeclineReason::ActivationReversed => 8,
        DeclineReason::NotThisSale => 9,
        DeclineReason::AlreadySpent => 10,
        DeclineReason::WindowClosed => 11,
        DeclineReason::UnknownPayment => 12,
        DeclineReason::ExceedsRefundable => 13,
        DeclineReason::Expired => 14,
        DeclineReason::UnknownAuthorization => 15,
        DeclineReason::AuthorizationClosed => 16,
        DeclineReason::AuthorizationExpired => 17,
        DeclineReason::ExceedsAuthorized => 18,
        DeclineReason::ExceedsOwed => 19,
        DeclineReason::PeriodClosed => 20,
        DeclineReason::NothingToPay => 21,
        DeclineReason::WrongAmount => 22,
    }
}

fn reason_from_code(code: u8) -> Result<DeclineReason, String> {
    DeclineReason::ALL
        .into_iter()
        .find(|reason| reason_code(*reason) == code)
        .ok_or_else(|| format!("decline reason code {code}"))
}

/// Format 1 (before stored records had types of their own): the wire's
/// pay response of that time, field for field, plus the card keys.
pub const PAYMENT_FORMAT_V1: u8 = 1;

#[derive(Deserialize)]
pub struct PaymentV1 {
    status: u8,
    reason: Option<u8>,
    position: Option<u8>,
    amount_minor: u64,
    remaining_minor: u64,
    parts: Vec<PartV1>,
    _replayed: bool,
    card_keys: Vec<[u8; PIN_KEY_BYTES]>,
}

#[derive(Deserialize)]
struct PartV1 {
    pin_last4: u16,
    taken_minor: u64,
    remaining_minor: u64,
}

impl TryFrom<PaymentV1> for PaymentRecord {
    type Error = String;

    fn try_from(v1: PaymentV1) -> Result<PaymentRecord, String> {
        // Format 1 stored the wire enum indexes: status 0 approved,
        // reasons in declaration order from 0.
        let outcome = match (v1.status, v1.reason) {
            (0, None) => {
                if v1.parts.len() != v1.card_keys.len() {
                    return Err("format 1 record: parts and cards differ".into());
                }
                RecordedOutcome::Approved {
                    parts: v1
                        .parts
                        .iter()
                        .map(|p| RecordedPart {
                            taken_minor: p.taken_minor,
                            remaining_minor: p.remaining_minor,
                        })
                        .collect(),
                }
            }
            (1, Some(index)) => RecordedOutcome::Declined {
                reason: *DeclineReason::ALL
                    .get(usize::from(index))
                    .ok_or_else(|| format!("format 1 reason {index}"))?,
                position: v1.position.and_then(Position::from_number),
                available_minor: v1.remaining_minor,
            },
            (status, reason) => {
                return Err(format!("format 1 status {status} with reason {reason:?}"));
            }
        };
        let cards = v1
            .card_keys
            .iter()
            .enumerate()
            .map(|(index, key)| CardRef {
                key: PinKey(*key),
                // Declines kept no parts, and so no last digits; they
                // are only ever shown for approved parts.
                last4: v1.parts.get(index).map_or(0, |p| p.pin_last4),
            })
            .collect();
        Ok(PaymentRecord {
            at_ms: 0,
            authorization: None,
            amount_minor: v1.amount_minor,
            cards,
            outcome,
        })
    }
}

pub const PAYMENT_FORMAT_V2: u8 = 2;
pub const PAYMENT_FORMAT_V3: u8 = 3;

/// Format 4: format 3, then the authorization's terms (if it was one).
#[derive(Serialize, Deserialize)]
pub struct PaymentV4 {
    pub at_ms: u64,
    pub payment: PaymentV2,
    pub authorization: Option<TermsV4>,
}

#[derive(Serialize, Deserialize)]
pub struct TermsV4 {
    pub held_minor: Vec<u64>,
    pub expires_at_ms: u64,
}

/// Format 3: the decision time, then format 2's body.
#[derive(Serialize, Deserialize)]
pub struct PaymentV3 {
    pub at_ms: u64,
    pub payment: PaymentV2,
}

#[derive(Serialize, Deserialize)]
pub struct PaymentV2 {
    amount_minor: u64,
    cards: Vec<CardV2>,
    outcome: OutcomeV2,
}

#[derive(Serialize, Deserialize)]
struct CardV2 {
    key: [u8; PIN_KEY_BYTES],
    last4: u16,
}

#[derive(Serialize, Deserialize)]
enum OutcomeV2 {
    Approved {
        parts: Vec<PartV2>,
    },
    Declined {
        reason_code: u8,
        /// 0 when no single card caused the decline.
        position: u8,
        available_minor: u64,
    },
    /// Added with format 4 (appended: earlier variants keep their
    /// indexes).
    Authorized,
}

#[derive(Serialize, Deserialize)]
struct PartV2 {
    taken_minor: u64,
    remaining_minor: u64,
}

impl From<&PaymentRecord> for PaymentV2 {
    fn from(record: &PaymentRecord) -> PaymentV2 {
        let outcome = match &record.outcome {
            RecordedOutcome::Approved { parts } => OutcomeV2::Approved {
                parts: parts
                    .iter()
                    .map(|p| PartV2 {
                        taken_minor: p.taken_minor,
                        remaining_minor: p.remaining_minor,
                    })
                    .collect(),
            },
            RecordedOutcome::Declined {
                reason,
                position,
                available_minor,
            } => OutcomeV2::Declined {
                reason_code: reason_code(*reason),
                position: position.map_or(0, Position::number),
                available_minor: *available_minor,
            },
            RecordedOutcome::Authorized => OutcomeV2::Authorized,
        };
        PaymentV2 {
            amount_minor: record.amount_minor,
            cards: record
                .cards
                .iter()
                .map(|c| CardV2 {
                    key: c.key.0,
                    last4: c.last4,
                })
                .collect(),
            outcome,
        }
    }
}

impl TryFrom<PaymentV2> for PaymentRecord {
    type Error = String;

    fn try_from(v2: PaymentV2) -> Result<PaymentRecord, String> {
        let outcome = match v2.outcome {
            OutcomeV2::Approved { parts } => {
                if parts.len() != v2.cards.len() {
                    return Err("payment record: parts and cards differ".into());
                }
                RecordedOutcome::Approved {
                    parts: parts
                        .iter()
                        .map(|p| RecordedPart {
                            taken_minor: p.taken_minor,
                            remaining_minor: p.remaining_minor,
                        })
                        .collect(),
                }
            }
            OutcomeV2::Declined {
                reason_code,
                position,
                available_minor,
            } => RecordedOutcome::Declined {
                reason: reason_from_code(reason_code)?,
                position: Position::from_number(position),
                available_minor,
            },
            OutcomeV2::Authorized => RecordedOutcome::Authorized,
        };
        Ok(PaymentRecord {
            at_ms: 0,
            authorization: None,
            amount_minor: v2.amount_minor,
            cards: v2
                .cards
                .iter()
                .map(|c| CardRef {
                    key: PinKey(c.key),
                    last4: c.last4,
                })
                .collect(),
            outcome,
        })
    }
}
