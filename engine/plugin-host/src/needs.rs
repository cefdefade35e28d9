//! What a plugin reads of an instance (`view-needs.needs`), and the trimmed
//! views it then receives. Every view is copied into the plugin one string
//! at a time; a view of 20 config keys (plus as many expanded) is ~45 pairs
//! where a filter like `owner` reads one and `name-policy` none. Listings
//! make one copy per instance, validation one or two per plugin.

use crate::bindings::berth::plugin::types as wit;
use crate::bindings::exports::berth::plugin::view_needs::ViewParts as WitNeeds;

/// Most entries a plugin may declare.
const MAX_KEYS: usize = 256;
/// Longest entry.
const MAX_KEY_BYTES: usize = 256;

/// The parts of an instance view a plugin declared it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewNeeds {
    /// Exact keys, sorted and unique.
    keys: Vec<String>,
    /// Key prefixes (entries that ended in `*`).
    prefixes: Vec<String>,
    devices: bool,
}

impl ViewNeeds {
    /// Checks what the plugin answered. `Ok(None)`: it reads everything, views
    /// stay whole.
    pub fn from_wit(raw: WitNeeds) -> Result<Option<Self>, String> {
        let Some(entries) = raw.config_keys else {
            return Ok(None);
        };
        if entries.len() > MAX_KEYS {
            return Err(format!("view-needs lists {} config keys (at most {MAX_KEYS})", entries.len()));
        }
        let mut needs = ViewNeeds { keys: Vec::new(), prefixes: Vec::new(), devices: raw.devices };
        for e in entries {
            if e.len() > MAX_KEY_BYTES {
                return Err(format!("view-needs: a config key is longer than {MAX_KEY_BYTES} bytes"));
            }
            match e.strip_suffix('*') {
                Some(prefix) => needs.prefixes.push(prefix.to_string()),
                None => needs.keys.push(e),
            }
        }
        needs.keys.sort();
        needs.keys.dedup();
        Ok(Some(needs))
    }

    /// `v` with only the declared config keys (and devices if declared).
    pub fn trim(&self, v: &wit::InstanceView) -> wit::InstanceView {
        wit::InstanceView {
            name: v.name.clone(),
            project: v.project.clone(),
            type_: v.type_,
            status: v.status.clone(),
            config: self.config(&v.config),
            expanded_config: self.config(&v.expanded_config),
            devices: if self.devices { v.devices.clone() } else { Vec::new() },
            expanded_devices: if self.devices { v.expanded_devices.clone() } else { Vec::new() },
            profiles: v.profiles.clone(),
        }
    }

    /// The declared pairs of `map` (a config-map: sorted by key, keys unique),
    /// still sorted and unique.
    fn config(&self, map: &[(String, String)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for k in &self.keys {
            if let Ok(i) = map.binary_search_by(|(mk, _)| mk.as_str().cmp(k)) {
                out.push(map[i].clone());
            }
        }
        if self.prefixes.is_empty() {
            return out;
        }
        for p in &self.prefixes {
            let start = map.partition_point(|(mk, _)| mk.as_str() < p.as_str());
            out.extend(map[start..].iter().take_while(|(mk, _)| mk.starts_with(p.as_str())).cloned());
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(keys: &[&str]) -> Vec<(String, String)> {
        keys.iter().map(|k| (k.to_string(), format!("v-{k}"))).collect()
    }

    fn needs(keys: Option<&[&str]>, devices: bool) -> Option<ViewNeeds> {
        ViewNeeds::from_wit(WitNeeds {
            config_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
            devices,
        })
        .unwrap()
    }

    fn view() -> wit::InstanceView {
        let cfg = pairs(&["limits.cpu", "user.a", "user.owner", "user.z", "volatile.x"]);
        wit::InstanceView {
            name: "c1".into(),
            project: "p".into(),
            type_: wit::InstanceType::Container,
            status: "Running".into(),
            config: cfg.clone(),
            expanded_config: cfg,
            devices: vec![wit::Device { name: "eth0".into(), config: pairs(&["type"]) }],
            expanded_devices: vec![wit::Device { name: "root".into(), config: pairs(&["path"]) }],
            profiles: vec!["default".into()],
        }
    }

    #[test]
    fn none_means_whole_views() {
        assert_eq!(needs(None, false), None);
    }

    #[test]
    fn exact_keys_and_prefixes_stay_sorted_and_unique() {
        let n = needs(Some(&["user.owner", "missing", "user.*", "limits.cpu", "user.owner"]), false).unwrap();
        let t = n.trim(&view());
        let keys: Vec<&str> = t.expanded_config.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["limits.cpu", "user.a", "user.owner", "user.z"]);
        assert_eq!(t.config, t.expanded_config);
        assert_eq!(t.expanded_config[2].1, "v-user.owner");
        assert!(t.devices.is_empty() && t.expanded_devices.is_empty());
        assert_eq!((t.name.as_str(), t.project.as_str(), t.status.as_str()), ("c1", "p", "Running"));
        assert_eq!(t.profiles, ["default"]);
    }

    #[test]
    fn one_key_and_devices() {
        let t = needs(Some(&["user.owner"]), true).unwrap().trim(&view());
        assert_eq!(t.config, pairs(&["user.owner"]));
        assert_eq!(t.devices.len(), 1);
        assert_eq!(t.expanded_devices.len(), 1);
    }

    #[test]
    fn too_many_or_too_long_is_refused() {
        let many = WitNeeds { config_keys: Some(vec!["k".into(); MAX_KEYS + 1]), devices: false };
        assert!(ViewNeeds::from_wit(many).is_err());
        let long = WitNeeds { config_keys: Some(vec!["k".repeat(MAX_KEY_BYTES + 1)]), devices: false };
        assert!(ViewNeeds::from_wit(long).is_err());
    }
}
