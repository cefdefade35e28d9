//! One installed plugin: its compiled form (shared, immutable) and its
//! settings, and the machinery that runs one call in a fresh, limited Store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::exports::berth::plugin::{
    describe, filter, lifecycle, validate_device, validate_instance, validate_profile,
    validate_project, verdict_cache, view_needs,
};
use crate::error::{Failure, FailureKind};
use crate::inspect::Capability;
use crate::settings::FailurePolicy;
use crate::state::{CallContext, CallState, LogRecord};
use crate::types::{Level, Metadata};

/// Epoch tick period; deadlines are rounded up to whole ticks.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Export lookups, resolved once at install for the interfaces present.
#[derive(Default)]
pub(crate) struct Indices {
    pub describe: Option<describe::GuestIndices>,
    pub validate_instance: Option<validate_instance::GuestIndices>,
    pub validate_profile: Option<validate_profile::GuestIndices>,
    pub validate_project: Option<validate_project::GuestIndices>,
    pub validate_device: Option<validate_device::GuestIndices>,
    pub filter: Option<filter::GuestIndices>,
    pub view_needs: Option<view_needs::GuestIndices>,
    pub verdict_cache: Option<verdict_cache::GuestIndices>,
    pub lifecycle: Option<lifecycle::GuestIndices>,
}

/// Immutable result of compiling and checking a component.
pub(crate) struct Compiled {
    pub pre: InstancePre<CallState>,
    pub indices: Indices,
    pub capabilities: Vec<Capability>,
    pub metadata: Metadata,
    pub predicates: Vec<String>,
    /// What the plugin reads of instance views (`None`: whole views).
    pub needs: Option<crate::needs::ViewNeeds>,
    /// What `verdict-cache.reusable` answered: `Some` = verdicts are
    /// reusable, depending on these identity fields.
    pub reuse: Option<crate::verdicts::Identity>,
    pub sha256: String,
    pub from_cache: bool,
    pub load_time: Duration,
}

/// Call counters, kept across settings updates and reloads of one name.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    /// Validations answered with a reused verdict (no call made).
    pub reused: AtomicU64,
}

/// An installed plugin as the registry holds it; cheap to clone.
#[derive(Clone)]
pub(crate) struct Entry {
    pub compiled: Arc<Compiled>,
    pub ctx: Arc<CallContext>,
    pub stats: Arc<Stats>,
    /// Fresh instances made ahead of time.
    pub warm: Arc<crate::warm::Warm>,
    /// Calls in flight, host-wide (the pre-instantiation thread waits for a lull).
    pub gate: Arc<crate::warm::Gate>,
}

impl Entry {
    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    pub fn has(&self, cap: Capability) -> bool {
        self.ctx.settings.enabled && self.compiled.capabilities.contains(&cap)
    }

    pub fn fail_open(&self) -> bool {
        self.ctx.settings.failure_policy == FailurePolicy::FailOpen
    }

    /// Run `f` against a fresh instance of this plugin, under its limits.
    pub fn call<R>(
        &self,
        engine: &Engine,
        f: impl FnOnce(&mut Store<CallState>, &Instance, &Compiled) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let _in_flight = self.gate.enter();
        // A ready instance, else a fresh one made now; the used Store is dropped
        // on the background thread (resetting its pool slot is not the caller's
        // cost), or here when too many wait already.
        let fresh = match self.warm.take() {
            Some(fresh) => Some(fresh),
            None => instantiate(engine, &self.compiled.pre, &self.ctx).ok(),
        };
        let result = match fresh {
            Some((store, instance)) => {
                let (result, store) = finish(store, &instance, &self.ctx, |store, instance| {
                    f(store, instance, &self.compiled)
                });
                self.warm.discard(store);
                result
            }
            // Instantiation failed: again through `run`, which reports why.
            None => run(engine, &self.compiled.pre, &self.ctx, |store, instance| {
                f(store, instance, &self.compiled)
            }),
        };
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Turn an out-of-bounds answer into a counted failure.
    pub fn fail(&self, kind: FailureKind, elapsed: Duration) -> Failure {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let failure = Failure {
            plugin: self.name().to_string(),
            kind,
            elapsed,
        };
        tracing::warn!(plugin = self.name(), "{failure}");
        failure
    }
}

/// Instantiate from `pre` in a new Store and run `f`. Used for installs too,
/// before an `Entry` exists.
pub(crate) fn run<R>(
    engine: &Engine,
    pre: &InstancePre<CallState>,
    ctx: &Arc<CallContext>,
    f: impl FnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
) -> Result<R, Failure> {
    let _busy = ctx.ticker.busy();
    let start = Instant::now();
    let deadline = ctx.settings.limits.deadline;
    let failure = |kind| Failure {
        plugin: ctx.name.to_string(),
        kind,
        elapsed: start.elapsed(),
    };
    let state = CallState::new(ctx.clone())
        .map_err(|message| failure(FailureKind::Instantiate { message }))?;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(deadline));
    let result = match pre.instantiate(&mut store) {
        Ok(instance) => {
            f(&mut store, &instance).map_err(|e| classify(&e, store.data(), deadline, false))
        }
        Err(e) => Err(classify(&e, store.data(), deadline, true)),
    };
    report_stdio(store.data());
    result.map_err(|kind| {
        let f = failure(kind);
        tracing::warn!(plugin = %ctx.name, "{f}");
        f
    })
}

