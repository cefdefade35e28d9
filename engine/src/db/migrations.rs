//! Schema versions and the migrations between them.
//!
//! A migration is a function run in the same write transaction that bumps the version, so
//! a crash mid-migration leaves the old schema intact.

use super::{tables, Db, DbError, WriteTx};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u64 = 3;

type Migration = fn(&WriteTx<'_>) -> Result<(), DbError>;

/// `MIGRATIONS[i]` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[initial, certificates, storage];

/// Version 0 → 1: the default project with its default profile.
fn initial(tx: &WriteTx<'_>) -> Result<(), DbError> {
    use crate::model::{Profile, Project};
    tx.put(&tables::PROJECTS, "default", &Project::default_project())?;
    tx.put(&tables::PROFILES, "default/default", &Profile::default_profile())?;
    Ok(())
}

/// Version 1 → 2: the `certificates` table (redb creates tables on first write, so
/// nothing is written here; the version records that the table may exist).
fn certificates(_tx: &WriteTx<'_>) -> Result<(), DbError> {
    Ok(())
}

/// Version 2 → 3: images, aliases, snapshots, backups and custom volumes tables (created
/// on first write, like `certificates`).
fn storage(_tx: &WriteTx<'_>) -> Result<(), DbError> {
    Ok(())
}

pub(super) fn migrate(db: &Db) -> Result<(), DbError> {
    let found: u64 = db.get(&tables::META, "schema_version")?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(DbError::TooNew { found, supported: SCHEMA_VERSION });
    }
    for v in found..SCHEMA_VERSION {
        let idx = usize::try_from(v).unwrap_or(usize::MAX);
        let Some(m) = MIGRATIONS.get(idx) else { break };
        db.write(|tx| {
            m(tx)?;
            tx.put(&tables::META, "schema_version", &(v + 1))
        })?;
    }
    Ok(())
}
