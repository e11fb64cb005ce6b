//! The `kessai` command line: `serve` runs the engine; every other
//! subcommand is a client of a running engine (see `--addr`).
//!
//! Exit status: 0 on success and on a clean decline (a decline is an answer,
//! not a failure), 1 on errors (bad input, no engine, an engine error, a
//! failed audit), 2 on usage errors (clap's own).

use crate::client::{Client, ClientError};
use crate::config::{Config, Overrides};
use crate::pin::Pin;
use crate::protocol::{ActivationResult, PayResponse, Totals};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long a CLI command waits for the engine.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "kessai",
    version,
    about = "Settlement engine for prepaid PIN cards"
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults apply
    /// (the same values as config/kessai.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the engine.
    Serve {
        /// Address to listen on (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Number of card shards (overrides the config).
        #[arg(long)]
        shards: Option<usize>,
        /// Serve Prometheus metrics over HTTP here (overrides the config).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Issue new cards (worthless until activated) and write their PINs to a
    /// file, one per line. The PINs are shown this once.
    Issue {
        #[arg(long)]
        count: u64,
        /// Face value in minor units (yen).
        #[arg(long)]
        face_value: u64,
        /// File for the new PINs; must not exist yet.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Activate cards sold at a store (as its headquarters reports them).
    Activate {
        #[arg(long)]
        store: u32,
        /// POS transaction reference.
        #[arg(long, default_value_t = 0)]
        pos_ref: u64,
        #[arg(required = true)]
        pins: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pay a merchant from one or more cards (taken in the order given).
    Pay {
        #[arg(long)]
        merchant: u32,
        /// Amount in minor units (yen).
        #[arg(long)]
        amount: u64,
        /// The merchant's id for this payment; retrying with the same id
        /// never pays twice.
        #[arg(long)]
        request_id: u64,
        #[arg(required = true)]
        pins: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a card's balance.
    Balance {
        pin: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what each store owes and each merchant is owed.
    Report {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prove that no money was created or lost; exits 1 on any finding.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show per-shard group-commit statistics.
    Stats {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Engine address (default: the config's listen address).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A failed command: the message for stderr (or the JSON error object).
pub struct Failure(pub String);

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure(error.to_string())
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure(message)
    }
}

/// Runs the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let overrides = match &cli.command {
        Command::Serve {
            listen,
            data_dir,
            shards,
            metrics_listen,
        } => Overrides {
            listen: *listen,
            metrics_listen: *metrics_listen,
            data_dir: data_dir.clone(),
            shards: *shards,
        },
        _ => Overrides::default(),
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("kessai: {message}");
            return 1;
        }
    };
    if let Command::Serve { .. } = cli.command {
        return match crate::engine::serve(config) {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("kessai: {message}");
                1
            }
        };
    }
    let client_args = match &cli.command {
        Command::Issue { client, .. }
        | Command::Activate { client, .. }
        | Command::Pay { client, .. }
        | Command::Balance { client, .. }
        | Command::Report { client, .. }
        | Command::Audit { client, .. }
        | Command::Stats { client, .. } => client.clone(),
        Command::Serve { .. } => unreachable!("handled above"),
    };
    let addr = client_args.addr.unwrap_or(config.listen);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kessai: cannot start a runtime: {error}");
            return 1;
        }
    };
    let outcome = runtime.block_on(async {
        let client = Client::connect(addr).await?;
        match tokio::time::timeout(CALL_TIMEOUT, client_command(&client, cli.command, &config))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(Failure(format!(
                "no answer from {addr} within {CALL_TIMEOUT:?}"
            ))),
        }
    });
    match outcome {
        Ok(Output { json, text, status }) => {
            let mut stdout = std::io::stdout().lock();
            let _ = if client_args.json {
                writeln!(stdout, "{json}")
            } else {
                write!(stdout, "{text}")
            };
            status
        }
        Err(Failure(message)) => {
            if client_args.json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("kessai: {message}");
            }
            1
        }
    }
}

/// What a client command prints, in both forms, and its exit status.
pub struct Output {
    json: Value,
    text: String,
    status: i32,
}

