//! Projects: CRUD, rename, `features.*`, `used_by`.

use serde_json::json;

use super::{with_project, Daemon, Model};
use crate::config::ConfigError;
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::{scoped_key, ConfigMap, Profile, Project};

/// Project config keys LXD 5.0.2 accepts (prefix entries end with `.`).
const PROJECT_KEYS: &[&str] = &[
    "features.images",
    "features.profiles",
    "features.storage.volumes",
    "features.networks",
    "features.storage.buckets",
    "limits.containers",
    "limits.virtual-machines",
    "limits.instances",
    "limits.cpu",
    "limits.memory",
    "limits.processes",
    "limits.disk",
    "limits.networks",
    "restricted",
    "restricted.backups",
    "restricted.cluster.groups",
    "restricted.cluster.target",
    "restricted.containers.interception",
    "restricted.containers.lowlevel",
    "restricted.containers.nesting",
    "restricted.containers.privilege",
    "restricted.devices.disk",
    "restricted.devices.disk.paths",
    "restricted.devices.gpu",
    "restricted.devices.infiniband",
    "restricted.devices.nic",
    "restricted.devices.pci",
    "restricted.devices.proxy",
    "restricted.devices.unix-block",
    "restricted.devices.unix-char",
    "restricted.devices.unix-hotplug",
    "restricted.devices.usb",
    "restricted.idmap.uid",
    "restricted.idmap.gid",
    "restricted.networks.access",
    "restricted.networks.subnets",
    "restricted.networks.uplinks",
    "restricted.networks.zones",
    "restricted.snapshots",
    "restricted.virtual-machines.lowlevel",
    "backups.compression_algorithm",
    "images.auto_update_cached",
    "images.auto_update_interval",
    "images.compression_algorithm",
    "images.default_architecture",
    "images.remote_cache_expiry",
];

fn is_bool(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off" | "")
}

/// Validates a project config map.
pub fn validate_project_config(config: &ConfigMap) -> Result<(), ConfigError> {
    for (k, v) in config {
        if k.starts_with("user.") {
            continue;
        }
        if !PROJECT_KEYS.contains(&k.as_str()) {
            return Err(ConfigError::UnknownKey(k.clone()));
        }
        let bad = |reason: &str| ConfigError::InvalidValue { key: k.clone(), reason: reason.into() };
        if k.starts_with("features.") && !is_bool(v) {
            return Err(bad("Invalid value for a boolean"));
        }
        if matches!(
            k.as_str(),
            "limits.containers" | "limits.virtual-machines" | "limits.instances" | "limits.cpu" | "limits.processes"
                | "limits.networks"
        ) && !v.is_empty()
            && v.parse::<u64>().is_err()
        {
            return Err(bad("Invalid value for an integer"));
        }
        if matches!(k.as_str(), "limits.memory" | "limits.disk") && !v.is_empty() {
            crate::config::parse_byte_size(v).map_err(|_| bad("Invalid size"))?;
        }
    }
    Ok(())
}

impl Model {
    /// URLs of everything in a project (LXD's `used_by`).
    pub fn project_used_by(&self, project: &str) -> Vec<String> {
        let mut out = Vec::new();
        for inst in self.instances.values().filter(|i| i.project == project) {
            out.push(Model::instance_url(project, &inst.name));
        }
        let prefix = format!("{project}/");
        for (key, p) in &self.profiles {
            if key.starts_with(&prefix) {
                out.push(with_project(format!("/1.0/profiles/{}", p.name), project));
            }
        }
        out
    }

    /// The JSON of a project.
    pub fn render_project(&self, p: &Project) -> serde_json::Value {
        json!({"name": p.name, "description": p.description, "config": p.config, "used_by": self.project_used_by(&p.name)})
    }
}

impl Daemon {
    /// Creates a project (and its default profile if it has its own profiles).
    pub fn create_project(&self, name: &str, description: &str, mut config: ConfigMap) -> Result<()> {
        if name.is_empty() {
            return Err(Error::bad("No name provided"));
        }
        if name.contains('/') || name.contains(' ') || name.contains('_') || name == "*" || name.starts_with('.') {
            return Err(Error::bad(format!("Invalid project name \"{name}\"")));
        }
        validate_project_config(&config)?;
        // LXD: features.profiles and features.images default to true for new projects.
        for k in ["features.images", "features.profiles", "features.storage.volumes"] {
            config.entry(k.to_string()).or_insert_with(|| "true".into());
        }
        let project = Project { name: name.into(), description: description.into(), config };
        let project = self.plugin_validate_project(project, None)?;
        validate_project_config(&project.config)?;
        let mut tx = self.txn();
        if tx.model().projects.contains_key(name) {
            return Err(Error::conflict(format!("Project \"{name}\" already exists")));
        }
        let own = project.has_own_profiles();
        let profile = Profile::default_profile();
        tx.commit(
            |db| {
                db.put(&tables::PROJECTS, name, &project)?;
                if own {
                    db.put(&tables::PROFILES, &scoped_key(name, "default"), &profile)?;
                }
                Ok(())
            },
            |m| {
                m.projects.insert(name.to_string(), project.clone());
                if own {
                    m.profiles.insert(scoped_key(name, "default"), profile.clone());
                }
            },
        )?;
        self.events.lifecycle(name, "project-created", &format!("/1.0/projects/{name}"), json!({}));
        Ok(())
    }

