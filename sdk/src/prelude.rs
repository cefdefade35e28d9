//! `use berth_sdk::prelude::*;` brings in everything a typical plugin uses.

pub use crate::config::ConfigMap;
pub use crate::host;
pub use crate::units::{parse_bool, parse_cpuset, parse_size};
pub use crate::{
    export, log, plugin_config, Device, DeviceValidator, Error, Filter, Hook, InstanceType,
    InstanceValidator, InstanceView, Level, Lifecycle, Patch, Plugin, ProfileValidator,
    ProfileView, ProjectValidator, ProjectView, Reuse, Verdict, Violation,
};
