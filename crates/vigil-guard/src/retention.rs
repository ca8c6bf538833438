//! Only data around releases is kept: every host's recent data (for the baseline of a release
//! created now), the window of every release not yet finished, and the windows of finished
//! releases younger than the retention time. Everything else is pruned, from the store and from
//! the in-memory index. Alerts are kept from the start of the oldest kept window (or the recent
//! data's start, when older); one still firing but not received for [`STALE_ALERT_SECONDS`]
//! goes too (its resolution was lost).

use std::collections::HashMap;
use std::sync::RwLock;

use vigil_store::{ReleaseFilter, Store, StoreError};

use crate::index::DataIndex;
use crate::window::ReleaseWindow;

/// How long data is kept, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Every host's data younger than this is kept.
    pub recent_seconds: i64,
    /// Windows of finished releases younger than this are kept.
    pub finished_seconds: i64,
}

/// How long an alert still firing is kept after it was last received: Alertmanager sends a
/// firing alert again every `repeat_interval` (4 hours by default).
pub const STALE_ALERT_SECONDS: i64 = 7 * 86_400;

/// What a pruning round removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub chunks: usize,
    pub kept_windows: usize,
    pub alerts: usize,
}

/// Prunes the store's chunks and the index's samples that no kept window needs.
pub fn prune(
    store: &dyn Store,
    index: &RwLock<DataIndex>,
    now: i64,
    retention: Retention,
) -> Result<Pruned, StoreError> {
    let releases = store.releases(&ReleaseFilter::default())?;
    let mut keep: Vec<(i64, i64)> = Vec::new();
    let mut keep_hosts_from: HashMap<String, i64> = HashMap::new();
    for release in &releases {
        let finished = release.state.is_terminal();
        if finished && release.updated_at < now - retention.finished_seconds {
            continue;
        }
        // Settings that cannot be read keep an hour before the first batch.
        let start = ReleaseWindow::read(release)
            .map_or_else(
                |_| ReleaseWindow::with_lookback(release, 3600, 3600),
                |(window, _)| window,
            )
            .start;
        let end = if finished {
            release.updated_at
        } else {
            i64::MAX / 1000
        };
        keep.push((start.saturating_mul(1000), end.saturating_mul(1000)));
        if !finished {
            // A selector's hosts are found again at every step: every host of the app is kept.
            let app_hosts = if release.spec.uses_selectors() {
                index
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .hosts_of_app(&release.spec.app, i64::MIN)
            } else {
                Vec::new()
            };
            let hosts = release
                .spec
                .hosts
                .names()
                .iter()
                .chain(match &release.spec.reference {
                    vigil_core::release::ReferenceHosts::Hosts { hosts } => hosts.iter(),
                    _ => [].iter(),
                })
                .chain(&app_hosts);
            for host in hosts {
                let from = keep_hosts_from.entry(host.clone()).or_insert(start * 1000);
                *from = (*from).min(start * 1000);
            }
        }
    }
    let before_ms = (now - retention.recent_seconds).saturating_mul(1000);
    let chunks = store.prune_data(before_ms, &keep)?;
    let alerts_before = keep
        .iter()
        .map(|&(from_ms, _)| from_ms.div_euclid(1000))
        .fold(now - retention.recent_seconds, i64::min);
    let alerts = store.prune_alerts(alerts_before, STALE_ALERT_SECONDS)?;
    index
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .prune(before_ms, &keep_hosts_from);
    Ok(Pruned {
        chunks,
        kept_windows: keep.len(),
        alerts,
    })
}
