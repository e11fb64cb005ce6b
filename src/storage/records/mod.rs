//! Byte layouts of everything kept in RocksDB, in storage's own types.
//!
//! Nothing here is a wire type: a change to the protocol cannot change what
//! is on disk, and every layout carries a format byte so an old record is
//! still read after an upgrade. Golden-byte tests pin one record of each
//! column family; each sits beside the layout it pins.
//!
//! Fixed-width little-endian values for the hot records (cards, book rows):
//! no allocation to encode, and a length check is the whole of validation.
//! Payment outcomes and holds vary in length (one entry per card) and use
//! postcard behind the format byte.
//!
//! | column family | key                                   | value                 | file |
//! |---------------|---------------------------------------|-----------------------|------|
//! | `cards`       | pin key (16)                          | `CARD_VALUE_BYTES` (40) | `cards.rs` |
//! | `payments`    | merchant u32 BE, request u64 BE (12)  | format 4, postcard    | `payments.rs`, `payment_formats.rs` |
//! | `holds`       | payment id (12), pin key (16)         | format 1, postcard    | `holds.rs` |
//! | `books`       | kind u8, id u32 BE, shard u16 BE (7)  | amount u64 LE         | `books.rs` |
//! | `meta`        | ascii name                            | bytes                 | (`storage/mod.rs`) |
//! | `principals`  | principal id u32 BE (4)               | format 1, postcard    | `principals.rs` |
//! | `refunds`     | refund id: merchant, request (12)     | format 1, postcard    | `refunds.rs` |
//! | `refunded`    | payment id (12)                       | format 1, postcard    | `refunds.rs` |
//! | `credits`     | refund id (12), pin key (16)          | amount u64 LE         | `refunds.rs` |
//! | `reversals`   | pin key (16), store u32 BE, POS u64 BE | amount u64 LE        | `stores.rs` |
//! | `operations`  | capture/void id (12)                  | format 1, postcard    | `holds.rs` |
//! | `authorizations` | expires-at ms u64 BE, payment id (12) | empty (an index)  | `holds.rs` |
//! | `remittances` | operator u32 BE, request u64 BE (12)  | format 1, postcard    | `settlement.rs` |
//! | `payouts`     | merchant u32 BE, seq u64 BE (12)      | format 1, postcard    | `settlement.rs` |
//! | `payout_requests` | operator u32 BE, request u64 BE (12) | merchant u32, seq u64 LE | `settlement.rs` |
//! | `store_journal` | store u32, ms u64, kind u8, subject u64, ref u64 (BE, 29) | amount u64 LE | `stores.rs` |
//! | `pin_failures` | principal u32 BE, ms u64 BE, seq u64 BE (20); lock: principal (4) | empty; lock: until ms u64 LE | `principals.rs` |
//!
//! One file per concern, so a change to one record's layout (and its
//! golden bytes) touches one file, and the families that share a layout
//! share it visibly:
//!
//! * `codec.rs`: what every layout uses: the format byte before a postcard
//!   body, and the fixed-width fields.
//! * `cards.rs`, `books.rs`: the hot fixed-width records.
//! * `payments.rs`: a payment's outcome; `payment_formats.rs`: the frozen
//!   serde shapes of its formats 1 to 4 and the decline reasons' codes.
//! * `holds.rs`: what stands between prepare and decision: holds, open
//!   authorizations and the captures and voids that close them.
//! * `refunds.rs`: refunds, refunded amounts, credits (keyed as holds are).
//! * `stores.rs`: a store's side of a sale: reversals and the journal.
//! * `settlement.rs`: remittances and payouts.
//! * `principals.rs`: principals, the PIN guard's records, and the prefix
//!   of every family keyed by principal first.
//!
//! Everything is used through this module (`records::PaymentRecord`), never
//! through the files, which stay private.

mod books;
mod cards;
mod codec;
mod holds;
mod payment_formats;
mod payments;
mod principals;
mod refunds;
mod settlement;
mod stores;

pub use books::{BookKind, BookRow};
pub(crate) use books::{book_key, decode_book_row};
pub(crate) use cards::{decode_card, encode_card};
pub(crate) use codec::{decode_pin_key, decode_u64};
pub use holds::{HoldRecord, OperationRecord, decode_authorization_key, decode_hold_key};
pub(crate) use holds::{authorization_key, hold_key};
pub use payments::{AuthorizationTerms, PaymentRecord, RecordedOutcome, RecordedPart};
pub use principals::{
    GuardRecord, PrincipalRecord, decode_guard, decode_principal_id, principal_prefix,
};
pub(crate) use principals::{lock_key, pin_failure_key};
pub use refunds::{PaymentRefunds, RefundPart, RefundRecord};
pub(crate) use refunds::{credit_key, decode_credit_key};
pub use settlement::{
    PayoutRecord, RemittanceRecord, decode_payout_key, decode_payout_ref, encode_payout_ref,
    payout_key,
};
pub use stores::{JournalEntry, JournalKind, card_subject, decode_journal_key, journal_key};
pub(crate) use stores::{decode_reversal_key, reversal_key};

/// Helpers of the golden-byte tests in every file.
#[cfg(test)]
mod golden {
    pub(super) fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(super) fn repeated(byte: &str, times: usize) -> String {
        vec![byte; times].join(" ")
    }
}
