//! Images as the daemon keeps them: records in redb, files under `<data_dir>/images`, an
//! unpacked volume per pool (made at import in the project's default pool, which is also
//! where an untrusted archive is refused), aliases, publishing and deletion.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Daemon, Model};
use crate::config;
use crate::db::tables;
use crate::error::{Error, Result};
use crate::image::{self, Compression, ImageFiles, ImageType, PublishOptions, UnpackOptions};
use crate::model::{scoped_key, zero_time, ConfigMap, InstanceRecord};
use crate::storage::drivers::Driver;
use crate::storage::{Volume, VolumeType};

/// An image record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub fingerprint: String,
    pub project: String,
    #[serde(default)]
    pub filename: String,
    pub size: u64,
    #[serde(default)]
    pub public: bool,
    pub architecture: String,
    #[serde(default)]
    pub properties: ConfigMap,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: DateTime<Utc>,
    #[serde(default = "zero_time")]
    pub last_used_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub auto_update: bool,
    #[serde(default)]
    pub profiles: Vec<String>,
    /// `container` or `virtual-machine` (records from before VM images are containers).
    #[serde(default)]
    pub image_type: ImageType,
}

/// An image alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub name: String,
    pub project: String,
    pub target: String,
    #[serde(default)]
    pub description: String,
}

/// The writable fields of an image (`PUT /1.0/images/FP`).
#[derive(Debug, Clone, Default)]
pub struct ImageUpdate {
    pub public: bool,
    pub properties: ConfigMap,
    pub auto_update: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// `None` keeps the current profiles.
    pub profiles: Option<Vec<String>>,
}

/// An upload already written to temporary files by the API layer.
#[derive(Debug, Clone)]
pub struct ImageUpload {
    pub meta_tmp: PathBuf,
    pub rootfs_tmp: Option<PathBuf>,
    /// sha256 of meta‖rootfs as streamed.
    pub fingerprint: String,
    pub size: u64,
    /// `X-LXD-fingerprint`: the client's expectation.
    pub expected: Option<String>,
    pub filename: String,
    pub public: bool,
    pub properties: ConfigMap,
    pub profiles: Option<Vec<String>>,
    pub aliases: Vec<(String, String)>,
    /// The rootfs came as LXD's `rootfs.img` part: the client says it is a VM disk.
    pub vm_disk: bool,
}

impl From<image::Error> for Error {
    fn from(e: image::Error) -> Self {
        use image::Error as E;
        match e {
            E::Corrupt { ref source, .. } => Error::bad(format!("Invalid image: {e}: {source}")),
            E::Unsafe { .. } | E::TooLarge { .. } | E::UnsupportedFormat(_) | E::Metadata(_) | E::Disk(_) => {
                Error::bad(format!("Invalid image: {e}"))
            }
            E::FingerprintMismatch { .. } => Error::bad(e.to_string()),
            E::Storage(s) => s.into(),
            E::Io { .. } => Error::internal(e.to_string()),
        }
    }
}

/// Unpack limits: `BERTH_IMAGE_MAX_UNPACK_BYTES` caps what one archive may expand to,
/// `BERTH_VM_IMAGE_MAX_DISK_BYTES` the virtual size of a VM image's disk.
pub fn unpack_options() -> UnpackOptions {
    let mut o = UnpackOptions::default();
    if let Some(n) = std::env::var("BERTH_IMAGE_MAX_UNPACK_BYTES").ok().and_then(|v| v.parse().ok()) {
        o.max_bytes = n;
    }
    if let Some(n) = std::env::var("BERTH_VM_IMAGE_MAX_DISK_BYTES").ok().and_then(|v| v.parse().ok()) {
        o.max_disk_size = n;
    }
    o
}

