//! `kessai capture`: a merchant takes part or all of one of its own
//! authorizations; the rest of the hold is released.

use super::ClientArgs;
use super::output::{Failure, Output, last4_text};
use crate::client::Client;
use crate::protocol::CaptureResponse;
use clap::Args;
use serde_json::{Value, json};

/// The merchant is the principal of `--key`; it can capture only its own
/// authorizations.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The merchant's request id of the authorization to capture.
    #[arg(long)]
    authorization: u64,
    /// Amount to take, in minor units (yen); at most what was authorized.
    #[arg(long)]
    amount: u64,
    /// The merchant's id for this capture (capture and void ids share
    /// their own namespace); retrying with the same id never captures
    /// twice.
    #[arg(long)]
    request_id: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: CaptureArgs) -> Result<Output, Failure> {
    let captured = client
        .capture(args.request_id, args.authorization, args.amount)
        .await?;
    Ok(render(&captured))
}

fn render(captured: &CaptureResponse) -> Output {
    let replayed = if captured.replayed { " (replayed)" } else { "" };
    let mut text = match captured.reason {
        None => format!(
            "captured {}: {} released{replayed}\n",
            captured.amount_minor, captured.released_minor
        ),
        Some(reason) => format!("declined: {}{replayed}\n", reason.name()),
    };
    for p in &captured.parts {
        text += &format!(
            "  card ****{}: took {}\n",
            last4_text(p.pin_last4),
            p.taken_minor
        );
    }
    let parts: Vec<Value> = captured
        .parts
        .iter()
        .map(|p| {
            json!({
                "pin_last4": last4_text(p.pin_last4),
                "taken_minor": p.taken_minor,
            })
        })
        .collect();
    let json = json!({
        "status": if captured.is_captured() { "captured" } else { "declined" },
        "reason": captured.reason.map(|r| r.name()),
        "amount_minor": captured.amount_minor,
        "parts": parts,
        "released_minor": captured.released_minor,
        "replayed": captured.replayed,
    });
    Output::ok(json, text)
}
