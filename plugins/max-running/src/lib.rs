//! Refuses to start an instance when its project already has N running
//! instances. N comes from plugin config `project.<name>`, else `max`; no
//! value means no limit. Uses the host's read-only query for the count.

use berth_sdk::prelude::*;

struct MaxRunning;

impl Plugin for MaxRunning {
    const NAME: &'static str = "max-running";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "caps running instances per project";
}

impl Lifecycle for MaxRunning {
    fn on_hook(
        hook: Hook,
        instance: &InstanceView,
        _details: &[(String, String)],
    ) -> Result<(), String> {
        if hook != Hook::PreStart {
            return Ok(());
        }
        let config = plugin_config();
        let key = format!("project.{}", instance.project);
        let Some(limit) = config.value(&key).or_else(|| config.value("max")) else {
            return Ok(());
        };
        let limit: usize = limit
            .parse()
            .map_err(|_| format!("max-running: bad limit {limit:?}"))?;
        let instances = host::list_instances(&instance.project)
            .map_err(|e| format!("max-running: cannot list instances: {e:?}"))?;
        let running = instances
            .iter()
            .filter(|i| i.status == "Running" && i.name != instance.name)
            .count();
        if running >= limit {
            return Err(format!(
                "project {} already has {running} running instances (limit {limit})",
                instance.project
            ));
        }
        Ok(())
    }
}

export!(MaxRunning: Lifecycle);
