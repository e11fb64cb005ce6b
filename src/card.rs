//! The rules of one prepaid card, free of I/O so they can be tested alone.
//!
//! A card moves `Issued → Active → Exhausted`. An issued card is worthless: a
//! stolen, unsold card cannot pay. Activation (the store's POS read the card
//! at sale) sets the balance to the face value. Payments take from the
//! balance; when it reaches zero the card is exhausted, and a refund can
//! make it active again.
//!
//! A card expires `validity_days` after its activation (the validity in
//! force when it was sold, kept with it; 0: never). An expired card cannot
//! pay, and its balance moves to the breakage book of its store, so the
//! money is still accounted for (`Expired`, balance 0).
//!
//! A sale cancelled at the till is reversed: the card goes back to unsold
//! (`Reversed`). Its shard remembers every reversed sale (store, POS
//! reference) of the card, so that the activation of such a sale arriving
//! late (the store HQ never got its reply and reversed blindly) is
//! refused; another sale of the card activates it as usual.
//!
//! Two-phase commit adds holds: a prepared payment reserves part of the
//! balance (`held_minor`) so no other payment can spend it, then either turns
//! the hold into a debit or releases it. The invariant, checked after every
//! change and again by the audit:
//!
//! `held_minor <= balance_minor <= face_value_minor`, an issued card holds
//! nothing, and an exhausted card has a zero balance.

use serde::{Deserialize, Serialize};

/// Where a card is in its life. On the wire and on disk it is the same one
/// byte: 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum CardState {
    /// Printed and registered, not yet sold: worth nothing.
    Issued = 1,
    /// Sold at a store: spendable up to its balance.
    Active = 2,
    /// Balance spent to zero.
    Exhausted = 3,
    /// Unsold again: its sale (`store_id`, `pos_ref`) was reversed. Worth
    /// nothing, like an issued card.
    Reversed = 4,
    /// Past its validity: its balance went to breakage.
    Expired = 5,
}

/// Milliseconds in a day: validities are kept in days.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

impl CardState {
    pub(crate) fn from_u8(value: u8) -> Option<CardState> {
        match value {
            1 => Some(CardState::Issued),
            2 => Some(CardState::Active),
            3 => Some(CardState::Exhausted),
            4 => Some(CardState::Reversed),
            5 => Some(CardState::Expired),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CardState::Issued => "issued",
            CardState::Active => "active",
            CardState::Exhausted => "exhausted",
            CardState::Reversed => "reversed",
            CardState::Expired => "expired",
        }
    }

    /// Sold and not reversed: its face value is owed by its store.
    pub fn is_sold(self) -> bool {
        matches!(
            self,
            CardState::Active | CardState::Exhausted | CardState::Expired
        )
    }
}

impl From<CardState> for u8 {
    fn from(state: CardState) -> u8 {
        state as u8
    }
}

impl TryFrom<u8> for CardState {
    type Error = String;

    fn try_from(value: u8) -> Result<CardState, String> {
        CardState::from_u8(value).ok_or_else(|| format!("card state {value}"))
    }
}

