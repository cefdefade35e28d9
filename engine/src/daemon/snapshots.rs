//! Instance snapshots: records captured at snapshot time (config, devices, profiles) in
//! redb, the driver snapshot of the root volume, rename, expiry, delete and restore.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{instance_volume, Daemon, Model, PowerState};
use crate::config::{self, Devices, InstanceType};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::{scoped_key, zero_time, ConfigMap, InstanceRecord};
use crate::snapshot_rules;

/// A snapshot of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub name: String,
    pub instance: String,
    pub project: String,
    #[serde(rename = "type")]
    pub instance_type: InstanceType,
    pub architecture: String,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub devices: Devices,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub description: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default = "zero_time")]
    pub last_used_at: DateTime<Utc>,
}

impl SnapshotRecord {
    /// The database key.
    pub fn key(&self) -> String {
        snapshot_key(&self.project, &self.instance, &self.name)
    }

    /// The snapshot as an instance record (for expansion and rendering).
    pub fn as_instance(&self) -> InstanceRecord {
        InstanceRecord {
            name: self.instance.clone(),
            project: self.project.clone(),
            instance_type: self.instance_type,
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
            profiles: self.profiles.clone(),
            ephemeral: self.ephemeral,
            stateful: self.stateful,
            description: self.description.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        }
    }

    /// A snapshot record of `inst` as it is now.
    pub fn capture(inst: &InstanceRecord, name: &str, expires_at: Option<DateTime<Utc>>) -> SnapshotRecord {
        SnapshotRecord {
            name: name.to_string(),
            instance: inst.name.clone(),
            project: inst.project.clone(),
            instance_type: inst.instance_type,
            architecture: inst.architecture.clone(),
            config: inst.config.clone(),
            devices: inst.devices.clone(),
            profiles: inst.profiles.clone(),
            ephemeral: inst.ephemeral,
            stateful: false,
            description: inst.description.clone(),
            created_at: Utc::now(),
            expires_at,
            last_used_at: zero_time(),
        }
    }
}

/// `project/instance/snapshot`.
pub fn snapshot_key(project: &str, instance: &str, snap: &str) -> String {
    format!("{project}/{instance}/{snap}")
}

impl Model {
    /// An instance's snapshots, oldest first.
    pub fn snapshots_of(&self, project: &str, instance: &str) -> Vec<&SnapshotRecord> {
        let prefix = format!("{}/", scoped_key(project, instance));
        let mut v: Vec<&SnapshotRecord> =
            self.snapshots.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(_, s)| s).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.name.cmp(&b.name)));
        v
    }

    /// One snapshot.
    pub fn snapshot(&self, project: &str, instance: &str, snap: &str) -> Option<&SnapshotRecord> {
        self.snapshots.get(&snapshot_key(project, instance, snap))
    }
}

fn valid_snapshot_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.len() > 255 {
        return Err(Error::bad(format!("Invalid snapshot name \"{name}\"")));
    }
    Ok(())
}

