//! `kessai principal token issue|list|revoke`: the HTTP API's bearer
//! tokens (operator key). `issue` makes the token here and sends the
//! engine only its SHA-256; the token file is the only copy.

use super::ClientArgs;
use super::output::{Failure, Output};
use super::principal::refuse_existing;
use crate::auth::tokens::{self, TOKEN_ID_BYTES};
use crate::client::Client;
use crate::protocol::PrincipalTokens;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token for a principal and write it to --out (once). A
    /// principal may hold several, so a rotation has no gap.
    Issue(IssueArgs),
    /// List a principal's tokens by id (no token material).
    List(ListArgs),
    /// Revoke one token of a principal: refused from its next request on.
    Revoke(RevokeArgs),
}

impl TokenCommand {
    pub(super) fn client(&self) -> &ClientArgs {
        match self {
            TokenCommand::Issue(args) => &args.client,
            TokenCommand::List(args) => &args.client,
            TokenCommand::Revoke(args) => &args.client,
        }
    }
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    #[arg(long)]
    id: u32,
    /// The token file; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    id: u32,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[arg(long)]
    id: u32,
    /// The token's id, as `list` and `issue` show it (16 hex digits).
    #[arg(long)]
    token: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(client: &Client, command: TokenCommand) -> Result<Output, Failure> {
    match command {
        TokenCommand::Issue(args) => {
            refuse_existing(&args.out)?;
            let (text, hash) = tokens::generate();
            let listed = client.token_add(args.id, hash).await?;
            write_new(&args.out, &text)?;
            let id = hex::encode(tokens::id_of(&hash));
            let mut output = render(&listed);
            output.json["token_id"] = json!(id);
            output.json["token_file"] = json!(args.out.display().to_string());
            output.text = format!(
                "token {id} for principal {} in {}\n",
                args.id,
                args.out.display()
            );
            Ok(output)
        }
        TokenCommand::List(args) => Ok(render(&client.token_list(args.id).await?)),
        TokenCommand::Revoke(args) => {
            let token: [u8; TOKEN_ID_BYTES] = hex::decode(&args.token)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| Failure("a token id is 16 hex digits".into()))?;
            Ok(render(&client.token_revoke(args.id, token).await?))
        }
    }
}

fn render(listed: &PrincipalTokens) -> Output {
    let ids: Vec<String> = listed.tokens.iter().map(hex::encode).collect();
    let text = format!(
        "principal {} holds {} token(s): {}\n",
        listed.id,
        ids.len(),
        ids.join(", ")
    );
    Output::ok(json!({ "id": listed.id, "tokens": ids }), text)
}

/// Writes the token, readable by its owner only; never overwrites.
fn write_new(path: &Path, token: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut file = super::output::create_private_file(path)?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}