impl Model {
    /// The project whose images `project` uses.
    pub fn image_project<'a>(&self, project: &'a str) -> &'a str {
        match self.projects.get(project) {
            Some(p) if p.name == "default" || p.config.get("features.images").is_some_and(|v| v == "true") => project,
            _ => "default",
        }
    }

    /// An image by a unique fingerprint prefix.
    pub fn image(&self, project: &str, prefix: &str) -> Result<&ImageRecord> {
        let ip = self.image_project(project);
        let start = scoped_key(ip, prefix);
        let mut found = self.images.range(start.clone()..).take_while(|(k, _)| k.starts_with(&start));
        let first = found.next().ok_or_else(|| Error::not_found("Image not found"))?;
        if prefix.len() < 64 && found.next().is_some() {
            return Err(Error::bad(format!("More than one image matches \"{prefix}\"")));
        }
        Ok(first.1)
    }

    /// An alias.
    pub fn image_alias(&self, project: &str, name: &str) -> Option<&AliasRecord> {
        self.image_aliases.get(&scoped_key(self.image_project(project), name))
    }

    /// The aliases pointing at an image.
    pub fn aliases_of(&self, project: &str, fp: &str) -> Vec<&AliasRecord> {
        let ip = self.image_project(project);
        self.image_aliases.values().filter(|a| a.project == ip && a.target == fp).collect()
    }

    /// The pool a project's default profile puts root disks in.
    pub fn default_root_pool(&self, project: &str) -> Option<String> {
        let prof = self.profile(project, "default")?;
        prof.devices.values().find(|d| config::is_root_disk(d)).and_then(|d| d.get("pool").cloned())
    }
}

