//! Instance and custom-volume backups as tarballs, LXD style: `backup/index.yaml` first,
//! then each snapshot (oldest first), then the volume itself; either as file trees or, on
//! drivers that can, as native send streams (`optimized`).
//!
//! Export writes to any `Write` (the daemon streams it to the HTTP response, no temporary
//! copy); import reads any `Read` and unpacks with the image module's safety rules.

mod export;
mod import;

use serde::{Deserialize, Serialize};

use crate::storage::VolumeType;

pub use export::{export, export_named, ExportRequest};
pub use import::{import, ImportRequest, Imported};

/// The path of the index in every backup.
pub const INDEX_PATH: &str = "backup/index.yaml";

/// Errors of backup export and import.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tarball is not a backup we can restore.
    #[error("invalid backup: {0}")]
    Invalid(String),
    /// An optimized backup for another driver.
    #[error("optimized backup made by {backend} cannot be restored on {driver}")]
    WrongBackend { backend: String, driver: String },
    /// The volume to import exists already.
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    /// A send stream changed size between its sizing pass and its writing pass.
    #[error("stream of {what} changed size while exporting ({expected} then {actual} bytes)")]
    StreamSize { what: String, expected: u64, actual: u64 },
    /// Writing or reading the tarball failed.
    #[error("{op}")]
    Io { op: String, #[source] source: std::io::Error },
    /// Unpacking failed (unsafe entries, limits, corruption).
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    /// The storage driver failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::drivers::Error),
}

/// `backup/index.yaml` (LXD `backup.Info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Info {
    /// Instance or volume name.
    pub name: String,
    /// Storage driver the backup was taken on.
    pub backend: String,
    /// Pool name it was taken from.
    pub pool: String,
    /// Snapshot names, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Native driver streams instead of file trees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimized: Option<bool>,
    /// Whether an optimized header is present (never, for btrfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimized_header: Option<bool>,
    /// `container`, `virtual-machine` or `custom` (LXD defaults to container).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<String>,
    /// The instance or volume config (LXD's backup.yaml), kept opaque here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_yaml::Value>,
}

impl Info {
    /// The volume type this backup restores to.
    pub fn volume_type(&self) -> Result<VolumeType, Error> {
        match self.backup_type.as_deref().unwrap_or("container") {
            "container" => Ok(VolumeType::Container),
            "virtual-machine" => Ok(VolumeType::VirtualMachine),
            "custom" => Ok(VolumeType::Custom),
            other => Err(Error::Invalid(format!("unknown backup type {other:?}"))),
        }
    }
}

/// The tarball directories of a volume type: (volume, snapshots).
pub fn layout(vtype: VolumeType) -> (&'static str, &'static str) {
    match vtype {
        VolumeType::VirtualMachine => ("virtual-machine", "virtual-machine-snapshots"),
        VolumeType::Custom | VolumeType::Image => ("volume", "volume-snapshots"),
        VolumeType::Container => ("container", "snapshots"),
    }
}

/// The backup type name of a volume type.
pub fn type_name(vtype: VolumeType) -> &'static str {
    match vtype {
        VolumeType::VirtualMachine => "virtual-machine",
        VolumeType::Custom | VolumeType::Image => "custom",
        VolumeType::Container => "container",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_yaml_matches_lxd_field_names() {
        let info = Info {
            name: "c1".into(),
            backend: "btrfs".into(),
            pool: "default".into(),
            snapshots: vec!["snap0".into()],
            optimized: Some(true),
            optimized_header: Some(false),
            backup_type: Some("container".into()),
            config: None,
        };
        let yaml = serde_yaml::to_string(&info).unwrap();
        for key in ["name: c1", "backend: btrfs", "pool: default", "snapshots:", "- snap0", "optimized: true", "optimized_header: false", "type: container"] {
            assert!(yaml.contains(key), "{key} missing in {yaml}");
        }
        // LXD's oldest indexes have only name/backend/pool: type defaults to container.
        let old: Info = serde_yaml::from_str("name: x\nbackend: dir\npool: p\n").unwrap();
        assert_eq!(old.volume_type().unwrap(), VolumeType::Container);
        assert!(old.snapshots.is_empty());
        let vm: Info = serde_yaml::from_str("name: x\nbackend: dir\npool: p\ntype: virtual-machine\n").unwrap();
        assert_eq!(vm.volume_type().unwrap(), VolumeType::VirtualMachine);
    }
}

#[cfg(test)]
mod root_tests;
