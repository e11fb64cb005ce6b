//! The `kessai` command line: `serve` runs the engine; every other
//! subcommand is a client of a running engine (see `--addr`).
//!
//! One file per subcommand: its arguments, its call, and how its answer is
//! shown, as text or (with `--json`) as one JSON object.
//!
//! Exit status: 0 on success and on a clean decline (a decline is an answer,
//! not a failure), 1 on errors (bad input, no engine, an engine error, a
//! failed audit), 2 on usage errors (clap's own).

mod activate;
mod audit;
mod authorize;
mod balance;
mod capture;
mod issue;
mod log;
mod order;
mod output;
mod pay;
mod payout;
mod principal;
mod refund;
mod remit;
mod report;
mod reverse_activation;
mod serve;
mod statement;
mod stats;
mod token;
mod void;

use crate::auth::Key;
use crate::client::{Client, Connect, TlsClient};
use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use output::{Failure, Output};
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
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine.
    Serve(serve::ServeArgs),
    /// Issue new cards (worthless until activated) and write their PINs to a
    /// file, one per line. The PINs are shown this once.
    Issue(issue::IssueArgs),
    /// Activate cards sold at a store (as its headquarters reports them).
    Activate(activate::ActivateArgs),
    /// Undo a store's sale of a card (as its headquarters), or forestall
    /// a sale whose activation was never answered.
    ReverseActivation(reverse_activation::ReverseActivationArgs),
    /// Pay a merchant from one or more cards (taken in the order given).
    Pay(pay::PayArgs),
    /// Give back part or all of one of the merchant's own payments.
    Refund(refund::RefundArgs),
    /// Hold an amount on one or more cards (taken in the order given), to
    /// capture or void later; released by itself if not captured in time.
    Authorize(authorize::AuthorizeArgs),
    /// Take part or all of one of the merchant's own authorizations (a
    /// payment); the rest of the hold is released.
    Capture(capture::CaptureArgs),
    /// Release the whole hold of one of the merchant's own authorizations.
    Void(void::VoidArgs),
    /// Record that a store headquarters paid the center toward its
    /// stores' debt (operator key); paid off store by store, ascending.
    Remit(remit::RemitArgs),
    /// Pay merchants what the center owes them (operator key): create,
    /// list, show and confirm payouts.
    #[command(subcommand)]
    Payout(payout::PayoutCommand),
    /// List a merchant's payments, refunds and payouts, or a store's
    /// activations, reversals and remittances, in a period (operator key),
    /// as CSV (default) or JSON with totals.
    Statement(statement::StatementArgs),
    /// Show a card's balance.
    Balance(balance::BalanceArgs),
    /// Show the merchant's payment or authorization under its order id.
    Order(order::OrderArgs),
    /// Show what each store owes and each merchant is owed.
    Report(report::ReportArgs),
    /// Prove that no money was created or lost; exits 1 on any finding.
    Audit(audit::AuditArgs),
    /// Show per-shard group-commit statistics.
    Stats(stats::StatsArgs),
    /// Manage who may talk to the engine (operator key).
    #[command(subcommand)]
    Principal(principal::PrincipalCommand),
    /// Check a stopped engine's command log (offline: no engine needed).
    #[command(subcommand)]
    Log(log::LogCommand),
}

/// What every client subcommand takes.
#[derive(Args, Debug, Clone)]
struct ClientArgs {
    /// Engine address (default: the config's listen address).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// The key file of the principal to act as.
    #[arg(long, env = "KESSAI_KEY")]
    key: Option<PathBuf>,
    /// Connect over TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, env = "KESSAI_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name the engine's certificate must carry (default: the address's
    /// IP).
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn connect_options(&self) -> Result<Connect, Failure> {
        let key = self.key.as_deref().map(Key::read).transpose()?;
        let tls = self
            .tls_ca
            .as_deref()
            .map(|ca| TlsClient::from_ca_file(ca, self.tls_server_name.as_deref()))
            .transpose()?;
        Ok(Connect { key, tls })
    }
}

/// Runs the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    // Offline: reads a data dir, needs neither a config nor an engine.
    let command = match cli.command {
        Command::Log(command) => return output::print(command.json(), log::run(command)),
        command => command,
    };
    let overrides = match &command {
        Command::Serve(args) => args.overrides(),
        _ => Default::default(),
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("kessai: {message}");
            return 1;
        }
    };
    let client_args = match &command {
        Command::Serve(_) => return serve::run(config),
        Command::Log(_) => unreachable!("answered above"),
        Command::Issue(args) => &args.client,
        Command::Activate(args) => &args.client,
        Command::ReverseActivation(args) => &args.client,
        Command::Pay(args) => &args.client,
        Command::Refund(args) => &args.client,
        Command::Authorize(args) => &args.client,
        Command::Capture(args) => &args.client,
        Command::Void(args) => &args.client,
        Command::Remit(args) => &args.client,
        Command::Payout(command) => command.client(),
        Command::Statement(args) => &args.client,
        Command::Balance(args) => &args.client,
        Command::Order(args) => &args.client,
        Command::Report(args) => &args.client,
        Command::Audit(args) => &args.client,
        Command::Stats(args) => &args.client,
        Command::Principal(command) => command.client(),
    };
    let json = client_args.json;
    let addr = client_args.addr.unwrap_or(config.listen);
    let outcome = client_args
        .connect_options()
        .and_then(|options| call(addr, &options, command, &config));
    output::print(json, outcome)
}

/// Connects, runs one client command, and waits at most [`CALL_TIMEOUT`].
fn call(
    addr: SocketAddr,
    options: &Connect,
    command: Command,
    config: &Config,
) -> Result<Output, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure(format!("cannot start a runtime: {error}")))?;
    runtime.block_on(async {
        let client = Client::connect_with(addr, options).await?;
        tokio::time::timeout(CALL_TIMEOUT, dispatch(&client, command, config))
            .await
            .unwrap_or_else(|_| {
                Err(Failure(format!(
                    "no answer from {addr} within {CALL_TIMEOUT:?}"
                )))
            })
    })
}

async fn dispatch(client: &Client, command: Command, config: &Config) -> Result<Output, Failure> {
    match command {
        Command::Serve(_) | Command::Log(_) => unreachable!("not a client command"),
        Command::Issue(args) => issue::run(client, args, config).await,
        Command::Activate(args) => activate::run(client, args).await,
        Command::ReverseActivation(args) => reverse_activation::run(client, args).await,
        Command::Pay(args) => pay::run(client, args).await,
        Command::Refund(args) => refund::run(client, args).await,
        Command::Authorize(args) => authorize::run(client, args).await,
        Command::Capture(args) => capture::run(client, args).await,
        Command::Void(args) => void::run(client, args).await,
        Command::Remit(args) => remit::run(client, args).await,
        Command::Payout(command) => payout::run(client, command).await,
        Command::Statement(args) => statement::run(client, args).await,
        Command::Balance(args) => balance::run(client, args).await,
        Command::Order(args) => order::run(client, args).await,
        Command::Report(args) => report::run(client, args).await,
        Command::Audit(_) => audit::run(client).await,
        Command::Stats(_) => stats::run(client).await,
        Command::Principal(command) => principal::run(client, command).await,
    }
}