async fn client_command(
    client: &Client,
    command: Command,
    config: &Config,
) -> Result<Output, Failure> {
    match command {
        Command::Issue {
            count,
            face_value,
            out,
            ..
        } => issue(client, count, face_value, &out, config).await,
        Command::Activate {
            store,
            pos_ref,
            pins,
            ..
        } => activate(client, store, pos_ref, &pins).await,
        Command::Pay {
            merchant,
            amount,
            request_id,
            pins,
            ..
        } => {
            check_pins(&pins)?;
            let paid = client.pay(merchant, request_id, amount, &pins).await?;
            Ok(pay_output(&paid))
        }
        Command::Balance { pin, .. } => {
            check_pins(std::slice::from_ref(&pin))?;
            let balance = client.balance(&pin).await?;
            Ok(Output {
                json: json!({
                    "state": balance.state.name(),
                    "face_value_minor": balance.face_value_minor,
                    "balance_minor": balance.balance_minor,
                    "available_minor": balance.available_minor,
                }),
                text: format!(
                    "{}: balance {} of {} (available {})\n",
                    balance.state.name(),
                    balance.balance_minor,
                    balance.face_value_minor,
                    balance.available_minor
                ),
                status: 0,
            })
        }
        Command::Report { .. } => {
            let report = client.report().await?;
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
            Ok(Output {
                json: json!({
                    "stores": report.stores.iter().map(|l| json!({
                        "store_id": l.store_id,
                        "cards_activated": l.cards_activated,
                        "owed_minor": l.owed_minor,
                    })).collect::<Vec<_>>(),
                    "merchants": report.merchants.iter().map(|l| json!({
                        "merchant_id": l.merchant_id,
                        "owed_minor": l.owed_minor,
                    })).collect::<Vec<_>>(),
                    "totals": totals_json(&report.totals),
                }),
                text,
                status: 0,
            })
        }
        Command::Audit { .. } => {
            let audit = client.audit().await?;
            let mut text = if audit.ok {
                "audit ok: activated value = card balances + merchant credits\n".to_string()
            } else {
                format!("audit FAILED: {} finding(s)\n", audit.problems.len())
            };
            for problem in &audit.problems {
                text += &format!("  {problem}\n");
            }
            text += &totals_text(&audit.totals);
            Ok(Output {
                json: json!({
                    "ok": audit.ok,
                    "problems": audit.problems,
                    "totals": totals_json(&audit.totals),
                }),
                text,
                status: if audit.ok { 0 } else { 1 },
            })
        }
        Command::Stats { .. } => {
            let stats = client.stats().await?;
            let mut text = String::from(
                "shard      cards  B/card   batches        ops  batch p50/p99/max  sync us p50/p99\n",
            );
            for s in &stats.shards {
                text += &format!(
                    "{:>5} {:>10} {:>7} {:>9} {:>10}  {:>5}/{:>5}/{:>5}  {:>7}/{:>7}\n",
                    s.shard,
                    s.cards,
                    s.card_map_bytes.checked_div(s.cards).unwrap_or(0),
                    s.batches,
                    s.ops,
                    s.batch_ops_p50,
                    s.batch_ops_p99,
                    s.batch_ops_max,
                    s.sync_us_p50,
                    s.sync_us_p99
                );
            }
            let shards: Vec<Value> = stats
                .shards
                .iter()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .collect();
            Ok(Output {
                json: json!({ "shards": shards }),
                text,
                status: 0,
            })
        }
        Command::Serve { .. } => unreachable!("serve is not a client command"),
    }
}

/// Rejects typos locally, with the position, before bothering the engine
/// (which checks again).
fn check_pins(pins: &[String]) -> Result<(), Failure> {
    for (index, pin) in pins.iter().enumerate() {
        if let Err(error) = Pin::parse(pin) {
            return Err(Failure(format!("PIN at position {}: {error}", index + 1)));
        }
    }
    Ok(())
}

fn last4_text(pin_last4: u16) -> String {
    format!("{pin_last4:04}")
}

