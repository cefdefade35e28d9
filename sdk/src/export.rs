//! The `export!` macro.

/// Export a plugin type and the capabilities it implements.
///
/// ```ignore
/// berth_sdk::export!(MyPlugin: InstanceValidator, Lifecycle);
/// ```
///
/// Capabilities: `InstanceValidator`, `ProfileValidator`, `ProjectValidator`,
/// `DeviceValidator`, `Filter`, `Lifecycle`. Self-description, what the
/// plugin reads of instances and whether its verdicts may be reused (the
/// [`Plugin`](crate::Plugin) trait) are always exported.
#[macro_export]
macro_rules! export {
    ($plugin:ty $(: $($capability:ident),+ $(,)?)?) => {
        const _: () = {
            type __BerthAdapter = $crate::adapter::Adapter<$plugin>;
            $crate::__export_base_impl!(__BerthAdapter with_types_in $crate::bindings::base);
            $($( $crate::__berth_export_capability!($capability, __BerthAdapter); )+)?
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __berth_export_capability {
    (InstanceValidator, $a:ident) => {
        $crate::__export_instance_validator_impl!($a with_types_in $crate::bindings::instance_validator);
    };
    (ProfileValidator, $a:ident) => {
        $crate::__export_profile_validator_impl!($a with_types_in $crate::bindings::profile_validator);
    };
    (ProjectValidator, $a:ident) => {
        $crate::__export_project_validator_impl!($a with_types_in $crate::bindings::project_validator);
    };
    (DeviceValidator, $a:ident) => {
        $crate::__export_device_validator_impl!($a with_types_in $crate::bindings::device_validator);
    };
    (Filter, $a:ident) => {
        $crate::__export_instance_filter_impl!($a with_types_in $crate::bindings::instance_filter);
    };
    (Lifecycle, $a:ident) => {
        $crate::__export_lifecycle_hooks_impl!($a with_types_in $crate::bindings::lifecycle_hooks);
    };
    ($other:ident, $a:ident) => {
        compile_error!(concat!(
            "unknown berth capability `", stringify!($other),
            "`; expected InstanceValidator, ProfileValidator, ProjectValidator, DeviceValidator, Filter or Lifecycle"
        ));
    };
}
