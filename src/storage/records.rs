//! Byte layouts of everything kept in RocksDB, in storage's own types.
//!
//! Nothing here is a wire type: a change to the protocol cannot change what
//! is on disk, and every layout carries a format byte so an old record is
//! still read after an upgrade. Golden-byte tests pin one record of each
//! column family.
//!
//! Fixed-width little-endian values for the hot records (cards, book rows):
//! no allocation to encode, and a length check is the whole of validation.
//! Payment outcomes and holds vary in length (one entry per card) and use
//! postcard behind the format byte.
//!
//! | column family | key                                   | value                 |
//! |---------------|---------------------------------------|-----------------------|
//! | `cards`       | pin key (16)                          | [`CARD_VALUE_BYTES`]  |
//! | `payments`    | merchant u32 BE, request u64 BE (12)  | format 2, postcard    |
//! | `holds`       | payment id (12), pin key (16)         | format 1, postcard    |
//! | `books`       | kind u8, id u32 BE, shard u16 BE (7)  | amount u64 LE         |
//! | `meta`        | ascii name                            | bytes                 |
//! | `principals`  | principal id u32 BE (4)               | format 1, postcard    |
//! | `refunds`     | refund id: merchant, request (12)     | format 1, postcard    |
//! | `refunded`    | payment id (12)                       | format 1, postcard    |
//! | `credits`     | refund id (12), pin key (16)          | amount u64 LE         |
//! | `reversals`   | pin key (16), store u32 BE, POS u64 BE | amount u64 LE        |
//! | `operations`  | capture/void id (12)                  | format 1, postcard    |
//! | `authorizations` | expires-at ms u64 BE, payment id (12) | empty (an index)  |
//! | `remittances` | operator u32 BE, request u64 BE (12)  | format 1, postcard    |
//! | `payouts`     | merchant u32 BE, seq u64 BE (12)      | format 1, postcard    |
//! | `payout_requests` | operator u32 BE, request u64 BE (12) | merchant u32, seq u64 LE |
//! | `store_journal` | store u32, ms u64, kind u8, subject u64, ref u64 (BE, 29) | amount u64 LE |

use crate::card::{Card, CardState, DeclineReason};
use crate::ids::{CardRef, PAYMENT_ID_BYTES, PaymentId, Position, RefundId, ShardId};
use crate::pin::{PIN_KEY_BYTES, PinKey};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ cards

/// format, state, store u32, face u64, balance u64, POS reference u64,
/// activated-at ms u64, validity days u16.
pub(crate) const CARD_VALUE_BYTES: usize = 1 + 1 + 4 + 8 + 8 + 8 + 8 + 2;
const CARD_FORMAT: u8 = 3;
const _: () = assert!(CARD_VALUE_BYTES == 40);
/// Format 2, before the validity was kept: the first 38 bytes.
const CARD_FORMAT_V2: u8 = 2;
const CARD_VALUE_BYTES_V2: usize = 38;
/// Format 1, before the activation time was kept: the first 30 bytes.
const CARD_FORMAT_V1: u8 = 1;
const CARD_VALUE_BYTES_V1: usize = 30;

pub(crate) fn encode_card(card: &Card) -> [u8; CARD_VALUE_BYTES] {
    // Holds are not part of the card record: they live in `holds` and are
    // resolved before shards start, so a stored card never carries one.
    let mut out = [0u8; CARD_VALUE_BYTES];
    out[0] = CARD_FORMAT;
    out[1] = card.state as u8;
    out[2..6].copy_from_slice(&card.store_id.to_le_bytes());
    out[6..14].copy_from_slice(&card.face_value_minor.to_le_bytes());
    out[14..22].copy_from_slice(&card.balance_minor.to_le_bytes());
    out[22..30].copy_from_slice(&card.pos_ref.to_le_bytes());
    out[30..38].copy_from_slice(&card.activated_at_ms.to_le_bytes());
    out[38..40].copy_from_slice(&card.validity_days.to_le_bytes());
    out
}

