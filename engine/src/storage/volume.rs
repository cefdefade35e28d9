//! Volume identity and the on-disk naming rules shared by every driver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::drivers::Error;

/// The project whose volumes carry no `<project>_` prefix on disk.
pub const DEFAULT_PROJECT: &str = "default";

/// What a volume holds; decides its directory in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VolumeType {
    /// A container's root filesystem (plus metadata.yaml and templates/).
    Container,
    /// A virtual machine's filesystem part.
    VirtualMachine,
    /// An unpacked image, the source of instance volumes.
    Image,
    /// A user volume.
    Custom,
}

impl VolumeType {
    /// Every type, in a stable order (used when listing a pool).
    pub const ALL: [VolumeType; 4] =
        [VolumeType::Container, VolumeType::VirtualMachine, VolumeType::Image, VolumeType::Custom];

    /// The API name (`container`, `virtual-machine`, `image`, `custom`).
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Container => "container",
            VolumeType::VirtualMachine => "virtual-machine",
            VolumeType::Image => "image",
            VolumeType::Custom => "custom",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<VolumeType> {
        VolumeType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The directory of this type's volumes inside a pool.
    pub fn dir_name(self) -> &'static str {
        match self {
            VolumeType::Container => "containers",
            VolumeType::VirtualMachine => "virtual-machines",
            VolumeType::Image => "images",
            VolumeType::Custom => "custom",
        }
    }

    /// The directory of this type's snapshots inside a pool.
    pub fn snapshots_dir_name(self) -> &'static str {
        match self {
            VolumeType::Container => "containers-snapshots",
            VolumeType::VirtualMachine => "virtual-machines-snapshots",
            VolumeType::Image => "images-snapshots",
            VolumeType::Custom => "custom-snapshots",
        }
    }

    /// Whether volumes of this type are per project (images are shared by fingerprint).
    pub fn has_project(self) -> bool {
        self != VolumeType::Image
    }
}

/// A volume as the drivers see it: type, project, name, and its config (size, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// What the volume holds.
    pub vtype: VolumeType,
    /// The owning project (ignored for images).
    pub project: String,
    /// The volume name (instance name, custom volume name or image fingerprint).
    pub name: String,
    /// Volume config keys (`size`, ...), as the API stores them.
    pub config: BTreeMap<String, String>,
}

impl Volume {
    /// A volume in the default project with empty config.
    pub fn new(vtype: VolumeType, name: &str) -> Volume {
        Volume::in_project(vtype, DEFAULT_PROJECT, name)
    }

    /// A volume in `project` with empty config.
    pub fn in_project(vtype: VolumeType, project: &str, name: &str) -> Volume {
        Volume { vtype, project: project.to_string(), name: name.to_string(), config: BTreeMap::new() }
    }

    /// The name on disk: `<project>_<name>`, or `<name>` in the default project and for images.
    pub fn storage_name(&self) -> String {
        storage_name(self.vtype, &self.project, &self.name)
    }

    /// The same volume under another name.
    pub fn renamed(&self, name: &str) -> Volume {
        Volume { name: name.to_string(), ..self.clone() }
    }

    /// Checks the names before they become path components.
    pub fn validate(&self) -> Result<(), Error> {
        validate_name("volume", &self.name)?;
        if self.vtype.has_project() {
            validate_name("project", &self.project)?;
        }
        Ok(())
    }

    /// `<pool>/<type dir>/<storage name>`.
    pub fn path_in(&self, pool_root: &Path) -> PathBuf {
        pool_root.join(self.vtype.dir_name()).join(self.storage_name())
    }

    /// `<pool>/<type>-snapshots/<storage name>`.
    pub fn snapshots_dir_in(&self, pool_root: &Path) -> PathBuf {
        pool_root.join(self.vtype.snapshots_dir_name()).join(self.storage_name())
    }

    /// `<pool>/<type>-snapshots/<storage name>/<snap>`.
    pub fn snapshot_path_in(&self, pool_root: &Path, snap: &str) -> PathBuf {
        self.snapshots_dir_in(pool_root).join(snap)
    }
}

/// The on-disk name of a volume (see [`Volume::storage_name`]).
pub fn storage_name(vtype: VolumeType, project: &str, name: &str) -> String {
    if !vtype.has_project() || project == DEFAULT_PROJECT || project.is_empty() {
        name.to_string()
    } else {
        format!("{project}_{name}")
    }
}

/// Splits an on-disk name back into (project, name); names without `_` are in the default project.
pub fn split_storage_name(vtype: VolumeType, storage: &str) -> (String, String) {
    if vtype.has_project() {
        if let Some((project, name)) = storage.split_once('_') {
            return (project.to_string(), name.to_string());
        }
    }
    (DEFAULT_PROJECT.to_string(), storage.to_string())
}

/// A name that becomes one path component: non-empty, no `/`, no NUL, not `.` or `..`.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), Error> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 255;
    if bad {
        return Err(Error::InvalidName { what, name: name.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_names_follow_lxd_layout() {
        let v = Volume::in_project(VolumeType::Container, "p1", "c1");
        assert_eq!(v.storage_name(), "p1_c1");
        assert_eq!(v.path_in(Path::new("/pool")), Path::new("/pool/containers/p1_c1"));
        assert_eq!(v.snapshot_path_in(Path::new("/pool"), "snap0"), Path::new("/pool/containers-snapshots/p1_c1/snap0"));
        let d = Volume::new(VolumeType::Custom, "data");
        assert_eq!(d.path_in(Path::new("/pool")), Path::new("/pool/custom/data"));
        let i = Volume::in_project(VolumeType::Image, "p1", "abc");
        assert_eq!(i.path_in(Path::new("/pool")), Path::new("/pool/images/abc"));
        assert_eq!(split_storage_name(VolumeType::Custom, "p1_data"), ("p1".into(), "data".into()));
        assert_eq!(split_storage_name(VolumeType::Custom, "data"), ("default".into(), "data".into()));
    }

    #[test]
    fn names_that_escape_are_rejected() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_name("volume", bad).is_err(), "{bad:?}");
        }
        assert!(validate_name("volume", "ok-name.1").is_ok());
        assert!(Volume::new(VolumeType::Container, "../x").validate().is_err());
    }
}
