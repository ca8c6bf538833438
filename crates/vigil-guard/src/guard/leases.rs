//! Which observing releases this guard judges, when several replicas share one store: each
//! release is guarded by the replica holding its lease.
//!
//! At most once a second of the clock (and at once when a release starts observing), a pass
//! begins with a lease round: the replica's heartbeat, the renewal of its leases, and claims
//! of free ones up to its fair share, `ceil(observing releases / live replicas)`, a replica
//! being live while its heartbeat is younger than the lease time. A replica holding more than
//! its share and one gives back the surplus, the leases it took last first, so that a
//! replica that joins gets work and holdings do not flap. A release whose lease was lost (not
//! renewed in time, taken by another replica, or refused to a write as
//! [`StoreError::LeaseLost`]) is forgotten, and so is one taken: what another replica did
//! with it since is read again from the store. On one server alone, the same rounds give it
//! every release; a lease that lapsed while the clock jumped is taken again at the same
//! epoch, since no one held it in between.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use vigil_core::release::Release;
use vigil_store::{Lease, LeaseFence, Store, StoreError};

use super::locks::lock;

/// A replica silent for this long leaves the list of replicas, in seconds.
const FORGET_REPLICA_SECONDS: i64 = 3600;

/// Who a guard is among the replicas sharing its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaIdentity {
    /// Unique among the replicas of one store.
    pub id: String,
    /// Where it answers, shown by `GET /api/v1/replicas`.
    pub address: String,
    /// A lease not renewed for this long is lost, in seconds.
    pub lease_seconds: i64,
}

impl Default for ReplicaIdentity {
    fn default() -> Self {
        ReplicaIdentity {
            id: "local".to_owned(),
            address: String::new(),
            lease_seconds: 15,
        }
    }
}

/// A lease held, and when this guard took it (a count of its claims, to give back the
/// latest first).
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    claimed: u64,
}

#[derive(Debug, Default)]
struct LeaseState {
    held: HashMap<String, Held>,
    /// Clock time of the last round.
    last_round: Option<i64>,
    /// The observing releases at the last round: one more starts a round at once.
    observing_at_round: HashSet<String>,
    claims: u64,
    /// Observing releases judged by the last pass.
    guarded: usize,
    /// Leases given back for good (the server stops): no round takes any again.
    stopped: bool,
}

/// The leases of one guard.
#[derive(Debug)]
pub(super) struct Leases {
    pub(super) replica: ReplicaIdentity,
    started_at: i64,
    state: Mutex<LeaseState>,
}

impl Leases {
    pub(super) fn new(replica: ReplicaIdentity, started_at: i64) -> Leases {
        Leases {
            replica,
            started_at,
            state: Mutex::new(LeaseState::default()),
        }
    }

    /// The lease round, when one is due at `now`: heartbeat, renewals, claims up to the fair
    /// share, surplus given back. Returns the releases whose lease was lost or taken, which
    /// the guard forgets.
    pub(super) fn round(
        &self,
        store: &dyn Store,
        now: i64,
        observing: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        let mut state = lock(&self.state);
        if state.stopped {
            return Ok(Vec::new());
        }
        let observing_ids: HashSet<String> =
            observing.iter().map(|release| release.id.clone()).collect();
        let new_release = observing_ids
            .iter()
            .any(|id| !state.observing_at_round.contains(id));
        if state.last_round == Some(now) && !new_release {
            return Ok(Vec::new());
        }
        let holder = self.replica.id.as_str();
        let lease_seconds = self.replica.lease_seconds.max(1);
        let expires_at = now.saturating_add(lease_seconds);
        store.replica_seen(holder, &self.replica.address, self.started_at, now)?;
        let mut holding = store.renew_leases(holder, now, expires_at)?;
        // Releases no longer observing need no guard.
        for lease in holding
            .iter()
            .filter(|lease| !observing_ids.contains(&lease.release_id))
        {
            store.drop_lease(holder, &lease.release_id)?;
        }
        holding.retain(|lease| observing_ids.contains(&lease.release_id));
        let replicas = store.replicas()?;
        // A replica killed long ago (restarted under another id) is forgotten.
        for gone in replicas
            .iter()
            .filter(|replica| replica.seen_at.saturating_add(FORGET_REPLICA_SECONDS) < now)
        {
            store.replica_gone(&gone.id)?;
        }
        let live = replicas
            .iter()
            .filter(|replica| replica.seen_at.saturating_add(lease_seconds) > now)
            .count()
            .max(1);
        let share = observing.len().div_ceil(live);
        if holding.len() > share + 1 {
            let surplus = holding.len() - share;
            // The leases taken last go first; one this guard never took (from an earlier
            // run under the same id) counts as the latest.
            let claimed_of = |lease: &Lease| {
                state
                    .held
                    .get(&lease.release_id)
                    .filter(|held| held.epoch == lease.epoch)
                    .map_or(u64::MAX, |held| held.claimed)
            };
            holding.sort_by_key(|lease| std::cmp::Reverse(claimed_of(lease)));
            for lease in holding.drain(..surplus) {
                store.drop_lease(holder, &lease.release_id)?;
                tracing::info!(release = %lease.release_id, replica = holder, fair_share_releases = share, "guard gave a release back to other replicas");
            }
        } else if holding.len() < share {
            let mut wanted: Vec<&Release> = observing
                .iter()
                .filter(|release| !holding.iter().any(|lease| lease.release_id == release.id))
                .collect();
            // Replicas try the free releases in orders of their own, so that they seldom
            // reach for the same one at once.
            wanted.sort_by_key(|release| spread(holder, &release.id));
            let wanted: Vec<String> = wanted.iter().map(|release| release.id.clone()).collect();
            holding = store
                .claim_leases(holder, now, expires_at, &wanted, share)?
                .into_iter()
                .filter(|lease| observing_ids.contains(&lease.release_id))
                .collect();
        }
        let mut changed = Vec::new();
        let mut held = HashMap::with_capacity(holding.len());
        for lease in holding {
            let kept = state
                .held
                .get(&lease.release_id)
                .filter(|before| before.epoch == lease.epoch)
                .copied();
            let entry = match kept {
                Some(before) => before,
                None => {
                    state.claims += 1;
                    changed.push(lease.release_id.clone());
                    tracing::info!(release = %lease.release_id, replica = holder, epoch = lease.epoch, "guard took a release's lease");
                    Held {
                        epoch: lease.epoch,
                        claimed: state.claims,
                    }
                }
            };
            held.insert(lease.release_id, entry);
        }
        for (release_id, _) in state
            .held
            .iter()
            .filter(|(release_id, _)| !held.contains_key(*release_id))
        {
            if observing_ids.contains(release_id) {
                tracing::info!(release = %release_id, replica = holder, "guard no longer holds a release's lease");
            }
            changed.push(release_id.clone());
        }
        state.held = held;
        state.last_round = Some(now);
        state.observing_at_round = observing_ids;
        Ok(changed)
    }