/// Reads format 3, and formats 2 and 1 (their cards never expire, and
/// format 1's carry activation time 0: they are outside every window that
/// counts from the sale).
pub(crate) fn decode_card(bytes: &[u8]) -> Result<Card, String> {
    let (activated_at_ms, validity_days) = match (bytes.first(), bytes.len()) {
        (Some(&CARD_FORMAT), CARD_VALUE_BYTES) => (
            u64_at(bytes, 30),
            u16::from_le_bytes([bytes[38], bytes[39]]),
        ),
        (Some(&CARD_FORMAT_V2), CARD_VALUE_BYTES_V2) => (u64_at(bytes, 30), 0),
        (Some(&CARD_FORMAT_V1), CARD_VALUE_BYTES_V1) => (0, 0),
        _ => {
            return Err(format!(
                "card record of {} bytes, format {:?}",
                bytes.len(),
                bytes.first()
            ));
        }
    };
    let state = CardState::from_u8(bytes[1]).ok_or_else(|| format!("card state {}", bytes[1]))?;
    let card = Card {
        state,
        store_id: u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
        face_value_minor: u64_at(bytes, 6),
        balance_minor: u64_at(bytes, 14),
        held_minor: 0,
        pos_ref: u64_at(bytes, 22),
        activated_at_ms,
        validity_days,
        declined: false,
    };
    card.check()
        .map_err(|broken| format!("stored card breaks an invariant: {broken}"))?;
    Ok(card)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(crate) fn decode_pin_key(bytes: &[u8]) -> Result<PinKey, String> {
    let key: [u8; PIN_KEY_BYTES] = bytes
        .try_into()
        .map_err(|_| format!("pin key of {} bytes", bytes.len()))?;
    Ok(PinKey(key))
}

// ------------------------------------------------------------------ holds

pub(crate) const HOLD_KEY_BYTES: usize = PAYMENT_ID_BYTES + PIN_KEY_BYTES;

pub(crate) fn hold_key(payment: PaymentId, card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    id_and_card_key(payment.to_bytes(), card)
}

pub fn decode_hold_key(bytes: &[u8]) -> Result<(PaymentId, PinKey), String> {
    let (id, card) = split_id_and_card_key(bytes, "hold")?;
    let payment = PaymentId::from_bytes(id).ok_or_else(|| "hold key payment id".to_string())?;
    Ok((payment, card))
}

/// A hold's or a credit's key: an encoded id (a payment's or a refund's),
/// then the card's key.
fn id_and_card_key(id: [u8; PAYMENT_ID_BYTES], card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    let mut out = [0u8; HOLD_KEY_BYTES];
    out[..PAYMENT_ID_BYTES].copy_from_slice(&id);
    out[PAYMENT_ID_BYTES..].copy_from_slice(&card.0);
    out
}

fn split_id_and_card_key<'a>(bytes: &'a [u8], what: &str) -> Result<(&'a [u8], PinKey), String> {
    if bytes.len() != HOLD_KEY_BYTES {
        return Err(format!("{what} key of {} bytes", bytes.len()));
    }
    let (id, card) = bytes.split_at(PAYMENT_ID_BYTES);
    Ok((id, decode_pin_key(card)?))
}

const HOLD_FORMAT: u8 = 1;

/// A durable hold: the amount reserved on one card for one prepared payment,
/// plus the payment's description (amount and every card, in order). The
/// description lets recovery write a complete abort record for a payment
/// whose coordinator died before deciding, so a retry is recognised as the
/// same payment and answered with that definitive outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub hold_minor: u64,
    pub amount_minor: u64,
    pub card_keys: Vec<[u8; PIN_KEY_BYTES]>,
}

impl HoldRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(HOLD_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<HoldRecord, String> {
        decode_versioned(HOLD_FORMAT, bytes, "hold record")
    }
}

/// Appends a format byte and the postcard encoding of `value`.
fn encode_versioned<T: Serialize>(format: u8, value: &T, out: &mut Vec<u8>) {
    out.push(format);
    crate::encoding::append(value, out).expect("records of plain data always serialize");
}

