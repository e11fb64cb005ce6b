//! `kessai log verify DATA_DIR`: checks a stopped engine's command log
//! offline and prints its head hash, which an auditor can compare with one
//! printed earlier (the engine logs it at every start).

use super::output::{Failure, Output};
use crate::command_log::replay;
use crate::engine::LOG_DIR;
use crate::storage::Storage;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Check every record and the hash chain, and that the records after
    /// the checkpoint would replay; print the head hash. Writes nothing.
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
    let store = Storage::open_read_only(&args.data_dir).map_err(|e| Failure(e.to_string()))?;
    let verified = replay::verify(&args.data_dir.join(LOG_DIR), &store)
        .map_err(|e| Failure(format!("log verify: {e}")))?;
    let scan = &verified.scan;
    let head = hex::encode(scan.head);
    let base = hex::encode(scan.base);
    let text = format!(
        "log ok: {} records in {} segments ({} bytes), {} torn tail(s) skipped\n\
         after the checkpoint: {} records, {} changes (a start replays them)\n\
         chain base {base}\n\
         head {head}\n",
        scan.records,
        scan.segments,
        scan.bytes,
        scan.torn_tails,
        verified.tail.records,
        verified.tail.changes,
    );
    let json = json!({
        "ok": true,
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
    Ok(Output::ok(json, text))
}
