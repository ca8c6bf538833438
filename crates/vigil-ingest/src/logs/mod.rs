//! Log lines to templates: header splitting ([`split_header`], [`HeaderPattern`]) and the
//! online template miner ([`Miner`]).

mod header;
mod miner;
mod token;

pub use header::{split_header, HeaderFormat, HeaderPattern, Level, SplitLine};
pub use miner::{Added, Change, Miner, MinerConfig, Template, TemplateId};
pub use token::WILDCARD;

/// Why a log setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("invalid header pattern: {reason}")]
    InvalidPattern { reason: String },
}
