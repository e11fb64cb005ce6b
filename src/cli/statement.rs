//! `kessai statement`: everything that moved a merchant's account in a
//! period (operator key): its approved payments, its refunds and its
//! payouts, following the engine's pages to the end. As CSV (a header and
//! a row per line, nothing else, so a spreadsheet can re-add it) or as one
//! JSON object with the lines and their totals.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::{Client, REPORT_PAGE_LINES};
use crate::protocol::{StatementKind, StatementLine};
use clap::{Args, ValueEnum};
use serde_json::{Number, Value, json};

/// The CSV header; a row per line follows, in the same order.
const CSV_HEADER: &str = "kind,id,at_ms,amount_minor,fee_minor";

/// The operator is the principal of `--key`.
#[derive(Args, Debug)]
pub struct StatementArgs {
    /// The merchant (its principal id).
    #[arg(long)]
    merchant: u32,
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
    let lines = all_lines(client, args.merchant, args.from, to_ms).await?;
    render(args.merchant, args.from, to_ms, &lines, args.format)
}

/// Every page of the merchant's statement: payments, then refunds, then
/// payouts.
async fn all_lines(
    client: &Client,
    merchant_id: u32,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<StatementLine>, Failure> {
    let mut lines = Vec::new();
    let mut after = None;
    loop {
        let mut page = client
            .statement(merchant_id, from_ms, to_ms, after, REPORT_PAGE_LINES)
            .await?;
        lines.append(&mut page.lines);
        match page.next {
            // A page that does not move on would loop forever.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::StatementRef;

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
}
