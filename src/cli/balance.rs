//! `kessai balance`: a card's state and balance.

use super::ClientArgs;
use super::output::{Failure, Output, check_pins};
use crate::client::Client;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct BalanceArgs {
    pin: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: BalanceArgs) -> Result<Output, Failure> {
    check_pins(std::slice::from_ref(&args.pin))?;
    let balance = client.balance(&args.pin).await?;
    let json = json!({
        "state": balance.state.name(),
        "face_value_minor": balance.face_value_minor,
        "balance_minor": balance.balance_minor,
        "available_minor": balance.available_minor,
    });
    let text = format!(
        "{}: balance {} of {} (available {})\n",
        balance.state.name(),
        balance.balance_minor,
        balance.face_value_minor,
        balance.available_minor
    );
    Ok(Output::ok(json, text))
}
