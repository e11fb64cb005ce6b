//! `kessai activate`: a store's headquarters reports cards sold.

use super::ClientArgs;
use super::output::{Failure, Output, last4_text};
use crate::client::Client;
use crate::pin::Pin;
use crate::protocol::ActivationResult;
use clap::Args;
use serde_json::{Value, json};

/// PINs per request: well within the engine's default limit of 4096.
const PINS_PER_REQUEST: usize = 1024;

#[derive(Args, Debug)]
pub struct ActivateArgs {
    #[arg(long)]
    store: u32,
    /// POS transaction reference.
    #[arg(long, default_value_t = 0)]
    pos_ref: u64,
    #[arg(required = true)]
    pins: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: ActivateArgs) -> Result<Output, Failure> {
    let mut results = Vec::with_capacity(args.pins.len());
    let mut text = String::new();
    let mut activated = 0usize;
    for chunk in args.pins.chunks(PINS_PER_REQUEST) {
        let reply = client.activate(args.store, args.pos_ref, chunk).await?;
        for (pin, result) in chunk.iter().zip(reply.results) {
            let line = render_one(pin, result);
            activated += usize::from(line.activated);
            text += &line.text;
            results.push(line.json);
        }
    }
    let json = json!({ "store": args.store, "activated": activated, "results": results });
    Ok(Output::ok(json, text))
}

struct Line {
    activated: bool,
    text: String,
    json: Value,
}

fn render_one(pin: &str, result: ActivationResult) -> Line {
    let label = Pin::parse(pin)
        .map(|p| last4_text(p.last4()))
        .unwrap_or_else(|_| "????".into());
    let (status, reason, face) = match result {
        ActivationResult::Activated { face_value_minor } => {
            ("activated", None, Some(face_value_minor))
        }
        ActivationResult::Declined { reason } => ("declined", Some(reason.name()), None),
        ActivationResult::InvalidPin => ("declined", Some("invalid_pin"), None),
        ActivationResult::LockedOut => ("declined", Some("locked_out"), None),
    };
    Line {
        activated: face.is_some(),
        text: format!(
            "card ****{label}: {status}{}\n",
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        json: json!({
            "pin_last4": label,
            "status": status,
            "reason": reason,
            "face_value_minor": face,
        }),
    }
}
