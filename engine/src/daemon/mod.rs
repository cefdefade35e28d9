//! The daemon's shared state and its high-level operations on records.
//!
//! Reads come from an in-memory copy of the database ([`Model`]) behind a `RwLock`, which
//! is what makes listing fast. Every mutation takes the write mutex, validates against the
//! model, commits one redb transaction, and only then updates the model, so the model never
//! holds anything that is not durable.

mod backup_capture;
mod backups;
pub mod certificates;
mod hooks;
mod copy;
mod image_aliases;
pub mod images;
mod image_prepare;
mod instances;
mod migrate;
pub mod plugins;
mod runtime;
mod pools;
pub mod scheduler;
mod snapshots;
mod vm_images;
mod volumes;
mod volume_backups;
mod profiles;
mod projects;
pub mod trust;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::config::{self, ConfigLevel};
use crate::db::{tables, Db, WriteTx};
use crate::error::{Error, Result};
use crate::events::EventHub;
use crate::model::{scoped_key, ConfigMap, InstanceRecord, Profile, Project};
use crate::operations::Operations;

pub use backups::BackupRecord;
pub use copy::RootSource;
pub use images::{AliasRecord, ImageRecord, ImageUpdate, ImageUpload};
pub use snapshots::SnapshotRecord;
pub use volumes::{volume_key, VolumeRecord, VolumeUpdate};
pub use volume_backups::VolumeBackupRecord;
pub use pools::{instance_volume, LoadedPool, PoolRecord, VolumeGuard};
pub use runtime::{instance_error, timeout_of};
pub use instances::{host_architecture, instance_type_limits, InstanceCreate, InstanceUpdate};

/// Runtime status of an instance, as LXD reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    Stopped,
    Running,
    Frozen,
    Error,
}

impl PowerState {
    /// `status` string.
    pub fn name(self) -> &'static str {
        match self {
            PowerState::Stopped => "Stopped",
            PowerState::Running => "Running",
            PowerState::Frozen => "Frozen",
            PowerState::Error => "Error",
        }
    }

    /// `status_code`.
    pub fn code(self) -> u16 {
        match self {
            PowerState::Stopped => 102,
            PowerState::Running => 103,
            PowerState::Frozen => 110,
            PowerState::Error => 112,
        }
    }
}

/// The in-memory copy of the database.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub server: ConfigMap,
    pub projects: BTreeMap<String, Project>,
    /// By `project/name`.
    pub profiles: BTreeMap<String, Profile>,
    /// By `project/name`.
    pub instances: BTreeMap<String, InstanceRecord>,
    /// Runtime status by `project/name`; absent means stopped.
    pub power: HashMap<String, PowerState>,
    /// Trusted client certificates by SHA-256 fingerprint.
    pub certificates: BTreeMap<String, certificates::Certificate>,
    /// Images by `project/fingerprint`, aliases by `project/name`.
    pub images: BTreeMap<String, ImageRecord>,
    pub image_aliases: BTreeMap<String, AliasRecord>,
    /// Snapshots and backups by `project/instance/name`.
    pub snapshots: BTreeMap<String, SnapshotRecord>,
    pub backups: BTreeMap<String, BackupRecord>,
    /// Custom volume backups by `pool/project/volume/name`.
    pub volume_backups: BTreeMap<String, VolumeBackupRecord>,
    /// Custom volumes by `pool/project/name[/snapshot]`.
    pub volumes: BTreeMap<String, VolumeRecord>,
    /// Bumped by every commit: anything derived from the model (rendered JSON caches)
    /// is valid for one generation.
    pub generation: u64,
}

