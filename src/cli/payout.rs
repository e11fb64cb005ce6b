//! `kessai payout create|list|show|confirm`: the operator closes what the
//! center owes a merchant into payouts, looks at them, and confirms them
//! paid. A payout is named `MERCHANT-SEQ` (merchant 5's second: `5-2`).

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::{Client, REPORT_PAGE_LINES};
use crate::protocol::{PayoutCreateResponse, PayoutInfo, PayoutItem, PayoutItemKind, PayoutStatus};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Payouts asked for per PayoutList page: a payout takes up to about 200
/// bytes on the wire (a report line at most 48), so a page of
/// [`REPORT_PAGE_LINES`] of them would not fit a small `max_frame_bytes`.
const LIST_PAGE_PAYOUTS: u32 = 100;

#[derive(Subcommand, Debug)]
pub enum PayoutCommand {
    /// Close everything the center owes a merchant up to a cut-off into
    /// one payout: its payments less its refunds, less its fee and what
    /// earlier payouts carried.
    Create(CreateArgs),
    /// List a merchant's payouts, oldest first.
    List(ListArgs),
    /// Show a payout and every payment and refund it contains.
    Show(ShowArgs),
    /// Mark a payout paid, with the bank transfer's reference.
    Confirm(ConfirmArgs),
}

impl PayoutCommand {
    pub(super) fn client(&self) -> &ClientArgs {
        match self {
            PayoutCommand::Create(args) => &args.client,
            PayoutCommand::List(args) => &args.client,
            PayoutCommand::Show(args) => &args.client,
            PayoutCommand::Confirm(args) => &args.client,
        }
    }
}

/// The operator is the principal of `--key`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The merchant (its principal id) to pay.
    #[arg(long)]
    merchant: u32,
    /// The cut-off, engine clock in ms since the Unix epoch (default: now
    /// less the engine's `payout_settle_ms`; a later one is refused).
    #[arg(long)]
    until: Option<u64>,
    /// The operator's id for this payout; retrying with the same id never
    /// makes it twice.
    #[arg(long)]
    request_id: u64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The merchant (its principal id).
    #[arg(long)]
    merchant: u32,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The payout: MERCHANT-SEQ, e.g. 5-2.
    #[arg(value_parser = parse_payout_id)]
    payout: PayoutId,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ConfirmArgs {
    /// The payout: MERCHANT-SEQ, e.g. 5-2.
    #[arg(value_parser = parse_payout_id)]
    payout: PayoutId,
    /// The bank transfer's reference (1 to 64 bytes).
    #[arg(long)]
    reference: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// A payout's name: its merchant and its number among the merchant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PayoutId {
    merchant_id: u32,
    seq: u64,
}

fn parse_payout_id(text: &str) -> Result<PayoutId, String> {
    let usage = || format!("{text:?}: a payout is MERCHANT-SEQ, e.g. 5-2");
    let (merchant, seq) = text.split_once('-').ok_or_else(usage)?;
    let merchant_id = merchant.parse().map_err(|_| usage())?;
    let seq = seq.parse().map_err(|_| usage())?;
    if seq == 0 {
        return Err(format!("{text:?}: payouts are numbered from 1"));
    }
    Ok(PayoutId { merchant_id, seq })
}

pub async fn run(client: &Client, command: PayoutCommand) -> Result<Output, Failure> {
    match command {
        PayoutCommand::Create(args) => {
            let created = client
                .payout_create(args.request_id, args.merchant, args.until)
                .await?;
            Ok(render_created(args.merchant, &created))
        }
        PayoutCommand::List(args) => list(client, args.merchant).await,
        PayoutCommand::Show(args) => show(client, args.payout).await,
        PayoutCommand::Confirm(args) => {
            let id = args.payout;
            let confirmed = client
                .payout_confirm(id.merchant_id, id.seq, &args.reference)
                .await?;
            let replayed = if confirmed.replayed {
                " (replayed)"
            } else {
                ""
            };
            let text = format!("confirmed {}{replayed}\n", summary(&confirmed.payout));
            let json = json!({
                "payout": payout_json(&confirmed.payout),
                "replayed": confirmed.replayed,
            });
            Ok(Output::ok(json, text))
        }
    }
}

/// Every page of the merchant's payouts.
async fn list(client: &Client, merchant_id: u32) -> Result<Output, Failure> {
    let mut payouts: Vec<PayoutInfo> = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = client
            .payout_list(merchant_id, after_seq, LIST_PAGE_PAYOUTS)
            .await?;
        payouts.extend(page.payouts);
        match page.next {
            Some(next) if next > after_seq => after_seq = next,
            _ => break,
        }
    }
    let mut text = format!("merchant {merchant_id}: {} payouts\n", payouts.len());
    for payout in &payouts {
        text += &format!("  {}\n", summary(payout));
    }
    let json: Vec<Value> = payouts.iter().map(payout_json).collect();
    Ok(Output::ok(json!({ "payouts": json }), text))
}

