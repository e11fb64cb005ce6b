//! `kessai remit`: the operator records that a store headquarters paid the
//! center toward its stores' debt for the cards they sold.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::Client;
use crate::protocol::RemitResponse;
use clap::Args;
use serde_json::{Value, json};

/// The operator is the principal of `--key`.
#[derive(Args, Debug)]
pub struct RemitArgs {
    /// The store headquarters (its principal id) that paid.
    #[arg(long)]
    store_hq: u32,
    /// Amount paid, in minor units (yen); at most what the HQ's stores owe.
    #[arg(long)]
    amount: u64,
    /// The payment's bank reference (1 to 64 bytes).
    #[arg(long)]
    reference: String,
    /// The operator's id for this remittance; retrying with the same id
    /// never records it twice.
    #[arg(long)]
    request_id: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: RemitArgs) -> Result<Output, Failure> {
    let remitted = client
        .remit(args.request_id, args.store_hq, args.amount, &args.reference)
        .await?;
    Ok(render(args.store_hq, &remitted))
}

fn render(store_hq_id: u32, remitted: &RemitResponse) -> Output {
    let replayed = if remitted.replayed { " (replayed)" } else { "" };
    let mut text = match remitted.reason {
        None => format!(
            "remitted {}: store HQ {store_hq_id} owed {} before{replayed}\n",
            remitted.amount_minor, remitted.owed_before_minor
        ),
        Some(reason) => format!(
            "declined: {} (store HQ {store_hq_id} owes {}){replayed}\n",
            reason.name(),
            remitted.owed_before_minor
        ),
    };
    for a in &remitted.allocations {
        text += &format!("  store {}: paid off {}\n", a.store_id, a.amount_minor);
    }
    let allocations: Vec<Value> = remitted
        .allocations
        .iter()
        .map(|a| {
            json!({
                "store_id": a.store_id,
                "amount_minor": a.amount_minor,
            })
        })
        .collect();
    let json = json!({
        "status": if remitted.is_remitted() { "remitted" } else { "declined" },
        "reason": remitted.reason.map(|r| r.name()),
        "amount_minor": remitted.amount_minor,
        "allocations": allocations,
        "owed_before_minor": remitted.owed_before_minor,
        "replayed": remitted.replayed,
    });
    Output::ok(json, text)
}
