//! `kessai report`: what each store owes, what each merchant is owed.
//! The engine answers in pages (at most `max_report_lines` lines each);
//! this command follows them to the end.

use super::ClientArgs;
use super::output::{Failure, Output, totals_json, totals_text};
use crate::client::{Client, REPORT_PAGE_LINES};
use crate::protocol::{ReportAccount, ReportResponse};
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this store's line.
    #[arg(long, conflicts_with = "merchant")]
    pub store: Option<u32>,
    /// Only this merchant's line.
    #[arg(long)]
    pub merchant: Option<u32>,
    /// Lines asked for per page (the engine sends at most its
    /// `max_report_lines`).
    #[arg(long, default_value_t = REPORT_PAGE_LINES)]
    pub page_lines: u32,
}

pub async fn run(client: &Client, args: ReportArgs) -> Result<Output, Failure> {
    let only = match (args.store, args.merchant) {
        (Some(store), _) => Some(ReportAccount::Store(store)),
        (None, Some(merchant)) => Some(ReportAccount::Merchant(merchant)),
        (None, None) => None,
    };
    Ok(render(&client.report_all(only, args.page_lines).await?))
}

fn render(report: &ReportResponse) -> Output {
    let mut text = String::from("stores (owe the center):\n");
    for line in &report.stores {
        text += &format!(
            "  store {:>10}  cards {:>8}  owed {:>14}  reversed {:>14}  remitted {:>14}\n",
            line.store_id,
            line.cards_activated,
            line.owed_minor,
            line.reversed_minor,
            line.remitted_minor
        );
    }
    text += "merchants (owed by the center):\n";
    for line in &report.merchants {
        text += &format!(
            "  merchant {:>7}  owed {:>14}  refunded {:>14}  paid out {:>14}  fees {:>14}\n",
            line.merchant_id,
            line.owed_minor,
            line.refunded_minor,
            line.paid_out_minor,
            line.fees_minor
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
                "reversed_minor": l.reversed_minor,
                "remitted_minor": l.remitted_minor,
            })
        })
        .collect();
    let merchants: Vec<_> = report
        .merchants
        .iter()
        .map(|l| {
            json!({
                "merchant_id": l.merchant_id,
                "owed_minor": l.owed_minor,
                "refunded_minor": l.refunded_minor,
                "paid_out_minor": l.paid_out_minor,
                "fees_minor": l.fees_minor,
            })
        })
        .collect();
    let json = json!({
        "stores": stores,
        "merchants": merchants,
        "totals": totals_json(&report.totals),
    });
    Output::ok(json, text)
}
