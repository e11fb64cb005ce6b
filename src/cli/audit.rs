//! `kessai audit`: the conservation proof; exits 1 on any finding.

use super::ClientArgs;
use super::output::{Failure, Output, totals_json, totals_text};
use crate::client::Client;
use crate::protocol::AuditResponse;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client) -> Result<Output, Failure> {
    Ok(render(&client.audit().await?))
}

fn render(audit: &AuditResponse) -> Output {
    let mut text = if audit.ok {
        "audit ok: activated value = card balances + merchant owed + paid out + fees + breakage\n"
            .to_string()
    } else {
        format!(
            "audit FAILED: {} finding(s)\n",
            audit.problems.len() as u64 + audit.problems_omitted
        )
    };
    for problem in &audit.problems {
        text += &format!("  {problem}\n");
    }
    if audit.problems_omitted > 0 {
        text += &format!("  ... and {} more not listed\n", audit.problems_omitted);
    }
    text += &totals_text(&audit.totals);
    let json = json!({
        "ok": audit.ok,
        "problems": audit.problems,
        "problems_omitted": audit.problems_omitted,
        "totals": totals_json(&audit.totals),
    });
    Output {
        json,
        text,
        status: if audit.ok { 0 } else { 1 },
    }
}
