//! When a step is ready to be judged before its grace time: every series that reported in the
//! step before has reported in it.

use vigil_core::release::Release;

use crate::index::DataIndex;

/// True when every series of the release's hosts that reported in the step before `step_time`
/// has reported in it too.
pub(super) fn step_complete(
    release: &Release,
    index: &DataIndex,
    reference: &[String],
    step_time: i64,
) -> bool {
    let step_ms = release.spec.step_seconds * 1000;
    let end = step_time * 1000;
    let mut expected = 0usize;
    for host in release.spec.hosts.names().iter().chain(reference) {
        let Some(data) = index.host(host) else {
            continue;
        };
        for series in data.series.values() {
            if series.last_in(end - 2 * step_ms, end - step_ms).is_none() {
                continue;
            }
            expected += 1;
            if series.last_in(end - step_ms, end).is_none() {
                return false;
            }
        }
    }
    expected > 0
}
