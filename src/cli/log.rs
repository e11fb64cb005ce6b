//! `kessai log verify DATA_DIR`: checks a stopped engine's command log
//! offline, replays it over the checkpoint in memory, proves conservation
//! on the result (the audit `kessai audit` runs on a live engine) and
//! prints the log's head hash, which an auditor can compare with one
//! printed earlier (the engine logs it at every start). Writes nothing.

use super::output::{Failure, Output, totals_json, totals_text};
use crate::command_log::replay;
use crate::engine::LOG_DIR;
use crate::storage::{Overlay, Storage};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Check every record and the hash chain, replay the records after the
    /// checkpoint in memory, audit the result, print the head hash. Writes
    /// nothing; exits 1 if the audit finds anything.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The stopped engine's data dir.
    pub data_dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl LogCommand {
    pub fn json(&self) -> bool {
        match self {
            LogCommand::Verify(args) => args.json,
        }
    }
}

pub fn run(command: LogCommand) -> Result<Output, Failure> {
    let LogCommand::Verify(args) = command;
    let checkpoint = Storage::open_read_only(&args.data_dir).map_err(|e| Failure(e.to_string()))?;
    let store = Overlay::new(&checkpoint);
    let verified = replay::verify(&args.data_dir.join(LOG_DIR), &store)
        .map_err(|e| Failure(format!("log verify: {e}")))?;
    let (audit, loaded) =
        crate::load::audit_offline(&store).map_err(|e| Failure(format!("log verify: {e}")))?;
    let scan = &verified.scan;
    let head = hex::encode(scan.head);
    let base = hex::encode(scan.base);
    let findings = audit.problems.len() as u64 + audit.problems_omitted;
    let verdict = if audit.ok {
        "audit ok: activated value = card balances + merchant owed + paid out + fees + breakage"
            .to_string()
    } else {
        format!("audit FAILED: {findings} finding(s)")
    };
    let mut text = format!(
        "log ok: {} records in {} segments ({} bytes), {} torn tail(s) skipped\n\
         after the checkpoint: {} records, {} changes, replayed in memory\n\
         loaded: {} cards, {} book rows\n\
         {verdict}\n",
        scan.records,
        scan.segments,
        scan.bytes,
        scan.torn_tails,
        verified.tail.records,
        verified.tail.changes,
        loaded.cards,
        loaded.book_rows,
    );
    for problem in &audit.problems {
        text += &format!("  {problem}\n");
    }
    text += &totals_text(&audit.totals);
    text += &format!("chain base {base}\nhead {head}\n");
    let json = json!({
        "ok": audit.ok,
        "audit": {
            "ok": audit.ok,
            "problems": audit.problems,
            "problems_omitted": audit.problems_omitted,
            "totals": totals_json(&audit.totals),
        },
        "cards": loaded.cards,
        "records": scan.records,
        "segments": scan.segments,
        "bytes": scan.bytes,
        "torn_tails": scan.torn_tails,
        "next_position": scan.next.0,
        "tail_records": verified.tail.records,
        "tail_changes": verified.tail.changes,
        "base": base,
        "head": head,
    });
    Ok(Output {
        json,
        text,
        status: if audit.ok { 0 } else { 1 },
    })
}
