//! `vigil token create`: makes an API token and prints it once; only its hash is stored.

use clap::{Args, Subcommand};
use vigil_core::release::Role;
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
    /// List tokens (names and roles; secrets are not stored).
    List {
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
                crate::say(&format!(
                    "{}\t{}\t{}",
                    token.id,
                    token.role.as_str(),
                    token.name
                ));
            }
            Ok(())
        }
    }
}
