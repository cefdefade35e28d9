//! Bridges the generated `Guest` traits (owned WIT values) to the SDK
//! traits (borrowed values, defaulted methods). Not part of the public API:
//! [`crate::export!`] names it.

use std::marker::PhantomData;

use crate::bindings::{
    base, device_validator, instance_filter, instance_validator, lifecycle_hooks,
    profile_validator, project_validator,
};
use crate::{
    Device, DeviceValidator, Error, Filter, Hook, InstanceValidator, InstanceView, Lifecycle,
    Metadata, Plugin, ProfileValidator, ProfileView, ProjectValidator, ProjectView, Verdict,
};

/// Zero-sized stand-in for the plugin type in the generated export glue.
pub struct Adapter<T>(PhantomData<T>);

impl<T: Plugin> base::exports::berth::plugin::describe::Guest for Adapter<T> {
    fn describe() -> Metadata {
        crate::init();
        Metadata {
            name: T::NAME.to_string(),
            version: T::VERSION.to_string(),
            api_version: crate::API_VERSION.to_string(),
            description: T::DESCRIPTION.to_string(),
        }
    }
}

impl<T: Plugin> base::exports::berth::plugin::view_needs::Guest for Adapter<T> {
    fn needs() -> base::exports::berth::plugin::view_needs::ViewParts {
        crate::init();
        base::exports::berth::plugin::view_needs::ViewParts {
            config_keys: T::CONFIG_KEYS.map(|keys| keys.iter().map(|k| k.to_string()).collect()),
            devices: T::DEVICES,
        }
    }
}

impl<T: Plugin> base::exports::berth::plugin::verdict_cache::Guest for Adapter<T> {
    fn reusable() -> Option<base::exports::berth::plugin::verdict_cache::Identity> {
        use base::exports::berth::plugin::verdict_cache::Identity;
        T::REUSE.map(|r| {
            let mut f = Identity::empty();
            f.set(Identity::NAME, r.name);
            f.set(Identity::PROJECT, r.project);
            f.set(Identity::PROFILES, r.profiles);
            f
        })
    }
}

impl<T: InstanceValidator> instance_validator::exports::berth::plugin::validate_instance::Guest
    for Adapter<T>
{
    fn validate_create(instance: InstanceView) -> Verdict {
        crate::init();
        T::validate_create(&instance)
    }
    fn validate_update(instance: InstanceView, previous: InstanceView) -> Verdict {
        crate::init();
        T::validate_update(&instance, &previous)
    }
}

impl<T: ProfileValidator> profile_validator::exports::berth::plugin::validate_profile::Guest
    for Adapter<T>
{
    fn validate_profile(profile: ProfileView, previous: Option<ProfileView>) -> Verdict {
        crate::init();
        T::validate_profile(&profile, previous.as_ref())
    }
}

impl<T: ProjectValidator> project_validator::exports::berth::plugin::validate_project::Guest
    for Adapter<T>
{
    fn validate_project(project: ProjectView, previous: Option<ProjectView>) -> Verdict {
        crate::init();
        T::validate_project(&project, previous.as_ref())
    }
}

impl<T: DeviceValidator> device_validator::exports::berth::plugin::validate_device::Guest
    for Adapter<T>
{
    fn validate_device(instance: InstanceView, device: Device) -> Verdict {
        crate::init();
        T::validate_device(&instance, &device)
    }
}

impl<T: Filter> instance_filter::exports::berth::plugin::filter::Guest for Adapter<T> {
    fn predicates() -> Vec<String> {
        crate::init();
        T::PREDICATES.iter().map(|p| p.to_string()).collect()
    }
    fn predicate(name: String, value: String, instance: InstanceView) -> Result<bool, Error> {
        crate::init();
        T::predicate(&name, &value, &instance)
    }
    fn visible(instance: InstanceView) -> bool {
        crate::init();
        T::visible(&instance)
    }
}

impl<T: Lifecycle> lifecycle_hooks::exports::berth::plugin::lifecycle::Guest for Adapter<T> {
    fn on_hook(
        hook: Hook,
        instance: InstanceView,
        details: Vec<(String, String)>,
    ) -> Result<(), String> {
        crate::init();
        T::on_hook(hook, &instance, &details)
    }
}
