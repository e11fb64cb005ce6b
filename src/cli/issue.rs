//! `kessai issue`: the center makes cards and writes their PINs to a file,
//! the only copy there will ever be.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::Client;
use crate::config::Config;
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct IssueArgs {
    #[arg(long)]
    count: u64,
    /// Face value in minor units (yen).
    #[arg(long)]
    face_value: u64,
    /// File for the new PINs; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client, args: IssueArgs, config: &Config) -> Result<Output, Failure> {
    let mut file = create_pin_file(&args.out)?;
    let chunk = config.limits.max_issue_per_request as u64;
    let mut issued = 0u64;
    while issued < args.count {
        let wanted = (args.count - issued).min(chunk) as u32;
        let reply = client.issue(wanted, args.face_value).await?;
        let mut lines = String::with_capacity(reply.pins.len() * 17);
        for pin in &reply.pins {
            lines.push_str(pin);
            lines.push('\n');
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Failure(format!("cannot write {}: {e}", args.out.display())))?;
        issued += reply.pins.len() as u64;
        if reply.pins.len() < wanted as usize {
            return Err(Failure(format!(
                "the engine made only {issued} of {} cards (PIN space nearly full); their PINs are in {}",
                args.count,
                args.out.display()
            )));
        }
    }
    let out = args.out.display().to_string();
    let text = format!(
        "issued {issued} cards of {}; PINs in {out}\n",
        args.face_value
    );
    let json = json!({ "issued": issued, "face_value_minor": args.face_value, "out": out });
    Ok(Output::ok(json, text))
}

/// Refuses to overwrite: a PIN file is the only copy of those PINs, and
/// clear PINs are money, readable by their owner only.
fn create_pin_file(path: &Path) -> Result<std::fs::File, Failure> {
    super::output::create_private_file(path)
}