/// Checks the format byte and decodes the rest, all of it.
fn decode_versioned<'a, T: Deserialize<'a>>(
    format: u8,
    bytes: &'a [u8],
    what: &str,
) -> Result<T, String> {
    match bytes.split_first() {
        Some((&found, body)) if found == format => decode_all(body, what),
        _ => Err(format!("{what} with unknown format")),
    }
}

fn decode_all<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, String> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(format!("{what}: trailing bytes")),
        Err(error) => Err(format!("{what}: {error}")),
    }
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    let word: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("u64 value of {} bytes", bytes.len()))?;
    Ok(u64::from_le_bytes(word))
}

// ------------------------------------------------------------------ books

/// Which book a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BookKind {
    /// What a store owes the center for cards it activated.
    StoreOwed = 1,
    /// What the center owes a merchant for payments it approved.
    MerchantOwed = 2,
    /// What refunds took back from a merchant. Books only ever grow (a
    /// shard's share of an account can be smaller than a debit after the
    /// shares were merged at start), so a refund is a credit here and the
    /// merchant is owed `MerchantOwed - MerchantRefunded`.
    MerchantRefunded = 3,
    /// What reversed activations took off a store's debt: the store owes
    /// `StoreOwed - StoreReversed`.
    StoreReversed = 4,
    /// What expired cards still carried, by the store that sold them: the
    /// center keeps it (and a refund of a payment from an expired card
    /// lands here too, as the card can no longer hold it).
    Breakage = 5,
    /// What store HQs paid the center toward a store's debt: the store
    /// owes `StoreOwed - StoreReversed - StoreRemitted`.
    StoreRemitted = 6,
    /// What payouts paid a merchant: the center owes it
    /// `MerchantOwed - MerchantRefunded - MerchantPaidOut - Fees`.
    MerchantPaidOut = 7,
    /// The center's fees, by the merchant they were taken from.
    Fees = 8,
}

impl BookKind {
    pub const ALL: [BookKind; 8] = [
        BookKind::StoreOwed,
        BookKind::MerchantOwed,
        BookKind::MerchantRefunded,
        BookKind::StoreReversed,
        BookKind::Breakage,
        BookKind::StoreRemitted,
        BookKind::MerchantPaidOut,
        BookKind::Fees,
    ];

    fn from_u8(value: u8) -> Option<BookKind> {
        BookKind::ALL.into_iter().find(|kind| *kind as u8 == value)
    }
}

pub(crate) const BOOK_KEY_BYTES: usize = 1 + 4 + 2;

/// One shard's share of one account, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookRow {
    pub kind: BookKind,
    pub account_id: u32,
    pub shard: ShardId,
    pub amount_minor: u64,
}

/// A book row is one shard's share of one account. Each shard writes only
/// its own rows, in the same atomic batch as the card change that moves the
/// money, so books and cards can never disagree; a report sums the shares.
pub(crate) fn book_key(kind: BookKind, account_id: u32, shard: ShardId) -> [u8; BOOK_KEY_BYTES] {
    let mut out = [0u8; BOOK_KEY_BYTES];
    out[0] = kind as u8;
    out[1..5].copy_from_slice(&account_id.to_be_bytes());
    out[5..7].copy_from_slice(&shard.0.to_be_bytes());
    out
}

pub(crate) fn decode_book_row(key: &[u8], value: &[u8]) -> Result<BookRow, String> {
    if key.len() != BOOK_KEY_BYTES {
        return Err(format!("book key of {} bytes", key.len()));
    }
    let kind = BookKind::from_u8(key[0]).ok_or_else(|| format!("book kind {}", key[0]))?;
    Ok(BookRow {
        kind,
        account_id: u32::from_be_bytes([key[1], key[2], key[3], key[4]]),
        shard: ShardId(u16::from_be_bytes([key[5], key[6]])),
        amount_minor: decode_u64(value)?,
    })
}

// ------------------------------------------------------------- principals

const PRINCIPAL_FORMAT: u8 = 1;

