//! `kessai void`: a merchant releases the whole hold of one of its own
//! authorizations.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::Client;
use crate::protocol::VoidResponse;
use clap::Args;
use serde_json::json;

/// The merchant is the principal of `--key`; it can void only its own
/// authorizations.
#[derive(Args, Debug)]
pub struct VoidArgs {
    /// The merchant's request id of the authorization to void.
    #[arg(long)]
    authorization: u64,
    /// The merchant's id for this void (capture and void ids share their
    /// own namespace); retrying with the same id is answered as the first
    /// time.
    #[arg(long)]
    request_id: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: VoidArgs) -> Result<Output, Failure> {
    let voided = client.void(args.request_id, args.authorization).await?;
    Ok(render(&voided))
}

fn render(voided: &VoidResponse) -> Output {
    let replayed = if voided.replayed { " (replayed)" } else { "" };
    let text = match voided.reason {
        None => format!("voided: {} released{replayed}\n", voided.released_minor),
        Some(reason) => format!("declined: {}{replayed}\n", reason.name()),
    };
    let json = json!({
        "status": if voided.is_voided() { "voided" } else { "declined" },
        "reason": voided.reason.map(|r| r.name()),
        "released_minor": voided.released_minor,
        "replayed": voided.replayed,
    });
    Output::ok(json, text)
}
