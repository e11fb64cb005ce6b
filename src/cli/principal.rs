//! `kessai principal add|list|revoke|rotate|cert`: who may talk to the
//! engine (operator key). `add` makes the new principal's key here and sends the engine only
//! its stored form; the key file is the only copy of the secret.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::auth::Key;
use crate::client::Client;
use crate::protocol::{PrincipalInfo, Role};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Register a principal and write its key file (once).
    Add(AddArgs),
    /// List every principal (no key material), following the pages.
    List(ListArgs),
    /// Revoke a principal: refused from its next request on, on connections
    /// already open too.
    Revoke(RevokeArgs),
    /// Give a principal a new key (written once to --out); the old key is
    /// refused from then on. The id, role and stores stay.
    Rotate(RotateArgs),
    /// Register a store HQ's client certificate for the ISO 8583 listener
    /// (mutual TLS), by its SHA-256 fingerprint.
    Cert(CertArgs),
    /// Bearer tokens of the HTTP API: issue, list, revoke.
    #[command(subcommand)]
    Token(super::token::TokenCommand),
}

impl PrincipalCommand {
    pub(super) fn client(&self) -> &ClientArgs {
        match self {
            PrincipalCommand::Add(args) => &args.client,
            PrincipalCommand::List(args) => &args.client,
            PrincipalCommand::Revoke(args) => &args.client,
            PrincipalCommand::Rotate(args) => &args.client,
            PrincipalCommand::Cert(args) => &args.client,
            PrincipalCommand::Token(command) => command.client(),
        }
    }
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// operator, store-hq or merchant.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The principal's id: a merchant's id is its merchant id. Ids are
    /// never reused, revoked ones included.
    #[arg(long)]
    id: u32,
    /// For a store HQ: the stores it activates for, comma-separated.
    #[arg(long, value_delimiter = ',')]
    stores: Vec<u32>,
    /// The new key file; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[arg(long)]
    id: u32,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[arg(long)]
    id: u32,
    /// The new key file; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct CertArgs {
    /// The store HQ the certificate acts as.
    #[arg(long)]
    id: u32,
    /// The client certificate, a PEM file (its first certificate is the
    /// one registered).
    #[arg(
        long,
        conflicts_with = "fingerprint",
        required_unless_present = "fingerprint"
    )]
    cert: Option<PathBuf>,
    /// Or its SHA-256 fingerprint: 64 hex digits (colons allowed).
    #[arg(long)]
    fingerprint: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| "a role is operator, store-hq or merchant".to_string())
}

pub async fn run(client: &Client, command: PrincipalCommand) -> Result<Output, Failure> {
    match command {
        PrincipalCommand::Add(args) => add(client, args).await,
        PrincipalCommand::List(_) => {
            let principals = client.principal_list().await?;
            let text: String = principals.iter().map(line).collect();
            let json: Vec<Value> = principals.iter().map(info_json).collect();
            Ok(Output::ok(json!({ "principals": json }), text))
        }
        PrincipalCommand::Revoke(args) => {
            let info = client.principal_revoke(args.id).await?;
            Ok(Output::ok(
                info_json(&info),
                format!("revoked {}", line(&info)),
            ))
        }
        PrincipalCommand::Rotate(args) => rotate(client, args).await,
        PrincipalCommand::Cert(args) => cert(client, args).await,
        PrincipalCommand::Token(command) => super::token::run(client, command).await,
    }
}

async fn cert(client: &Client, args: CertArgs) -> Result<Output, Failure> {
    let fingerprint = match (&args.cert, &args.fingerprint) {
        (Some(path), _) => fingerprint_of_pem(path)?,
        (None, Some(text)) => parse_fingerprint(text)?,
        (None, None) => return Err(Failure("give --cert or --fingerprint".into())),
    };
    let info = client.principal_cert(args.id, fingerprint).await?;
    let fingerprints: Vec<String> = info.fingerprints.iter().map(hex::encode).collect();
    let text = format!(
        "store HQ {} connects over ISO 8583 with {}\n",
        info.id,
        fingerprints.join(", ")
    );
    let json = json!({
        "id": info.id,
        "fingerprint": hex::encode(fingerprint),
        "fingerprints": fingerprints,
    });
    Ok(Output::ok(json, text))
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
fn fingerprint_of_pem(path: &std::path::Path) -> Result<[u8; 32], Failure> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::pem_file_iter(path)
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?
        .next()
        .ok_or_else(|| Failure(format!("{} holds no certificate", path.display())))?
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    Ok(crate::auth::certs::fingerprint(&cert))
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], Failure> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    hex::decode(&digits)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Failure("a fingerprint is 64 hex digits (SHA-256)".into()))
}

async fn rotate(client: &Client, args: RotateArgs) -> Result<Output, Failure> {
    refuse_existing(&args.out)?;
    let key = Key::generate(args.id);
    let info = client.principal_rotate(&key).await?;
    key.write_new(&args.out, info.role.name())?;
    let mut json = info_json(&info);
    json["key_file"] = json!(args.out.display().to_string());
    let text = format!("new key for {}in {}\n", line(&info), args.out.display());
    Ok(Output::ok(json, text))
}

/// A key file is never overwritten: it may be the only copy of a secret.
pub(super) fn refuse_existing(path: &std::path::Path) -> Result<(), Failure> {
    if path.exists() {
        return Err(Failure(format!(
            "{} exists; a key file is never overwritten",
            path.display()
        )));
    }
    Ok(())
}

async fn add(client: &Client, args: AddArgs) -> Result<Output, Failure> {
    refuse_existing(&args.out)?;
    let key = Key::generate(args.id);
    let info = client.principal_add(&key, args.role, &args.stores).await?;
    key.write_new(&args.out, args.role.name())?;
    let mut json = info_json(&info);
    json["key_file"] = json!(args.out.display().to_string());
    let text = format!("added {}key in {}\n", line(&info), args.out.display());
    Ok(Output::ok(json, text))
}

fn line(info: &PrincipalInfo) -> String {
    let stores = if info.stores.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = info.stores.iter().map(u32::to_string).collect();
        format!(" stores {}", list.join(","))
    };
    let revoked = if info.revoked { " (revoked)" } else { "" };
    format!("{} {}{stores}{revoked}\n", info.role.name(), info.id)
}

fn info_json(info: &PrincipalInfo) -> Value {
    json!({
        "id": info.id,
        "role": info.role.name(),
        "stores": info.stores,
        "revoked": info.revoked,
    })
}
