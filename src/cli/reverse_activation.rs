//! `kessai reverse-activation`: a store's headquarters undoes a sale
//! cancelled at the till, or one whose activation reply never came back.

use super::ClientArgs;
use super::output::{Failure, Output, check_pins};
use crate::client::Client;
use crate::protocol::{ReversalStatus, ReverseActivationResponse};
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct ReverseActivationArgs {
    /// The store that sold the card.
    #[arg(long)]
    store: u32,
    /// The sale's POS transaction reference, as sent with its activation
    /// (0 when it had none). Required: with the store it names the sale,
    /// and a wrong one can forestall a sale that never happened.
    #[arg(long)]
    pos_ref: u64,
    /// The card sold.
    pin: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: ReverseActivationArgs) -> Result<Output, Failure> {
    check_pins(std::slice::from_ref(&args.pin))?;
    let reversed = client
        .reverse_activation(args.store, args.pos_ref, &args.pin)
        .await?;
    Ok(render(args.store, &reversed))
}

/// The stable name of a reversal status in JSON output.
fn status_name(status: ReversalStatus) -> &'static str {
    match status {
        ReversalStatus::Reversed => "reversed",
        ReversalStatus::Forestalled => "forestalled",
        ReversalStatus::Declined => "declined",
    }
}

fn render(store_id: u32, reversed: &ReverseActivationResponse) -> Output {
    let replayed = if reversed.replayed { " (replayed)" } else { "" };
    let text = match (reversed.status, reversed.reason) {
        (ReversalStatus::Reversed, _) => format!(
            "reversed: store {store_id} owes {} less; the card is unsold{replayed}\n",
            reversed.amount_minor
        ),
        (ReversalStatus::Forestalled, _) => format!(
            "forestalled: no activation of this sale was seen; it will be refused if it arrives{replayed}\n"
        ),
        (ReversalStatus::Declined, reason) => format!(
            "declined: {}{replayed}\n",
            reason.map_or("unknown", |r| r.name())
        ),
    };
    let json = json!({
        "status": status_name(reversed.status),
        "reason": reversed.reason.map(|r| r.name()),
        "amount_minor": reversed.amount_minor,
        "replayed": reversed.replayed,
    });
    Output::ok(json, text)
}
