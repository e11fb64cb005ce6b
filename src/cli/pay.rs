//! `kessai pay`: a merchant takes an amount from one or more cards.

use super::ClientArgs;
use super::output::{Failure, Output, check_pins, last4_text};
use crate::client::Client;
use crate::protocol::PayResponse;
use clap::Args;
use serde_json::{Value, json};

/// The merchant is the principal of `--key`.
#[derive(Args, Debug)]
pub struct PayArgs {
    /// Amount in minor units (yen).
    #[arg(long)]
    amount: u64,
    /// The merchant's id for this payment; retrying with the same id
    /// never pays twice.
    #[arg(
        long,
        required_unless_present = "order_id",
        conflicts_with = "order_id"
    )]
    request_id: Option<u64>,
    /// The merchant's own order id instead of a request id (1-50 of
    /// `A-Z a-z 0-9 . _ : -`); retrying with it never pays twice either.
    #[arg(long)]
    order_id: Option<String>,
    /// The cards, taken from in this order.
    #[arg(required = true)]
    pins: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: PayArgs) -> Result<Output, Failure> {
    check_pins(&args.pins)?;
    let paid = match (&args.order_id, args.request_id) {
        (Some(order_id), _) => client.pay_order(order_id, args.amount, &args.pins).await?,
        (None, Some(request_id)) => client.pay(request_id, args.amount, &args.pins).await?,
        (None, None) => unreachable!("clap requires one of them"),
    };
    Ok(render(&paid))
}

fn render(paid: &PayResponse) -> Output {
    let replayed = if paid.replayed { " (replayed)" } else { "" };
    let mut text = match paid.reason() {
        None => format!(
            "approved {}: {} left on the card(s){replayed}\n",
            paid.amount_minor,
            paid.remaining_minor()
        ),
        Some(reason) => format!(
            "declined: {}{}{replayed}\n",
            reason.name(),
            paid.position()
                .map(|p| format!(" (card {p})"))
                .unwrap_or_default(),
        ),
    };
    for p in paid.parts() {
        text += &format!(
            "  card ****{}: took {}, {} left\n",
            last4_text(p.pin_last4),
            p.taken_minor,
            p.remaining_minor
        );
    }
    let parts: Vec<Value> = paid
        .parts()
        .iter()
        .map(|p| {
            json!({
                "pin_last4": last4_text(p.pin_last4),
                "taken_minor": p.taken_minor,
                "remaining_minor": p.remaining_minor,
            })
        })
        .collect();
    let json = json!({
        "status": if paid.is_approved() { "approved" } else { "declined" },
        "reason": paid.reason().map(|r| r.name()),
        "position": paid.position().map(|p| p.number()),
        "amount_minor": paid.amount_minor,
        "remaining_minor": paid.remaining_minor(),
        "parts": parts,
        "replayed": paid.replayed,
    });
    Output::ok(json, text)
}
