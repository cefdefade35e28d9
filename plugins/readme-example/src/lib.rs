use berth_sdk::prelude::*;

struct NoPrivileged;
impl Plugin for NoPrivileged {
    const NAME: &'static str = "no-privileged";
}

impl InstanceValidator for NoPrivileged {
    fn validate_create(instance: &InstanceView) -> Verdict {
        let config = &instance.expanded_config;
        if config.is_true("security.privileged") {
            return Verdict::deny("security.privileged", "not allowed");
        }
        match config.size("limits.memory") {
            None => Patch::new().set("limits.memory", "1GiB").into_verdict(), // fill a default
            Some(Ok(bytes)) if bytes >= 64 << 20 => Verdict::Allow,
            _ => Verdict::deny("limits.memory", "must be a size of at least 64MiB"),
        }
    }
}

impl Lifecycle for NoPrivileged {
    fn on_hook(hook: Hook, i: &InstanceView, _: &[(String, String)]) -> Result<(), String> {
        log(Level::Info, &format!("{} {}", hook.name(), i.name));
        Ok(())
    }
}

export!(NoPrivileged: InstanceValidator, Lifecycle);