pub fn pay_output(paid: &PayResponse) -> Output {
    let parts: Vec<Value> = paid
        .parts
        .iter()
        .map(|p| {
            json!({
                "pin_last4": last4_text(p.pin_last4),
                "taken_minor": p.taken_minor,
                "remaining_minor": p.remaining_minor,
            })
        })
        .collect();
    let mut text = if paid.is_approved() {
        format!(
            "approved {}: {} left on the card(s){}\n",
            paid.amount_minor,
            paid.remaining_minor,
            if paid.replayed { " (replayed)" } else { "" }
        )
    } else {
        format!(
            "declined: {}{}{}\n",
            paid.reason.map_or("unknown", |r| r.name()),
            paid.position
                .map(|p| format!(" (card {p})"))
                .unwrap_or_default(),
            if paid.replayed { " (replayed)" } else { "" }
        )
    };
    for p in &paid.parts {
        text += &format!(
            "  card ****{}: took {}, {} left\n",
            last4_text(p.pin_last4),
            p.taken_minor,
            p.remaining_minor
        );
    }
    Output {
        json: json!({
            "status": if paid.is_approved() { "approved" } else { "declined" },
            "reason": paid.reason.map(|r| r.name()),
            "position": paid.position,
            "amount_minor": paid.amount_minor,
            "remaining_minor": paid.remaining_minor,
            "parts": parts,
            "replayed": paid.replayed,
        }),
        text,
        status: 0,
    }
}

fn totals_json(totals: &Totals) -> Value {
    serde_json::to_value(totals).unwrap_or(Value::Null)
}

fn totals_text(totals: &Totals) -> String {
    format!(
        "totals: cards {} (issued {}, active {}, exhausted {})\n        activated {}  balances {}  held {}  store owed {}  merchant owed {}\n",
        totals.cards,
        totals.cards_issued,
        totals.cards_active,
        totals.cards_exhausted,
        totals.activated_minor,
        totals.balance_minor,
        totals.held_minor,
        totals.store_owed_minor,
        totals.merchant_owed_minor
    )
}

async fn activate(
    client: &Client,
    store: u32,
    pos_ref: u64,
    pins: &[String],
) -> Result<Output, Failure> {
    let mut results = Vec::with_capacity(pins.len());
    let mut text = String::new();
    let mut activated = 0usize;
    // Stay within the engine's per-request limit (default 4096).
    for chunk in pins.chunks(1024) {
        let reply = client.activate(store, pos_ref, chunk).await?;
        for (pin, result) in chunk.iter().zip(reply.results) {
            let label = Pin::parse(pin)
                .map(|p| last4_text(p.last4()))
                .unwrap_or_else(|_| "????".into());
            let (status, reason, face) = match result {
                ActivationResult::Activated { face_value_minor } => {
                    activated += 1;
                    ("activated", None, Some(face_value_minor))
                }
                ActivationResult::Declined { reason } => ("declined", Some(reason.name()), None),
                ActivationResult::InvalidPin => ("declined", Some("invalid_pin"), None),
            };
            text += &format!(
                "card ****{label}: {status}{}\n",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            );
            results.push(json!({
                "pin_last4": label,
                "status": status,
                "reason": reason,
                "face_value_minor": face,
            }));
        }
    }
    Ok(Output {
        json: json!({ "store": store, "activated": activated, "results": results }),
        text,
        status: 0,
    })
}

async fn issue(
    client: &Client,
    count: u64,
    face_value: u64,
    out: &std::path::Path,
    config: &Config,
) -> Result<Output, Failure> {
    // Refuse to overwrite: a PIN file is the only copy of those PINs.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        // Clear PINs are money: readable by their owner only.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .map_err(|e| Failure(format!("cannot create {}: {e}", out.display())))?;
    let chunk = config.limits.max_issue_per_request as u64;
    let mut issued = 0u64;
    while issued < count {
        let wanted = (count - issued).min(chunk) as u32;
        let reply = client.issue(wanted, face_value).await?;
        let mut lines = String::with_capacity(reply.pins.len() * 17);
        for pin in &reply.pins {
            lines.push_str(pin);
            lines.push('\n');
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
        issued += reply.pins.len() as u64;
        if reply.pins.len() < wanted as usize {
            return Err(Failure(format!(
                "the engine made only {issued} of {count} cards (PIN space nearly full); their PINs are in {}",
                out.display()
            )));
        }
    }
    Ok(Output {
        json: json!({ "issued": issued, "face_value_minor": face_value, "out": out.display().to_string() }),
        text: format!(
            "issued {issued} cards of {face_value}; PINs in {}\n",
            out.display()
        ),
        status: 0,
    })
}
