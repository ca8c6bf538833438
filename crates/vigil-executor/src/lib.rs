//! Vigil's batch executor: ships a release batch by batch to the hosts' agents, each next
//! batch gated by the guard's verdict.
//!
//! - `order.rs` a deployment order resolved into a release and its execution; `plan.rs` its
//!   hosts and batches (pure).
//! - `tick.rs` one round over the shipped releases: distribution before batch 0, tasks per
//!   batch, `deploying` then `observing`, the next batch on the guard's `proceed`, pauses on a
//!   failed task or a silent agent, rollback tasks; everything from and to the store.
//! - `agents.rs` a poll's orders and the agents' presence; `view.rs` the progress the API and
//!   the pages show.
#![forbid(unsafe_code)]

pub mod agents;
pub mod order;
pub mod plan;
pub mod tick;
pub mod view;

pub use tick::{tick, ExecutorSettings, Step, DEFAULT_AGENT_TIMEOUT_SECONDS};

#[cfg(test)]
mod tests;
