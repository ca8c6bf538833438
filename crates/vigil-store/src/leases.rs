//! Replicas and leases, for both stores: the rows read back and the claim of free leases one
//! by one (the fence a guard's write checks is `changes::check_fence`).

use crate::changes::{Executor, Value};
use crate::codec::Columns;
use crate::{sql, Lease, ReplicaRecord, StoreError};

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
