//! Log lines to templates: header splitting ([`split_header`], [`HeaderPattern`]), grouping
//! of multi-line events such as stack traces ([`Grouper`], [`group_entries`]) and the online
//! template miner ([`Miner`]).

mod event;
mod header;
mod miner;
mod token;

pub use event::{
    group_entries, BatchEvent, Event, EventLimits, Exception, Grouper, Pushed,
    DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_EVENT_LINES, EXCEPTION_MARK,
};
pub use header::{split_header, HeaderFormat, HeaderPattern, Level, SplitLine};
pub use miner::{Added, Change, Miner, MinerConfig, Template, TemplateId};
pub use token::WILDCARD;

/// Why a log setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("invalid header pattern: {reason}")]
    InvalidPattern { reason: String },
}
