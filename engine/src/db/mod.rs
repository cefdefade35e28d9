//! State on disk: one redb database under the data dir.
//!
//! Every table maps a string key to a JSON-encoded record; typed access goes through
//! [`Table`]. Each API mutation is one write transaction ([`Db::write`]), committed with
//! redb's immediate durability, so an acknowledged change survives `kill -9`.

mod migrations;

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use migrations::SCHEMA_VERSION;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening {path}: {source}")]
    Open { path: String, source: redb::DatabaseError },
    #[error("transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("table: {0}")]
    Table(#[from] redb::TableError),
    #[error("storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("record {key} in {table}: {source}")]
    Decode { table: &'static str, key: String, source: serde_json::Error },
    #[error("encoding record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this berthd understands ({supported})")]
    TooNew { found: u64, supported: u64 },
}

/// A typed table: string keys, JSON values of type `T`.
pub struct Table<T> {
    def: TableDefinition<'static, &'static str, &'static [u8]>,
    name: &'static str,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> Table<T> {
    /// Declares a table.
    pub const fn new(name: &'static str) -> Self {
        Table { def: TableDefinition::new(name), name, _t: std::marker::PhantomData }
    }
}

/// Table names and record types.
pub mod tables {
    use super::Table;
    use crate::model::{InstanceRecord, Profile, Project};
    use std::collections::BTreeMap;

    /// Schema metadata (`schema_version`).
    pub const META: Table<u64> = Table::new("meta");
    /// The server config map under the key `config`.
    pub const SERVER: Table<BTreeMap<String, String>> = Table::new("server");
    /// Projects by name.
    pub const PROJECTS: Table<Project> = Table::new("projects");
    /// Profiles by `project/name`.
    pub const PROFILES: Table<Profile> = Table::new("profiles");
    /// Instances by `project/name`.
    pub const INSTANCES: Table<InstanceRecord> = Table::new("instances");
    /// Storage pools by name.
    pub const POOLS: Table<crate::daemon::PoolRecord> = Table::new("pools");
    /// Trusted client certificates by SHA-256 fingerprint.
    pub const CERTIFICATES: Table<crate::daemon::certificates::Certificate> = Table::new("certificates");
    /// Images by `project/fingerprint`.
    pub const IMAGES: Table<crate::daemon::ImageRecord> = Table::new("images");
    /// Image aliases by `project/name`.
    pub const IMAGE_ALIASES: Table<crate::daemon::AliasRecord> = Table::new("image_aliases");
    /// Instance snapshots by `project/instance/snapshot`.
    pub const SNAPSHOTS: Table<crate::daemon::SnapshotRecord> = Table::new("snapshots");
    /// Instance backups by `project/instance/backup`.
    pub const BACKUPS: Table<crate::daemon::BackupRecord> = Table::new("backups");
    /// Custom volumes (and their snapshots) by `pool/project/name[/snapshot]`.
    pub const VOLUMES: Table<crate::daemon::VolumeRecord> = Table::new("volumes");
    /// Custom volume backups by `pool/project/volume/name`.
    pub const VOLUME_BACKUPS: Table<crate::daemon::VolumeBackupRecord> = Table::new("volume_backups");
    /// Installed plugins (settings; the code is in `<data-dir>/plugins/<name>.wasm`) by name.
    pub const PLUGINS: Table<crate::daemon::plugins::PluginRecord> = Table::new("plugins");
}

/// The open database.
pub struct Db {
    db: redb::Database,
}

/// A write transaction handed to [`Db::write`] closures.
pub struct WriteTx<'a> {
    txn: &'a redb::WriteTransaction,
}

impl WriteTx<'_> {
    /// Inserts or replaces a record.
    pub fn put<T: Serialize>(&self, table: &Table<T>, key: &str, value: &T) -> Result<(), DbError> {
        let bytes = serde_json::to_vec(value)?;
        let mut t = self.txn.open_table(table.def)?;
        t.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Removes a record; absent keys are fine.
    pub fn delete<T>(&self, table: &Table<T>, key: &str) -> Result<(), DbError> {
        let mut t = self.txn.open_table(table.def)?;
        t.remove(key)?;
        Ok(())
    }

    /// Reads a record inside the transaction.
    pub fn get<T: DeserializeOwned>(&self, table: &Table<T>, key: &str) -> Result<Option<T>, DbError> {
        let t = self.txn.open_table(table.def)?;
        let v = t.get(key)?;
        v.map(|g| decode(table.name, key, g.value())).transpose()
    }
}

fn decode<T: DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T, DbError> {
    serde_json::from_slice(bytes).map_err(|source| DbError::Decode { table, key: key.to_string(), source })
}

impl Db {
    /// Opens (or creates) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = redb::Database::create(path)
            .map_err(|source| DbError::Open { path: path.display().to_string(), source })?;
        let db = Db { db };
        migrations::migrate(&db)?;
        Ok(db)
    }

    /// Runs `f` in one write transaction and commits it durably if `f` succeeds.
    /// If `f` fails, nothing is written.
    pub fn write<R, E>(&self, f: impl FnOnce(&WriteTx<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<DbError>,
    {
        let txn = self.db.begin_write().map_err(DbError::from)?;
        let out = f(&WriteTx { txn: &txn })?;
        txn.commit().map_err(DbError::from)?;
        Ok(out)
    }

    /// As [`Db::write`] without waiting for the disk: the change is visible at once and is
    /// persisted by the next durable commit. For bookkeeping whose loss in a crash is harmless
    /// (an image's `last_used_at`), so it costs no fsync on a hot path.
    pub fn write_relaxed<R, E>(&self, f: impl FnOnce(&WriteTx<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<DbError>,
    {
        let mut txn = self.db.begin_write().map_err(DbError::from)?;
        // Refused only in multi-process mode, which this database never uses; a durable commit
        // is then still correct.
        let _ = txn.set_durability(redb::Durability::None);
        let out = f(&WriteTx { txn: &txn })?;
        txn.commit().map_err(DbError::from)?;
        Ok(out)
    }

    /// Reads every record of a table, in key order.
    pub fn all<T: DeserializeOwned>(&self, table: &Table<T>) -> Result<Vec<(String, T)>, DbError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(table.def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let key = k.value().to_string();
            let rec = decode(table.name, &key, v.value())?;
            out.push((key, rec));
        }
        Ok(out)
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table: &Table<T>, key: &str) -> Result<Option<T>, DbError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(table.def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let v = t.get(key)?;
        v.map(|g| decode(table.name, key, g.value())).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn write_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("berth.redb")).unwrap();
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), "1".to_string());
        db.write(|tx| tx.put(&tables::SERVER, "config", &m)).unwrap();
        let r: Result<(), DbError> = db.write(|tx| {
            tx.put(&tables::SERVER, "config", &BTreeMap::new())?;
            Err(DbError::TooNew { found: 0, supported: 0 })
        });
        assert!(r.is_err());
        assert_eq!(db.get(&tables::SERVER, "config").unwrap(), Some(m));
    }

    #[test]
    fn reopen_keeps_data_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let db = Db::open(&path).unwrap();
            db.write(|tx| tx.put(&tables::META, "x", &7u64)).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.get(&tables::META, "x").unwrap(), Some(7));
        assert_eq!(db.get(&tables::META, "schema_version").unwrap(), Some(SCHEMA_VERSION));
    }
}
