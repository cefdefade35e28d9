//! `PluginHost`: the registry of installed plugins and their management.
//! Calls read an `Arc` snapshot of the registry, so install, remove and
//! settings changes take effect for the next call without pausing calls in
//! flight (hot reload).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use crate::bindings::exports::berth::plugin::{
    describe, filter, lifecycle, verdict_cache, view_needs, validate_device, validate_instance, validate_profile,
    validate_project,
};
use crate::bindings::Full;
use crate::cache::{sha256_hex, Cache};
use crate::error::PluginError;
use crate::inspect::{inspect, Capability};
use crate::needs::ViewNeeds;
use crate::plugin::{run, Compiled, Entry, Indices, Stats};
use crate::settings::PluginSettings;
use crate::state::{CallContext, CallState, LogSink};
use crate::warm::Warm;
use crate::types::{HostQueries, Metadata, NoQueries};

/// What `list` reports about a plugin.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Name given at install.
    pub name: String,
    /// What the plugin says about itself (empty without `describe`).
    pub metadata: Metadata,
    /// Interfaces it exports.
    pub capabilities: Vec<Capability>,
    /// Filter predicates it offers.
    pub predicates: Vec<String>,
    /// Current settings.
    pub settings: PluginSettings,
    /// sha256 of the component bytes.
    pub sha256: String,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// Time to compile or load it.
    pub load_time: Duration,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (trap, timeout, memory, oversized output).
    pub failures: u64,
    /// Whether validation verdicts are reused (`verdict-cache`, and no WASI grant).
    pub reuses_verdicts: bool,
    /// Validations answered with a reused verdict, without a call.
    pub reused: u64,
}

/// What the trial instantiation at install learnt.
struct Probed {
    metadata: Metadata,
    predicates: Vec<String>,
    needs: Option<ViewNeeds>,
    reuse: Option<crate::verdicts::Identity>,
}

/// Installed plugins, sorted by (priority, name): the call order.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub plugins: Vec<Entry>,
}

/// Runs WebAssembly component plugins. `Send + Sync`; calls are
/// synchronous and CPU-bound (bounded by each plugin's deadline), so async
/// callers should use `spawn_blocking`.
pub struct PluginHost {
    pub(crate) engine: Engine,
    linker: Linker<CallState>,
    cache: Cache,
    queries: Arc<dyn HostQueries>,
    log_sink: Option<LogSink>,
    registry: RwLock<Arc<Snapshot>>,
    /// Serialises registry writers (readers never wait on it).
    writer: Mutex<()>,
    /// The epoch clock behind deadlines (ticks only while plugin code runs).
    ticker: crate::ticker::Ticker,
    /// The pre-instantiation thread's queue.
    jobs: std::sync::mpsc::Sender<crate::warm::Job>,
    /// Plugin calls in flight (the pre-instantiation thread waits for a lull).
    gate: Arc<crate::warm::Gate>,
}

impl PluginHost {
    /// A host with no database behind its queries and no log callback.
    pub fn new(cache_dir: &Path) -> Result<Self, PluginError> {
        Self::with(cache_dir, Arc::new(NoQueries), None)
    }

    /// A host whose plugins query `queries` and whose plugin log lines also
    /// go to `log_sink`, with room for [`DEFAULT_INSTANCES`](crate::DEFAULT_INSTANCES)
    /// plugin instances alive at once.
    pub fn with(
        cache_dir: &Path,
        queries: Arc<dyn HostQueries>,
        log_sink: Option<LogSink>,
    ) -> Result<Self, PluginError> {
        Self::with_capacity(cache_dir, queries, log_sink, crate::pool::DEFAULT_INSTANCES)
    }

