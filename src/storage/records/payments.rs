//! The `payments` family: a payment's durable outcome (idempotency record
//! and two-phase decision), in its storage types. Format 4 is written;
//! the frozen serde shapes of formats 1 to 4 are in `payment_formats.rs`,
//! named `disk` here.

use super::codec::{decode_all, encode_versioned};
use super::payment_formats as disk;
use crate::card::DeclineReason;
use crate::ids::{CardRef, Position};
use crate::pin::PinKey;

/// A payment's durable outcome: the idempotency record, and for combined
/// payments also the two-phase-commit decision. Recovery applies a committed
/// decision card by card, so the record names every card with its take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// When it was decided (engine clock, ms since the Unix epoch; 0 for
    /// records of formats 1 and 2, which did not keep it).
    pub at_ms: u64,
    pub amount_minor: u64,
    /// The payment's cards, in request order.
    pub cards: Vec<CardRef>,
    pub outcome: RecordedOutcome,
    /// Set when the request was an authorization (kept after it is
    /// captured or closed, so a retry of the authorization is answered as
    /// it first was).
    pub authorization: Option<AuthorizationTerms>,
}

/// What an authorization held, per card in request order, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationTerms {
    pub held_minor: Vec<u64>,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedOutcome {
    /// One part per card, in request order.
    Approved { parts: Vec<RecordedPart> },
    Declined {
        reason: DeclineReason,
        /// The card that caused the decline, when one did.
        position: Option<Position>,
        /// What the cards could have paid (insufficient funds), else 0.
        available_minor: u64,
    },
    /// An open authorization: its holds stand (see
    /// [`PaymentRecord::authorization`]) until it is captured (then
    /// `Approved`) or voided or released (then `Declined`).
    Authorized,
}

/// What one card gave to an approved payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedPart {
    pub taken_minor: u64,
    /// The card's balance after the payment, as the first answer told it.
    pub remaining_minor: u64,
}

impl PaymentRecord {
    /// The take recorded for `card`, if the payment was approved and used it.
    pub fn take_for(&self, card: &PinKey) -> Option<u64> {
        let RecordedOutcome::Approved { parts } = &self.outcome else {
            return None;
        };
        let index = self.cards.iter().position(|c| c.key == *card)?;
        parts.get(index).map(|part| part.taken_minor)
    }

    pub fn is_approved(&self) -> bool {
        matches!(self.outcome, RecordedOutcome::Approved { .. })
    }

    /// An authorization still open (holds standing).
    pub fn is_open_authorization(&self) -> bool {
        self.outcome == RecordedOutcome::Authorized
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let v4 = disk::PaymentV4 {
            at_ms: self.at_ms,
            payment: disk::PaymentV2::from(self),
            authorization: self.authorization.as_ref().map(|terms| disk::TermsV4 {
                held_minor: terms.held_minor.clone(),
                expires_at_ms: terms.expires_at_ms,
            }),
        };
        encode_versioned(PAYMENT_FORMAT, &v4, out);
    }

    /// Reads format 4, and formats 3, 2 and 1 as written before it.
    pub fn decode(bytes: &[u8]) -> Result<PaymentRecord, String> {
        const WHAT: &str = "payment record";
        match bytes.split_first() {
            Some((&PAYMENT_FORMAT, body)) => {
                let v4 = decode_all::<disk::PaymentV4>(body, WHAT)?;
                let mut record = PaymentRecord::try_from(v4.payment)?;
                record.at_ms = v4.at_ms;
                record.authorization = v4.authorization.map(|terms| AuthorizationTerms {
                    held_minor: terms.held_minor,
                    expires_at_ms: terms.expires_at_ms,
                });
                let held_per_card = record.authorization.as_ref().is_none_or(|t| {
                    t.held_minor.is_empty() || t.held_minor.len() == record.cards.len()
                });
                if !held_per_card
                    || (record.is_open_authorization() && record.authorization.is_none())
                {
                    return Err(format!("{WHAT}: authorization terms do not fit its cards"));
                }
                Ok(record)
            }
            Some((&disk::PAYMENT_FORMAT_V3, body)) => {
                let v3 = decode_all::<disk::PaymentV3>(body, WHAT)?;
                let mut record = PaymentRecord::try_from(v3.payment)?;
                record.at_ms = v3.at_ms;
                Ok(record)
            }
            Some((&disk::PAYMENT_FORMAT_V2, body)) => {
                decode_all::<disk::PaymentV2>(body, WHAT)?.try_into()
            }
            Some((&disk::PAYMENT_FORMAT_V1, body)) => {
                decode_all::<disk::PaymentV1>(body, WHAT)?.try_into()
            }
            _ => Err(format!("{WHAT} with unknown format")),
        }
    }
}

