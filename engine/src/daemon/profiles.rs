//! Profiles: CRUD, rename, `used_by`, and re-validation of every instance that uses one.

use serde_json::json;

use super::{with_project, Daemon, Model};
use crate::config::{self, ConfigLevel, Devices};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::{scoped_key, ConfigMap, Profile};

/// Profile names: no `/`, not empty, not `.`/`..`.
fn valid_profile_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::bad("No name provided"));
    }
    if name.contains('/') || name == "." || name == ".." {
        return Err(Error::bad(format!("Invalid profile name \"{name}\"")));
    }
    Ok(())
}

impl Model {
    /// Instances (URLs) that use a profile, seen from `project`.
    pub fn profile_used_by(&self, project: &str, name: &str) -> Vec<String> {
        let owner = self.profile_project(project);
        self.instances
            .values()
            .filter(|i| self.profile_project(&i.project) == owner && i.profiles.iter().any(|p| p == name))
            .map(|i| Model::instance_url(&i.project, &i.name))
            .collect()
    }

    /// The JSON of a profile.
    pub fn render_profile(&self, project: &str, p: &Profile) -> serde_json::Value {
        json!({
            "name": p.name,
            "description": p.description,
            "config": p.config,
            "devices": p.devices,
            "used_by": self.profile_used_by(project, &p.name),
        })
    }
}

impl Daemon {
    fn validate_profile(config: &ConfigMap, devices: &Devices) -> Result<()> {
        config::validate_instance_config(config, config::InstanceType::Any, ConfigLevel::Profile)?;
        config::validate_devices(devices, config::InstanceType::Any, ConfigLevel::Profile)?;
        Ok(())
    }

    /// Creates a profile.
    pub fn create_profile(&self, project: &str, profile: Profile) -> Result<()> {
        valid_profile_name(&profile.name)?;
        let profile = self.plugin_validate_profile(project, profile, None)?;
        Self::validate_profile(&profile.config, &profile.devices)?;
        let mut tx = self.txn();
        let m = tx.model();
        if !m.projects.contains_key(project) {
            return Err(Error::not_found(format!("Project \"{project}\" not found")));
        }
        let owner = m.profile_project(project).to_string();
        let key = scoped_key(&owner, &profile.name);
        if m.profiles.contains_key(&key) {
            return Err(Error::conflict(format!("Profile \"{}\" already exists", profile.name)));
        }
        drop(m);
        tx.commit(|db| db.put(&tables::PROFILES, &key, &profile), |m| {
            m.profiles.insert(key.clone(), profile.clone());
        })?;
        self.events.lifecycle(project, "profile-created", &with_project(format!("/1.0/profiles/{}", profile.name), project), json!({}));
        Ok(())
    }

    /// Replaces a profile's description, config and devices. Refused if any instance
    /// using it would become invalid.
    pub fn update_profile(&self, project: &str, name: &str, description: String, config: ConfigMap, devices: Devices) -> Result<()> {
        Self::validate_profile(&config, &devices)?;
        let mut tx = self.txn();
        let m = tx.model();
        let owner = m.profile_project(project).to_string();
        let key = scoped_key(&owner, name);
        let mut profile =
            m.profiles.get(&key).cloned().ok_or_else(|| Error::not_found(format!("Profile \"{name}\" not found")))?;
        let previous = profile.clone();
        profile.description = description;
        profile.config = config;
        profile.devices = devices;
        drop(m);
        let profile = self.plugin_validate_profile(project, profile, Some(&previous))?;
        Self::validate_profile(&profile.config, &profile.devices)?;
        let m = tx.model();
        // Re-validate every instance using the profile against the new version.
        let mut trial = Model { profiles: m.profiles.clone(), projects: m.projects.clone(), ..Model::default() };
        trial.profiles.insert(key.clone(), profile.clone());
        for inst in m.instances.values().filter(|i| {
            m.profile_project(&i.project) == owner && i.profiles.iter().any(|p| p == name)
        }) {
            trial.validate_instance(inst).map_err(|e| {
                Error::bad(format!("Failed to update profile \"{name}\": instance \"{}\" would become invalid: {e}", inst.name))
            })?;
        }
        drop(m);
        tx.commit(|db| db.put(&tables::PROFILES, &key, &profile), |m| {
            m.profiles.insert(key.clone(), profile.clone());
        })?;
        self.events.lifecycle(project, "profile-updated", &with_project(format!("/1.0/profiles/{name}"), project), json!({}));
        Ok(())
    }

    /// Deletes an unused profile (never `default`).
    pub fn delete_profile(&self, project: &str, name: &str) -> Result<()> {
        if name == "default" {
            return Err(Error::Forbidden("The \"default\" profile cannot be deleted".into()));
        }
        let mut tx = self.txn();
        let m = tx.model();
        let key = scoped_key(m.profile_project(project), name);
        if !m.profiles.contains_key(&key) {
            return Err(Error::not_found(format!("Profile \"{name}\" not found")));
        }
        if !m.profile_used_by(project, name).is_empty() {
            return Err(Error::bad("Profile is currently in use"));
        }
        drop(m);
        tx.commit(|db| db.delete(&tables::PROFILES, &key), |m| {
            m.profiles.remove(&key);
        })?;
        self.events.lifecycle(project, "profile-deleted", &with_project(format!("/1.0/profiles/{name}"), project), json!({}));
        Ok(())
    }

    /// Renames a profile and every instance reference to it, atomically.
    pub fn rename_profile(&self, project: &str, name: &str, new: &str) -> Result<()> {
        if name == "default" {
            return Err(Error::Forbidden("The \"default\" profile cannot be renamed".into()));
        }
        valid_profile_name(new)?;
        let mut tx = self.txn();
        let m = tx.model();
        let owner = m.profile_project(project).to_string();
        let key = scoped_key(&owner, name);
        let new_key = scoped_key(&owner, new);
        let mut profile =
            m.profiles.get(&key).cloned().ok_or_else(|| Error::not_found(format!("Profile \"{name}\" not found")))?;
        if m.profiles.contains_key(&new_key) {
            return Err(Error::conflict(format!("Name \"{new}\" already in use")));
        }
        profile.name = new.to_string();
        let mut changed = Vec::new();
        for (k, inst) in &m.instances {
            if m.profile_project(&inst.project) == owner && inst.profiles.iter().any(|p| p == name) {
                let mut i = inst.clone();
                for p in &mut i.profiles {
                    if p == name {
                        *p = new.to_string();
                    }
                }
                changed.push((k.clone(), i));
            }
        }
        drop(m);
        tx.commit(
            |db| {
                db.delete(&tables::PROFILES, &key)?;
                db.put(&tables::PROFILES, &new_key, &profile)?;
                for (k, i) in &changed {
                    db.put(&tables::INSTANCES, k, i)?;
                }
                Ok(())
            },
            |m| {
                m.profiles.remove(&key);
                m.profiles.insert(new_key.clone(), profile.clone());
                for (k, i) in changed.iter().cloned() {
                    m.instances.insert(k, i);
                }
            },
        )?;
        self.events.lifecycle(project, "profile-renamed", &with_project(format!("/1.0/profiles/{new}"), project), json!({"old_name": name}));
        Ok(())
    }
}
