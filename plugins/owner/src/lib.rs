//! Ownership by the `user.owner` config key: the predicate
//! `plugin.owner eq <user>` selects instances of one owner, and the
//! visibility filter hides instances according to plugin config:
//! `visible-owners` (comma list) shows only those owners' instances, and
//! `hide-unowned=true` hides instances without an owner.

use berth_sdk::prelude::*;

struct Owner;

impl Plugin for Owner {
    const NAME: &'static str = "owner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "filter and hide instances by user.owner";
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&["user.owner"]);
    const DEVICES: bool = false;
}

impl Filter for Owner {
    const PREDICATES: &'static [&'static str] = &["owner"];

    fn predicate(name: &str, value: &str, instance: &InstanceView) -> Result<bool, Error> {
        match name {
            "owner" if value.is_empty() => {
                Err(Error::InvalidArgument("owner must not be empty".into()))
            }
            "owner" => Ok(instance.expanded_config.value("user.owner") == Some(value)),
            other => Err(Error::InvalidArgument(format!("unknown predicate {other}"))),
        }
    }

    fn visible(instance: &InstanceView) -> bool {
        let config = plugin_config();
        let owner = instance.expanded_config.value("user.owner");
        if owner.is_none() {
            return !config.is_true("hide-unowned");
        }
        match config.value("visible-owners") {
            Some(list) => list.split(',').any(|o| Some(o.trim()) == owner),
            None => true,
        }
    }
}

export!(Owner: Filter);