/// Why a card operation was refused. These are answers, not errors: a
/// declined payment is a normal, recorded outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeclineReason {
    /// No card has this PIN.
    UnknownPin,
    /// The card exists but was never sold (activated).
    NotActive,
    /// Activation of a card that is already active (or spent).
    AlreadyActive,
    /// The card's (or cards') available balance is below the amount.
    InsufficientFunds,
    /// The card's balance is spent.
    Exhausted,
    /// A combined payment was aborted: a shard did not answer in time, or
    /// the engine stopped before the payment was decided.
    Aborted,
    /// What a merchant is told of a card that is unknown or not yet sold:
    /// the same answer for both, so a guesser cannot tell a printed, unsold
    /// card from a PIN that does not exist.
    InvalidCard,
    /// Activation of a sale that was reversed (possibly before the
    /// activation arrived).
    ActivationReversed,
    /// Reversal naming a store and POS reference other than the card's
    /// sale.
    NotThisSale,
    /// Reversal of a card from which money was spent or is held.
    AlreadySpent,
    /// The reversal or refund window has passed.
    WindowClosed,
    /// Refund of a payment that does not exist or was not approved.
    UnknownPayment,
    /// Refund of more than the payment has left to refund.
    ExceedsRefundable,
    /// The card is past its validity.
    Expired,
    /// Capture or void of an authorization the merchant does not have.
    UnknownAuthorization,
    /// Capture or void of an authorization already captured or voided.
    AuthorizationClosed,
    /// Capture of an authorization past its `authorization_ttl_ms` (its
    /// hold is, or is about to be, released).
    AuthorizationExpired,
    /// Capture of more than was authorized.
    ExceedsAuthorized,
    /// Remittance of more than the store HQ's stores owe.
    ExceedsOwed,
    /// A payout whose cut-off is not after the merchant's last payout's.
    PeriodClosed,
    /// A payout with no payment or refund in its period and nothing
    /// carried in.
    NothingToPay,
    /// An activation or reversal whose amount is not the card's face value
    /// (ISO 8583 DE 4): the till and the center disagree on what was sold.
    WrongAmount,
}

impl DeclineReason {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [DeclineReason; 22] = [
        DeclineReason::UnknownPin,
        DeclineReason::NotActive,
        DeclineReason::AlreadyActive,
        DeclineReason::InsufficientFunds,
        DeclineReason::Exhausted,
        DeclineReason::Aborted,
        DeclineReason::InvalidCard,
        DeclineReason::ActivationReversed,
        DeclineReason::NotThisSale,
        DeclineReason::AlreadySpent,
        DeclineReason::WindowClosed,
        DeclineReason::UnknownPayment,
        DeclineReason::ExceedsRefundable,
        DeclineReason::Expired,
        DeclineReason::UnknownAuthorization,
        DeclineReason::AuthorizationClosed,
        DeclineReason::AuthorizationExpired,
        DeclineReason::ExceedsAuthorized,
        DeclineReason::ExceedsOwed,
        DeclineReason::PeriodClosed,
        DeclineReason::NothingToPay,
        DeclineReason::WrongAmount,
    ];

    /// The stable snake_case name used in JSON output and docs.
    pub fn name(self) -> &'static str {
        match self {
            DeclineReason::UnknownPin => "unknown_pin",
            DeclineReason::NotActive => "not_active",
            DeclineReason::AlreadyActive => "already_active",
            DeclineReason::InsufficientFunds => "insufficient_funds",
            DeclineReason::Exhausted => "exhausted",
            DeclineReason::Aborted => "aborted",
            DeclineReason::InvalidCard => "invalid_card",
            DeclineReason::ActivationReversed => "activation_reversed",
            DeclineReason::NotThisSale => "not_this_sale",
            DeclineReason::AlreadySpent => "already_spent",
            DeclineReason::WindowClosed => "window_closed",
            DeclineReason::UnknownPayment => "unknown_payment",
            DeclineReason::ExceedsRefundable => "exceeds_refundable",
            DeclineReason::Expired => "expired",
            DeclineReason::UnknownAuthorization => "unknown_authorization",
            DeclineReason::AuthorizationClosed => "authorization_closed",
            DeclineReason::AuthorizationExpired => "authorization_expired",
            DeclineReason::ExceedsAuthorized => "exceeds_authorized",
            DeclineReason::ExceedsOwed => "exceeds_owed",
            DeclineReason::PeriodClosed => "period_closed",
            DeclineReason::NothingToPay => "nothing_to_pay",
            DeclineReason::WrongAmount => "wrong_amount",
        }
    }
}