impl Daemon {
    /// Where image files live.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    fn files_of(&self, fp: &str) -> ImageFiles {
        ImageFiles::in_dir(&self.images_dir(), fp)
    }

    /// Turns an upload into an image: checks the fingerprint, moves the files in place,
    /// reads metadata.yaml, unpacks into the default pool (refusing unsafe archives, with
    /// nothing left behind) and records it with its aliases.
    pub fn import_image(&self, project: &str, up: ImageUpload, progress: &dyn Fn(&str)) -> Result<ImageRecord> {
        let cleanup = |up: &ImageUpload| {
            let _ = std::fs::remove_file(&up.meta_tmp);
            if let Some(r) = &up.rootfs_tmp {
                let _ = std::fs::remove_file(r);
            }
        };
        let res = self.import_image_inner(project, &up, progress);
        cleanup(&up);
        res
    }

    fn import_image_inner(&self, project: &str, up: &ImageUpload, progress: &dyn Fn(&str)) -> Result<ImageRecord> {
        let fp = up.fingerprint.clone();
        if let Some(exp) = up.expected.as_deref().filter(|e| !e.is_empty()) {
            if exp != fp {
                return Err(Error::bad(format!("Fingerprint mismatch: expected {exp}, got {fp}")));
            }
        }
        let (ip, pool) = {
            let m = self.model();
            let ip = m.image_project(project).to_string();
            if m.images.contains_key(&scoped_key(&ip, &fp)) {
                return Err(Error::conflict(format!("Image with same fingerprint already exists: {fp}")));
            }
            for (name, _) in &up.aliases {
                if m.image_alias(project, name).is_some() {
                    return Err(Error::conflict(format!("Alias \"{name}\" already exists")));
                }
            }
            (ip, m.default_root_pool(project))
        };
        let dir = self.images_dir();
        let files = ImageFiles {
            meta: dir.join(&fp),
            rootfs: up.rootfs_tmp.as_ref().map(|_| dir.join(format!("{fp}.rootfs"))),
        };
        let shared = files.meta.exists();
        if !shared {
            if let (Some(tmp), Some(dst)) = (&up.rootfs_tmp, &files.rootfs) {
                std::fs::rename(tmp, dst).map_err(|e| Error::internal(format!("storing image: {e}")))?;
            }
            std::fs::rename(&up.meta_tmp, &files.meta).map_err(|e| Error::internal(format!("storing image: {e}")))?;
        }
        let out = (|| {
            progress("Reading metadata");
            let meta = image::read_metadata(&files)?;
            let image_type = super::vm_images::check_upload(&files, up.vm_disk, &unpack_options())?;
            if let Some(pool) = &pool {
                progress("Unpacking");
                let driver = self.pool_driver(pool)?;
                image::ensure_image_volume(driver.as_ref(), &files, &fp, &unpack_options())?;
            }
            Ok::<_, Error>((meta, image_type))
        })();
        let (meta, image_type) = match out {
            Ok(m) => m,
            Err(e) => {
                if !shared {
                    let _ = std::fs::remove_file(&files.meta);
                    if let Some(r) = &files.rootfs {
                        let _ = std::fs::remove_file(r);
                    }
                }
                return Err(e);
            }
        };
        let now = Utc::now();
        let mut properties = meta.properties.clone();
        properties.extend(up.properties.clone());
        let rec = ImageRecord {
            fingerprint: fp.clone(),
            project: ip.clone(),
            filename: up.filename.clone(),
            size: up.size,
            public: up.public,
            architecture: meta.architecture.clone(),
            properties,
            created_at: chrono::DateTime::from_timestamp(meta.creation_date, 0).filter(|_| meta.creation_date > 0).unwrap_or(now),
            uploaded_at: now,
            last_used_at: zero_time(),
            expires_at: chrono::DateTime::from_timestamp(meta.expiry_date, 0).filter(|_| meta.expiry_date > 0),
            auto_update: false,
            profiles: up.profiles.clone().unwrap_or_else(|| vec!["default".into()]),
            image_type,
        };
        self.commit_image(&rec, &up.aliases)?;
        Ok(rec)
    }

    fn commit_image(&self, rec: &ImageRecord, aliases: &[(String, String)]) -> Result<()> {
        let ip = rec.project.clone();
        let key = scoped_key(&ip, &rec.fingerprint);
        let aliases: Vec<AliasRecord> = aliases
            .iter()
            .map(|(n, d)| AliasRecord { name: n.clone(), project: ip.clone(), target: rec.fingerprint.clone(), description: d.clone() })
            .collect();
        let mut tx = self.txn();
        tx.commit(
            |db| {
                db.put(&tables::IMAGES, &key, rec)?;
                for a in &aliases {
                    db.put(&tables::IMAGE_ALIASES, &scoped_key(&ip, &a.name), a)?;
                }
                Ok(())
            },
            |m| {
                m.images.insert(key.clone(), rec.clone());
                for a in &aliases {
                    m.image_aliases.insert(scoped_key(&ip, &a.name), a.clone());
                }
            },
        )?;
        self.events.lifecycle(&ip, "image-created", &format!("/1.0/images/{}", rec.fingerprint), json!({}));
        Ok(())
    }

    /// Replaces an image's writable fields.
    pub fn update_image(&self, project: &str, fp: &str, upd: ImageUpdate) -> Result<()> {
        let mut tx = self.txn();
        let mut rec = tx.model().image(project, fp)?.clone();
        rec.public = upd.public;
        rec.properties = upd.properties;
        rec.auto_update = upd.auto_update;
        rec.expires_at = upd.expires_at;
        if let Some(p) = upd.profiles {
            rec.profiles = p;
        }
        let key = scoped_key(&rec.project, &rec.fingerprint);
        tx.commit(|db| db.put(&tables::IMAGES, &key, &rec), |m| {
            m.images.insert(key.clone(), rec.clone());
        })?;
        Ok(())
    }

    /// Deletes an image, its aliases, and (when no project uses it any more) its files and
    /// unpacked volumes.
    pub fn delete_image(&self, project: &str, fp: &str) -> Result<()> {
        let mut tx = self.txn();
        let m = tx.model();
        let rec = m.image(project, fp)?.clone();
        let key = scoped_key(&rec.project, &rec.fingerprint);
        let alias_keys: Vec<String> =
            m.aliases_of(project, &rec.fingerprint).iter().map(|a| scoped_key(&a.project, &a.name)).collect();
        let last = !m.images.values().any(|i| i.fingerprint == rec.fingerprint && i.project != rec.project);
        drop(m);
        tx.commit(
            |db| {
                db.delete(&tables::IMAGES, &key)?;
                for k in &alias_keys {
                    db.delete(&tables::IMAGE_ALIASES, k)?;
                }
                Ok(())
            },
            |m| {
                m.images.remove(&key);
                for k in &alias_keys {
                    m.image_aliases.remove(k);
                }
            },
        )?;
        if last {
            let files = self.files_of(&rec.fingerprint);
            let _ = std::fs::remove_file(&files.meta);
            if let Some(r) = files.rootfs {
                let _ = std::fs::remove_file(r);
            }
            let vol = Volume::new(VolumeType::Image, &rec.fingerprint);
            for (_, lp) in self.pools() {
                if let super::LoadedPool::Ready(d) = lp {
                    if d.volume_exists(&vol) {
                        if let Err(e) = d.delete_volume(&vol) {
                            tracing::error!(image = %rec.fingerprint, error = %e, "deleting image volume");
                        }
                    }
                }
            }
        }
        self.events.lifecycle(&rec.project, "image-deleted", &format!("/1.0/images/{}", rec.fingerprint), json!({}));
        Ok(())
    }

    /// The stored files of an image (for export).
    pub fn image_files(&self, project: &str, fp: &str) -> Result<(ImageRecord, ImageFiles)> {
        let rec = self.model().image(project, fp)?.clone();
        let files = self.files_of(&rec.fingerprint);
        Ok((rec, files))
    }

    /// Resolves `alias` or a fingerprint prefix to a full fingerprint.
    pub fn resolve_image(&self, project: &str, alias: Option<&str>, fingerprint: Option<&str>) -> Result<String> {
        let m = self.model();
        if let Some(fp) = fingerprint.filter(|f| !f.is_empty()) {
            return Ok(m.image(project, fp)?.fingerprint.clone());
        }
        let alias = alias.filter(|a| !a.is_empty()).ok_or_else(|| Error::bad("No image alias or fingerprint given"))?;
        if let Some(a) = m.image_alias(project, alias) {
            return Ok(a.target.clone());
        }
        m.image(project, alias).map(|i| i.fingerprint.clone()).map_err(|_| Error::not_found(format!("Image \"{alias}\" not found")))
    }

    /// Creates the root volume of a new instance from an image (unpacked once per pool).
    pub(super) fn create_root_from_image(&self, m: &Model, inst: &InstanceRecord, fp: &str) -> Result<super::VolumeGuard> {
        super::vm_images::check_instance_type(m.image(&inst.project, fp)?, inst)?;
        let pool = m.root_pool(inst)?;
        let driver: Arc<dyn Driver> = self.pool_driver(&pool)?;
        let vol = super::instance_volume(inst);
        image::create_from_image(driver.as_ref(), &self.files_of(fp), fp, &vol, &unpack_options())?;
        let path = driver.volume_path(&vol);
        let guard = super::VolumeGuard::armed(driver, vol);
        super::vm_images::grow_root_disk(m, inst, &path)?;
        Ok(guard)
    }

    /// Publishes an instance (`snapshot` None) or one of its snapshots as a new image.
    pub fn publish_image(&self, project: &str, instance: &str, snapshot: Option<&str>, public: bool, properties: ConfigMap, aliases: Vec<(String, String)>) -> Result<ImageRecord> {
        let (inst, pool, ip) = {
            let m = self.model();
            let inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
            if m.power(project, instance) != super::PowerState::Stopped && snapshot.is_none() {
                return Err(Error::bad("The instance is running, stop it first or use a snapshot"));
            }
            let pool = m.root_pool(&inst)?;
            (inst, pool, m.image_project(project).to_string())
        };
        let driver = self.pool_driver(&pool)?;
        let vol = super::instance_volume(&inst);
        let src: PathBuf = match snapshot {
            Some(s) => driver.snapshot_path(&vol, s),
            None => driver.volume_path(&vol),
        };
        let opts = PublishOptions {
            compression: Compression::Gzip,
            architecture: inst.architecture.clone(),
            properties: properties.clone(),
            creation_date: Utc::now().timestamp(),
        };
        let (image_type, (published, files)) = match inst.instance_type {
            crate::config::InstanceType::VirtualMachine => {
                (ImageType::VirtualMachine, image::vm_publish::publish_to_dir(&src, &opts, &self.images_dir())?)
            }
            _ => (ImageType::Container, image::publish_to_dir(&src, &opts, &self.images_dir())?),
        };
        if self.model().images.contains_key(&scoped_key(&ip, &published.fingerprint)) {
            return Err(Error::conflict(format!("Image with same fingerprint already exists: {}", published.fingerprint)));
        }
        let now = Utc::now();
        let rec = ImageRecord {
            fingerprint: published.fingerprint.clone(),
            project: ip,
            filename: String::new(),
            size: published.size,
            public,
            architecture: published.metadata.architecture.clone(),
            properties: published.metadata.properties.clone(),
            created_at: now,
            uploaded_at: now,
            last_used_at: zero_time(),
            expires_at: None,
            auto_update: false,
            profiles: vec!["default".into()],
            image_type,
        };
        let _ = files;
        self.commit_image(&rec, &aliases)?;
        Ok(rec)
    }

    /// Marks an image used now (instance creation).
    pub(super) fn touch_image(&self, project: &str, fp: &str) {
        let mut tx = self.txn();
        let Ok(mut rec) = tx.model().image(project, fp).cloned() else { return };
        rec.last_used_at = Utc::now();
        let key = scoped_key(&rec.project, &rec.fingerprint);
        // Advisory: not worth an fsync on the instance-creation path.
        let _ = tx.commit_relaxed(|db| db.put(&tables::IMAGES, &key, &rec), |m| {
            m.images.insert(key.clone(), rec.clone());
        });
    }
}

