//! Logs every lifecycle hook, so the daemon's event stream has an audit
//! trail of what happened to which instance.

use berth_sdk::prelude::*;

struct Audit;

impl Plugin for Audit {
    const NAME: &'static str = "audit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "logs every lifecycle hook";
}

impl Lifecycle for Audit {
    fn on_hook(
        hook: Hook,
        instance: &InstanceView,
        details: &[(String, String)],
    ) -> Result<(), String> {
        let details: Vec<String> = details.iter().map(|(k, v)| format!("{k}={v}")).collect();
        log(
            Level::Info,
            &format!(
                "audit {} {}/{} {}",
                hook.name(),
                instance.project,
                instance.name,
                details.join(" ")
            ),
        );
        Ok(())
    }
}

export!(Audit: Lifecycle);