/// The in-memory state of one card: 48 bytes, no pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Card {
    pub face_value_minor: u64,
    /// Money still on the card, holds included.
    pub balance_minor: u64,
    /// Part of the balance reserved by prepared two-phase payments.
    pub held_minor: u64,
    /// The store that sold the card (meaningful once activated).
    pub store_id: u32,
    /// The store's POS reference for the sale (0 when none was given).
    pub pos_ref: u64,
    /// When the sale was activated (engine clock, ms since the Unix
    /// epoch; 0 for cards stored before it was kept, and for unsold ones).
    pub activated_at_ms: u64,
    /// Days the card is valid from its activation, as configured when it
    /// was sold (0: it never expires). Fits the padding after `state`.
    pub validity_days: u16,
    pub state: CardState,
    /// A payment was declined naming this card since its balance last
    /// changed. Another such decline counts as a PIN failure of whoever
    /// sent it ([`Card::note_decline`]). Kept in memory only, in the last
    /// byte of padding.
    pub declined: bool,
}

const _: () = assert!(std::mem::size_of::<Card>() == 48, "a card is 48 bytes");

/// What an activation did to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sale {
    /// The card was sold now: it carries its face value.
    New,
    /// The card was already sold by this very sale (same store, same
    /// nonzero POS reference): a store HQ retrying after a lost reply.
    /// Nothing changes, and the HQ is told it is sold, as the first time.
    Replayed,
}

/// What a reversal did to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reversal {
    /// The sale was activated here; it is undone and the store owes its
    /// face value no more.
    Undone { face_value_minor: u64 },
    /// The sale's activation was never seen (the store HQ timed out before
    /// it arrived, or it never will): recorded, so it is refused if it
    /// comes.
    Forestalled,
}

impl Card {
    pub fn issued(face_value_minor: u64) -> Card {
        assert!(face_value_minor > 0);
        Card {
            face_value_minor,
            balance_minor: 0,
            held_minor: 0,
            store_id: 0,
            pos_ref: 0,
            activated_at_ms: 0,
            validity_days: 0,
            state: CardState::Issued,
            declined: false,
        }
    }

    /// Notes that a payment was declined because of this card; true when
    /// one already was since its balance last changed. A decline changes
    /// nothing but is recorded (a retry is answered with it), so a repeat
    /// of it on an unchanged card is a write nobody needs: the caller
    /// counts it against its sender's PIN-failure limit, and a flood of
    /// them ends in a lockout instead of filling the disk.
    pub fn note_decline(&mut self) -> bool {
        std::mem::replace(&mut self.declined, true)
    }

    /// What a payment may take now: the balance less what is held.
    pub fn available_minor(&self) -> u64 {
        self.balance_minor - self.held_minor
    }

    /// The store sold the card at `now_ms`: it now carries its face value,
    /// valid for `validity_days` (0: for good). (Whether this sale was
    /// reversed before is the shard's to check: it keeps every reversed
    /// sale.) The same sale again is a replay; a POS reference of 0 names
    /// no sale, so a repeat of it is refused like any other.
    pub fn activate(
        &mut self,
        store_id: u32,
        pos_ref: u64,
        now_ms: u64,
        validity_days: u16,
    ) -> Result<Sale, DeclineReason> {
        if self.state.is_sold() {
            if pos_ref != 0 && self.is_sale(store_id, pos_ref) {
                return Ok(Sale::Replayed);
            }
            return Err(DeclineReason::AlreadyActive);
        }
        self.state = CardState::Active;
        self.balance_minor = self.face_value_minor;
        self.declined = false;
        self.store_id = store_id;
        self.pos_ref = pos_ref;
        self.activated_at_ms = now_ms;
        self.validity_days = validity_days;
        self.assert_invariants();
        Ok(Sale::New)
    }

    /// When the card stops being valid, if it ever does.
    pub fn expires_at_ms(&self) -> Option<u64> {
        if self.validity_days == 0 || self.activated_at_ms == 0 {
            return None;
        }
        let validity_ms = u64::from(self.validity_days) * DAY_MS;
        Some(self.activated_at_ms.saturating_add(validity_ms))
    }