impl Daemon {
    /// Takes a snapshot. `name` None uses `snapshots.pattern`; `expires_at` None applies
    /// `snapshots.expiry` (Some(None) means "never").
    pub fn create_snapshot(&self, project: &str, instance: &str, name: Option<&str>, expires_at: Option<Option<DateTime<Utc>>>) -> Result<String> {
        self.materialize_backups(project, instance)?;
        let mut tx = self.txn();
        let m = tx.model();
        let inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
        let existing: Vec<String> = m.snapshots_of(project, instance).iter().map(|s| s.name.clone()).collect();
        let (ec, _) = m.expand(&inst)?;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                let pattern = ec.get("snapshots.pattern").map(String::as_str).unwrap_or(snapshot_rules::DEFAULT_PATTERN);
                snapshot_rules::next_snapshot_name(pattern, &existing).map_err(|e| Error::bad(e.to_string()))?
            }
        };
        valid_snapshot_name(&name)?;
        if existing.contains(&name) {
            return Err(Error::conflict(format!("Snapshot \"{name}\" already exists")));
        }
        let expires_at = match expires_at {
            Some(e) => e,
            None => match ec.get("snapshots.expiry").filter(|v| !v.is_empty()) {
                Some(expr) => snapshot_rules::get_expiry(Utc::now(), expr).map_err(|e| Error::bad(e.to_string()))?,
                None => None,
            },
        };
        let pool = m.root_pool(&inst)?;
        drop(m);
        let driver = self.pool_driver(&pool)?;
        let vol = instance_volume(&inst);
        driver.create_snapshot(&vol, &name)?;
        let rec = SnapshotRecord::capture(&inst, &name, expires_at);
        let key = rec.key();
        let res = tx.commit(|db| db.put(&tables::SNAPSHOTS, &key, &rec), |m| {
            m.snapshots.insert(key.clone(), rec.clone());
        });
        if let Err(e) = res {
            let _ = driver.delete_snapshot(&vol, &name);
            return Err(e);
        }
        self.events.lifecycle(project, "instance-snapshot-created", &snapshot_url(project, instance, &name), json!({}));
        Ok(name)
    }

    /// Deletes a snapshot.
    pub fn delete_snapshot(&self, project: &str, instance: &str, snap: &str) -> Result<()> {
        self.materialize_backups(project, instance)?;
        let mut tx = self.txn();
        let m = tx.model();
        let inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
        let rec = m.snapshot(project, instance, snap).cloned().ok_or_else(|| Error::not_found("Snapshot not found"))?;
        let pool = m.root_pool(&inst)?;
        drop(m);
        let driver = self.pool_driver(&pool)?;
        let vol = instance_volume(&inst);
        if driver.snapshot_path(&vol, snap).exists() {
            driver.delete_snapshot(&vol, snap)?;
        }
        let key = rec.key();
        tx.commit(|db| db.delete(&tables::SNAPSHOTS, &key), |m| {
            m.snapshots.remove(&key);
        })?;
        self.events.lifecycle(project, "instance-snapshot-deleted", &snapshot_url(project, instance, snap), json!({}));
        Ok(())
    }

    /// Renames a snapshot.
    pub fn rename_snapshot(&self, project: &str, instance: &str, snap: &str, new: &str) -> Result<()> {
        valid_snapshot_name(new)?;
        self.materialize_backups(project, instance)?;
        let mut tx = self.txn();
        let m = tx.model();
        let inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
        let mut rec = m.snapshot(project, instance, snap).cloned().ok_or_else(|| Error::not_found("Snapshot not found"))?;
        if m.snapshot(project, instance, new).is_some() {
            return Err(Error::conflict(format!("Snapshot \"{new}\" already exists")));
        }
        let pool = m.root_pool(&inst)?;
        drop(m);
        let driver = self.pool_driver(&pool)?;
        let vol = instance_volume(&inst);
        driver.rename_snapshot(&vol, snap, new)?;
        let old = rec.key();
        rec.name = new.to_string();
        let key = rec.key();
        let res = tx.commit(
            |db| {
                db.delete(&tables::SNAPSHOTS, &old)?;
                db.put(&tables::SNAPSHOTS, &key, &rec)
            },
            |m| {
                m.snapshots.remove(&old);
                m.snapshots.insert(key.clone(), rec.clone());
            },
        );
        if let Err(e) = res {
            let _ = driver.rename_snapshot(&vol, new, snap);
            return Err(e);
        }
        self.events.lifecycle(project, "instance-snapshot-renamed", &snapshot_url(project, instance, new), json!({"old_name": snap}));
        Ok(())
    }

    /// Sets a snapshot's expiry (and description).
    pub fn update_snapshot(&self, project: &str, instance: &str, snap: &str, expires_at: Option<DateTime<Utc>>, description: Option<String>) -> Result<()> {
        self.materialize_backups(project, instance)?;
        let mut tx = self.txn();
        let mut rec = tx.model().snapshot(project, instance, snap).cloned().ok_or_else(|| Error::not_found("Snapshot not found"))?;
        rec.expires_at = expires_at;
        if let Some(d) = description {
            rec.description = d;
        }
        let key = rec.key();
        tx.commit(|db| db.put(&tables::SNAPSHOTS, &key, &rec), |m| {
            m.snapshots.insert(key.clone(), rec.clone());
        })?;
        self.events.lifecycle(project, "instance-snapshot-updated", &snapshot_url(project, instance, snap), json!({}));
        Ok(())
    }

    /// Restores an instance from a snapshot: its volume and its config, devices and
    /// profiles (volatile keys of the instance are kept, as LXD does).
    pub fn restore_snapshot(&self, project: &str, instance: &str, snap: &str) -> Result<()> {
        self.materialize_backups(project, instance)?;
        let mut tx = self.txn();
        let m = tx.model();
        let mut inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
        let rec = m
            .snapshot(project, instance, snap)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Snapshot \"{snap}\" not found")))?;
        if m.power(project, instance) != PowerState::Stopped {
            return Err(Error::bad("Restoring a running instance is not supported; stop it first"));
        }
        let pool = m.root_pool(&inst)?;
        drop(m);
        let driver = self.pool_driver(&pool)?;
        driver.restore_snapshot(&instance_volume(&inst), snap)?;
        let volatile: ConfigMap = inst.config.iter().filter(|(k, _)| k.starts_with("volatile.")).map(|(k, v)| (k.clone(), v.clone())).collect();
        inst.config = rec.config.iter().filter(|(k, _)| !k.starts_with("volatile.")).map(|(k, v)| (k.clone(), v.clone())).collect();
        inst.config.extend(volatile);
        inst.devices = rec.devices.clone();
        inst.profiles = rec.profiles.clone();
        inst.ephemeral = rec.ephemeral;
        inst.architecture = rec.architecture.clone();
        let key = scoped_key(project, instance);
        tx.commit(|db| db.put(&tables::INSTANCES, &key, &inst), |m| {
            m.instances.insert(key.clone(), inst.clone());
        })?;
        self.events.lifecycle(project, "instance-restored", &Model::instance_url(project, instance), json!({"snapshot": snap}));
        Ok(())
    }

    /// Keys of an instance's snapshot and backup records (deleted with the instance).
    pub(super) fn dependent_keys(m: &Model, project: &str, instance: &str) -> (Vec<String>, Vec<String>) {
        let snaps = m.snapshots_of(project, instance).iter().map(|s| s.key()).collect();
        let backups = m.backups_of(project, instance).iter().map(|b| b.key()).collect();
        (snaps, backups)
    }

    /// Moves snapshot and backup records to a renamed instance.
    pub(super) fn renamed_dependents(m: &Model, project: &str, old: &str, new: &str) -> (Vec<String>, Vec<SnapshotRecord>, Vec<String>, Vec<super::BackupRecord>) {
        let snaps: Vec<&SnapshotRecord> = m.snapshots_of(project, old);
        let old_s = snaps.iter().map(|s| s.key()).collect();
        let new_s = snaps.iter().map(|s| SnapshotRecord { instance: new.to_string(), ..(*s).clone() }).collect();
        let backups = m.backups_of(project, old);
        let old_b = backups.iter().map(|b| b.key()).collect();
        let new_b = backups.iter().map(|b| super::BackupRecord { instance: new.to_string(), ..(*b).clone() }).collect();
        (old_s, new_s, old_b, new_b)
    }

    /// Deletes every expired snapshot; returns how many.
    pub fn prune_expired_snapshots(&self, now: DateTime<Utc>) -> usize {
        let expired: Vec<(String, String, String)> = self
            .model()
            .snapshots
            .values()
            .filter(|s| s.expires_at.is_some_and(|e| e > zero_time() && e <= now))
            .map(|s| (s.project.clone(), s.instance.clone(), s.name.clone()))
            .collect();
        let mut n = 0;
        for (p, i, s) in expired {
            match self.delete_snapshot(&p, &i, &s) {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(instance = %i, snapshot = %s, error = %e, "deleting expired snapshot"),
            }
        }
        n
    }

    /// Takes the scheduled snapshots due at `now` (minute resolution).
    pub fn take_scheduled_snapshots(&self, now: chrono::NaiveDateTime) -> usize {
        let due: Vec<(String, String)> = {
            let m = self.model();
            m.instances
                .values()
                .filter_map(|i| {
                    let (ec, _) = m.expand(i).ok()?;
                    let spec = ec.get("snapshots.schedule").filter(|s| !s.is_empty())?;
                    let running = m.power(&i.project, &i.name) == PowerState::Running;
                    let stopped_ok = ec.get("snapshots.schedule.stopped").is_some_and(|v| config::is_true(v));
                    if !running && !stopped_ok {
                        return None;
                    }
                    let id = schedule_id(&i.project, &i.name);
                    snapshot_rules::is_scheduled_now(spec, id, now).then(|| (i.project.clone(), i.name.clone()))
                })
                .collect()
        };
        let mut n = 0;
        for (p, i) in due {
            match self.create_snapshot(&p, &i, None, None) {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(instance = %i, error = %e, "scheduled snapshot"),
            }
        }
        n
    }
}

