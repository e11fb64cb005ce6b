//! The operation mix: what share of the load is single-card payments,
//! two-card payments and balance checks (`--mix pay=80,pay2=15,balance=5`).
//!
//! The kind of each operation follows from its request id (`id % 100`), not
//! from a random draw: request ids come from one counter shared by every
//! lane, so any stretch of 100 consecutive ids holds exactly the mix, and
//! the counts per kind in a report follow the mix to within the number of
//! lanes, however short the run.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// One kind of operation the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A payment from one card.
    Pay,
    /// A payment combining two cards (two-phase commit when they sit on
    /// different shards).
    Pay2,
    /// A balance check of one card.
    Balance,
}

impl OpKind {
    pub const ALL: [OpKind; 3] = [OpKind::Pay, OpKind::Pay2, OpKind::Balance];

    /// The name used in `--mix`, the printed lines and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Pay => "pay",
            OpKind::Pay2 => "pay2",
            OpKind::Balance => "balance",
        }
    }

    pub fn is_payment(self) -> bool {
        matches!(self, OpKind::Pay | OpKind::Pay2)
    }

    /// Position in [`OpKind::ALL`] (indexes per-kind tallies).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Percent of operations of each kind; the three add up to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub pay: u8,
    pub pay2: u8,
    pub balance: u8,
}

impl Mix {
    /// What `--multi-card-percent P` always meant: P% two-card payments,
    /// the rest single-card, no balance checks.
    pub fn two_card_percent(percent: u8) -> Result<Mix, MixError> {
        if percent > 100 {
            return Err(MixError::NotAPercent {
                kind: "pay2",
                value: percent.to_string(),
            });
        }
        Ok(Mix {
            pay: 100 - percent,
            pay2: percent,
            balance: 0,
        })
    }

    pub fn share(&self, kind: OpKind) -> u8 {
        match kind {
            OpKind::Pay => self.pay,
            OpKind::Pay2 => self.pay2,
            OpKind::Balance => self.balance,
        }
    }

    /// Percent of operations that are payments (of either kind).
    pub fn payment_percent(&self) -> u8 {
        self.pay + self.pay2
    }

    /// The kind of the operation with this request id.
    pub fn kind_of(&self, request_id: u64) -> OpKind {
        let slot = request_id % 100;
        if slot < u64::from(self.pay) {
            OpKind::Pay
        } else if slot < u64::from(self.pay) + u64::from(self.pay2) {
            OpKind::Pay2
        } else {
            OpKind::Balance
        }
    }
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            pay: 100,
            pay2: 0,
            balance: 0,
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pay={},pay2={},balance={}",
            self.pay, self.pay2, self.balance
        )
    }
}

/// Why a `--mix` was refused: each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixError {
    Empty,
    /// A part is not `kind=percent`.
    NotAPair(String),
    UnknownKind(String),
    Repeated(&'static str),
    NotAPercent {
        kind: &'static str,
        value: String,
    },
    /// The shares add up to this, not 100.
    Sum(u32),
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixError::Empty => write!(f, "the mix is empty (e.g. pay=80,pay2=15,balance=5)"),
            MixError::NotAPair(part) => {
                write!(f, "`{part}` is not kind=percent (e.g. pay=80)")
            }
            MixError::UnknownKind(kind) => {
                write!(f, "unknown kind `{kind}` (kinds: pay, pay2, balance)")
            }
            MixError::Repeated(kind) => write!(f, "`{kind}` is given twice"),
            MixError::NotAPercent { kind, value } => {
                write!(f, "{kind}={value}: a share is a whole percent, 0 to 100")
            }
            MixError::Sum(sum) => write!(f, "the shares sum to {sum}, they must sum to 100"),
        }
    }
}

impl std::error::Error for MixError {}

impl FromStr for Mix {
    type Err = MixError;

    /// `pay=80,pay2=15,balance=5`; a kind left out has share 0.
    fn from_str(text: &str) -> Result<Mix, MixError> {
        if text.trim().is_empty() {
            return Err(MixError::Empty);
        }
        let mut shares: [Option<u8>; 3] = [None; 3];
        for part in text.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| MixError::NotAPair(part.to_string()))?;
            let kind = OpKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| MixError::UnknownKind(name.trim().to_string()))?;
            let percent = value
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| MixError::NotAPercent {
                    kind: kind.name(),
                    value: value.trim().to_string(),
                })?;
            let slot = &mut shares[kind.index()];
            if slot.is_some() {
                return Err(MixError::Repeated(kind.name()));
            }
            *slot = Some(percent);
        }
        let [pay, pay2, balance] = shares.map(|s| s.unwrap_or(0));
        let sum = u32::from(pay) + u32::from(pay2) + u32::from(balance);
        if sum != 100 {
            return Err(MixError::Sum(sum));
        }
        Ok(Mix { pay, pay2, balance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_mix_and_defaults_missing_kinds_to_zero() {
        assert_eq!(
            "pay=80,pay2=15,balance=5".parse::<Mix>(),
            Ok(Mix {
                pay: 80,
                pay2: 15,
                balance: 5
            })
        );
        assert_eq!(
            " balance = 100 ".parse::<Mix>(),
            Ok(Mix {
                pay: 0,
                pay2: 0,
                balance: 100
            })
        );
    }

    #[test]
    fn refuses_each_kind_of_mistake_with_its_own_error() {
        let cases = [
            ("", MixError::Empty),
            ("pay", MixError::NotAPair("pay".into())),
            ("pay=50,refund=50", MixError::UnknownKind("refund".into())),
            ("pay=50,pay=50", MixError::Repeated("pay")),
            (
                "pay=x",
                MixError::NotAPercent {
                    kind: "pay",
                    value: "x".into(),
                },
            ),
            (
                "pay=101",
                MixError::NotAPercent {
                    kind: "pay",
                    value: "101".into(),
                },
            ),
            ("pay=80,pay2=15", MixError::Sum(95)),
            ("pay=90,balance=90", MixError::Sum(180)),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<Mix>(), Err(error), "{text:?}");
        }
    }

    #[test]
    fn every_hundred_consecutive_ids_hold_exactly_the_mix() {
        let mix: Mix = "pay=80,pay2=15,balance=5".parse().expect("valid");
        let mut counts = [0u32; 3];
        for id in 1_234_500..1_234_600u64 {
            counts[mix.kind_of(id).index()] += 1;
        }
        assert_eq!(counts, [80, 15, 5]);
    }

    #[test]
    fn two_card_percent_is_a_mix_of_pay_and_pay2() {
        assert_eq!(
            Mix::two_card_percent(20),
            Ok(Mix {
                pay: 80,
                pay2: 20,
                balance: 0
            })
        );
        assert!(Mix::two_card_percent(101).is_err());
    }
}