/// A fresh store and instance, not called yet (used ahead of time by `warm`).
pub(crate) fn instantiate(
    engine: &Engine,
    pre: &InstancePre<CallState>,
    ctx: &Arc<CallContext>,
) -> Result<(Store<CallState>, Instance), FailureKind> {
    let _busy = ctx.ticker.busy();
    let deadline = ctx.settings.limits.deadline;
    let state = CallState::new(ctx.clone()).map_err(|message| FailureKind::Instantiate { message })?;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(deadline));
    match pre.instantiate(&mut store) {
        Ok(instance) => Ok((store, instance)),
        Err(e) => Err(classify(&e, store.data(), deadline, true)),
    }
}

/// Run one call on an instance made by [`instantiate`]; the deadline starts now.
pub(crate) fn finish<R>(
    mut store: Store<CallState>,
    instance: &Instance,
    ctx: &Arc<CallContext>,
    f: impl FnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
) -> (Result<R, Failure>, Store<CallState>) {
    let busy = ctx.ticker.busy();
    let start = Instant::now();
    let deadline = ctx.settings.limits.deadline;
    store.set_epoch_deadline(deadline_ticks(deadline));
    let result = f(&mut store, instance).map_err(|e| classify(&e, store.data(), deadline, false));
    drop(busy);
    report_stdio(store.data());
    let result = result.map_err(|kind| {
        let f = Failure { plugin: ctx.name.to_string(), kind, elapsed: start.elapsed() };
        tracing::warn!(plugin = %ctx.name, "{f}");
        f
    });
    (result, store)
}

/// Ticks such that the call is interrupted after at least `deadline`.
pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

/// Name the cause of a failed call from the error and what the store saw.
fn classify(
    err: &wasmtime::Error,
    state: &CallState,
    deadline: Duration,
    instantiating: bool,
) -> FailureKind {
    if state.limiter.memory_exceeded {
        return FailureKind::OutOfMemory {
            limit: state.ctx.settings.limits.memory_bytes,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return FailureKind::Timeout { deadline },
        Some(Trap::StackOverflow) => return FailureKind::StackExhausted,
        _ => {}
    }
    if let Some(message) = &state.panic_message {
        return FailureKind::Panic {
            message: message.clone(),
        };
    }
    if crate::pool::exhausted(err) {
        return FailureKind::Instantiate {
            message: format!("plugin instance pool exhausted (too many plugin instances alive at once): {:#}", err.root_cause()),
        };
    }
    let message = crate::convert::truncate(format!("{:#}", err.root_cause()), 2048);
    match err.downcast_ref::<Trap>() {
        // The Rust guest's shadow stack lives at the bottom of linear memory:
        // overflowing it shows up as an out-of-bounds access.
        Some(Trap::MemoryOutOfBounds) => FailureKind::StackExhausted,
        _ if instantiating => FailureKind::Instantiate { message },
        _ => FailureKind::Trap { message },
    }
}

/// Log what the plugin wrote to stderr/stdout (bounded) and dropped logs.
fn report_stdio(state: &CallState) {
    let (text, dropped) = state.stderr.contents();
    if !text.is_empty() {
        let record = LogRecord {
            plugin: state.ctx.name.to_string(),
            level: Level::Warn,
            message: format!(
                "stderr: {}",
                crate::convert::truncate(text, state.ctx.settings.limits.max_log_bytes)
            ),
        };
        crate::state::emit(&record);
        if let Some(sink) = &state.ctx.log_sink {
            sink(&record);
        }
    }
    if dropped > 0 {
        tracing::warn!(plugin = %state.ctx.name, "dropped {dropped} bytes of plugin stderr");
    }
    if state.logs_dropped > 0 {
        tracing::warn!(plugin = %state.ctx.name, "dropped {} plugin log lines", state.logs_dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_plus_one_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(50)), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(7)), 3);
    }
}
