//! Finding the agent's virtio-serial port.
//!
//! udev makes `/dev/virtio-ports/<name>`; a minimal guest (busybox initramfs) has no udev,
//! so the agent also looks the name up in `/sys/class/virtio-ports/*/name` and opens the
//! matching `/dev/vportNpM` node that devtmpfs created.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

/// Opens the port read-write, or says why it could not.
pub fn open(explicit: Option<&str>) -> Result<File, String> {
    let path = match explicit {
        Some(p) => PathBuf::from(p),
        None => find()?,
    };
    OpenOptions::new().read(true).write(true).open(&path).map_err(|e| format!("open {}: {e}", path.display()))
}

fn find() -> Result<PathBuf, String> {
    let by_name = PathBuf::from("/dev/virtio-ports").join(berth_agent::PORT_NAME);
    if by_name.exists() {
        return Ok(by_name);
    }
    let dir = std::fs::read_dir("/sys/class/virtio-ports").map_err(|e| format!("no virtio ports: {e}"))?;
    for entry in dir.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == berth_agent::PORT_NAME {
            return Ok(PathBuf::from("/dev").join(entry.file_name()));
        }
    }
    Err(format!("no virtio port named {}", berth_agent::PORT_NAME))
}
