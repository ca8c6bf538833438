//! Scratch stores for tests and benchmarks, here and in the crates that use the store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that holds the URL of a PostgreSQL server for tests
/// (`postgres://user:password@host:port/database`). Each test creates its own database there.
pub const POSTGRES_TEST_ENV: &str = "VIGIL_TEST_POSTGRES";

static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A name unique within the machine for this process: a prefix, the process id and a counter.
pub fn unique_name(prefix: &str) -> String {
    let serial = NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{serial}", std::process::id())
}

/// A directory under the system's temporary directory, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(unique_name(prefix));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove scratch directory");
        }
    }
}

/// A database of its own on the PostgreSQL server named by [`POSTGRES_TEST_ENV`], dropped
/// (with `FORCE`, so connections still open do not keep it) when this value is dropped.
#[derive(Debug)]
pub struct ScratchPostgres {
    server_url: String,
    name: String,
    url: String,
}

impl ScratchPostgres {
    /// `None` when the environment variable is not set; an error when the server cannot be
    /// reached or refuses to create the database.
    pub fn from_env(prefix: &str) -> Result<Option<ScratchPostgres>, String> {
        let Ok(server_url) = std::env::var(POSTGRES_TEST_ENV) else {
            return Ok(None);
        };
        if server_url.trim().is_empty() {
            return Ok(None);
        }
        let name = unique_name(prefix).to_ascii_lowercase();
        run_on_server(&server_url, &format!("CREATE DATABASE \"{name}\""))?;
        let url = with_database(&server_url, &name);
        Ok(Some(ScratchPostgres {
            server_url,
            name,
            url,
        }))
    }

    /// The URL of the scratch database, for [`crate::open`].
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let drop_sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(error) = run_on_server(&self.server_url, &drop_sql) {
            tracing::warn!(database = %self.name, %error, "cannot drop scratch database");
        }
    }
}

fn run_on_server(server_url: &str, sql: &str) -> Result<(), String> {
    let mut client = postgres::Client::connect(server_url, postgres::NoTls).map_err(|error| {
        format!(
            "cannot connect to {}: {}",
            crate::redact_password(server_url),
            crate::codec::describe(&error)
        )
    })?;
    client
        .batch_execute(sql)
        .map_err(|error| format!("{sql}: {}", crate::codec::describe(&error)))
}

/// `url` with its database name replaced by `database` (query parameters kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@localhost:5432/postgres", "scratch"),
            "postgres://u:p@localhost:5432/scratch"
        );
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "scratch"),
            "postgresql://u@h/scratch?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5433", "scratch"),
            "postgres://u@h:5433/scratch"
        );
    }

    #[test]
    fn scratch_directories_are_removed_on_drop() {
        let directory = TempDir::new("vigil_store_unit").unwrap();
        let path = directory.path().to_owned();
        std::fs::write(path.join("file"), b"x").unwrap();
        drop(directory);
        assert!(!path.exists());
    }
}
