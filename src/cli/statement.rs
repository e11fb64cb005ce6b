//! `kessai statement`: everything that moved one account in a period
//! (operator key), following the engine's pages to the end. For a merchant
//! (`--merchant`): its approved payments, its refunds and its payouts. For
//! a store (`--store`): its journal, every card it sold (activation), every
//! sale reversed and what remittances paid off its debt. As CSV (a header
//! and a row per line, nothing else, so a spreadsheet can re-add it) or as
//! one JSON object with the lines and their totals.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::{Client, REPORT_PAGE_LINES};
use crate::protocol::{StatementKind, StatementLine, StoreEntryKind, StoreStatementLine};
use clap::{Args, ValueEnum};
use serde_json::{Number, Value, json};

/// A merchant statement's CSV header; a row per line follows, in the same
/// order.
const CSV_HEADER: &str = "kind,id,at_ms,amount_minor,fee_minor";
/// A store statement's CSV header.
const STORE_CSV_HEADER: &str = "kind,at_ms,subject,request_id,amount_minor";

/// The operator is the principal of `--key`. Exactly one of `--merchant`
/// and `--store`.
#[derive(Args, Debug)]
pub struct StatementArgs {
    /// The merchant (its principal id): its payments, refunds and payouts.
    #[arg(long, required_unless_present = "store", conflicts_with = "store")]
    merchant: Option<u32>,
    /// The store: the cards it sold, the sales reversed and what
    /// remittances paid off its debt.
    #[arg(long)]
    store: Option<u32>,
    /// The period's start, excluded: engine clock in ms since the Unix
    /// epoch (default: 0, from the first).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// The period's end, included: engine clock in ms since the Unix epoch
    /// (default: no end, up to now).
    #[arg(long)]
    to: Option<u64>,
    /// csv: a header and a row per line, nothing else; json: one object
    /// with the lines and their totals (as with --json).
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Csv,
    Json,
}

pub async fn run(client: &Client, args: StatementArgs) -> Result<Output, Failure> {
    let to_ms = args.to.unwrap_or(u64::MAX);
    if args.from >= to_ms {
        return Err(Failure(format!(
            "--from {} must be before --to {to_ms}",
            args.from
        )));
    }
    match (args.merchant, args.store) {
        (Some(merchant_id), None) => {
            let lines = all_lines(client, merchant_id, args.from, to_ms).await?;
            render(merchant_id, args.from, to_ms, &lines, args.format)
        }
        (None, Some(store_id)) => {
            let lines = all_store_lines(client, store_id, args.from, to_ms).await?;
            render_store(store_id, args.from, to_ms, &lines, args.format)
        }
        _ => Err(Failure(
            "give exactly one of --merchant and --store".to_string(),
        )),
    }
}

/// Every page of the merchant's statement: payments, then refunds, then
/// payouts.
async fn all_lines(
    client: &Client,
    merchant_id: u32,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<StatementLine>, Failure> {
    follow_pages(|after| async move {
        let page = client
            .statement(merchant_id, from_ms, to_ms, after, REPORT_PAGE_LINES)
            .await?;
        Ok((page.lines, page.next))
    })
    .await
}

/// Fetches pages from the start (`None`) and from each page's `next`
/// until there is none, and gathers their lines. A `next` that does not
/// move on ends it (it would loop forever).
async fn follow_pages<C, L, F, Fut>(mut fetch: F) -> Result<Vec<L>, Failure>
where
    C: Copy + PartialOrd,
    F: FnMut(Option<C>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<L>, Option<C>), Failure>>,
{
    let mut lines = Vec::new();
    let mut after = None;
    loop {
        let (mut page, next) = fetch(after).await?;
        lines.append(&mut page);
        match next {
            Some(next) if Some(next) > after => after = Some(next),
            _ => break,
        }
    }
    Ok(lines)
}

fn render(
    merchant_id: u32,
    from_ms: u64,
    to_ms: u64,
    lines: &[StatementLine],
    format: Format,
) -> Result<Output, Failure> {
    let totals = Totals::of(lines)?;
    let net = totals.net_minor();
    let net_minor = Number::from_i128(net).ok_or_else(|| {
        Failure(format!(
            "the statement's net {net} does not fit a JSON number"
        ))
    })?;
    let json_lines: Vec<Value> = lines.iter().map(line_json).collect();
    let json = json!({
        "merchant_id": merchant_id,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "lines": json_lines,
        "totals": {
            "payments_minor": totals.payments_minor,
            "refunds_minor": totals.refunds_minor,
            "paid_out_minor": totals.paid_out_minor,
            "fees_minor": totals.fees_minor,
            "net_minor": Value::Number(net_minor),
        },
    });
    let text = match format {
        Format::Csv => csv(lines),
        Format::Json => format!("{json}\n"),
    };
    Ok(Output::ok(json, text))
}

/// The header, then a row per line; no totals row.
fn csv(lines: &[StatementLine]) -> String {
    let mut text = format!("{CSV_HEADER}\n");
    for line in lines {
        text += &format!(
            "{},{},{},{},{}\n",
            kind_name(line.line.kind),
            line.line.id,
            line.at_ms,
            line.amount_minor,
            line.fee_minor
        );
    }
    text
}

fn kind_name(kind: StatementKind) -> &'static str {
    match kind {
        StatementKind::Payment => "payment",
        StatementKind::Refund => "refund",
        StatementKind::Payout => "payout",
    }
}