impl Model {
    /// The project whose profiles `project` uses.
    pub fn profile_project<'a>(&self, project: &'a str) -> &'a str {
        match self.projects.get(project) {
            Some(p) if p.has_own_profiles() => project,
            _ => "default",
        }
    }

    /// A profile as seen from `project`.
    pub fn profile(&self, project: &str, name: &str) -> Option<&Profile> {
        self.profiles.get(&scoped_key(self.profile_project(project), name))
    }

    /// An instance.
    pub fn instance(&self, project: &str, name: &str) -> Option<&InstanceRecord> {
        self.instances.get(&scoped_key(project, name))
    }

    /// The power state of an instance.
    pub fn power(&self, project: &str, name: &str) -> PowerState {
        self.power.get(&scoped_key(project, name)).copied().unwrap_or(PowerState::Stopped)
    }

    /// The expanded config and devices of an instance record.
    pub fn expand(&self, inst: &InstanceRecord) -> Result<(ConfigMap, config::Devices)> {
        let mut profs = Vec::with_capacity(inst.profiles.len());
        for p in &inst.profiles {
            let prof = self
                .profile(&inst.project, p)
                .ok_or_else(|| Error::bad(format!("Requested profile \"{p}\" doesn't exist")))?;
            profs.push(prof);
        }
        Ok(crate::model::expand(&profs, &inst.config, &inst.devices))
    }

    /// Validates an instance record's own and expanded config and devices.
    pub fn validate_instance(&self, inst: &InstanceRecord) -> Result<()> {
        config::validate_instance_config(&inst.config, inst.instance_type, ConfigLevel::Instance)?;
        config::validate_devices(&inst.devices, inst.instance_type, ConfigLevel::Instance)?;
        let (ec, ed) = self.expand(inst)?;
        config::validate_instance_config(&ec, inst.instance_type, ConfigLevel::Expanded)?;
        config::validate_devices(&ed, inst.instance_type, ConfigLevel::Expanded)?;
        Ok(())
    }

    /// URL of an instance, with `?project=` outside the default project.
    pub fn instance_url(project: &str, name: &str) -> String {
        with_project(format!("/1.0/instances/{name}"), project)
    }
}

/// Appends `?project=` for non-default projects, as LXD's `used_by` does.
pub fn with_project(url: String, project: &str) -> String {
    if project == "default" {
        url
    } else {
        format!("{url}?project={project}")
    }
}

/// The daemon.
pub struct Daemon {
    pub data_dir: PathBuf,
    pub db: Db,
    /// Shared with the plugin host's queries.
    model: Arc<RwLock<Model>>,
    write: Mutex<()>,
    pub events: EventHub,
    pub ops: Operations,
    pub started: std::time::Instant,
    /// Server identity, password attempts, HTTPS listener.
    pub trust: trust::TrustState,
    shutdown: tokio::sync::watch::Sender<bool>,
    pools: RwLock<BTreeMap<String, (PoolRecord, LoadedPool)>>,
    /// WebAssembly plugins (validation, filters, lifecycle hooks).
    pub plugins: plugins::Plugins,
    /// Loaded instance drivers and running-instance bookkeeping.
    runtime: runtime::Runtime,
    /// Rendered JSON of records, reused while the model generation is unchanged.
    pub render_cache: RenderCache,
}

/// Cached JSON renderings keyed by (record key, variant), each tagged with the model
/// generation and power state it was rendered at.
#[derive(Default)]
pub struct RenderCache {
    map: Mutex<HashMap<(String, u8), (u64, PowerState, std::sync::Arc<[u8]>)>>,
}

impl RenderCache {
    /// The cached bytes if still valid for `generation` and `power`, else renders and stores.
    pub fn get_or_render(
        &self,
        key: &str,
        variant: u8,
        generation: u64,
        power: PowerState,
        render: impl FnOnce() -> Vec<u8>,
    ) -> std::sync::Arc<[u8]> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, p, bytes)) = map.get(&(key.to_string(), variant)) {
            if *g == generation && *p == power {
                return bytes.clone();
            }
        }
        let bytes: std::sync::Arc<[u8]> = render().into();
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert((key.to_string(), variant), (generation, power, bytes.clone()));
        bytes
    }
}

/// A mutation in progress: holds the write mutex and a view of the model.
pub struct Txn<'a> {
    daemon: &'a Daemon,
    _guard: MutexGuard<'a, ()>,
}

impl Txn<'_> {
    /// The model as it is now (no other writer can change it while the Txn lives).
    pub fn model(&self) -> RwLockReadGuard<'_, Model> {
        self.daemon.model()
    }

    /// Commits `db` changes in one redb transaction, then applies `apply` to the model.
    /// Taking `&mut self` means no model read guard from [`Txn::model`] can still be
    /// alive here, which would deadlock on the write lock.
    pub fn commit<R>(
        &mut self,
        db: impl FnOnce(&WriteTx<'_>) -> std::result::Result<(), crate::db::DbError>,
        apply: impl FnOnce(&mut Model) -> R,
    ) -> Result<R> {
        self.daemon.db.write(db)?;
        let mut m = self.daemon.model.write().unwrap_or_else(|p| p.into_inner());
        let out = apply(&mut m);
        m.generation += 1;
        Ok(out)
    }
}