/// The payout and every page of its items.
async fn show(client: &Client, id: PayoutId) -> Result<Output, Failure> {
    let mut page = client
        .payout_show(id.merchant_id, id.seq, None, REPORT_PAGE_LINES)
        .await?;
    let mut items: Vec<PayoutItem> = std::mem::take(&mut page.items);
    while let Some(after) = page.next {
        page = client
            .payout_show(id.merchant_id, id.seq, Some(after), REPORT_PAGE_LINES)
            .await?;
        // A page that does not move on would loop forever.
        if page.next.is_some_and(|next| next <= after) {
            page.next = None;
        }
        items.append(&mut page.items);
    }
    let payout = &page.payout;
    let mut text = format!("{}\n", details(payout));
    for item in &items {
        text += &format!(
            "  {:<7}  request {:>20}  {:>14}  at {}\n",
            kind_name(item.item.kind),
            item.item.request_id,
            item.amount_minor,
            item.at_ms
        );
    }
    let items: Vec<Value> = items.iter().map(item_json).collect();
    let json = json!({
        "payout": payout_json(payout),
        "items": items,
    });
    Ok(Output::ok(json, text))
}

fn render_created(merchant_id: u32, created: &PayoutCreateResponse) -> Output {
    let replayed = if created.replayed { " (replayed)" } else { "" };
    let text = match (&created.payout, created.reason) {
        (Some(payout), _) => format!("created {}{replayed}\n", details(payout)),
        (None, reason) => format!(
            "declined: {} (merchant {merchant_id}){replayed}\n",
            reason.map_or("unknown", |r| r.name())
        ),
    };
    let status = match created.status {
        PayoutStatus::Created => "created",
        PayoutStatus::Declined => "declined",
    };
    let json = json!({
        "status": status,
        "reason": created.reason.map(|r| r.name()),
        "payout": created.payout.as_ref().map(payout_json),
        "replayed": created.replayed,
    });
    Output::ok(json, text)
}

fn kind_name(kind: PayoutItemKind) -> &'static str {
    match kind {
        PayoutItemKind::Payment => "payment",
        PayoutItemKind::Refund => "refund",
    }
}

/// One line: the payout's name, amount, period and whether it was paid.
fn summary(payout: &PayoutInfo) -> String {
    let paid = match &payout.confirmed_reference {
        Some(reference) => format!("paid {reference} at {}", payout.confirmed_at_ms),
        None => "not confirmed".to_string(),
    };
    format!(
        "payout {}-{}: amount {}  period ({}, {}]  {paid}",
        payout.merchant_id, payout.seq, payout.amount_minor, payout.from_ms, payout.until_ms
    )
}

/// The summary, then how the amount was reached.
fn details(payout: &PayoutInfo) -> String {
    format!(
        "{}\n  payments {} for {}  refunds {} for {}  fee {} ({} bps)\n  carried in {}  carried out {}  created at {}",
        summary(payout),
        payout.payments,
        payout.payments_minor,
        payout.refunds,
        payout.refunds_minor,
        payout.fee_minor,
        payout.fee_bps,
        payout.carried_in_minor,
        payout.carried_out_minor,
        payout.created_at_ms
    )
}

fn payout_json(payout: &PayoutInfo) -> Value {
    json!({
        "merchant_id": payout.merchant_id,
        "seq": payout.seq,
        "from_ms": payout.from_ms,
        "until_ms": payout.until_ms,
        "payments": payout.payments,
        "payments_minor": payout.payments_minor,
        "refunds": payout.refunds,
        "refunds_minor": payout.refunds_minor,
        "fee_bps": payout.fee_bps,
        "fee_minor": payout.fee_minor,
        "carried_in_minor": payout.carried_in_minor,
        "amount_minor": payout.amount_minor,
        "carried_out_minor": payout.carried_out_minor,
        "created_at_ms": payout.created_at_ms,
        "confirmed_reference": payout.confirmed_reference,
        "confirmed_at_ms": payout.confirmed_at_ms,
    })
}

fn item_json(item: &PayoutItem) -> Value {
    json!({
        "kind": kind_name(item.item.kind),
        "request_id": item.item.request_id,
        "amount_minor": item.amount_minor,
        "at_ms": item.at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payout_ids_are_merchant_dash_seq() {
        assert_eq!(
            parse_payout_id("5-2"),
            Ok(PayoutId {
                merchant_id: 5,
                seq: 2
            })
        );
        for bad in ["5", "5-", "-2", "5-0", "5-2-1", "a-1", "5--2", ""] {
            assert!(parse_payout_id(bad).is_err(), "{bad:?}");
        }
    }
}
