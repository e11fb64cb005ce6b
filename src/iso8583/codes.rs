//! DE 39, the response code: what kessai's outcomes are called on an ISO
//! 8583 network. The table is `docs/ISO8583.md`'s; a change here is a
//! change there.

use crate::card::DeclineReason;
use crate::protocol::{ActivationResult, ErrorCode, ReversalStatus, ReverseActivationResponse};

/// A response code, two ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    /// 00: approved; also a reversal that forestalled its activation.
    Approved,
    /// 05: do not honor (a reversal of a card already spent from).
    DoNotHonor,
    /// 12: invalid transaction (processing code, network code, original
    /// message type).
    InvalidTransaction,
    /// 13: the amount is not the card's face value, or not in yen.
    InvalidAmount,
    /// 14: unknown PIN, bad check digit, an unsold card on a balance
    /// inquiry.
    InvalidCard,
    /// 21: no action taken (the reversal window has passed).
    NoActionTaken,
    /// 25: unable to locate the original (the card was sold by another
    /// sale than the reversal names).
    NoOriginal,
    /// 30: format error.
    FormatError,
    /// 40: function not supported (a message type kessai does not serve).
    NotSupported,
    /// 54: expired card.
    ExpiredCard,
    /// 57: another HQ's store or card, or a sale already reversed.
    NotPermitted,
    /// 75: locked out (too many PIN failures).
    LockedOut,
    /// 91: busy, or not signed on: nothing was done, retry.
    Unavailable,
    /// 94: the card was already activated by another sale.
    Duplicate,
    /// 96: internal error.
    SystemMalfunction,
}

impl ResponseCode {
    /// Every code, in the table's order.
    pub const ALL: [ResponseCode; 15] = [
        ResponseCode::Approved,
        ResponseCode::DoNotHonor,
        ResponseCode::InvalidTransaction,
        ResponseCode::InvalidAmount,
        ResponseCode::InvalidCard,
        ResponseCode::NoActionTaken,
        ResponseCode::NoOriginal,
        ResponseCode::FormatError,
        ResponseCode::NotSupported,
        ResponseCode::ExpiredCard,
        ResponseCode::NotPermitted,
        ResponseCode::LockedOut,
        ResponseCode::Unavailable,
        ResponseCode::Duplicate,
        ResponseCode::SystemMalfunction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::Approved => "00",
            ResponseCode::DoNotHonor => "05",
            ResponseCode::InvalidTransaction => "12",
            ResponseCode::InvalidAmount => "13",
            ResponseCode::InvalidCard => "14",
            ResponseCode::NoActionTaken => "21",
            ResponseCode::NoOriginal => "25",
            ResponseCode::FormatError => "30",
            ResponseCode::NotSupported => "40",
            ResponseCode::ExpiredCard => "54",
            ResponseCode::NotPermitted => "57",
            ResponseCode::LockedOut => "75",
            ResponseCode::Unavailable => "91",
            ResponseCode::Duplicate => "94",
            ResponseCode::SystemMalfunction => "96",
        }
    }

    /// The code named by a DE 39 value kessai sends.
    pub fn parse(text: &str) -> Option<ResponseCode> {
        ResponseCode::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
    }

    /// A card decline, as DE 39.
    pub fn of_decline(reason: DeclineReason) -> ResponseCode {
        match reason {
            DeclineReason::UnknownPin | DeclineReason::InvalidCard | DeclineReason::NotActive => {
                ResponseCode::InvalidCard
            }
            DeclineReason::AlreadyActive => ResponseCode::Duplicate,
            DeclineReason::ActivationReversed => ResponseCode::NotPermitted,
            DeclineReason::WrongAmount => ResponseCode::InvalidAmount,
            DeclineReason::AlreadySpent | DeclineReason::Exhausted => ResponseCode::DoNotHonor,
            DeclineReason::WindowClosed => ResponseCode::NoActionTaken,
            DeclineReason::NotThisSale => ResponseCode::NoOriginal,
            DeclineReason::Expired => ResponseCode::ExpiredCard,
            // Payment-side reasons never answer an activation, reversal or
            // balance inquiry; if one did, it is the engine's fault.
            DeclineReason::InsufficientFunds
            | DeclineReason::Aborted
            | DeclineReason::UnknownPayment
            | DeclineReason::ExceedsRefundable
            | DeclineReason::UnknownAuthorization
            | DeclineReason::AuthorizationClosed
            | DeclineReason::AuthorizationExpired
            | DeclineReason::ExceedsAuthorized
            | DeclineReason::ExceedsOwed
            | DeclineReason::PeriodClosed
            | DeclineReason::NothingToPay => ResponseCode::SystemMalfunction,
        }
    }

    /// An engine error, as DE 39.
    pub fn of_error(code: ErrorCode) -> ResponseCode {
        match code {
            ErrorCode::InvalidPin | ErrorCode::InvalidCard => ResponseCode::InvalidCard,
            ErrorCode::LockedOut => ResponseCode::LockedOut,
            ErrorCode::Busy | ErrorCode::Overloaded => ResponseCode::Unavailable,
            ErrorCode::Forbidden => ResponseCode::NotPermitted,
            _ => ResponseCode::SystemMalfunction,
        }
    }

    /// One card's activation outcome.
    pub fn of_activation(result: &ActivationResult) -> ResponseCode {
        match result {
            ActivationResult::Activated { .. } => ResponseCode::Approved,
            ActivationResult::Declined { reason } => ResponseCode::of_decline(*reason),
            ActivationResult::InvalidPin => ResponseCode::InvalidCard,
            ActivationResult::LockedOut => ResponseCode::LockedOut,
        }
    }

    /// A reversal's outcome: undone and forestalled are both approved.
    pub fn of_reversal(response: &ReverseActivationResponse) -> ResponseCode {
        match (response.status, response.reason) {
            (ReversalStatus::Reversed | ReversalStatus::Forestalled, _) => ResponseCode::Approved,
            (ReversalStatus::Declined, Some(reason)) => ResponseCode::of_decline(reason),
            (ReversalStatus::Declined, None) => ResponseCode::SystemMalfunction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decline_has_a_code_and_the_table_is_the_documented_one() {
        for reason in DeclineReason::ALL {
            assert_eq!(ResponseCode::of_decline(reason).as_str().len(), 2);
        }
        let table = [
            (DeclineReason::UnknownPin, "14"),
            (DeclineReason::AlreadyActive, "94"),
            (DeclineReason::ActivationReversed, "57"),
            (DeclineReason::WrongAmount, "13"),
            (DeclineReason::AlreadySpent, "05"),
            (DeclineReason::NotThisSale, "25"),
            (DeclineReason::WindowClosed, "21"),
            (DeclineReason::Expired, "54"),
        ];
        for (reason, code) in table {
            assert_eq!(
                ResponseCode::of_decline(reason).as_str(),
                code,
                "{reason:?}"
            );
        }
        assert_eq!(ResponseCode::of_error(ErrorCode::Busy).as_str(), "91");
        assert_eq!(ResponseCode::of_error(ErrorCode::LockedOut).as_str(), "75");
        assert_eq!(ResponseCode::of_error(ErrorCode::Forbidden).as_str(), "57");
        assert_eq!(ResponseCode::of_error(ErrorCode::Internal).as_str(), "96");
        for code in ResponseCode::ALL {
            assert_eq!(ResponseCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ResponseCode::parse("99"), None);
    }
}
