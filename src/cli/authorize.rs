//! `kessai authorize`: a merchant holds an amount on one or more cards,
//! to capture later (or void).

use super::ClientArgs;
use super::output::{Failure, Output, check_pins, last4_text};
use crate::client::Client;
use crate::protocol::AuthorizeResponse;
use clap::Args;
use serde_json::{Value, json};

/// The merchant is the principal of `--key`.
#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    /// Amount to hold, in minor units (yen).
    #[arg(long)]
    amount: u64,
    /// The merchant's id for this authorization, in its payment namespace:
    /// once captured it is the payment's request id (refund it with
    /// `--payment-request-id`). Retrying with the same id never holds twice.
    #[arg(
        long,
        required_unless_present = "order_id",
        conflicts_with = "order_id"
    )]
    request_id: Option<u64>,
    /// The merchant's own order id instead of a request id (1-50 of
    /// `A-Z a-z 0-9 . _ : -`); retrying with it never holds twice either.
    #[arg(long)]
    order_id: Option<String>,
    /// The cards, held on in this order.
    #[arg(required = true)]
    pins: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: AuthorizeArgs) -> Result<Output, Failure> {
    check_pins(&args.pins)?;
    let authorized = match (&args.order_id, args.request_id) {
        (Some(order_id), _) => {
            client
                .authorize_order(order_id, args.amount, &args.pins)
                .await?
        }
        (None, Some(request_id)) => {
            client
                .authorize(request_id, args.amount, &args.pins)
                .await?
        }
        (None, None) => unreachable!("clap requires one of them"),
    };
    Ok(render(&authorized))
}

fn render(authorized: &AuthorizeResponse) -> Output {
    let replayed = if authorized.replayed {
        " (replayed)"
    } else {
        ""
    };
    let mut text = match authorized.reason {
        None => format!(
            "authorized {}: held until {} (engine clock, ms since the epoch){replayed}\n",
            authorized.amount_minor, authorized.expires_at_ms
        ),
        Some(reason) => format!(
            "declined: {}{}{replayed}\n",
            reason.name(),
            authorized
                .position
                .map(|p| format!(" (card {p})"))
                .unwrap_or_default(),
        ),
    };
    for p in &authorized.parts {
        text += &format!(
            "  card ****{}: held {}\n",
            last4_text(p.pin_last4),
            p.held_minor
        );
    }
    let parts: Vec<Value> = authorized
        .parts
        .iter()
        .map(|p| {
            json!({
                "pin_last4": last4_text(p.pin_last4),
                "held_minor": p.held_minor,
            })
        })
        .collect();
    let json = json!({
        "status": if authorized.is_authorized() { "authorized" } else { "declined" },
        "reason": authorized.reason.map(|r| r.name()),
        "position": authorized.position.map(|p| p.number()),
        "amount_minor": authorized.amount_minor,
        "parts": parts,
        "expires_at_ms": authorized.expires_at_ms,
        "replayed": authorized.replayed,
    });
    Output::ok(json, text)
}
