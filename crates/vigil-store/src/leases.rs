//! Replicas and leases, for both stores: the rows read back, the claim of free leases one by
//! one, and the fence a guard's write checks in its own transaction.

use crate::changes::{Executor, Value};
use crate::codec::Columns;
use crate::{sql, Lease, LeaseFence, ReplicaRecord, StoreError};

pub(crate) fn read_replica(row: &dyn Columns) -> Result<ReplicaRecord, StoreError> {
    Ok(ReplicaRecord {
        id: row.text(0)?,
        address: row.text(1)?,
        started_at: row.integer(2)?,
        seen_at: row.integer(3)?,
    })
}

pub(crate) fn read_lease(row: &dyn Columns) -> Result<Lease, StoreError> {
    Ok(Lease {
        release_id: row.text(0)?,
        holder: row.text(1)?,
        epoch: row.integer(2)?,
        expires_at: row.integer(3)?,
    })
}

/// [`StoreError::LeaseLost`] unless the fence's holder holds the release's lease at its
/// epoch, unexpired at its time.
pub(crate) fn check_fence<Backend: Executor>(
    executor: &mut Backend,
    release_id: &str,
    lease: &LeaseFence,
) -> Result<(), StoreError> {
    let held = executor.first(
        Backend::SELECT_LEASE_TO_FENCE,
        &[
            Value::Text(release_id),
            Value::Text(&lease.holder),
            Value::Integer(lease.epoch),
            Value::Integer(lease.now),
        ],
        |row| row.integer(0),
    )?;
    if held.is_none() {
        return Err(StoreError::LeaseLost {
            release_id: release_id.to_owned(),
        });
    }
    Ok(())
}

/// Takes the free leases of `wanted`, in order, until `holder` holds `max` (see
/// [`crate::Store::claim_leases`]); each one taken is its own statement, committed at once.
pub(crate) fn claim_leases(
    executor: &mut impl Executor,
    holder: &str,
    now: i64,
    expires_at: i64,
    wanted: &[String],
    max: usize,
    held: &[String],
) -> Result<(), StoreError> {
    let mut holding = held.len();
    for release_id in wanted {
        if holding >= max {
            break;
        }
        if held.contains(release_id) {
            continue;
        }
        let taken = executor.execute(
            sql::CLAIM_LEASE,
            &[
                Value::Text(release_id),
                Value::Text(holder),
                Value::Integer(expires_at),
                Value::Integer(now),
            ],
        )?;
        if taken > 0 {
            holding += 1;
        }
    }
    Ok(())
}