fn line_json(line: &StatementLine) -> Value {
    json!({
        "kind": kind_name(line.line.kind),
        "id": line.line.id,
        "at_ms": line.at_ms,
        "amount_minor": line.amount_minor,
        "fee_minor": line.fee_minor,
    })
}

/// The lines' sums, by kind; the fees are every line's `fee_minor` (only
/// payouts have one).
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    payments_minor: u64,
    refunds_minor: u64,
    paid_out_minor: u64,
    fees_minor: u64,
}

impl Totals {
    fn of(lines: &[StatementLine]) -> Result<Totals, Failure> {
        let mut totals = Totals::default();
        for line in lines {
            let sum = match line.line.kind {
                StatementKind::Payment => &mut totals.payments_minor,
                StatementKind::Refund => &mut totals.refunds_minor,
                StatementKind::Payout => &mut totals.paid_out_minor,
            };
            *sum = add(*sum, line.amount_minor)?;
            totals.fees_minor = add(totals.fees_minor, line.fee_minor)?;
        }
        Ok(totals)
    }

    /// Payments less refunds, less what was paid out and the fees: what
    /// the period left the center owing the merchant (negative: the
    /// merchant got more than the period brought).
    fn net_minor(&self) -> i128 {
        i128::from(self.payments_minor)
            - i128::from(self.refunds_minor)
            - i128::from(self.paid_out_minor)
            - i128::from(self.fees_minor)
    }
}

fn add(sum: u64, amount_minor: u64) -> Result<u64, Failure> {
    sum.checked_add(amount_minor)
        .ok_or_else(|| Failure("the statement's sums overflow 64 bits".to_string()))
}

/// Every page of the store's statement, in the journal's order: by time,
/// then kind, subject and reference.
async fn all_store_lines(
    client: &Client,
    store_id: u32,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<StoreStatementLine>, Failure> {
    follow_pages(|after| async move {
        let page = client
            .store_statement(store_id, from_ms, to_ms, after, REPORT_PAGE_LINES)
            .await?;
        Ok((page.lines, page.next))
    })
    .await
}

fn render_store(
    store_id: u32,
    from_ms: u64,
    to_ms: u64,
    lines: &[StoreStatementLine],
    format: Format,
) -> Result<Output, Failure> {
    let totals = StoreTotals::of(lines)?;
    let owed = totals.owed_minor();
    let owed_minor = Number::from_i128(owed).ok_or_else(|| {
        Failure(format!(
            "the statement's owed {owed} does not fit a JSON number"
        ))
    })?;
    let json_lines: Vec<Value> = lines.iter().map(store_line_json).collect();
    let json = json!({
        "store_id": store_id,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "lines": json_lines,
        "totals": {
            "activations_minor": totals.activations_minor,
            "reversals_minor": totals.reversals_minor,
            "remittances_minor": totals.remittances_minor,
            "owed_minor": Value::Number(owed_minor),
        },
    });
    let text = match format {
        Format::Csv => store_csv(lines),
        Format::Json => format!("{json}\n"),
    };
    Ok(Output::ok(json, text))
}

/// The header, then a row per line; no totals row.
fn store_csv(lines: &[StoreStatementLine]) -> String {
    let mut text = format!("{STORE_CSV_HEADER}\n");
    for line in lines {
        text += &format!(
            "{},{},{},{},{}\n",
            store_kind_name(line.line.kind),
            line.line.at_ms,
            subject_text(line),
            line.line.request_id,
            line.amount_minor
        );
    }
    text
}

fn store_kind_name(kind: StoreEntryKind) -> &'static str {
    match kind {
        StoreEntryKind::Activation => "activation",
        StoreEntryKind::Reversal => "reversal",
        StoreEntryKind::Remittance => "remittance",
    }
}