/// A temporary upload path in the images directory.
pub fn upload_path(images_dir: &Path, suffix: &str) -> PathBuf {
    images_dir.join(format!(".upload-{}-{}{suffix}", std::process::id(), rand::random::<u32>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fp: &str) -> ImageRecord {
        ImageRecord {
            fingerprint: fp.into(),
            project: "default".into(),
            filename: String::new(),
            size: 1,
            public: false,
            architecture: "x86_64".into(),
            properties: ConfigMap::new(),
            created_at: Utc::now(),
            uploaded_at: Utc::now(),
            last_used_at: zero_time(),
            expires_at: None,
            auto_update: false,
            profiles: vec![],
            image_type: ImageType::Container,
        }
    }

    #[test]
    fn images_match_by_unique_prefix() {
        let mut m = Model::default();
        m.projects.insert("default".into(), crate::model::Project::default_project());
        for fp in ["abc1", "abc2", "def0"] {
            m.images.insert(scoped_key("default", fp), rec(fp));
        }
        assert_eq!(m.image("default", "d").map(|i| i.fingerprint.clone()).ok(), Some("def0".into()));
        assert_eq!(m.image("default", "abc2").map(|i| i.fingerprint.clone()).ok(), Some("abc2".into()));
        assert!(matches!(m.image("default", "abc"), Err(Error::BadRequest(_))));
        assert!(matches!(m.image("default", "ff"), Err(Error::NotFound(_))));
        // A project without features.images sees the default project's images.
        let mut p = crate::model::Project::default_project();
        p.name = "p".into();
        p.config.clear();
        m.projects.insert("p".into(), p);
        assert_eq!(m.image_project("p"), "default");
        assert!(m.image("p", "def0").is_ok());
    }

    #[test]
    fn unsafe_archives_map_to_400() {
        let e: Error = image::Error::Unsafe { entry: "rootfs/../x".into(), reason: "`..` component".into() }.into();
        assert_eq!(e.kind().status(), 400);
        assert!(e.to_string().contains("rootfs/../x"));
    }
}
