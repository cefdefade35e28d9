//! The records the daemon stores: projects, profiles and instances, and how an instance's
//! config and devices expand through its profiles.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Devices, InstanceType};

/// A config map.
pub type ConfigMap = BTreeMap<String, String>;

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigMap,
}

impl Project {
    /// The `default` project, created on first run.
    pub fn default_project() -> Self {
        let config = [
            ("features.images", "true"),
            ("features.networks", "true"),
            ("features.profiles", "true"),
            ("features.storage.volumes", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Project { name: "default".into(), description: "Default LXD project".into(), config }
    }

    /// Whether the project has its own profiles (else it uses the default project's).
    pub fn has_own_profiles(&self) -> bool {
        self.name == "default" || self.config.get("features.profiles").is_some_and(|v| v == "true")
    }
}

/// A profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub devices: Devices,
}

impl Profile {
    /// The `default` profile of a new project.
    pub fn default_profile() -> Self {
        Profile {
            name: "default".into(),
            description: "Default LXD profile".into(),
            config: ConfigMap::new(),
            devices: Devices::new(),
        }
    }
}

/// An instance as stored. Its runtime status is not stored: drivers report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub name: String,
    pub project: String,
    #[serde(rename = "type")]
    pub instance_type: InstanceType,
    pub architecture: String,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub devices: Devices,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub description: String,
    pub created_at: DateTime<Utc>,
    #[serde(default = "zero_time")]
    pub last_used_at: DateTime<Utc>,
}

/// Go's zero time, which LXD renders for "never".
pub fn zero_time() -> DateTime<Utc> {
    DateTime::<Utc>::MIN_UTC.with_timezone(&Utc).max(
        DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").map(|d| d.with_timezone(&Utc)).unwrap_or_default(),
    )
}

/// Formats a time like Go's RFC3339Nano (trailing zeros of the fraction trimmed).
pub fn rfc3339nano(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// The key of a project-scoped record in the database and in memory.
pub fn scoped_key(project: &str, name: &str) -> String {
    format!("{project}/{name}")
}

/// Merges profiles (in order) and then the instance's own config and devices.
/// A device of type `none` masks a profile device of the same name.
pub fn expand(profiles: &[&Profile], config: &ConfigMap, devices: &Devices) -> (ConfigMap, Devices) {
    let mut ec = ConfigMap::new();
    let mut ed = Devices::new();
    for p in profiles {
        ec.extend(p.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        ed.extend(p.devices.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    ec.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
    ed.extend(devices.iter().map(|(k, v)| (k.clone(), v.clone())));
    ed.retain(|_, d| d.get("type").map(String::as_str) != Some("none"));
    (ec, ed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format_matches_go() {
        let t = DateTime::parse_from_rfc3339("2183-06-16T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(rfc3339nano(&t), "2183-06-16T00:00:00Z");
        let t = DateTime::parse_from_rfc3339("2020-01-02T03:04:05.120000000Z").unwrap().with_timezone(&Utc);
        assert_eq!(rfc3339nano(&t), "2020-01-02T03:04:05.12Z");
        assert_eq!(rfc3339nano(&zero_time()), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn expansion_order_and_none_masking() {
        let mut p1 = Profile::default_profile();
        p1.config.insert("limits.cpu".into(), "1".into());
        p1.devices.insert("eth0".into(), [("type".to_string(), "nic".to_string())].into());
        let mut p2 = Profile::default_profile();
        p2.config.insert("limits.cpu".into(), "2".into());
        let mut own = ConfigMap::new();
        own.insert("user.a".into(), "b".into());
        let mut devs = Devices::new();
        devs.insert("eth0".into(), [("type".to_string(), "none".to_string())].into());
        let (c, d) = expand(&[&p1, &p2], &own, &devs);
        assert_eq!(c.get("limits.cpu").map(String::as_str), Some("2"));
        assert_eq!(c.get("user.a").map(String::as_str), Some("b"));
        assert!(d.is_empty());
    }
}