/// Who may talk to the engine, as stored: the role's one-byte code, the
/// stored form of the key (never the secret), the stores of a store HQ,
/// and whether it was revoked (kept, so an id is never reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    pub role_code: u8,
    pub stored_key: [u8; 32],
    pub stores: Vec<u32>,
    pub revoked: bool,
}

impl PrincipalRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(PRINCIPAL_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<PrincipalRecord, String> {
        decode_versioned(PRINCIPAL_FORMAT, bytes, "principal record")
    }
}

pub fn decode_principal_id(bytes: &[u8]) -> Result<u32, String> {
    let id: [u8; 4] = bytes
        .try_into()
        .map_err(|_| format!("principal id of {} bytes", bytes.len()))?;
    Ok(u32::from_be_bytes(id))
}

// --------------------------------------------------------------- payments

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

// -------------------------------------------------------------- reversals

pub(crate) const REVERSAL_KEY_BYTES: usize = PIN_KEY_BYTES + 4 + 8;

/// A reversed sale of a card, kept for good: that sale can never activate
/// the card (its activation may arrive after the reversal), and a retried
/// reversal is answered from it. The value is what the reversal took off
/// the store's debt (the face value, or 0 when the activation was never
/// seen).
pub(crate) fn reversal_key(card: &PinKey, store_id: u32, pos_ref: u64) -> [u8; REVERSAL_KEY_BYTES] {
    let mut out = [0u8; REVERSAL_KEY_BYTES];
    out[..PIN_KEY_BYTES].copy_from_slice(&card.0);
    out[PIN_KEY_BYTES..PIN_KEY_BYTES + 4].copy_from_slice(&store_id.to_be_bytes());
    out[PIN_KEY_BYTES + 4..].copy_from_slice(&pos_ref.to_be_bytes());
    out
}

pub(crate) fn decode_reversal_key(bytes: &[u8]) -> Result<(PinKey, u32, u64), String> {
    if bytes.len() != REVERSAL_KEY_BYTES {
        return Err(format!("reversal key of {} bytes", bytes.len()));
    }
    let card = decode_pin_key(&bytes[..PIN_KEY_BYTES])?;
    let mut store = [0u8; 4];
    store.copy_from_slice(&bytes[PIN_KEY_BYTES..PIN_KEY_BYTES + 4]);
    let mut pos = [0u8; 8];
    pos.copy_from_slice(&bytes[PIN_KEY_BYTES + 4..]);
    Ok((card, u32::from_be_bytes(store), u64::from_be_bytes(pos)))
}

// ---------------------------------------------------------- store journal

pub(crate) const JOURNAL_KEY_BYTES: usize = 4 + 8 + 1 + 8 + 8;

/// What moved a store's debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum JournalKind {
    Activation = 1,
    Reversal = 2,
    Remittance = 3,
}

/// One entry of a store's journal: when, what, about what (a card's key
/// prefix, or the operator of a remittance) and its reference (the sale's
/// POS reference, or the remittance's request id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalEntry {
    pub at_ms: u64,
    pub kind: JournalKind,
    pub subject: u64,
    pub reference: u64,
}

/// A store journal entry's key: the store, then the entry, all big-endian
/// so a store's entries sort by time and a period is one key range.
pub fn journal_key(store_id: u32, entry: &JournalEntry) -> [u8; JOURNAL_KEY_BYTES] {
    let mut out = [0u8; JOURNAL_KEY_BYTES];
    out[..4].copy_from_slice(&store_id.to_be_bytes());
    out[4..12].copy_from_slice(&entry.at_ms.to_be_bytes());
    out[12] = entry.kind as u8;
    out[13..21].copy_from_slice(&entry.subject.to_be_bytes());
    out[21..].copy_from_slice(&entry.reference.to_be_bytes());
    out
}