    /// Whether this guard holds the release's lease (as of its last round).
    pub(super) fn holds(&self, release_id: &str) -> bool {
        lock(&self.state).held.contains_key(release_id)
    }

    /// What a write about the release proves at `now`, when its lease is held.
    pub(super) fn fence(&self, release_id: &str, now: i64) -> Option<LeaseFence> {
        let state = lock(&self.state);
        let held = state.held.get(release_id)?;
        Some(LeaseFence {
            holder: self.replica.id.clone(),
            epoch: held.epoch,
            now,
        })
    }

    /// A write was refused: the lease is gone.
    pub(super) fn lost(&self, release_id: &str) {
        lock(&self.state).held.remove(release_id);
    }

    pub(super) fn set_guarded(&self, guarded: usize) {
        lock(&self.state).guarded = guarded;
    }

    pub(super) fn held_count(&self) -> usize {
        lock(&self.state).held.len()
    }

    pub(super) fn guarded_count(&self) -> usize {
        lock(&self.state).guarded
    }

    /// Gives every lease back and leaves the replicas, so that the others take the releases
    /// over at their next round; no later round takes any again. Returns how many were held.
    pub(super) fn give_back_all(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let mut state = lock(&self.state);
        state.stopped = true;
        let held = std::mem::take(&mut state.held);
        for release_id in held.keys() {
            store.drop_lease(&self.replica.id, release_id)?;
        }
        store.replica_gone(&self.replica.id)?;
        Ok(held.len())
    }
}

/// A replica of the store as `GET /api/v1/replicas` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub address: String,
    pub started_at: i64,
    pub seen_at: i64,
    /// Its heartbeat is younger than the lease time at `now`.
    pub live: bool,
    /// The releases whose lease it holds unexpired at `now`, by id.
    pub releases: Vec<String>,
}

/// Every replica of the store and the releases it guards at `now`, a replica being live while
/// its heartbeat is younger than `lease_seconds`.
pub fn replica_statuses(
    store: &dyn Store,
    now: i64,
    lease_seconds: i64,
) -> Result<Vec<ReplicaStatus>, StoreError> {
    let leases = store.leases()?;
    Ok(store
        .replicas()?
        .into_iter()
        .map(|replica| ReplicaStatus {
            live: replica.seen_at.saturating_add(lease_seconds.max(1)) > now,
            releases: leases
                .iter()
                .filter(|lease| lease.holder == replica.id && lease.expires_at > now)
                .map(|lease| lease.release_id.clone())
                .collect(),
            id: replica.id,
            address: replica.address,
            started_at: replica.started_at,
            seen_at: replica.seen_at,
        })
        .collect())
}

/// A stable number of a replica and a release (FNV-1a of both names): the order in which the
/// replica tries free releases.
fn spread(replica: &str, release_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in replica
        .bytes()
        .chain(std::iter::once(0))
        .chain(release_id.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_try_free_releases_in_orders_of_their_own() {
        let ids: Vec<String> = (0..20).map(|number| format!("r{number}")).collect();
        let order = |replica: &str| {
            let mut sorted = ids.clone();
            sorted.sort_by_key(|id| spread(replica, id));
            sorted
        };
        assert_eq!(order("a"), order("a"));
        assert_ne!(order("a"), order("b"));
    }
}
