//! What plugins see of the daemon's records, and the read-only queries they may make
//! ([`HostQueries`] over the in-memory [`Model`]).

use std::sync::{Arc, RwLock};

use berth_plugin_host::{HostQueries, InstanceType, InstanceView, ProfileView, ProjectView, QueryError};

use crate::config;
use crate::daemon::Model;
use crate::model::{InstanceRecord, Profile, Project};

/// The view of an instance record: own and expanded config/devices, profiles, status.
/// A record whose profiles cannot be expanded shows its own config as expanded (the
/// built-in validation reports the missing profile afterwards).
pub fn instance_view(m: &Model, inst: &InstanceRecord) -> InstanceView {
    let (expanded_config, expanded_devices) =
        m.expand(inst).unwrap_or_else(|_| (inst.config.clone(), inst.devices.clone()));
    InstanceView {
        name: inst.name.clone(),
        project: inst.project.clone(),
        instance_type: match inst.instance_type {
            config::InstanceType::VirtualMachine => InstanceType::VirtualMachine,
            _ => InstanceType::Container,
        },
        status: m.power(&inst.project, &inst.name).name().to_string(),
        config: inst.config.clone(),
        expanded_config,
        devices: inst.devices.clone(),
        expanded_devices,
        profiles: inst.profiles.clone(),
    }
}

/// The view of a profile in `project`.
pub fn profile_view(project: &str, p: &Profile) -> ProfileView {
    ProfileView {
        name: p.name.clone(),
        project: project.to_string(),
        description: p.description.clone(),
        config: p.config.clone(),
        devices: p.devices.clone(),
    }
}

/// The view of a project.
pub fn project_view(p: &Project) -> ProjectView {
    ProjectView { name: p.name.clone(), description: p.description.clone(), config: p.config.clone() }
}

/// Host queries over the daemon's model. Plugins are only ever called with no model
/// guard held by the calling thread, so these reads cannot deadlock against a writer.
pub struct ModelQueries {
    pub model: Arc<RwLock<Model>>,
}

impl ModelQueries {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HostQueries for ModelQueries {
    fn get_instance(&self, project: &str, name: &str) -> Result<InstanceView, QueryError> {
        let m = self.read();
        let inst = m.instance(project, name).ok_or_else(|| QueryError::NotFound(format!("instance {project}/{name}")))?;
        Ok(instance_view(&m, inst))
    }

    fn list_instances(&self, project: &str) -> Result<Vec<InstanceView>, QueryError> {
        let m = self.read();
        if !m.projects.contains_key(project) {
            return Err(QueryError::NotFound(format!("project {project}")));
        }
        Ok(m.instances.values().filter(|i| i.project == project).map(|i| instance_view(&m, i)).collect())
    }

    fn get_profile(&self, project: &str, name: &str) -> Result<ProfileView, QueryError> {
        let m = self.read();
        let p = m.profile(project, name).ok_or_else(|| QueryError::NotFound(format!("profile {project}/{name}")))?;
        Ok(profile_view(project, p))
    }

    fn get_project(&self, name: &str) -> Result<ProjectView, QueryError> {
        let m = self.read();
        m.projects.get(name).map(project_view).ok_or_else(|| QueryError::NotFound(format!("project {name}")))
    }
}
