//! Virtual machines: one daemonized QEMU per VM, driven over QMP, with a guest agent on a
//! virtio-serial port for exec, files and network state.
//!
//! - `cmdline`: [`VmSpec`] from config and the pure QEMU argv builder.
//! - `units`: LXD sizes, CPU counts, `raw.qemu` word splitting.
//! - `accel`: KVM-or-TCG probe (KVM only when it really boots a guest).
//! - `qmp`: blocking QMP client.
//! - `agent`: host side of the `berth-agent` protocol.
//! - `machine`: lifecycle of one QEMU process (start, adopt, shutdown, stop, freeze, state).
//! - `hotplug`: nics and disks into and out of a running VM.
//!
//! Concurrency model: everything here is synchronous and blocking, with explicit timeouts.
//! The instance layer calls it from `tokio::task::spawn_blocking`; the agent client uses
//! one reader thread per connection to demultiplex streams. No async QMP is needed: events
//! are queued while commands wait and read on demand.

pub mod accel;
pub mod agent;
pub mod cmdline;
pub mod hotplug;
pub mod machine;
pub mod qmp;
pub mod units;

pub use accel::{Accel, AccelSetting};
pub use cmdline::{Console, DirectBoot, Disk, DiskFormat, ExtraDisk, Nic, RunPaths, VmSpec};
pub use hotplug::Pluggable;
pub use machine::{Machine, MachineError, MachineState, MemoryUpdate, ShutdownOutcome};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_timing;