pub fn decode_journal_key(bytes: &[u8]) -> Result<(u32, JournalEntry), String> {
    if bytes.len() != JOURNAL_KEY_BYTES {
        return Err(format!("journal key of {} bytes", bytes.len()));
    }
    let be = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(word)
    };
    let kind = match bytes[12] {
        1 => JournalKind::Activation,
        2 => JournalKind::Reversal,
        3 => JournalKind::Remittance,
        other => return Err(format!("journal entry kind {other}")),
    };
    let store = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let entry = JournalEntry {
        at_ms: be(4),
        kind,
        subject: be(13),
        reference: be(21),
    };
    Ok((store, entry))
}

impl JournalEntry {
    /// A card's entry (an activation or a reversal of the sale `pos_ref`).
    pub fn of_card(kind: JournalKind, card: &PinKey, pos_ref: u64, at_ms: u64) -> JournalEntry {
        JournalEntry {
            at_ms,
            kind,
            subject: card_subject(card),
            reference: pos_ref,
        }
    }
}

/// The subject of a card's journal entries: its key's first 8 bytes.
pub fn card_subject(card: &PinKey) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&card.0[..8]);
    u64::from_be_bytes(word)
}

// ---------------------------------------------------------------- payouts

const PAYOUT_FORMAT: u8 = 1;

/// A payout, as stored (the wire's `PayoutInfo` is built from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRecord {
    pub from_ms: u64,
    pub until_ms: u64,
    pub payments: u64,
    pub payments_minor: u64,
    pub refunds: u64,
    pub refunds_minor: u64,
    pub fee_bps: u32,
    pub fee_minor: u64,
    pub carried_in_minor: u64,
    pub amount_minor: u64,
    pub carried_out_minor: u64,
    pub created_at_ms: u64,
    pub confirmed_reference: Option<String>,
    pub confirmed_at_ms: u64,
}

impl PayoutRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(PAYOUT_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<PayoutRecord, String> {
        decode_versioned(PAYOUT_FORMAT, bytes, "payout record")
    }
}

/// A merchant's payout `seq`: keys sort by merchant, then seq.
pub fn payout_key(merchant_id: u32, seq: u64) -> [u8; PAYMENT_ID_BYTES] {
    PaymentId {
        merchant_id,
        request_id: seq,
    }
    .to_bytes()
}

pub fn decode_payout_key(bytes: &[u8]) -> Result<(u32, u64), String> {
    let id = PaymentId::from_bytes(bytes)
        .ok_or_else(|| format!("payout key of {} bytes", bytes.len()))?;
    Ok((id.merchant_id, id.request_id))
}

/// The key prefix of everything a merchant (or any principal) owns in a
/// family keyed by principal first: payments, refunds, payouts.
pub fn principal_prefix(principal: u32) -> [u8; 4] {
    principal.to_be_bytes()
}

/// The payout a payout request made: merchant u32 LE, seq u64 LE.
pub fn encode_payout_ref(merchant_id: u32, seq: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&merchant_id.to_le_bytes());
    out[4..].copy_from_slice(&seq.to_le_bytes());
    out
}

pub fn decode_payout_ref(bytes: &[u8]) -> Result<(u32, u64), String> {
    if bytes.len() != 12 {
        return Err(format!("payout reference of {} bytes", bytes.len()));
    }
    let merchant = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok((merchant, u64_at(bytes, 4)))
}

// ------------------------------------------------------------ remittances

const REMITTANCE_FORMAT: u8 = 1;

/// A remittance: a store HQ paid the center, allocated to its stores. The
/// idempotency record; the allocations are credited to the stores'
/// `StoreRemitted` books in the same write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemittanceRecord {
    pub store_hq_id: u32,
    pub amount_minor: u64,
    pub reference: String,
    pub at_ms: u64,
    /// (store, amount), ascending by store.
    pub allocations: Vec<(u32, u64)>,
    /// What the HQ's stores owed just before it.
    pub owed_before_minor: u64,
}

impl RemittanceRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(REMITTANCE_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<RemittanceRecord, String> {
        decode_versioned(REMITTANCE_FORMAT, bytes, "remittance record")
    }
}

// ------------------------------------------------------------ authorizations

const OPERATION_FORMAT: u8 = 1;

