//! What a client command prints: text for people, one JSON object for
//! programs, and an exit status.

use crate::client::ClientError;
use crate::pin::Pin;
use crate::protocol::Totals;
use serde_json::{Value, json};
use std::io::Write;

/// A command's answer in both forms, and its exit status.
pub struct Output {
    pub json: Value,
    pub text: String,
    pub status: i32,
}

impl Output {
    /// An answer that exits 0.
    pub fn ok(json: Value, text: String) -> Output {
        Output {
            json,
            text,
            status: 0,
        }
    }
}

/// A failed command: the message for stderr (or the JSON error object).
pub struct Failure(pub String);

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure(message)
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure(error.to_string())
    }
}

/// Prints the outcome and returns the exit status.
pub fn print(json: bool, outcome: Result<Output, Failure>) -> i32 {
    match outcome {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            let _ = if json {
                writeln!(stdout, "{}", output.json)
            } else {
                write!(stdout, "{}", output.text)
            };
            output.status
        }
        Err(Failure(message)) => {
            if json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("kessai: {message}");
            }
            1
        }
    }
}

/// Rejects typos locally, with the position, before bothering the engine
/// (which checks again).
pub fn check_pins(pins: &[String]) -> Result<(), Failure> {
    for (index, pin) in pins.iter().enumerate() {
        if let Err(error) = Pin::parse(pin) {
            return Err(Failure(format!("PIN at position {}: {error}", index + 1)));
        }
    }
    Ok(())
}

/// The last four digits as shown: zero-padded text.
pub fn last4_text(pin_last4: u16) -> String {
    format!("{pin_last4:04}")
}

pub fn totals_json(totals: &Totals) -> Value {
    json!({
        "cards": totals.cards,
        "cards_issued": totals.cards_issued,
        "cards_active": totals.cards_active,
        "cards_exhausted": totals.cards_exhausted,
        "cards_reversed": totals.cards_reversed,
        "cards_expired": totals.cards_expired,
        "activated_minor": totals.activated_minor,
        "balance_minor": totals.balance_minor,
        "held_minor": totals.held_minor,
        "store_owed_minor": totals.store_owed_minor,
        "store_reversed_minor": totals.store_reversed_minor,
        "store_remitted_minor": totals.store_remitted_minor,
        "merchant_owed_minor": totals.merchant_owed_minor,
        "merchant_refunded_minor": totals.merchant_refunded_minor,
        "merchant_paid_out_minor": totals.merchant_paid_out_minor,
        "fees_minor": totals.fees_minor,
        "breakage_minor": totals.breakage_minor,
    })
}

/// The owed sums are net; what reversals, remittances, refunds, payouts
/// and fees took off is shown beside them.
pub fn totals_text(totals: &Totals) -> String {
    format!(
        "totals: cards {} (issued {}, active {}, exhausted {}, reversed {}, expired {})\n        activated {}  balances {}  held {}  breakage {}\n        store owed {} (reversed {}, remitted {})  merchant owed {} (refunded {}, paid out {}, fees {})\n",
        totals.cards,
        totals.cards_issued,
        totals.cards_active,
        totals.cards_exhausted,
        totals.cards_reversed,
        totals.cards_expired,
        totals.activated_minor,
        totals.balance_minor,
        totals.held_minor,
        totals.breakage_minor,
        totals.store_owed_minor,
        totals.store_reversed_minor,
        totals.store_remitted_minor,
        totals.merchant_owed_minor,
        totals.merchant_refunded_minor,
        totals.merchant_paid_out_minor,
        totals.fees_minor
    )
}

/// A new file readable by its owner only, for a secret (PINs, a token);
/// an existing file is never overwritten: it may be the only copy.
pub fn create_private_file(path: &std::path::Path) -> Result<std::fs::File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| Failure(format!("cannot create {}: {e}", path.display())))
}