    /// An active card past its validity at `now_ms`: it cannot pay, and its
    /// balance is due to move to breakage.
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.state == CardState::Active && self.expires_at_ms().is_some_and(|at| now_ms >= at)
    }

    /// Expires a due card whose money is not held: returns the balance,
    /// which the caller books as breakage. A card with holds waits until
    /// they end (the money is promised to a payment being decided).
    pub fn expire(&mut self, now_ms: u64) -> Option<u64> {
        if !self.is_due(now_ms) || self.held_minor > 0 {
            return None;
        }
        let moved_minor = self.balance_minor;
        self.balance_minor = 0;
        self.state = CardState::Expired;
        self.declined = false;
        self.assert_invariants();
        Some(moved_minor)
    }

    fn is_sale(&self, store_id: u32, pos_ref: u64) -> bool {
        self.store_id == store_id && self.pos_ref == pos_ref
    }

    /// Reverses the sale (`store_id`, `pos_ref`) at `now_ms`: allowed while
    /// nothing was spent or is held, within `window_ms` of the activation.
    /// On a card not sold now, the sale was never seen: `Forestalled` (the
    /// shard then refuses that sale's activation if it comes).
    pub fn reverse(
        &mut self,
        store_id: u32,
        pos_ref: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<Reversal, DeclineReason> {
        let outcome = match self.state {
            CardState::Issued | CardState::Reversed => Reversal::Forestalled,
            CardState::Active | CardState::Exhausted | CardState::Expired => {
                if !self.is_sale(store_id, pos_ref) {
                    return Err(DeclineReason::NotThisSale);
                }
                if self.balance_minor != self.face_value_minor || self.held_minor != 0 {
                    return Err(DeclineReason::AlreadySpent);
                }
                if now_ms.saturating_sub(self.activated_at_ms) > window_ms {
                    return Err(DeclineReason::WindowClosed);
                }
                Reversal::Undone {
                    face_value_minor: self.face_value_minor,
                }
            }
        };
        self.state = CardState::Reversed;
        self.balance_minor = 0;
        self.declined = false;
        self.store_id = store_id;
        self.pos_ref = pos_ref;
        self.activated_at_ms = 0;
        self.validity_days = 0;
        self.assert_invariants();
        Ok(outcome)
    }

    /// Why this card cannot pay at all, if it cannot.
    pub(crate) fn spendable(&self) -> Result<(), DeclineReason> {
        match self.state {
            CardState::Issued | CardState::Reversed => Err(DeclineReason::NotActive),
            CardState::Exhausted => Err(DeclineReason::Exhausted),
            CardState::Expired => Err(DeclineReason::Expired),
            CardState::Active => Ok(()),
        }
    }

    /// Gives back `amount_minor` a refund returns to the card; an exhausted
    /// card becomes active again. The caller bounds the amount by what the
    /// payment took from this card, so the balance stays within the face
    /// value; returns the new balance.
    pub fn credit(&mut self, amount_minor: u64) -> u64 {
        assert!(
            matches!(self.state, CardState::Active | CardState::Exhausted),
            "a refund returns money to a card that can hold it"
        );
        assert!(
            amount_minor <= self.face_value_minor - self.balance_minor,
            "a refund returns no more than was taken"
        );
        self.balance_minor += amount_minor;
        self.declined = false;
        if self.state == CardState::Exhausted && self.balance_minor > 0 {
            self.state = CardState::Active;
        }
        self.assert_invariants();
        self.balance_minor
    }

    /// Takes `amount_minor` from the available balance; returns what is left
    /// on the card.
    pub fn debit(&mut self, amount_minor: u64) -> Result<u64, DeclineReason> {
        assert!(amount_minor > 0);
        self.spendable()?;
        if self.available_minor() < amount_minor {
            return Err(DeclineReason::InsufficientFunds);
        }
        self.balance_minor -= amount_minor;
        self.declined = false;
        self.settle_state();
        self.assert_invariants();
        Ok(self.balance_minor)
    }

    /// Reserves up to `cap_minor` of the available balance for a prepared
    /// payment; returns the amount actually held (may be 0).
    pub fn hold(&mut self, cap_minor: u64) -> Result<u64, DeclineReason> {
        self.spendable()?;
        let held = self.available_minor().min(cap_minor);
        self.held_minor += held;
        self.assert_invariants();
        Ok(held)
    }

    /// Gives a hold back without debiting.
    pub fn release(&mut self, hold_minor: u64) {
        assert!(hold_minor <= self.held_minor, "release more than held");
        self.held_minor -= hold_minor;
        self.assert_invariants();
    }

    /// Ends a hold by debiting `take_minor` (at most the hold) and releasing
    /// the rest; returns what is left on the card.
    pub(crate) fn commit_hold(&mut self, hold_minor: u64, take_minor: u64) -> u64 {
        assert!(take_minor <= hold_minor, "commit takes more than its hold");
        assert!(hold_minor <= self.held_minor, "commit of an unknown hold");
        self.held_minor -= hold_minor;
        self.balance_minor -= take_minor;
        if take_minor > 0 {
            self.declined = false;
        }
        self.settle_state();
        self.assert_invariants();
        self.balance_minor
    }

    fn settle_state(&mut self) {
        if self.state == CardState::Active && self.balance_minor == 0 {
            self.state = CardState::Exhausted;
        }
    }

    /// The first broken invariant, if any (used by the audit).
    pub fn check(&self) -> Result<(), &'static str> {
        if self.held_minor > self.balance_minor {
            return Err("held exceeds balance");
        }
        if self.balance_minor > self.face_value_minor {
            return Err("balance exceeds face value");
        }
        match self.state {
            CardState::Issued | CardState::Reversed if self.balance_minor != 0 => {
                Err("unsold card carries a balance")
            }
            CardState::Exhausted if self.balance_minor != 0 => Err("exhausted card has a balance"),
            CardState::Expired if self.balance_minor != 0 => Err("expired card has a balance"),
            CardState::Active if self.balance_minor == 0 && self.held_minor == 0 => {
                Err("active card with zero balance")
            }
            _ => Ok(()),
        }
    }

    fn assert_invariants(&self) {
        if let Err(broken) = self.check() {
            panic!("card invariant broken: {broken}: {self:?}");
        }
    }
}

