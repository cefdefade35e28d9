//! Install-time checks of a component's contract: which `berth:plugin`
//! version it speaks and which optional interfaces it exports. Done on the
//! component's type, before anything runs, so a wrong plugin is refused with
//! a precise message instead of failing at its first call.

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::PluginError;
use crate::plugin::Indices;
use crate::state::CallState;

/// The `berth:plugin` version this host implements.
pub const API_VERSION: &str = "0.1.0";
const PACKAGE: &str = "berth:plugin/";

/// Optional capabilities a plugin may export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `validate-instance`.
    InstanceValidator,
    /// `validate-profile`.
    ProfileValidator,
    /// `validate-project`.
    ProjectValidator,
    /// `validate-device`.
    DeviceValidator,
    /// `filter`.
    Filter,
    /// `lifecycle`.
    Lifecycle,
}

impl Capability {
    /// All capabilities.
    pub const ALL: [Capability; 6] = [
        Capability::InstanceValidator,
        Capability::ProfileValidator,
        Capability::ProjectValidator,
        Capability::DeviceValidator,
        Capability::Filter,
        Capability::Lifecycle,
    ];

    /// WIT interface name.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::InstanceValidator => "validate-instance",
            Capability::ProfileValidator => "validate-profile",
            Capability::ProjectValidator => "validate-project",
            Capability::DeviceValidator => "validate-device",
            Capability::Filter => "filter",
            Capability::Lifecycle => "lifecycle",
        }
    }
}

/// What the component's type says.
#[derive(Debug, Default)]
pub(crate) struct Contract {
    pub capabilities: Vec<Capability>,
    pub describe: bool,
    /// Exports `view-needs`.
    pub view_needs: bool,
    /// Exports `verdict-cache`.
    pub verdict_cache: bool,
}

/// Split "berth:plugin/host@0.1.0" into ("host", "0.1.0").
fn berth_name(full: &str) -> Option<(&str, &str)> {
    let rest = full.strip_prefix(PACKAGE)?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

/// 0.x versions are compatible within the same minor version (semver).
fn compatible(version: &str) -> bool {
    version
        .split('.')
        .take(2)
        .eq(API_VERSION.split('.').take(2))
}

pub(crate) fn inspect(
    name: &str,
    engine: &Engine,
    component: &Component,
) -> Result<Contract, PluginError> {
    let ty = component.component_type();
    let incompatible = |found: &str| PluginError::IncompatibleVersion {
        name: name.to_string(),
        found: found.to_string(),
        supported: API_VERSION,
    };
    for (import, _) in ty.imports(engine) {
        if let Some((_, version)) = berth_name(import) {
            if !compatible(version) {
                return Err(incompatible(import));
            }
        }
    }
    let mut contract = Contract::default();
    let mut all = Vec::new();
    for (export, _) in ty.exports(engine) {
        all.push(export.to_string());
        let Some((iface, version)) = berth_name(export) else {
            continue;
        };
        if !compatible(version) {
            return Err(incompatible(export));
        }
        if iface == "describe" {
            contract.describe = true;
        } else if iface == "view-needs" {
            contract.view_needs = true;
        } else if iface == "verdict-cache" {
            contract.verdict_cache = true;
        } else if let Some(cap) = Capability::ALL.into_iter().find(|c| c.interface() == iface) {
            contract.capabilities.push(cap);
        }
    }
    if contract.capabilities.is_empty() {
        return Err(PluginError::NoKnownExport {
            name: name.to_string(),
            exports: if all.is_empty() {
                "nothing".to_string()
            } else {
                all.join(", ")
            },
            supported: API_VERSION,
        });
    }
    contract.capabilities.sort();
    Ok(contract)
}

/// Load every present export once so a type mismatch is an install error
/// naming the interface.
pub(crate) fn check_export_types(
    store: &mut wasmtime::Store<CallState>,
    instance: &wasmtime::component::Instance,
    ix: &Indices,
) -> Result<(), String> {
    let named = |iface: &'static str| {
        move |e: wasmtime::Error| {
            format!("export berth:plugin/{iface}@{API_VERSION} does not match the host's definition: {e:#}")
        }
    };
    let ctx = |cap: Capability| named(cap.interface());
    if let Some(i) = &ix.validate_instance {
        i.load(&mut *store, instance)
            .map_err(ctx(Capability::InstanceValidator))?;
    }
    if let Some(i) = &ix.validate_profile {
        i.load(&mut *store, instance)
            .map_err(ctx(Capability::ProfileValidator))?;
    }
    if let Some(i) = &ix.validate_project {
        i.load(&mut *store, instance)
            .map_err(ctx(Capability::ProjectValidator))?;
    }
    if let Some(i) = &ix.validate_device {
        i.load(&mut *store, instance)
            .map_err(ctx(Capability::DeviceValidator))?;
    }
    if let Some(i) = &ix.filter {
        i.load(&mut *store, instance)
            .map_err(ctx(Capability::Filter))?;
    }
    if let Some(i) = &ix.view_needs {
        i.load(&mut *store, instance).map_err(named("view-needs"))?;
    }
    if let Some(i) = &ix.verdict_cache {
        i.load(&mut *store, instance).map_err(named("verdict-cache"))?;
    }
    if let Some(i) = &ix.lifecycle {
        i.load(&mut *store, instance)
            .map_err(ctx(Capability::Lifecycle))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(
            berth_name("berth:plugin/host@0.1.0"),
            Some(("host", "0.1.0"))
        );
        assert_eq!(berth_name("wasi:cli/stdin@0.2.6"), None);
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("1.1.0"));
        assert!(!compatible(""));
    }
}
