//! What a shard is asked to do, what it answers, and where answers go.

use crate::card::DeclineReason;
use crate::gateway::ConnTx;
use crate::ids::{PaymentId, StoreId};
use crate::ledger::ShardLedger;
use crate::pin::{PIN_KEY_BYTES, PinKey};
use crate::protocol::{ActivationResult, Response, ShardStats};
use crate::storage::records::StoredPayment;
use tokio::sync::oneshot;

/// A card as a payment names it: its key, and its last four digits for the
/// reply (the shard never sees the PIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardRef {
    pub key: PinKey,
    pub last4: u16,
}

/// One operation on one shard. Every card an op names lives on that shard.
#[derive(Debug)]
pub enum Op {
    /// Register a new (issued, worthless) card; answers `Inserted(false)` if
    /// the key already exists.
    Insert {
        key: PinKey,
        face_value_minor: u64,
    },
    Activate {
        key: PinKey,
        store_id: StoreId,
        pos_ref: u64,
    },
    /// A payment whose cards all live on this shard: decided and applied in
    /// one local atomic step, no two-phase commit.
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
    },
    Balance {
        key: PinKey,
    },
    /// Two-phase commit, phase one: hold up to the payment's amount across
    /// these cards (in order) and vote.
    Prepare {
        payment: PaymentId,
        amount_minor: u64,
        /// (1-based position in the payment, card): this shard's cards.
        cards: Vec<(u8, CardRef)>,
        /// Every card of the payment, in order (kept in the hold records).
        all_cards: Vec<[u8; PIN_KEY_BYTES]>,
    },
    /// Phase two, commit: turn each card's hold into a debit of `take`.
    Commit {
        payment: PaymentId,
        takes: Vec<(PinKey, u64)>,
    },
    /// Phase two, abort: release this payment's holds on these cards.
    Abort {
        payment: PaymentId,
        keys: Vec<PinKey>,
    },
    /// Make a coordinator's decision durable (the home shard of the payment
    /// writes it through its group commit).
    RecordDecision {
        payment: PaymentId,
        stored: Box<StoredPayment>,
    },
    /// A snapshot of cards, books and holds for reports and audits.
    Ledger,
    Stats,
}

/// A shard's vote in phase one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// Holds placed: (position, held, card balance at prepare).
    Yes { holds: Vec<(u8, u64, u64)> },
    /// The card at `position` cannot pay; nothing was held.
    No { position: u8, reason: DeclineReason },
}

/// The answer to one [`Op`].
#[derive(Debug)]
pub enum Outcome {
    /// A final wire response (payments and balance inquiries).
    Response(Response),
    Inserted(bool),
    Activation(ActivationResult),
    Vote(Vote),
    /// Commit, abort or decision applied.
    Done,
    Ledger(Box<ShardLedger>),
    Stats(ShardStats),
}

/// Results of one batch, tagged with the caller's tags (correlation ids for
/// a connection, indexes for a gathering future).
pub type Results = Vec<(u64, Outcome)>;

/// Where a batch's results go once they are durable.
pub enum Origin {
    /// Straight to a client connection's writer.
    Connection(ConnTx),
    /// To a future in the router that gathers results from several shards.
    Waiter(oneshot::Sender<Results>),
}

impl Origin {
    pub fn deliver(self, results: Results) {
        match self {
            // A closed connection or a gone waiter just drops the results:
            // the state change is durable either way, and a client that
            // retries gets the recorded outcome.
            Origin::Connection(tx) => {
                let _ = tx.send(crate::gateway::ConnMsg::Outcomes(results));
            }
            Origin::Waiter(tx) => {
                let _ = tx.send(results);
            }
        }
    }
}
