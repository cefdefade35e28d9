//! The daemon's periodic storage tasks: once a minute, delete expired snapshots and
//! backups and take the scheduled snapshots (`snapshots.schedule`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{Timelike, Utc};

use super::Daemon;

/// How often the scheduler looks (schedules have minute resolution).
pub const TICK: Duration = Duration::from_secs(60);

/// Runs one pass at `now`; returns (snapshots pruned, snapshots taken).
pub fn run_once(daemon: &Daemon, now: chrono::DateTime<Utc>) -> (usize, usize) {
    let pruned = daemon.prune_expired_snapshots(now);
    daemon.prune_expired_backups(now);
    daemon.prune_expired_volume_backups(now);
    let minute = now.naive_utc().with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now.naive_utc());
    let taken = daemon.take_scheduled_snapshots(minute);
    (pruned, taken)
}

/// Spawns the scheduler; it stops when the daemon shuts down. `BERTH_SCHEDULER_TICK_MS`
/// shortens the period (tests).
pub fn spawn(daemon: Arc<Daemon>) {
    let tick = std::env::var("BERTH_SCHEDULER_TICK_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis).unwrap_or(TICK);
    let mut shutdown = daemon.shutdown_signal();
    tokio::spawn(async move {
        let mut last_minute = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
            let now = Utc::now();
            let d = daemon.clone();
            let minute = now.timestamp() / 60;
            let take = last_minute != Some(minute);
            last_minute = Some(minute);
            let _ = tokio::task::spawn_blocking(move || {
                if take {
                    run_once(&d, now)
                } else {
                    d.prune_expired_backups(now);
                    d.prune_expired_volume_backups(now);
                    (d.prune_expired_snapshots(now), 0)
                }
            })
            .await;
        }
    });
}
