//! Helpers shared by the storage tests (`storage_lxc`, `storage2_lxc`,
//! `vm_storage_lxc`): REST reads, files, tar headers, and btrfs pools on loop
//! files that release their mount and loop device even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Daemon;

/// `metadata` of a GET.
pub fn get(d: &Daemon, path: &str) -> serde_json::Value {
    d.get(path)["metadata"].clone()
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write file");
    p
}

/// Runs `lxc` expecting a failure; returns its stderr.
pub fn lxc_err(d: &Daemon, args: &[&str]) -> String {
    let o = d.lxc(args);
    assert!(!o.status.success(), "lxc {args:?} should fail: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A container's rootfs in `pool`.
pub fn rootfs(d: &Daemon, pool: &str, name: &str) -> PathBuf {
    d.data_dir().join("storage-pools").join(pool).join("containers").join(name).join("rootfs")
}

/// Snapshot names of `inst`, as the API lists them.
pub fn snapshot_names(d: &Daemon, inst: &str) -> Vec<String> {
    let v = get(d, &format!("/1.0/instances/{inst}/snapshots?recursion=1"));
    v.as_array().map(|a| a.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// A root-owned tar header with a fixed mtime.
pub fn tar_header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).expect("path");
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// The btrfs pool `name` on a loop file of `size`; on drop (also when the test
/// fails) its mount and loop device are released so nothing outlives the test.
pub struct BtrfsPool {
    mount: PathBuf,
    image: PathBuf,
}

impl BtrfsPool {
    pub fn create(d: &Daemon, name: &str, size: &str) -> BtrfsPool {
        d.lxc_ok(&["storage", "create", name, "btrfs", &format!("size={size}")]);
        BtrfsPool { mount: d.data_dir().join("storage-pools").join(name), image: d.data_dir().join("disks").join(format!("{name}.img")) }
    }
}

impl Drop for BtrfsPool {
    fn drop(&mut self) {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounted.contains(self.mount.to_str().unwrap_or("\0")) {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        if let Ok(o) = Command::new("losetup").arg("-j").arg(&self.image).output() {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some(dev) = line.split(':').next() {
                    let _ = Command::new("losetup").arg("-d").arg(dev).status();
                }
            }
        }
    }
}

/// Deletes every instance (forced) and every custom volume of `pool`, then the
/// pool itself (so its loop device goes away).
pub fn drop_pool(d: &Daemon, pool: &str) {
    for i in get(d, "/1.0/instances?recursion=1").as_array().cloned().unwrap_or_default() {
        let _ = d.lxc(&["delete", "-f", i["name"].as_str().unwrap_or_default()]);
    }
    let vols = get(d, &format!("/1.0/storage-pools/{pool}/volumes/custom"));
    for v in vols.as_array().cloned().unwrap_or_default() {
        let name = v.as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
        let _ = d.lxc(&["storage", "volume", "delete", pool, &name]);
    }
    d.lxc_ok(&["storage", "delete", pool]);
}
