//! Domain types the daemon hands to plugins and gets back. Plain Rust
//! (maps instead of WIT's tuple lists) so the engine never touches
//! generated bindings; `convert` translates at the boundary.

use std::collections::BTreeMap;
use std::fmt;

/// A configuration map (sorted, keys unique).
pub type ConfigMap = BTreeMap<String, String>;

/// Devices by name; each device's config includes its `type` key.
pub type Devices = BTreeMap<String, ConfigMap>;

/// Container or virtual machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceType {
    /// A container.
    Container,
    /// A QEMU virtual machine.
    VirtualMachine,
}

/// What plugins see of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// Instance name.
    pub name: String,
    /// Project the instance belongs to.
    pub project: String,
    /// Container or VM.
    pub instance_type: InstanceType,
    /// LXD status string ("Running", "Stopped", ...).
    pub status: String,
    /// The instance's own config.
    pub config: ConfigMap,
    /// Config after profiles.
    pub expanded_config: ConfigMap,
    /// The instance's own devices.
    pub devices: Devices,
    /// Devices after profiles.
    pub expanded_devices: Devices,
    /// Profiles in application order.
    pub profiles: Vec<String>,
}

impl InstanceView {
    /// A stopped container with no config, in `project`; handy for tests
    /// and for building views field by field.
    pub fn new(project: impl Into<String>, name: impl Into<String>) -> Self {
        InstanceView {
            name: name.into(),
            project: project.into(),
            instance_type: InstanceType::Container,
            status: "Stopped".to_string(),
            config: ConfigMap::new(),
            expanded_config: ConfigMap::new(),
            devices: Devices::new(),
            expanded_devices: Devices::new(),
            profiles: Vec::new(),
        }
    }
}

/// What plugins see of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileView {
    /// Profile name.
    pub name: String,
    /// Project.
    pub project: String,
    /// Description.
    pub description: String,
    /// Config.
    pub config: ConfigMap,
    /// Devices.
    pub devices: Devices,
}

/// What plugins see of a project.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectView {
    /// Project name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Config.
    pub config: ConfigMap,
}

/// One reason for a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The offending field ("limits.cpu", "name", ...).
    pub field: String,
    /// Human-readable reason.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Keys to set, then keys to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patch {
    /// Keys to set or overwrite.
    pub set: ConfigMap,
    /// Keys to remove.
    pub unset: Vec<String>,
}

impl Patch {
    /// Apply to a config map: sets first, then unsets (as the WIT says).
    pub fn apply(&self, config: &mut ConfigMap) {
        for (k, v) in &self.set {
            config.insert(k.clone(), v.clone());
        }
        for k in &self.unset {
            config.remove(k);
        }
    }
}

/// A plugin's answer to a validation call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No objection.
    Allow,
    /// Refused, with reasons.
    Deny(Vec<Violation>),
    /// Accepted after applying the patch.
    Mutate(Patch),
}

/// Lifecycle points (see `wit/types.wit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Before creation; may refuse.
    PreCreate,
    /// Before start; may refuse.
    PreStart,
    /// After the init process started.
    OnStart,
    /// Before stop; may refuse.
    PreStop,
    /// Stopped, namespaces still present.
    OnStopNs,
    /// Stopped.
    OnStop,
    /// Before deletion; may refuse.
    PreDelete,
    /// After a snapshot.
    OnSnapshot,
    /// After a restore.
    OnRestore,
    /// After a rename.
    OnRename,
    /// After a config update.
    OnUpdate,
}

impl Hook {
    /// Every hook, in lifecycle order.
    pub const ALL: [Hook; 11] = [
        Hook::PreCreate,
        Hook::PreStart,
        Hook::OnStart,
        Hook::PreStop,
        Hook::OnStopNs,
        Hook::OnStop,
        Hook::PreDelete,
        Hook::OnSnapshot,
        Hook::OnRestore,
        Hook::OnRename,
        Hook::OnUpdate,
    ];

    /// Whether the hook runs before the action and may refuse it.
    pub fn can_refuse(self) -> bool {
        matches!(
            self,
            Hook::PreCreate | Hook::PreStart | Hook::PreStop | Hook::PreDelete
        )
    }

    /// The WIT name ("pre-start", "onstopns", ...).
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreCreate => "pre-create",
            Hook::PreStart => "pre-start",
            Hook::OnStart => "onstart",
            Hook::PreStop => "pre-stop",
            Hook::OnStopNs => "onstopns",
            Hook::OnStop => "onstop",
            Hook::PreDelete => "pre-delete",
            Hook::OnSnapshot => "on-snapshot",
            Hook::OnRestore => "on-restore",
            Hook::OnRename => "on-rename",
            Hook::OnUpdate => "on-update",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Log severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

/// What a plugin reports about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Name the plugin gives itself.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// `berth:plugin` version it was built against.
    pub api_version: String,
    /// Description.
    pub description: String,
}

/// Error a host query returns to a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// No such object.
    NotFound(String),
    /// Malformed argument.
    InvalidArgument(String),
    /// Anything else.
    Other(String),
}

/// Read-only queries plugins may make, implemented by the engine over its
/// database. Calls happen on the thread running the plugin, inside its
/// deadline accounting only for wasm time: keep them fast.
pub trait HostQueries: Send + Sync {
    /// One instance.
    fn get_instance(&self, project: &str, name: &str) -> Result<InstanceView, QueryError>;
    /// All instances of a project.
    fn list_instances(&self, project: &str) -> Result<Vec<InstanceView>, QueryError>;
    /// One profile.
    fn get_profile(&self, project: &str, name: &str) -> Result<ProfileView, QueryError>;
    /// One project.
    fn get_project(&self, name: &str) -> Result<ProjectView, QueryError>;
}

/// Queries that find nothing: for hosts without a database (tests, tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoQueries;

impl HostQueries for NoQueries {
    fn get_instance(&self, project: &str, name: &str) -> Result<InstanceView, QueryError> {
        Err(QueryError::NotFound(format!("instance {project}/{name}")))
    }
    fn list_instances(&self, _project: &str) -> Result<Vec<InstanceView>, QueryError> {
        Ok(Vec::new())
    }
    fn get_profile(&self, project: &str, name: &str) -> Result<ProfileView, QueryError> {
        Err(QueryError::NotFound(format!("profile {project}/{name}")))
    }
    fn get_project(&self, name: &str) -> Result<ProjectView, QueryError> {
        Err(QueryError::NotFound(format!("project {name}")))
    }
}