const PAYMENT_FORMAT: u8 = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::golden::{hex, repeated};

    fn card_ref(byte: u8) -> CardRef {
        CardRef {
            key: PinKey([byte; 16]),
            last4: u16::from(byte),
        }
    }

    fn approved_700() -> PaymentRecord {
        PaymentRecord {
            at_ms: 0,
            authorization: None,
            amount_minor: 700,
            cards: vec![card_ref(1), card_ref(2)],
            outcome: RecordedOutcome::Approved {
                parts: vec![
                    RecordedPart {
                        taken_minor: 500,
                        remaining_minor: 0,
                    },
                    RecordedPart {
                        taken_minor: 200,
                        remaining_minor: 300,
                    },
                ],
            },
        }
    }

    #[test]
    fn an_approved_payment_record_has_pinned_bytes() {
        let approved = approved_700();
        let mut bytes = Vec::new();
        approved.encode_into(&mut bytes);
        let body = format!(
            "BC 05 02 {} 01 {} 02 00 02 F4 03 00 C8 01 AC 02",
            repeated("01", 16),
            repeated("02", 16)
        );
        // Format 4: the time, format 2's body, no authorization terms.
        assert_eq!(hex(&bytes), format!("04 00 {body} 00"));
        let decoded = PaymentRecord::decode(&bytes).expect("decode");
        assert_eq!(decoded, approved);
        // Format 3, before authorizations: the time and the body.
        let v3: Vec<u8> = std::iter::once(3)
            .chain(bytes[1..bytes.len() - 1].iter().copied())
            .collect();
        assert_eq!(PaymentRecord::decode(&v3), Ok(approved.clone()));
        // Format 2, as written before the decision time was kept.
        let v2: Vec<u8> = std::iter::once(2)
            .chain(bytes[2..bytes.len() - 1].iter().copied())
            .collect();
        assert_eq!(hex(&v2), format!("02 {body}"));
        assert_eq!(PaymentRecord::decode(&v2), Ok(approved.clone()));
        assert_eq!(decoded.take_for(&PinKey([2; 16])), Some(200));
        assert_eq!(decoded.take_for(&PinKey([3; 16])), None);
    }

    #[test]
    fn an_open_authorization_record_has_pinned_bytes() {
        // An open authorization: outcome 2, then its terms.
        let open = PaymentRecord {
            outcome: RecordedOutcome::Authorized,
            authorization: Some(AuthorizationTerms {
                held_minor: vec![500, 200],
                expires_at_ms: 9,
            }),
            ..approved_700()
        };
        let mut bytes = Vec::new();
        open.encode_into(&mut bytes);
        let cards = format!("02 {} 01 {} 02", repeated("01", 16), repeated("02", 16));
        assert_eq!(
            hex(&bytes),
            format!("04 00 BC 05 {cards} 02 01 02 F4 03 C8 01 09")
        );
        assert_eq!(PaymentRecord::decode(&bytes), Ok(open.clone()));
        let mut unfit = open;
        unfit.authorization = Some(AuthorizationTerms {
            held_minor: vec![1],
            expires_at_ms: 9,
        });
        let mut bytes = Vec::new();
        unfit.encode_into(&mut bytes);
        assert!(PaymentRecord::decode(&bytes).is_err(), "terms per card");
    }

    #[test]
    fn a_declined_payment_record_has_pinned_bytes() {
        let declined = PaymentRecord {
            at_ms: 1_700_000_000_000,
            authorization: None,
            amount_minor: 900,
            cards: vec![card_ref(1)],
            outcome: RecordedOutcome::Declined {
                reason: DeclineReason::InsufficientFunds,
                position: Position::from_number(1),
                available_minor: 500,
            },
        };
        let mut bytes = Vec::new();
        declined.encode_into(&mut bytes);
        let expected = format!(
            "04 80 D0 95 FF BC 31 84 07 01 {} 01 01 04 01 F4 03 00",
            repeated("01", 16)
        );
        assert_eq!(hex(&bytes), expected);
        assert_eq!(PaymentRecord::decode(&bytes), Ok(declined));
        assert_eq!(
            PaymentRecord::decode(&bytes)
                .expect("ok")
                .take_for(&PinKey([1; 16])),
            None
        );
        bytes.push(0);
        assert!(PaymentRecord::decode(&bytes).is_err(), "trailing bytes");
        assert!(PaymentRecord::decode(&[9, 9]).is_err(), "unknown format");
    }

    #[test]
    fn payment_records_of_format_1_are_still_read() {
        // As the engine wrote them before records had types of their own:
        // the wire's pay response of that time, then the card keys.
        let approved_v1 = format!(
            "01 00 00 00 BC 05 AC 02 02 01 F4 03 00 02 C8 01 AC 02 00 02 {} {}",
            repeated("01", 16),
            repeated("02", 16)
        );
        let declined_v1 = format!(
            "01 01 01 03 01 01 84 07 F4 03 00 00 01 {}",
            repeated("01", 16)
        );
        let bytes = |text: &str| -> Vec<u8> {
            text.split(' ')
                .map(|b| u8::from_str_radix(b, 16).expect("hex"))
                .collect()
        };
        assert_eq!(
            PaymentRecord::decode(&bytes(&approved_v1)),
            Ok(approved_700())
        );
        let declined = PaymentRecord::decode(&bytes(&declined_v1)).expect("decode");
        assert_eq!(
            declined.outcome,
            RecordedOutcome::Declined {
                reason: DeclineReason::InsufficientFunds,
                position: Position::from_number(1),
                available_minor: 500,
            }
        );
        assert_eq!(declined.cards[0].key, PinKey([1; 16]));
    }
}
