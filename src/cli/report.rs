//! `kessai report`: what each store owes, what each merchant is owed.

use super::ClientArgs;
use super::output::{Failure, Output, totals_json, totals_text};
use crate::client::Client;
use crate::protocol::ReportResponse;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client) -> Result<Output, Failure> {
    Ok(render(&client.report().await?))
}

fn render(report: &ReportResponse) -> Output {
    let mut text = String::from("stores (owe the center):\n");
    for line in &report.stores {
        text += &format!(
            "  store {:>10}  cards {:>8}  owed {:>14}\n",
            line.store_id, line.cards_activated, line.owed_minor
        );
    }
    text += "merchants (owed by the center):\n";
    for line in &report.merchants {
        text += &format!(
            "  merchant {:>7}  owed {:>14}\n",
            line.merchant_id, line.owed_minor
        );
    }
    text += &totals_text(&report.totals);
    let stores: Vec<_> = report
        .stores
        .iter()
        .map(|l| {
            json!({
                "store_id": l.store_id,
                "cards_activated": l.cards_activated,
                "owed_minor": l.owed_minor,
            })
        })
        .collect();
    let merchants: Vec<_> = report
        .merchants
        .iter()
        .map(|l| json!({ "merchant_id": l.merchant_id, "owed_minor": l.owed_minor }))
        .collect();
    let json = json!({
        "stores": stores,
        "merchants": merchants,
        "totals": totals_json(&report.totals),
    });
    Output::ok(json, text)
}
