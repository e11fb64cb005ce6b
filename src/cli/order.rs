//! `kessai order`: the merchant's payment or authorization under its own
//! order id.

use super::ClientArgs;
use super::output::{Failure, Output, last4_text};
use crate::client::Client;
use crate::protocol::{OrderInfo, OrderStatus};
use clap::Args;
use serde_json::{Value, json};

/// The merchant is the principal of `--key`.
#[derive(Args, Debug)]
pub struct OrderArgs {
    /// The order id the payment or authorization was made under.
    order_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: OrderArgs) -> Result<Output, Failure> {
    Ok(match client.order(&args.order_id).await? {
        Some(order) => render(&order),
        None => Output::ok(
            json!({ "order_id": args.order_id, "found": false }),
            format!("no payment under order id {}\n", args.order_id),
        ),
    })
}

pub fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Approved => "approved",
        OrderStatus::Declined => "declined",
        OrderStatus::Authorized => "authorized",
    }
}

fn render(order: &OrderInfo) -> Output {
    let kind = if order.authorization {
        "authorization"
    } else {
        "payment"
    };
    let reason = order
        .reason
        .map(|reason| format!(": {}", reason.name()))
        .unwrap_or_default();
    let text = format!(
        "{kind} {} ({}): {}{reason}, amount {}, taken {}, refunded {}\n",
        order.order_id,
        order.request_id,
        status_name(order.status),
        order.amount_minor,
        order.taken_minor,
        order.refunded_minor,
    );
    let cards: Vec<Value> = order
        .pins_last4
        .iter()
        .map(|last4| Value::String(last4_text(*last4)))
        .collect();
    let json = json!({
        "found": true,
        "order_id": order.order_id,
        "request_id": order.request_id,
        "authorization": order.authorization,
        "status": status_name(order.status),
        "reason": order.reason.map(|r| r.name()),
        "amount_minor": order.amount_minor,
        "taken_minor": order.taken_minor,
        "refunded_minor": order.refunded_minor,
        "pins_last4": cards,
        "at_ms": order.at_ms,
        "expires_at_ms": order.expires_at_ms,
    });
    Output::ok(json, text)
}
