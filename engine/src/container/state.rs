//! The observable state of a container (LXD's instance state fields).

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

use super::{Container, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Running,
    Frozen,
    Stopped,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetAddress {
    pub family: String,
    pub address: String,
    pub netmask: String,
    pub scope: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    pub addresses: Vec<NetAddress>,
    pub counters: NetCounters,
    pub hwaddr: String,
    pub mtu: u64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    /// Host pid of init (0 when stopped).
    pub pid: i32,
    pub processes: u64,
    pub memory_usage: u64,
    pub memory_peak: u64,
    pub cpu_usage_ns: u64,
    pub network: BTreeMap<String, NetInterface>,
}

impl ContainerState {
    pub fn stopped() -> Self {
        ContainerState {
            status: Status::Stopped,
            pid: 0,
            processes: 0,
            memory_usage: 0,
            memory_peak: 0,
            cpu_usage_ns: 0,
            network: BTreeMap::new(),
        }
    }
}

impl Container {
    pub fn state(&self) -> Result<ContainerState, Error> {
        if !self.is_running() {
            return Ok(ContainerState::stopped());
        }
        let stats = self.rt.cgroup.stats()?;
        let frozen = self.rt.cgroup.is_frozen()?;
        let network = match &*self.netns.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(ns) => super::net::interfaces(self.rt.pid, ns.as_fd())?,
            None => BTreeMap::new(),
        };
        Ok(ContainerState {
            status: if frozen { Status::Frozen } else { Status::Running },
            pid: self.rt.pid,
            processes: stats.processes,
            memory_usage: stats.memory_usage,
            memory_peak: stats.memory_peak,
            cpu_usage_ns: stats.cpu_usage_ns,
            network,
        })
    }
}