/// A capture or void that closed an authorization, under its own id: the
/// idempotency record of the operation (its effect is the authorization's
/// payment record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub authorization_request_id: u64,
    /// What was captured; `None` for a void.
    pub captured_minor: Option<u64>,
}

impl OperationRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(OPERATION_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<OperationRecord, String> {
        decode_versioned(OPERATION_FORMAT, bytes, "operation record")
    }
}

pub(crate) const AUTHORIZATION_KEY_BYTES: usize = 8 + PAYMENT_ID_BYTES;

/// An open authorization in the index of deadlines: ordered by when it is
/// to be released, so start-up finds them all without reading payments.
pub(crate) fn authorization_key(
    expires_at_ms: u64,
    authorization: PaymentId,
) -> [u8; AUTHORIZATION_KEY_BYTES] {
    let mut out = [0u8; AUTHORIZATION_KEY_BYTES];
    out[..8].copy_from_slice(&expires_at_ms.to_be_bytes());
    out[8..].copy_from_slice(&authorization.to_bytes());
    out
}

pub fn decode_authorization_key(bytes: &[u8]) -> Result<(u64, PaymentId), String> {
    if bytes.len() != AUTHORIZATION_KEY_BYTES {
        return Err(format!("authorization key of {} bytes", bytes.len()));
    }
    let authorization = PaymentId::from_bytes(&bytes[8..])
        .ok_or_else(|| "authorization key payment id".to_string())?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[..8]);
    Ok((u64::from_be_bytes(at), authorization))
}

// ------------------------------------------------------------ PIN guard

/// A record of the PIN-guessing guard (`auth::guard`): one counted
/// failure, or a lock. Failures: key `principal u32 BE | at_ms u64 BE |
/// seq u64 BE`, empty value (one record each, so shards never overwrite
/// one another's). A lock: key `principal u32 BE`, value `until_ms u64
/// LE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardRecord {
    Failure {
        principal: u32,
        at_ms: u64,
        seq: u64,
    },
    Lock {
        principal: u32,
        until_ms: u64,
    },
}

pub(crate) const PIN_FAILURE_KEY_BYTES: usize = 4 + 8 + 8;

pub(crate) fn pin_failure_key(principal: u32, at_ms: u64, seq: u64) -> [u8; PIN_FAILURE_KEY_BYTES] {
    let mut out = [0u8; PIN_FAILURE_KEY_BYTES];
    out[..4].copy_from_slice(&principal.to_be_bytes());
    out[4..12].copy_from_slice(&at_ms.to_be_bytes());
    out[12..].copy_from_slice(&seq.to_be_bytes());
    out
}

pub(crate) fn lock_key(principal: u32) -> [u8; 4] {
    principal.to_be_bytes()
}

pub fn decode_guard(key: &[u8], value: &[u8]) -> Result<GuardRecord, String> {
    let be = |at: usize| u64::from_be_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    match key.len() {
        PIN_FAILURE_KEY_BYTES if value.is_empty() => Ok(GuardRecord::Failure {
            principal: u32::from_be_bytes(key[..4].try_into().expect("4 bytes")),
            at_ms: be(4),
            seq: be(12),
        }),
        4 => Ok(GuardRecord::Lock {
            principal: u32::from_be_bytes(key.try_into().expect("4 bytes")),
            until_ms: decode_u64(value)?,
        }),
        length => Err(format!(
            "PIN guard record with a {length}-byte key and a {}-byte value",
            value.len()
        )),
    }
}

// ---------------------------------------------------------------- refunds

const REFUND_FORMAT: u8 = 1;

/// An approved refund, under its own id (the merchant and the refund's
/// request id): the idempotency record, and the two-phase decision its
/// credits are applied from. Declined refunds change nothing and are not
/// recorded (a retry is declined again: what a payment has left to refund
/// only ever shrinks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    /// The refunded payment's request id (same merchant).
    pub payment_request_id: u64,
    pub amount_minor: u64,
    pub at_ms: u64,
    /// Per card of the payment, in the payment's order: its last digits
    /// and what this refund gave back to it.
    pub parts: Vec<RefundPart>,
    /// Everything refunded from the payment, this refund included.
    pub payment_refunded_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPart {
    pub pin_last4: u16,
    pub refunded_minor: u64,
}