/// A card (activation, reversal) as its 16 hex digits; the operator who
/// recorded a remittance as its decimal principal id.
fn subject_text(line: &StoreStatementLine) -> String {
    match line.line.kind {
        StoreEntryKind::Activation | StoreEntryKind::Reversal => {
            format!("{:016x}", line.line.subject)
        }
        StoreEntryKind::Remittance => line.line.subject.to_string(),
    }
}

/// As the CSV row; the subject is a string of 16 hex digits for a card
/// and a number (the operator's id) for a remittance.
fn store_line_json(line: &StoreStatementLine) -> Value {
    let subject = match line.line.kind {
        StoreEntryKind::Activation | StoreEntryKind::Reversal => Value::String(subject_text(line)),
        StoreEntryKind::Remittance => Value::from(line.line.subject),
    };
    json!({
        "kind": store_kind_name(line.line.kind),
        "at_ms": line.line.at_ms,
        "subject": subject,
        "request_id": line.line.request_id,
        "amount_minor": line.amount_minor,
    })
}

/// A store statement's sums, by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct StoreTotals {
    activations_minor: u64,
    reversals_minor: u64,
    remittances_minor: u64,
}

impl StoreTotals {
    fn of(lines: &[StoreStatementLine]) -> Result<StoreTotals, Failure> {
        let mut totals = StoreTotals::default();
        for line in lines {
            let sum = match line.line.kind {
                StoreEntryKind::Activation => &mut totals.activations_minor,
                StoreEntryKind::Reversal => &mut totals.reversals_minor,
                StoreEntryKind::Remittance => &mut totals.remittances_minor,
            };
            *sum = add(*sum, line.amount_minor)?;
        }
        Ok(totals)
    }

