//! `vigil token create`: makes an API token and prints it once; only its hash is stored.
//! `vigil token list` and `vigil token revoke`.

use clap::{Args, Subcommand};
use vigil_core::release::{ApiToken, Role};
use vigil_core::Clock;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it cannot be shown again).
    Create {
        /// viewer, operator, admin, or ingest (can only push data).
        #[arg(long)]
        role: String,
        /// Who or what will use it; shown in the audit trail [default: the role].
        #[arg(long)]
        name: Option<String>,
        /// The server's store [default: ./vigil.db].
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
    /// List tokens (ids, roles, names and revocations; secrets are not stored).
    List {
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
    /// Revoke a token: it stops working at once (within a second on a running server) and
    /// its page sessions end.
    Revoke {
        /// The token's id (as `vigil token list` prints it), or its name when no token has
        /// that id and one token not yet revoked has that name.
        token: String,
        /// The server's store [default: ./vigil.db].
        #[arg(long, default_value = "./vigil.db")]
        database: String,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create {
            role,
            name,
            database,
        } => {
            let parsed = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("unknown role {role:?}: use viewer, operator, admin or ingest")
            })?;
            let store = vigil_store::open(&database)?;
            let secret = vigil_web::new_token().map_err(|error| anyhow::anyhow!("{error}"))?;
            let name = name.unwrap_or_else(|| parsed.as_str().to_string());
            let now = vigil_core::SystemClock.now();
            store.create_token(&name, parsed, &vigil_web::hash_token(&secret), now)?;
            crate::say(&secret);
            Ok(())
        }
        TokenCommand::List { database } => {
            let store = vigil_store::open(&database)?;
            for token in store.tokens()? {
                let revoked = token
                    .revoked_at
                    .map(|at| format!("\trevoked at {at}"))
                    .unwrap_or_default();
                crate::say(&format!(
                    "{}\t{}\t{}{revoked}",
                    token.id,
                    token.role.as_str(),
                    token.name
                ));
            }
            Ok(())
        }
        TokenCommand::Revoke { token, database } => {
            let store = vigil_store::open(&database)?;
            let tokens = store.tokens()?;
            let chosen = find_token(&tokens, &token)?;
            let revoked = store.revoke_token(chosen.id, vigil_core::SystemClock.now())?;
            crate::say(&format!(
                "revoked token {} ({}, {})",
                revoked.id,
                revoked.name,
                revoked.role.as_str()
            ));
            Ok(())
        }
    }
}

/// The token `wanted` names: the one with that id, else the one not yet revoked with that
/// name; several of that name are refused (the id tells them apart).
fn find_token<'tokens>(
    tokens: &'tokens [ApiToken],
    wanted: &str,
) -> anyhow::Result<&'tokens ApiToken> {
    let by_id = wanted
        .parse::<i64>()
        .ok()
        .and_then(|id| tokens.iter().find(|token| token.id == id));
    if let Some(token) = by_id {
        return Ok(token);
    }
    let named: Vec<&ApiToken> = tokens
        .iter()
        .filter(|token| token.name == wanted && token.revoked_at.is_none())
        .collect();
    match named.as_slice() {
        [token] => Ok(token),
        [] => Err(anyhow::anyhow!(
            "no token with id or name {wanted:?} that is not revoked yet (see `vigil token list`)"
        )),
        several => {
            let ids: Vec<String> = several.iter().map(|token| token.id.to_string()).collect();
            Err(anyhow::anyhow!(
                "{} tokens are named {wanted:?} (ids {}): revoke one by its id",
                several.len(),
                ids.join(", ")
            ))
        }
    }
}