impl Txn<'_> {
    /// As [`Txn::commit`], with a non-durable database commit (see [`Db::write_relaxed`]).
    pub fn commit_relaxed<R>(
        &mut self,
        db: impl FnOnce(&WriteTx<'_>) -> std::result::Result<(), crate::db::DbError>,
        apply: impl FnOnce(&mut Model) -> R,
    ) -> Result<R> {
        self.daemon.db.write_relaxed(db)?;
        let mut m = self.daemon.model.write().unwrap_or_else(|p| p.into_inner());
        let out = apply(&mut m);
        m.generation += 1;
        Ok(out)
    }
}

impl Daemon {
    /// Opens the database under `data_dir` and loads it.
    pub fn open(data_dir: &Path, events: EventHub) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::internal(format!("creating {}: {e}", data_dir.display())))?;
        // 0711 (as LXD's var dir): unprivileged containers' root must traverse it to reach
        // their rootfs, while nobody else can list it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::internal(format!("chmod {}: {e}", data_dir.display())))?;
        let db = Db::open(&data_dir.join("berth.redb"))?;
        let mut model = Model {
            server: db.get(&tables::SERVER, "config")?.unwrap_or_default(),
            ..Model::default()
        };
        model.projects = db.all(&tables::PROJECTS)?.into_iter().collect();
        model.profiles = db.all(&tables::PROFILES)?.into_iter().collect();
        model.instances = db.all(&tables::INSTANCES)?.into_iter().collect();
        model.certificates = db.all(&tables::CERTIFICATES)?.into_iter().collect();
        model.images = db.all(&tables::IMAGES)?.into_iter().collect();
        model.image_aliases = db.all(&tables::IMAGE_ALIASES)?.into_iter().collect();
        model.snapshots = db.all(&tables::SNAPSHOTS)?.into_iter().collect();
        model.backups = db.all(&tables::BACKUPS)?.into_iter().collect();
        model.volume_backups = db.all(&tables::VOLUME_BACKUPS)?.into_iter().collect();
        model.volumes = db.all(&tables::VOLUMES)?.into_iter().collect();
        let identity = trust::ServerIdentity::load_or_create(data_dir)
            .map_err(|e| Error::internal(format!("server certificate: {e}")))?;
        let model = Arc::new(RwLock::new(model));
        let plugins = plugins::Plugins::open(data_dir, model.clone(), events.clone())?;
        let daemon = Daemon {
            data_dir: data_dir.to_path_buf(),
            db,
            model,
            write: Mutex::new(()),
            ops: Operations::new(events.clone()),
            events,
            started: std::time::Instant::now(),
            trust: trust::TrustState::new(identity),
            shutdown: tokio::sync::watch::channel(false).0,
            pools: RwLock::new(BTreeMap::new()),
            plugins,
            runtime: runtime::Runtime::default(),
            render_cache: RenderCache::default(),
        };
        daemon.ensure_default_pool()?;
        daemon.load_pools()?;
        daemon.load_plugins()?;
        Ok(daemon)
    }

    /// Asks the daemon to shut down gracefully.
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A receiver that changes when shutdown is requested.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// A read view of the model.
    pub fn model(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a mutation.
    pub fn txn(&self) -> Txn<'_> {
        Txn { daemon: self, _guard: self.write.lock().unwrap_or_else(|p| p.into_inner()) }
    }

    /// Checks that a project exists.
    pub fn require_project(&self, project: &str) -> Result<()> {
        if self.model().projects.contains_key(project) {
            Ok(())
        } else {
            Err(Error::not_found(format!("Project \"{project}\" not found")))
        }
    }

    /// Replaces the server config (`PUT /1.0`), validated.
    pub fn set_server_config(&self, config: ConfigMap) -> Result<()> {
        config::validate_server_config(&config)?;
        let mut tx = self.txn();
        tx.commit(|db| db.put(&tables::SERVER, "config", &config), |m| m.server = config.clone())?;
        self.events.lifecycle("default", "config-updated", "/1.0", serde_json::json!({}));
        Ok(())
    }
}
