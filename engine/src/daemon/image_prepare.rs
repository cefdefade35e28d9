//! Unpacking an image into the pool of an instance about to be created, before the
//! instance's transaction takes the daemon's write lock (the unpack can take seconds).

use super::images::unpack_options;
use super::Daemon;
use crate::error::Result;
use crate::image;
use crate::model::{zero_time, InstanceRecord};

impl Daemon {
    /// Unpacks image `fp` into the pool a new instance made of `req` would use, before the
    /// instance's transaction: the unpack can take seconds and must not hold the write lock.
    /// Best effort: when the pool can't be told yet, [`Daemon::create_root_from_image`]
    /// unpacks under the lock as before.
    pub(super) fn prepare_image_volume(&self, project: &str, req: &super::InstanceCreate, fp: &str) -> Result<()> {
        let pool = {
            let m = self.model();
            let probe = InstanceRecord {
                name: String::new(),
                project: project.to_string(),
                instance_type: req.instance_type,
                architecture: String::new(),
                config: req.config.clone(),
                devices: req.devices.clone(),
                profiles: req.profiles.clone().unwrap_or_else(|| vec!["default".to_string()]),
                ephemeral: false,
                stateful: false,
                description: String::new(),
                created_at: zero_time(),
                last_used_at: zero_time(),
            };
            match m.root_pool(&probe) {
                Ok(p) => p,
                Err(_) => return Ok(()),
            }
        };
        let driver = self.pool_driver(&pool)?;
        image::ensure_image_volume(driver.as_ref(), &image::ImageFiles::in_dir(&self.images_dir(), fp), fp, &unpack_options())?;
        Ok(())
    }

}