    /// Replaces a project's description and config.
    pub fn update_project(&self, name: &str, description: &str, config: ConfigMap) -> Result<()> {
        validate_project_config(&config)?;
        let mut tx = self.txn();
        let mut project = tx
            .model()
            .projects
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Project \"{name}\" not found")))?;
        let changed_features = ["features.profiles", "features.images"]
            .iter()
            .any(|k| project.config.get(*k) != config.get(*k));
        if changed_features && name != "default" && !tx.model().project_used_by(name).iter().all(|u| u.contains("/profiles/default")) {
            return Err(Error::bad("Features can only be changed on empty projects"));
        }
        let previous = project.clone();
        project.description = description.to_string();
        project.config = config;
        let project = self.plugin_validate_project(project, Some(&previous))?;
        validate_project_config(&project.config)?;
        tx.commit(|db| db.put(&tables::PROJECTS, name, &project), |m| {
            m.projects.insert(name.to_string(), project.clone());
        })?;
        self.events.lifecycle(name, "project-updated", &format!("/1.0/projects/{name}"), json!({}));
        Ok(())
    }

    fn project_is_empty(m: &Model, name: &str) -> bool {
        !m.instances.values().any(|i| i.project == name)
            && !m.profiles.keys().any(|k| k.starts_with(&format!("{name}/")) && k != &scoped_key(name, "default"))
    }

    /// Deletes an empty project.
    pub fn delete_project(&self, name: &str) -> Result<()> {
        if name == "default" {
            return Err(Error::Forbidden("The 'default' project cannot be deleted".into()));
        }
        let mut tx = self.txn();
        let m = tx.model();
        if !m.projects.contains_key(name) {
            return Err(Error::not_found(format!("Project \"{name}\" not found")));
        }
        if !Self::project_is_empty(&m, name) {
            return Err(Error::bad("Only empty projects can be removed"));
        }
        drop(m);
        tx.commit(
            |db| {
                db.delete(&tables::PROJECTS, name)?;
                db.delete(&tables::PROFILES, &scoped_key(name, "default"))
            },
            |m| {
                m.projects.remove(name);
                m.profiles.remove(&scoped_key(name, "default"));
            },
        )?;
        self.events.lifecycle(name, "project-deleted", &format!("/1.0/projects/{name}"), json!({}));
        Ok(())
    }

    /// Renames an empty project.
    pub fn rename_project(&self, name: &str, new: &str) -> Result<()> {
        if name == "default" {
            return Err(Error::Forbidden("The 'default' project cannot be renamed".into()));
        }
        if new.is_empty() || new.contains('/') || new.contains(' ') || new.contains('_') {
            return Err(Error::bad(format!("Invalid project name \"{new}\"")));
        }
        let mut tx = self.txn();
        let m = tx.model();
        let mut project =
            m.projects.get(name).cloned().ok_or_else(|| Error::not_found(format!("Project \"{name}\" not found")))?;
        if m.projects.contains_key(new) {
            return Err(Error::conflict(format!("Project \"{new}\" already exists")));
        }
        if !Self::project_is_empty(&m, name) {
            return Err(Error::bad("Only empty projects can be renamed"));
        }
        let profile = m.profiles.get(&scoped_key(name, "default")).cloned();
        drop(m);
        project.name = new.to_string();
        tx.commit(
            |db| {
                db.delete(&tables::PROJECTS, name)?;
                db.put(&tables::PROJECTS, new, &project)?;
                if let Some(p) = &profile {
                    db.delete(&tables::PROFILES, &scoped_key(name, "default"))?;
                    db.put(&tables::PROFILES, &scoped_key(new, "default"), p)?;
                }
                Ok(())
            },
            |m| {
                m.projects.remove(name);
                m.projects.insert(new.to_string(), project.clone());
                if let Some(p) = m.profiles.remove(&scoped_key(name, "default")) {
                    m.profiles.insert(scoped_key(new, "default"), p);
                }
            },
        )?;
        self.events.lifecycle(new, "project-renamed", &format!("/1.0/projects/{new}"), json!({"old_name": name}));
        Ok(())
    }
}