impl RefundRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(REFUND_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<RefundRecord, String> {
        decode_versioned(REFUND_FORMAT, bytes, "refund record")
    }
}

const REFUNDED_FORMAT: u8 = 1;

/// What a payment's refunds have given back so far, per card in the
/// payment's order. Kept beside the payment (never in its record, which is
/// the payment's first answer, replayed as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunds {
    pub refunded_minor: Vec<u64>,
}

impl PaymentRefunds {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(REFUNDED_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<PaymentRefunds, String> {
        decode_versioned(REFUNDED_FORMAT, bytes, "payment refunds")
    }
}

/// A credit a decided refund owes one card, until its shard applies it
/// (deleting this in the same write). Key: refund id, card.
/// A refund credit's key: laid out as a hold's, with the refund's id in
/// the payment's place.
pub(crate) fn credit_key(refund: RefundId, card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    id_and_card_key(refund.to_bytes(), card)
}

pub(crate) fn decode_credit_key(bytes: &[u8]) -> Result<(RefundId, PinKey), String> {
    let (id, card) = split_id_and_card_key(bytes, "credit")?;
    let refund = RefundId::from_bytes(id).ok_or_else(|| "credit key refund id".to_string())?;
    Ok((refund, card))
}

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

/// The serde shapes of payment records on disk, frozen per format.
mod disk {
    use super::*;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn repeated(byte: &str, times: usize) -> String {
        vec![byte; times].join(" ")
    }

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
    fn a_card_record_has_pinned_bytes() {
        let mut card = Card::issued(3000);
        card.activate(12, 345, 1_700_000_000_000, 365)
            .expect("activate");
        card.debit(1000).expect("debit");
        let bytes = encode_card(&card);
        assert_eq!(
            hex(&bytes),
            "03 02 0C 00 00 00 B8 0B 00 00 00 00 00 00 D0 07 00 00 00 00 00 00 59 01 00 00 00 00 00 00 \
             00 68 E5 CF 8B 01 00 00 6D 01"
        );
        assert_eq!(decode_card(&bytes), Ok(card));
        assert!(decode_card(&[1, 2, 3]).is_err());
        // Format 2, before the validity was kept: such cards never expire.
        let mut v2 = bytes[..38].to_vec();
        v2[0] = 2;
        let old = decode_card(&v2).expect("format 2 is still read");
        assert_eq!(
            old,
            Card {
                validity_days: 0,
                ..card
            }
        );
        // Format 1, as written before the activation time was kept.
        let mut v1 = bytes[..30].to_vec();
        v1[0] = 1;
        let old = decode_card(&v1).expect("format 1 is still read");
        let expected = Card {
            activated_at_ms: 0,
            validity_days: 0,
            ..card
        };
        assert_eq!(old, expected);
        v1.push(0);
        assert!(decode_card(&v1).is_err(), "format 1 is 30 bytes");
        let mut broken = bytes;
        broken[14..22].copy_from_slice(&9999u64.to_le_bytes());
        assert!(
            decode_card(&broken).is_err(),
            "balance above face is refused"
        );
    }