/// The rule for paying from several cards: take from each card in the order
/// given, up to what it can give, until `amount_minor` is covered. Writes
/// each card's take into `takes_minor` and returns true; returns false and
/// writes nothing when the cards together cannot cover the amount.
///
/// The local (one-shard) path and the two-phase coordinator both decide
/// with this one function, so a payment splits the same way wherever its
/// cards live.
pub(crate) fn take_in_order(
    amount_minor: u64,
    can_give_minor: &[u64],
    takes_minor: &mut [u64],
) -> bool {
    assert_eq!(can_give_minor.len(), takes_minor.len());
    if can_give_minor.iter().sum::<u64>() < amount_minor {
        return false;
    }
    let mut left_minor = amount_minor;
    for (take_minor, &can_give) in takes_minor.iter_mut().zip(can_give_minor) {
        *take_minor = can_give.min(left_minor);
        left_minor -= *take_minor;
    }
    assert_eq!(left_minor, 0, "the cards covered the amount");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(face: u64) -> Card {
        let mut card = Card::issued(face);
        card.activate(7, 42, 0, 0).expect("fresh card activates");
        card
    }

    #[test]
    fn issued_card_is_worthless_until_activated() {
        let mut card = Card::issued(1000);
        assert_eq!(card.balance_minor, 0);
        assert_eq!(card.debit(1), Err(DeclineReason::NotActive));
        assert_eq!(card.hold(1), Err(DeclineReason::NotActive));
        card.activate(3, 99, 0, 0).expect("activates");
        assert_eq!(card.balance_minor, 1000);
        assert_eq!((card.store_id, card.pos_ref), (3, 99));
    }

    #[test]
    fn second_activation_is_refused_and_credits_nothing() {
        let mut card = active(500);
        card.debit(200).expect("debit");
        assert_eq!(card.activate(8, 1, 0, 0), Err(DeclineReason::AlreadyActive));
        assert_eq!(card.balance_minor, 300);
        assert_eq!(card.store_id, 7);
    }

    #[test]
    fn the_same_sale_again_is_a_replay_that_changes_nothing() {
        let mut card = Card::issued(500);
        assert_eq!(card.activate(7, 42, 1_000, 30), Ok(Sale::New));
        card.debit(200).expect("debit");
        let before = card;
        assert_eq!(card.activate(7, 42, 9_000, 30), Ok(Sale::Replayed));
        assert_eq!(card, before, "a replay changes nothing");
        // Another reference, another store, or no reference at all: refused.
        assert_eq!(
            card.activate(7, 43, 0, 0),
            Err(DeclineReason::AlreadyActive)
        );
        assert_eq!(
            card.activate(8, 42, 0, 0),
            Err(DeclineReason::AlreadyActive)
        );
        let mut unreferenced = Card::issued(500);
        unreferenced.activate(7, 0, 0, 0).expect("sold");
        assert_eq!(
            unreferenced.activate(7, 0, 0, 0),
            Err(DeclineReason::AlreadyActive)
        );
    }

    #[test]
    fn debit_respects_balance_and_exhausts_at_zero() {
        let mut card = active(1000);
        assert_eq!(card.debit(1001), Err(DeclineReason::InsufficientFunds));
        assert_eq!(card.debit(400), Ok(600));
        assert_eq!(card.debit(600), Ok(0));
        assert_eq!(card.state, CardState::Exhausted);
        assert_eq!(card.debit(1), Err(DeclineReason::Exhausted));
        assert_eq!(card.activate(1, 1, 0, 0), Err(DeclineReason::AlreadyActive));
    }

    #[test]
    fn holds_reserve_funds_against_other_debits() {
        let mut card = active(1000);
        assert_eq!(card.hold(700), Ok(700));
        assert_eq!(card.available_minor(), 300);
        assert_eq!(card.debit(301), Err(DeclineReason::InsufficientFunds));
        // A second hold gets only what is left.
        assert_eq!(card.hold(500), Ok(300));
        assert_eq!(card.available_minor(), 0);
        card.release(300);
        assert_eq!(card.commit_hold(700, 650), 350);
        assert_eq!(card.held_minor, 0);
        assert_eq!(card.available_minor(), 350);
    }

    #[test]
    fn committing_a_whole_balance_exhausts_the_card() {
        let mut card = active(500);
        let held = card.hold(10_000).expect("hold");
        assert_eq!(held, 500);
        assert_eq!(card.commit_hold(held, 500), 0);
        assert_eq!(card.state, CardState::Exhausted);
    }

    #[test]
    #[should_panic(expected = "commit takes more than its hold")]
    fn commit_beyond_hold_is_a_bug() {
        let mut card = active(500);
        card.hold(100).expect("hold");
        card.commit_hold(100, 101);
    }

    #[test]
    fn payments_take_from_cards_in_order() {
        let mut takes = [7u64; 3];
        assert!(take_in_order(1300, &[500, 1000, 1000], &mut takes));
        assert_eq!(takes, [500, 800, 0]);
        assert!(take_in_order(2500, &[500, 1000, 1000], &mut takes));
        assert_eq!(takes, [500, 1000, 1000]);
        let mut untouched = [7u64; 3];
        assert!(!take_in_order(2501, &[500, 1000, 1000], &mut untouched));
        assert_eq!(untouched, [7; 3]);
        // A card with nothing to give is skipped, not an error.
        let mut two = [0u64; 2];
        assert!(take_in_order(10, &[0, 10], &mut two));
        assert_eq!(two, [0, 10]);
    }

    #[test]
    fn a_reversal_undoes_an_unspent_sale_within_its_window() {
        let mut card = Card::issued(1000);
        card.activate(7, 42, 10_000, 0).expect("sold");
        assert_eq!(
            card.reverse(8, 42, 10_000, 60),
            Err(DeclineReason::NotThisSale)
        );
        assert_eq!(
            card.reverse(7, 41, 10_000, 60),
            Err(DeclineReason::NotThisSale)
        );
        assert_eq!(
            card.reverse(7, 42, 10_061, 60),
            Err(DeclineReason::WindowClosed)
        );
        let undone = Reversal::Undone {
            face_value_minor: 1000,
        };
        assert_eq!(card.reverse(7, 42, 10_060, 60), Ok(undone));
        assert_eq!((card.state, card.balance_minor), (CardState::Reversed, 0));
        assert_eq!(card.debit(1), Err(DeclineReason::NotActive));
        // Unsold again: another sale activates it.
        card.activate(7, 43, 20_000, 0).expect("sold again");
        assert_eq!((card.balance_minor, card.activated_at_ms), (1000, 20_000));
    }

    #[test]
    fn a_spent_or_held_card_cannot_be_reversed() {
        let mut card = active(1000);
        card.hold(1).expect("hold");
        assert_eq!(card.reverse(7, 42, 0, 60), Err(DeclineReason::AlreadySpent));
        card.release(1);
        card.debit(1).expect("debit");
        assert_eq!(card.reverse(7, 42, 0, 60), Err(DeclineReason::AlreadySpent));
    }

    #[test]
    fn a_reversal_before_the_activation_leaves_the_card_unsold() {
        let mut card = Card::issued(500);
        assert_eq!(card.reverse(3, 9, 5, 0), Ok(Reversal::Forestalled));
        assert_eq!(card.check(), Ok(()));
        assert_eq!((card.state, card.balance_minor), (CardState::Reversed, 0));
    }

    #[test]
    fn a_refund_credit_revives_an_exhausted_card() {
        let mut card = active(500);
        card.debit(500).expect("spent");
        assert_eq!(card.state, CardState::Exhausted);
        assert_eq!(card.credit(200), 200);
        assert_eq!(card.state, CardState::Active);
        assert_eq!(card.debit(200), Ok(0));
    }

    #[test]
    #[should_panic(expected = "no more than was taken")]
    fn a_credit_above_the_face_value_is_a_bug() {
        let mut card = active(500);
        card.debit(100).expect("debit");
        card.credit(101);
    }

    #[test]
    fn a_card_expires_its_validity_after_its_sale() {
        let mut card = Card::issued(1000);
        card.activate(7, 1, 5 * DAY_MS, 30).expect("sold");
        card.debit(400).expect("debit");
        assert_eq!(card.expires_at_ms(), Some(35 * DAY_MS));
        assert!(!card.is_due(35 * DAY_MS - 1));
        assert!(card.is_due(35 * DAY_MS));
        card.hold(100).expect("hold");
        assert_eq!(card.expire(35 * DAY_MS), None, "held money waits");
        card.release(100);
        assert_eq!(card.expire(35 * DAY_MS), Some(600));
        assert_eq!((card.state, card.balance_minor), (CardState::Expired, 0));
        assert_eq!(card.debit(1), Err(DeclineReason::Expired));
        assert_eq!(card.expire(99 * DAY_MS), None, "once");
        assert_eq!(card.check(), Ok(()));
        // Without a validity, or sold before it was kept: never.
        let mut forever = Card::issued(500);
        forever.activate(7, 1, DAY_MS, 0).expect("sold");
        assert!(!forever.is_due(u64::MAX));
    }

    #[test]
    fn check_reports_broken_states() {
        let mut card = active(500);
        card.balance_minor = 600;
        assert_eq!(card.check(), Err("balance exceeds face value"));
        card.balance_minor = 100;
        card.held_minor = 200;
        assert_eq!(card.check(), Err("held exceeds balance"));
        let mut issued = Card::issued(500);
        issued.balance_minor = 1;
        assert_eq!(issued.check(), Err("unsold card carries a balance"));
    }
}
