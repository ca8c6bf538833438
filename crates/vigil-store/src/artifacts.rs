//! Uploaded artifacts' rows: the signed manifest kept as JSON beside its id, name and size.

use vigil_core::agent::ArtifactRecord;

use crate::codec::{from_json, Columns};
use crate::StoreError;

/// A row of `SELECT manifest, created_by`.
pub(crate) fn read_artifact(row: &dyn Columns) -> Result<ArtifactRecord, StoreError> {
    Ok(ArtifactRecord {
        manifest: from_json(&row.text(0)?, "artifact manifest")?,
        created_by: row.text(1)?,
    })
}
