//! Reused validation verdicts (`verdict-cache`): a plugin that declared its
//! verdicts a function of the call's input is not called again for an input
//! it has already judged. The key is the whole input exactly as the plugin
//! sees it (the operation, the views trimmed to what it reads and with the
//! identity fields it did not declare emptied, the device), written out in
//! full, so two inputs share a verdict only if the plugin could not tell them
//! apart. One map per settings version of one plugin (it lives in the
//! `CallContext`), so a settings change or a reinstall starts empty. Only
//! verdicts are kept, never failures.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};

use crate::bindings::berth::plugin::types as wit;
use crate::bindings::exports::berth::plugin::verdict_cache::Identity as WitIdentity;
use crate::types::Verdict;

/// The identity fields of instance views a plugin's reusable verdicts
/// depend on; the others reach it empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub name: bool,
    pub project: bool,
    pub profiles: bool,
}

impl Identity {
    pub fn from_wit(f: WitIdentity) -> Self {
        Identity {
            name: f.contains(WitIdentity::NAME),
            project: f.contains(WitIdentity::PROJECT),
            profiles: f.contains(WitIdentity::PROFILES),
        }
    }

    /// Empties the fields not declared.
    pub fn apply(&self, v: &mut wit::InstanceView) {
        if !self.name {
            v.name.clear();
        }
        if !self.project {
            v.project.clear();
        }
        if !self.profiles {
            v.profiles.clear();
        }
    }
}

/// Entries kept per plugin; when full the map starts over (a burst of
/// distinct inputs costs calls, never memory).
const MAX_ENTRIES: usize = 1024;

/// Longest key kept: a larger input is judged by a call every time.
const MAX_KEY_BYTES: usize = 16 << 10;

pub(crate) struct Verdicts {
    /// What the views keep of their identity.
    pub identity: Identity,
    map: Mutex<HashMap<String, Verdict>>,
}

/// The key of one input: every part, in order, in full.
pub(crate) fn key(parts: &[&dyn Debug]) -> Option<String> {
    let k = format!("{parts:?}");
    (k.len() <= MAX_KEY_BYTES).then_some(k)
}

impl Verdicts {
    pub fn new(identity: Identity) -> Self {
        Verdicts { identity, map: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, key: &str) -> Option<Verdict> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    pub fn put(&self, key: String, verdict: Verdict) {
        let mut m = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(key, verdict);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_when_any_part_differs() {
        let a = key(&[&"create", &("c1", vec![("limits.cpu", "2")])]).unwrap();
        let b = key(&[&"create", &("c1", vec![("limits.cpu", "3")])]).unwrap();
        let c = key(&[&"update", &("c1", vec![("limits.cpu", "2")])]).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, key(&[&"create", &("c1", vec![("limits.cpu", "2")])]).unwrap());
    }

    #[test]
    fn bounded() {
        let v = Verdicts::new(Identity { name: true, project: true, profiles: true });
        for i in 0..MAX_ENTRIES + 10 {
            v.put(format!("k{i}"), Verdict::Allow);
        }
        assert!(v.len() <= MAX_ENTRIES);
        assert!(key(&[&"x".repeat(MAX_KEY_BYTES + 1)]).is_none());
    }
}