    /// Cards sold less sales reversed, less what remittances paid off:
    /// what the period added to the store's debt (negative: it paid off
    /// more than it sold). Over all time, the store's `owed_minor` in the
    /// report while it is not in credit.
    fn owed_minor(&self) -> i128 {
        i128::from(self.activations_minor)
            - i128::from(self.reversals_minor)
            - i128::from(self.remittances_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::protocol::{StatementRef, StoreStatementRef};
    use clap::Parser;

    fn line(kind: StatementKind, id: u64, amount_minor: u64, fee_minor: u64) -> StatementLine {
        StatementLine {
            line: StatementRef { kind, id },
            amount_minor,
            fee_minor,
            at_ms: 1_767_180_000_000 + id,
        }
    }

    fn lines() -> Vec<StatementLine> {
        vec![
            line(StatementKind::Payment, 1003, 2000, 0),
            line(StatementKind::Refund, 2001, 1000, 0),
            line(StatementKind::Payout, 1, 19_500, 500),
        ]
    }

    #[test]
    fn totals_net_payments_less_refunds_payouts_and_fees() {
        let totals = Totals::of(&lines()).ok().expect("no overflow");
        assert_eq!(
            totals,
            Totals {
                payments_minor: 2000,
                refunds_minor: 1000,
                paid_out_minor: 19_500,
                fees_minor: 500,
            }
        );
        assert_eq!(totals.net_minor(), -19_000);
        let overflow = [
            line(StatementKind::Payment, 1, u64::MAX, 0),
            line(StatementKind::Payment, 2, 1, 0),
        ];
        assert!(Totals::of(&overflow).is_err());
    }

    #[test]
    fn the_csv_is_a_header_and_a_row_per_line() {
        assert_eq!(
            csv(&lines()),
            "kind,id,at_ms,amount_minor,fee_minor\n\
             payment,1003,1767180001003,2000,0\n\
             refund,2001,1767180002001,1000,0\n\
             payout,1,1767180000001,19500,500\n"
        );
        assert_eq!(csv(&[]), "kind,id,at_ms,amount_minor,fee_minor\n");
    }

    #[test]
    fn the_json_has_the_lines_and_their_totals() {
        let output = render(5, 0, u64::MAX, &lines(), Format::Json)
            .ok()
            .expect("renders");
        assert_eq!(output.text, format!("{}\n", output.json));
        assert_eq!(output.json["merchant_id"], 5);
        assert_eq!(output.json["to_ms"], u64::MAX);
        assert_eq!(output.json["lines"][2]["kind"], "payout");
        assert_eq!(output.json["lines"][2]["fee_minor"], 500);
        assert_eq!(output.json["totals"]["net_minor"], -19_000);
        assert_eq!(output.json["totals"]["paid_out_minor"], 19_500);
    }

    fn store_line(
        at_ms: u64,
        kind: StoreEntryKind,
        subject: u64,
        request_id: u64,
        amount_minor: u64,
    ) -> StoreStatementLine {
        StoreStatementLine {
            line: StoreStatementRef {
                at_ms,
                kind,
                subject,
                request_id,
            },
            amount_minor,
        }
    }

    fn store_lines() -> Vec<StoreStatementLine> {
        vec![
            store_line(
                1_767_180_000_000,
                StoreEntryKind::Activation,
                0x0f1e_2d3c_4b5a_6978,
                77,
                5000,
            ),
            store_line(
                1_767_180_060_000,
                StoreEntryKind::Reversal,
                0x0f1e_2d3c_4b5a_6978,
                77,
                5000,
            ),
            store_line(1_767_180_120_000, StoreEntryKind::Remittance, 1, 6, 3000),
        ]
    }

    #[test]
    fn store_totals_owe_activations_less_reversals_and_remittances() {
        let totals = StoreTotals::of(&store_lines()).ok().expect("no overflow");
        assert_eq!(
            totals,
            StoreTotals {
                activations_minor: 5000,
                reversals_minor: 5000,
                remittances_minor: 3000,
            }
        );
        assert_eq!(totals.owed_minor(), -3000);
        let overflow = [
            store_line(1, StoreEntryKind::Remittance, 1, 1, u64::MAX),
            store_line(2, StoreEntryKind::Remittance, 1, 2, 1),
        ];
        assert!(StoreTotals::of(&overflow).is_err());
    }

    #[test]
    fn the_store_csv_prints_cards_in_hex_and_operators_in_decimal() {
        assert_eq!(
            store_csv(&store_lines()),
            "kind,at_ms,subject,request_id,amount_minor\n\
             activation,1767180000000,0f1e2d3c4b5a6978,77,5000\n\
             reversal,1767180060000,0f1e2d3c4b5a6978,77,5000\n\
             remittance,1767180120000,1,6,3000\n"
        );
        assert_eq!(
            store_csv(&[]),
            "kind,at_ms,subject,request_id,amount_minor\n"
        );
    }

    #[test]
    fn the_store_json_has_the_lines_and_their_totals() {
        let output = render_store(3, 0, u64::MAX, &store_lines(), Format::Json)
            .ok()
            .expect("renders");
        assert_eq!(output.text, format!("{}\n", output.json));
        assert_eq!(output.json["store_id"], 3);
        assert_eq!(output.json["to_ms"], u64::MAX);
        assert_eq!(output.json["lines"][0]["kind"], "activation");
        assert_eq!(output.json["lines"][0]["subject"], "0f1e2d3c4b5a6978");
        assert_eq!(output.json["lines"][2]["subject"], 1);
        assert_eq!(output.json["lines"][2]["request_id"], 6);
        assert_eq!(output.json["totals"]["activations_minor"], 5000);
        assert_eq!(output.json["totals"]["remittances_minor"], 3000);
        assert_eq!(output.json["totals"]["owed_minor"], -3000);
        assert!(output.json.get("merchant_id").is_none());
    }

    #[test]
    fn a_statement_is_of_exactly_one_merchant_or_store() {
        let parse = |account: &[&str]| {
            let mut argv = vec!["kessai", "statement", "--from", "5"];
            argv.extend_from_slice(account);
            Cli::try_parse_from(argv).map(|_| ())
        };
        assert!(parse(&["--merchant", "5"]).is_ok());
        assert!(parse(&["--store", "3"]).is_ok());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--merchant", "5", "--store", "3"]).is_err());
    }
}
