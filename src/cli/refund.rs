//! `kessai refund`: a merchant gives back part or all of one of its own
//! payments.

use super::ClientArgs;
use super::output::{Failure, Output, last4_text};
use crate::client::Client;
use crate::protocol::RefundResponse;
use clap::Args;
use serde_json::{Value, json};

/// The merchant is the principal of `--key`; it can refund only its own
/// payments.
#[derive(Args, Debug)]
pub struct RefundArgs {
    /// The merchant's request id of the payment to refund.
    #[arg(long)]
    payment_request_id: u64,
    /// The merchant's id for this refund (refund ids are their own
    /// namespace); retrying with the same id never refunds twice.
    #[arg(long)]
    request_id: u64,
    /// Amount to give back, in minor units (yen).
    #[arg(long)]
    amount: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: RefundArgs) -> Result<Output, Failure> {
    let refunded = client
        .refund(args.request_id, args.payment_request_id, args.amount)
        .await?;
    Ok(render(&refunded))
}

fn render(refunded: &RefundResponse) -> Output {
    let replayed = if refunded.replayed { " (replayed)" } else { "" };
    let mut text = match refunded.reason {
        None => format!(
            "refunded {}: {} refunded from the payment so far{replayed}\n",
            refunded.amount_minor, refunded.payment_refunded_minor
        ),
        Some(reason) => format!("declined: {}{replayed}\n", reason.name()),
    };
    for p in &refunded.parts {
        text += &format!(
            "  card ****{}: refunded {}\n",
            last4_text(p.pin_last4),
            p.refunded_minor
        );
    }
    let parts: Vec<Value> = refunded
        .parts
        .iter()
        .map(|p| {
            json!({
                "pin_last4": last4_text(p.pin_last4),
                "refunded_minor": p.refunded_minor,
            })
        })
        .collect();
    let json = json!({
        "status": if refunded.is_refunded() { "refunded" } else { "declined" },
        "reason": refunded.reason.map(|r| r.name()),
        "amount_minor": refunded.amount_minor,
        "parts": parts,
        "payment_refunded_minor": refunded.payment_refunded_minor,
        "replayed": refunded.replayed,
    });
    Output::ok(json, text)
}
