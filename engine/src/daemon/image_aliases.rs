//! Image aliases: create, retarget, rename, delete (`/1.0/images/aliases`).

use super::{AliasRecord, Daemon};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::scoped_key;

impl Daemon {
    /// Creates an alias.
    pub fn create_alias(&self, project: &str, name: &str, target: &str, description: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::bad(format!("Invalid alias name \"{name}\"")));
        }
        let mut tx = self.txn();
        let m = tx.model();
        let ip = m.image_project(project).to_string();
        let fp = m.image(project, target)?.fingerprint.clone();
        if m.image_alias(project, name).is_some() {
            return Err(Error::conflict(format!("Alias \"{name}\" already exists")));
        }
        drop(m);
        let rec = AliasRecord { name: name.into(), project: ip.clone(), target: fp, description: description.into() };
        let key = scoped_key(&ip, name);
        tx.commit(|db| db.put(&tables::IMAGE_ALIASES, &key, &rec), |m| {
            m.image_aliases.insert(key.clone(), rec.clone());
        })?;
        Ok(())
    }

    /// Changes an alias's target and description.
    pub fn update_alias(&self, project: &str, name: &str, target: Option<&str>, description: Option<&str>) -> Result<()> {
        let mut tx = self.txn();
        let m = tx.model();
        let mut rec = m.image_alias(project, name).cloned().ok_or_else(|| Error::not_found("Alias not found"))?;
        if let Some(t) = target.filter(|t| !t.is_empty()) {
            rec.target = m.image(project, t)?.fingerprint.clone();
        }
        if let Some(d) = description {
            rec.description = d.to_string();
        }
        drop(m);
        let key = scoped_key(&rec.project, name);
        tx.commit(|db| db.put(&tables::IMAGE_ALIASES, &key, &rec), |m| {
            m.image_aliases.insert(key.clone(), rec.clone());
        })?;
        Ok(())
    }

    /// Renames an alias.
    pub fn rename_alias(&self, project: &str, name: &str, new: &str) -> Result<()> {
        let mut tx = self.txn();
        let m = tx.model();
        let mut rec = m.image_alias(project, name).cloned().ok_or_else(|| Error::not_found("Alias not found"))?;
        if m.image_alias(project, new).is_some() {
            return Err(Error::conflict(format!("Alias \"{new}\" already exists")));
        }
        drop(m);
        let old = scoped_key(&rec.project, name);
        rec.name = new.to_string();
        let key = scoped_key(&rec.project, new);
        tx.commit(
            |db| {
                db.delete(&tables::IMAGE_ALIASES, &old)?;
                db.put(&tables::IMAGE_ALIASES, &key, &rec)
            },
            |m| {
                m.image_aliases.remove(&old);
                m.image_aliases.insert(key.clone(), rec.clone());
            },
        )?;
        Ok(())
    }

    /// Deletes an alias.
    pub fn delete_alias(&self, project: &str, name: &str) -> Result<()> {
        let mut tx = self.txn();
        let rec = tx.model().image_alias(project, name).cloned().ok_or_else(|| Error::not_found("Alias not found"))?;
        let key = scoped_key(&rec.project, name);
        tx.commit(|db| db.delete(&tables::IMAGE_ALIASES, &key), |m| {
            m.image_aliases.remove(&key);
        })?;
        Ok(())
    }
}