/// A stable per-instance number for `@hourly`-style spreading.
fn schedule_id(project: &str, name: &str) -> i64 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{project}/{name}").as_bytes());
    i64::from(u16::from_be_bytes([h[0], h[1]]))
}

/// The URL of a snapshot.
pub fn snapshot_url(project: &str, instance: &str, snap: &str) -> String {
    super::with_project(format!("/1.0/instances/{instance}/snapshots/{snap}"), project)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str) -> InstanceRecord {
        InstanceRecord {
            name: name.into(),
            project: "default".into(),
            instance_type: InstanceType::Container,
            architecture: "x86_64".into(),
            config: ConfigMap::new(),
            devices: Devices::new(),
            profiles: vec![],
            ephemeral: false,
            stateful: false,
            description: String::new(),
            created_at: Utc::now(),
            last_used_at: zero_time(),
        }
    }

    #[test]
    fn snapshots_of_is_per_instance_and_oldest_first() {
        let mut m = Model::default();
        let mut a = SnapshotRecord::capture(&inst("c1"), "zz", None);
        a.created_at = Utc::now() - chrono::Duration::seconds(10);
        let b = SnapshotRecord::capture(&inst("c1"), "aa", None);
        let other = SnapshotRecord::capture(&inst("c10"), "snap0", None);
        for s in [&b, &a, &other] {
            m.snapshots.insert(s.key(), s.clone());
        }
        let names: Vec<&str> = m.snapshots_of("default", "c1").iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["zz", "aa"]);
        assert_eq!(m.snapshots_of("default", "c10").len(), 1);
        assert!(m.snapshots_of("other", "c1").is_empty());
    }

    #[test]
    fn snapshot_names_refuse_slashes_and_dots() {
        assert!(valid_snapshot_name("snap0").is_ok());
        for bad in ["", "a/b", ".", ".."] {
            assert!(valid_snapshot_name(bad).is_err(), "{bad:?}");
        }
    }
}

impl super::Txn<'_> {
    /// Commits a new instance record together with its snapshot records (copies, imports).
    pub(super) fn commit_instance_with_snapshots(
        &mut self,
        key: &str,
        inst: &crate::model::InstanceRecord,
        snaps: &[SnapshotRecord],
    ) -> Result<()> {
        self.commit(
            |db| {
                db.put(&crate::db::tables::INSTANCES, key, inst)?;
                for s in snaps {
                    db.put(&crate::db::tables::SNAPSHOTS, &s.key(), s)?;
                }
                Ok(())
            },
            |m| {
                m.instances.insert(key.to_string(), inst.clone());
                for s in snaps {
                    m.snapshots.insert(s.key(), s.clone());
                }
            },
        )
    }
}
