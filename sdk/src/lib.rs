//! berth plugin SDK: everything a plugin author needs, in one dependency.
//!
//! A plugin is a type implementing [`Plugin`] plus any of the capability
//! traits ([`InstanceValidator`], [`ProfileValidator`], [`ProjectValidator`],
//! [`DeviceValidator`], [`Filter`], [`Lifecycle`]); [`export!`] turns it into
//! the component exports. Only the listed capabilities are exported, so the
//! daemon calls a plugin only for what it implements. See README.md.

extern crate self as berth_sdk;

#[doc(hidden)]
pub mod adapter;
pub mod bindings;
pub mod config;
mod export;
pub mod prelude;
pub mod units;
pub mod verdict;

pub use wit_bindgen;

/// Host imports: log, read-only queries, the plugin's own configuration.
pub use bindings::base::berth::plugin::host;
/// WIT types shared by all interfaces.
pub use bindings::base::berth::plugin::types;

pub use types::{
    Device, Error, Hook, InstanceType, InstanceView, Level, Metadata, Patch, ProfileView,
    ProjectView, Verdict, Violation,
};

/// The `berth:plugin` version this SDK targets, stamped into every plugin's
/// metadata so the daemon can tell which contract it was built against.
pub const API_VERSION: &str = "0.1.0";

/// Identification of a plugin. Every plugin implements this.
pub trait Plugin {
    /// Name reported to the daemon (informational; the daemon names plugins
    /// at install time).
    const NAME: &'static str;
    /// Plugin version, usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str = "0.0.0";
    /// One-line description.
    const DESCRIPTION: &'static str = "";
    /// The config keys the plugin reads of the instances it is given (a
    /// trailing `*` is a prefix, e.g. `"user.*"`). `None` (the default)
    /// passes every key. Every instance view is copied into the plugin one
    /// string at a time, and that copy is most of the cost of a call
    /// (listings make one per instance): declare the keys and the views
    /// carry only those. Host queries still return whole views.
    const CONFIG_KEYS: Option<&'static [&'static str]> = None;
    /// Whether the plugin reads instance devices; without it the views it
    /// gets have none (only effective together with [`Plugin::CONFIG_KEYS`]).
    const DEVICES: bool = true;
    /// Whether the daemon may reuse this plugin's validation verdicts. Set
    /// it when every verdict depends only on the call's input (the views it
    /// is given, the device, [`plugin_config`](crate::plugin_config)); the
    /// [`Reuse`] fields say which identity fields of instance views it reads
    /// (the others then arrive empty). A repeated validation is answered
    /// without calling the plugin, and the host queries (`get_instance`,
    /// `list_instances`, ...) return errors to it. See the `verdict-cache`
    /// interface in `wit/`.
    const REUSE: Option<Reuse> = None;
}

/// What a plugin with reusable verdicts reads of an instance's identity
/// ([`Plugin::REUSE`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reuse {
    /// The instance name.
    pub name: bool,
    /// The project.
    pub project: bool,
    /// The profiles list.
    pub profiles: bool,
}

impl Reuse {
    /// Verdicts depend on no identity field (only on config keys and devices).
    pub const NONE: Reuse = Reuse { name: false, project: false, profiles: false };
}

/// Validates instance configuration on create and update.
pub trait InstanceValidator: Plugin {
    /// A new instance is about to be created.
    fn validate_create(_instance: &InstanceView) -> Verdict {
        Verdict::Allow
    }
    /// An instance is about to change from `previous` to `instance`.
    fn validate_update(_instance: &InstanceView, _previous: &InstanceView) -> Verdict {
        Verdict::Allow
    }
}

/// Validates profiles; `previous` is `None` on create.
pub trait ProfileValidator: Plugin {
    /// Check a profile.
    fn validate_profile(_profile: &ProfileView, _previous: Option<&ProfileView>) -> Verdict {
        Verdict::Allow
    }
}

/// Validates projects; `previous` is `None` on create.
pub trait ProjectValidator: Plugin {
    /// Check a project.
    fn validate_project(_project: &ProjectView, _previous: Option<&ProjectView>) -> Verdict {
        Verdict::Allow
    }
}

/// Validates one device in the context of its instance.
pub trait DeviceValidator: Plugin {
    /// Check a device; a `Mutate` verdict patches the device's config.
    fn validate_device(_instance: &InstanceView, _device: &Device) -> Verdict {
        Verdict::Allow
    }
}

/// Named predicates for `?filter=plugin.<name> eq <value>` and a visibility
/// filter for listings.
pub trait Filter: Plugin {
    /// Names of the predicates [`Filter::predicate`] understands.
    const PREDICATES: &'static [&'static str] = &[];
    /// Evaluate a predicate.
    fn predicate(name: &str, _value: &str, _instance: &InstanceView) -> Result<bool, Error> {
        Err(Error::InvalidArgument(format!("unknown predicate {name}")))
    }
    /// Whether the instance appears in listings.
    fn visible(_instance: &InstanceView) -> bool {
        true
    }
}

/// Lifecycle hooks. For `pre-*` hooks `Err(reason)` refuses the action.
pub trait Lifecycle: Plugin {
    /// Called at each lifecycle point; `details` holds hook-specific data.
    fn on_hook(
        _hook: Hook,
        _instance: &InstanceView,
        _details: &[(String, String)],
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The plugin's own configuration map (set by the administrator).
pub fn plugin_config() -> Vec<(String, String)> {
    host::plugin_config()
}

/// Log through the daemon.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Install a panic hook (once) that forwards panic messages to the daemon's
/// log: with `panic = "abort"` the plugin dies right after, and stderr alone
/// may be lost.
#[doc(hidden)]
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            host::log(Level::Error, &format!("plugin panicked: {info}"));
            default(info);
        }));
    });
}
