//! Discovery: which usual metric families an app's Prometheus holds under the app's labels
//! (a selector such as `job="checkout"`), and a pull query proposed for each signal, PromQL
//! that yields one series per host. In parts:
//!
//! - `params.rs`: where and how to look ([`DiscoveryParams`]: the server, the selector, the
//!   host label, the step);
//! - `inventory.rs`: the only part that calls Prometheus: [`collect_inventory`] asks the server
//!   (metric names, hosts, metadata, then the labels of the names worth a look) and
//!   [`check_proposals`] runs each proposed query once to show how many hosts answer it;
//! - `proposals.rs`: [`discover`], the matching without IO over an [`Inventory`], reading the
//!   candidates of `candidates.rs`;
//! - `prompts.rs`: what to give for a missing signal, and remarks on the whole;
//! - `discovery.rs`: the answer ([`Discovery`]).

mod candidates;
mod discovery;
mod inventory;
mod params;
mod prompts;
mod proposals;

use vigil_ingest::prometheus::{PrometheusClient, PrometheusError};

pub use discovery::{Discovery, FoundSignal, MissingSignal, QueryCheck};
pub use inventory::{
    check_proposals, collect_inventory, discovery_options, names_to_inspect, try_query, Inventory,
    LOOKBACK_SECONDS, MAX_INSPECTED_NAMES,
};
pub use params::{default_rate_window, AskedParams, DiscoveryError, DiscoveryParams};
pub use proposals::discover;

/// The whole discovery against the server: inventory, matching, and a check of each
/// proposal.
pub fn run(params: &DiscoveryParams, now: i64) -> Result<Discovery, PrometheusError> {
    let client = PrometheusClient::new(&params.prometheus, discovery_options())?;
    let inventory = collect_inventory(&client, params, now)?;
    let mut discovery = discover(&inventory, params);
    check_proposals(&client, &mut discovery, now);
    Ok(discovery)
}

#[cfg(test)]
mod tests;