    #[test]
    fn a_payment_record_has_pinned_bytes() {
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
        // An open authorization: outcome 2, then its terms.
        let open = PaymentRecord {
            outcome: RecordedOutcome::Authorized,
            authorization: Some(AuthorizationTerms {
                held_minor: vec![500, 200],
                expires_at_ms: 9,
            }),
            ..approved.clone()
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
        assert_eq!(decoded.take_for(&PinKey([2; 16])), Some(200));
        assert_eq!(decoded.take_for(&PinKey([3; 16])), None);

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

    #[test]
    fn refund_records_have_pinned_bytes() {
        let record = RefundRecord {
            payment_request_id: 7,
            amount_minor: 300,
            at_ms: 1_700_000_000_000,
            parts: vec![
                RefundPart {
                    pin_last4: 1,
                    refunded_minor: 0,
                },
                RefundPart {
                    pin_last4: 2,
                    refunded_minor: 300,
                },
            ],
            payment_refunded_minor: 300,
        };
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(
            hex(&bytes),
            "01 07 AC 02 80 D0 95 FF BC 31 02 01 00 02 AC 02 AC 02"
        );
        assert_eq!(RefundRecord::decode(&bytes), Ok(record));
        let refunded = PaymentRefunds {
            refunded_minor: vec![0, 300],
        };
        let mut bytes = Vec::new();
        refunded.encode_into(&mut bytes);
        assert_eq!(hex(&bytes), "01 02 00 AC 02");
        assert_eq!(PaymentRefunds::decode(&bytes), Ok(refunded));
        let refund = RefundId {
            merchant_id: 3,
            request_id: 9,
        };
        let key = credit_key(refund, &PinKey([7; 16]));
        // Laid out as a hold of the payment with the same numbers: the
        // on-disk format did not change when the id became its own type.
        let payment = PaymentId {
            merchant_id: 3,
            request_id: 9,
        };
        assert_eq!(key, hold_key(payment, &PinKey([7; 16])));
        assert_eq!(decode_credit_key(&key), Ok((refund, PinKey([7; 16]))));
        let key = reversal_key(&PinKey([7; 16]), 42, 9);
        assert_eq!(
            hex(&key),
            format!("{} 00 00 00 2A 00 00 00 00 00 00 00 09", repeated("07", 16))
        );
        assert_eq!(decode_reversal_key(&key), Ok((PinKey([7; 16]), 42, 9)));
        assert!(decode_reversal_key(&key[1..]).is_err());
        assert!(RefundRecord::decode(&[2]).is_err());
    }

    #[test]
    fn a_hold_record_has_pinned_bytes() {
        let payment = PaymentId {
            merchant_id: 3,
            request_id: 4,
        };
        let card = PinKey([7; 16]);
        let key = hold_key(payment, &card);
        assert_eq!(
            hex(&key),
            format!("00 00 00 03 00 00 00 00 00 00 00 04 {}", repeated("07", 16))
        );
        assert_eq!(decode_hold_key(&key), Ok((payment, card)));
        let hold = HoldRecord {
            hold_minor: 300,
            amount_minor: 800,
            card_keys: vec![[7; 16], [8; 16]],
        };
        let mut bytes = Vec::new();
        hold.encode_into(&mut bytes);
        assert_eq!(
            hex(&bytes),
            format!(
                "01 AC 02 A0 06 02 {} {}",
                repeated("07", 16),
                repeated("08", 16)
            )
        );
        assert_eq!(HoldRecord::decode(&bytes), Ok(hold));
        assert!(HoldRecord::decode(&[]).is_err());
    }

    #[test]
    fn a_principal_record_has_pinned_bytes() {
        let record = PrincipalRecord {
            role_code: 2,
            stored_key: [0xAB; 32],
            stores: vec![42, 300],
            revoked: false,
        };
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(
            hex(&bytes),
            format!("01 02 {} 02 2A AC 02 00", repeated("AB", 32))
        );
        assert_eq!(PrincipalRecord::decode(&bytes), Ok(record));
        assert_eq!(decode_principal_id(&5u32.to_be_bytes()), Ok(5));
        assert!(PrincipalRecord::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn a_book_row_has_pinned_bytes() {
        let key = book_key(BookKind::MerchantOwed, 9, ShardId(2));
        assert_eq!(hex(&key), "02 00 00 00 09 00 02");
        let value = 700u64.to_le_bytes();
        assert_eq!(hex(&value), "BC 02 00 00 00 00 00 00");
        assert_eq!(
            decode_book_row(&key, &value),
            Ok(BookRow {
                kind: BookKind::MerchantOwed,
                account_id: 9,
                shard: ShardId(2),
                amount_minor: 700,
            })
        );
        assert!(decode_book_row(&key[..6], &value).is_err());
        assert!(decode_book_row(&[9, 0, 0, 0, 9, 0, 2], &value).is_err());
    }
}
