//! Daemon-level dispatch of instance lifecycle hooks. Drivers call these at pre-start,
//! onstart, pre-stop, onstopns and onstop (in that order); a `Pre*` hook that fails
//! denies the action. Plugins are wired in here.

use serde_json::json;

use super::{Daemon, Model};
use crate::error::{Error, Result};
use crate::instance::{Hook, HookSink};
use crate::model::InstanceRecord;

impl Daemon {
    /// Runs every handler of `hook` for `inst`: a lifecycle event
    /// (`instance-hook-<name>`, which also makes the order observable), then the plugins
    /// subscribed to the hook. A `Pre*` hook that a plugin refuses fails the action.
    pub fn lifecycle_hook(&self, hook: Hook, inst: &InstanceRecord) -> Result<()> {
        tracing::debug!(instance = %inst.name, hook = hook.name(), "lifecycle hook");
        self.events.lifecycle(
            &inst.project,
            &format!("instance-hook-{}", hook.name()),
            &Model::instance_url(&inst.project, &inst.name),
            json!({"hook": hook.name()}),
        );
        let plugin_hook = match hook {
            Hook::PreStart => berth_plugin_host::Hook::PreStart,
            Hook::OnStart => berth_plugin_host::Hook::OnStart,
            Hook::PreStop => berth_plugin_host::Hook::PreStop,
            Hook::OnStopNs => berth_plugin_host::Hook::OnStopNs,
            Hook::OnStop => berth_plugin_host::Hook::OnStop,
        };
        self.plugin_hook(plugin_hook, inst, &crate::model::ConfigMap::new())
    }
}

/// Hands driver hook calls to [`Daemon::lifecycle_hook`].
pub(super) struct Dispatch<'a> {
    pub daemon: &'a Daemon,
    pub inst: InstanceRecord,
}

impl HookSink for Dispatch<'_> {
    fn hook(&self, hook: Hook) -> std::result::Result<(), String> {
        self.daemon.lifecycle_hook(hook, &self.inst).map_err(|e: Error| e.to_string())
    }
}