    /// [`PluginHost::with`] with a pool of `instances` slots: ready instances
    /// (2 per plugin) plus calls in flight. A call that finds the pool full
    /// fails ("plugin instance pool exhausted"), i.e. is refused unless the
    /// plugin is fail-open.
    pub fn with_capacity(
        cache_dir: &Path,
        queries: Arc<dyn HostQueries>,
        log_sink: Option<LogSink>,
        instances: u32,
    ) -> Result<Self, PluginError> {
        let engine_err = |e: wasmtime::Error| PluginError::Engine {
            reason: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.epoch_interruption(true);
        crate::pool::configure(&mut config, instances);
        let engine = Engine::new(&config).map_err(engine_err)?;
        let cache = Cache::new(cache_dir, &engine)?;
        let mut linker = Linker::new(&engine);
        // Rust std guests import stdio/environment interfaces even when they
        // never use them; the WasiCtx grants nothing unless settings say so.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        Full::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_err)?;
        let ticker = crate::ticker::Ticker::start(engine.clone()).map_err(|e| PluginError::Engine {
            reason: format!("cannot start epoch thread: {e}"),
        })?;
        let gate = crate::warm::Gate::new();
        let jobs = crate::warm::start(engine.clone(), gate.clone()).map_err(|e| PluginError::Engine {
            reason: format!("cannot start pre-instantiation thread: {e}"),
        })?;
        Ok(PluginHost {
            jobs,
            gate,
            engine,
            linker,
            cache,
            queries,
            log_sink,
            registry: RwLock::new(Arc::new(Snapshot::default())),
            writer: Mutex::new(()),
            ticker,
        })
    }

    /// The directory of compiled artifacts.
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The per-settings call context. `reuse`: the plugin promised reusable
    /// verdicts; they are reused only without WASI grants.
    fn context(
        &self,
        name: &str,
        settings: PluginSettings,
        reuse: Option<crate::verdicts::Identity>,
    ) -> Arc<CallContext> {
        let verdicts = reuse
            .filter(|_| settings.grants.is_empty())
            .map(crate::verdicts::Verdicts::new);
        Arc::new(CallContext {
            verdicts,
            name: Arc::from(name),
            config: settings
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            settings,
            queries: self.queries.clone(),
            log_sink: self.log_sink.clone(),
            ticker: self.ticker.handle(),
        })
    }

    /// Install (or replace, keeping call counters) plugin `name`. The
    /// component is compiled or loaded from the cache, its contract checked
    /// (WIT version, known exports, linkable imports, export types), and
    /// `describe`/`predicates` called once.
    pub fn install(
        &self,
        name: &str,
        wasm: &[u8],
        settings: PluginSettings,
    ) -> Result<PluginInfo, PluginError> {
        check_name(name)?;
        settings
            .check()
            .map_err(|reason| PluginError::InvalidSettings {
                name: name.to_string(),
                reason,
            })?;
        let start = Instant::now();
        let sha256 = sha256_hex(wasm);
        let (component, from_cache) = self.cache.load(&self.engine, name, wasm, &sha256)?;
        let contract = inspect(name, &self.engine, &component)?;
        let link = |e: wasmtime::Error| PluginError::Link {
            name: name.to_string(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let has = |c| contract.capabilities.contains(&c);
        let indices = Indices {
            describe: contract
                .describe
                .then(|| describe::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            validate_instance: has(Capability::InstanceValidator)
                .then(|| validate_instance::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            validate_profile: has(Capability::ProfileValidator)
                .then(|| validate_profile::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            validate_project: has(Capability::ProjectValidator)
                .then(|| validate_project::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            validate_device: has(Capability::DeviceValidator)
                .then(|| validate_device::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            filter: has(Capability::Filter)
                .then(|| filter::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            view_needs: contract
                .view_needs
                .then(|| view_needs::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            verdict_cache: contract
                .verdict_cache
                .then(|| verdict_cache::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
            lifecycle: has(Capability::Lifecycle)
                .then(|| lifecycle::GuestIndices::new(&pre))
                .transpose()
                .map_err(link)?,
        };
        let probe_ctx = self.context(name, settings.clone(), None);
        let Probed { metadata, predicates, needs, reuse } = self.probe(name, &pre, &indices, &probe_ctx)?;
        let ctx = self.context(name, settings, reuse);
        let compiled = Arc::new(Compiled {
            pre,
            indices,
            capabilities: contract.capabilities,
            metadata,
            predicates,
            needs,
            reuse,
            sha256,
            from_cache,
            load_time: start.elapsed(),
        });
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let stats = current
            .plugins
            .iter()
            .find(|e| e.name() == name)
            .map(|e| e.stats.clone())
            .unwrap_or_else(|| Arc::new(Stats::default()));
        let warm = Warm::new(compiled.pre.clone(), ctx.clone(), self.jobs.clone(), self.gate.clone());
        let entry = Entry {
            compiled,
            ctx,
            stats,
            warm,
            gate: self.gate.clone(),
        };
        let info = info(&entry);
        self.replace(&current, name, Some(entry));
        tracing::info!(plugin = name, from_cache, "plugin installed");
        Ok(info)
    }

    /// Trial instantiation at install: loads every export (type-checking
    /// it) and reads metadata, predicate names and what the filter reads.
    fn probe(
        &self,
        name: &str,
        pre: &wasmtime::component::InstancePre<CallState>,
        indices: &Indices,
        ctx: &Arc<CallContext>,
    ) -> Result<Probed, PluginError> {
        let mut types_ok = Ok(());
        let result = run(&self.engine, pre, ctx, |store, instance| {
            types_ok = crate::inspect::check_export_types(store, instance, indices);
            if types_ok.is_err() {
                return Ok((Metadata::default(), Vec::new(), None, None));
            }
            let metadata = match &indices.describe {
                Some(d) => crate::convert::metadata(
                    d.load(&mut *store, instance)?.call_describe(&mut *store)?,
                ),
                None => Metadata::default(),
            };
            let predicates = match &indices.filter {
                Some(f) => f
                    .load(&mut *store, instance)?
                    .call_predicates(&mut *store)?,
                None => Vec::new(),
            };
            let needs = match &indices.view_needs {
                Some(f) => Some(f.load(&mut *store, instance)?.call_needs(&mut *store)?),
                None => None,
            };
            let reuse = match &indices.verdict_cache {
                Some(f) => f
                    .load(&mut *store, instance)?
                    .call_reusable(&mut *store)?
                    .map(crate::verdicts::Identity::from_wit),
                None => None,
            };
            Ok((metadata, predicates, needs, reuse))
        })
        .map_err(|failure| PluginError::InstallCall {
            name: name.to_string(),
            failure: Box::new(failure),
        })?;
        types_ok.map_err(|reason| PluginError::Link {
            name: name.to_string(),
            reason,
        })?;
        let (metadata, mut predicates, needs, reuse) = result;
        predicates.truncate(64);
        predicates.iter_mut().for_each(|p| p.truncate(64));
        let needs = needs
            .map(ViewNeeds::from_wit)
            .transpose()
            .map_err(|reason| PluginError::Link {
                name: name.to_string(),
                reason,
            })?
            .flatten();
        Ok(Probed { metadata, predicates, needs, reuse })
    }

    /// Uninstall `name`. Calls already running finish on the old snapshot.
    pub fn remove(&self, name: &str) -> Result<(), PluginError> {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        if !current.plugins.iter().any(|e| e.name() == name) {
            return Err(PluginError::NotFound {
                name: name.to_string(),
            });
        }
        self.replace(&current, name, None);
        Ok(())
    }

    /// Change a plugin's settings without recompiling it.
    pub fn update_settings(
        &self,
        name: &str,
        settings: PluginSettings,
    ) -> Result<PluginInfo, PluginError> {
        settings
            .check()
            .map_err(|reason| PluginError::InvalidSettings {
                name: name.to_string(),
                reason,
            })?;
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let old = current
            .plugins
            .iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| PluginError::NotFound {
                name: name.to_string(),
            })?;
        let ctx = self.context(name, settings, old.compiled.reuse);
        let entry = Entry {
            compiled: old.compiled.clone(),
            warm: Warm::new(old.compiled.pre.clone(), ctx.clone(), self.jobs.clone(), self.gate.clone()),
            gate: self.gate.clone(),
            ctx,
            stats: old.stats.clone(),
        };
        let info = info(&entry);
        self.replace(&current, name, Some(entry));
        Ok(info)
    }

    /// Installed plugins in call order.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.snapshot().plugins.iter().map(info).collect()
    }

    /// One plugin.
    pub fn get(&self, name: &str) -> Option<PluginInfo> {
        self.snapshot()
            .plugins
            .iter()
            .find(|e| e.name() == name)
            .map(info)
    }

    /// Publish a new snapshot with `name` replaced by `entry` (or removed).
    fn replace(&self, current: &Snapshot, name: &str, entry: Option<Entry>) {
        let mut plugins: Vec<Entry> = current
            .plugins
            .iter()
            .filter(|e| e.name() != name)
            .cloned()
            .collect();
        plugins.extend(entry);
        plugins.sort_by(|a, b| {
            (a.ctx.settings.priority, a.name()).cmp(&(b.ctx.settings.priority, b.name()))
        });
        *self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot { plugins });
    }
}


fn info(e: &Entry) -> PluginInfo {
    use std::sync::atomic::Ordering::Relaxed;
    PluginInfo {
        name: e.name().to_string(),
        metadata: e.compiled.metadata.clone(),
        capabilities: e.compiled.capabilities.clone(),
        predicates: e.compiled.predicates.clone(),
        settings: e.ctx.settings.clone(),
        sha256: e.compiled.sha256.clone(),
        from_cache: e.compiled.from_cache,
        load_time: e.compiled.load_time,
        calls: e.stats.calls.load(Relaxed),
        failures: e.stats.failures.load(Relaxed),
        reuses_verdicts: e.ctx.verdicts.is_some(),
        reused: e.stats.reused.load(Relaxed),
    }
}

/// Names appear in logs, events, cache lookups and API paths: keep them
/// short and plain.
fn check_name(name: &str) -> Result<(), PluginError> {
    let bad = |reason| {
        Err(PluginError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad("only lowercase letters, digits, '-' and '_' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        assert!(check_name("require-limits").is_ok());
        assert!(check_name("a_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("Upper").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn garbage_is_not_a_component() {
        let dir = tempfile::tempdir().unwrap();
        let host = PluginHost::new(dir.path()).unwrap();
        let err = host
            .install("junk", b"not wasm at all", PluginSettings::default())
            .unwrap_err();
        assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
        assert!(err.is_invalid_input());
        assert!(host.list().is_empty());
    }
}
