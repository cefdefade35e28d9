//! Per-call store data: the WASI context the plugin's grants allow, the
//! resource limiter, and the host-import implementation (log, queries,
//! config). A fresh `CallState` per call is what guarantees that nothing a
//! plugin does survives into the next call.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::berth::plugin::{host, types as wit};
use crate::convert;
use crate::pipe::BoundedPipe;
use crate::settings::PluginSettings;
use crate::types::{HostQueries, Level};

/// One plugin log line, as handed to the daemon's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Plugin name.
    pub plugin: String,
    /// Severity.
    pub level: Level,
    /// Message (bounded by `Limits::max_log_bytes`).
    pub message: String,
}

/// Receiver of plugin log lines (the daemon turns them into events).
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// What a call needs from its plugin, shared by all its calls.
pub(crate) struct CallContext {
    /// Reusable verdicts of this settings version; `Some` only for a plugin
    /// that declared them reusable (and has no WASI grant).
    pub verdicts: Option<crate::verdicts::Verdicts>,
    pub name: Arc<str>,
    pub settings: PluginSettings,
    /// `settings.config` pre-rendered for `plugin-config`.
    pub config: Vec<(String, String)>,
    pub queries: Arc<dyn HostQueries>,
    pub log_sink: Option<LogSink>,
    /// Held busy while this plugin's code may run, so deadlines advance.
    pub ticker: crate::ticker::TickerHandle,
}

/// Prefix the SDK's panic hook puts on its log line.
const PANIC_PREFIX: &str = "plugin panicked: ";

pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub ctx: Arc<CallContext>,
    pub stderr: BoundedPipe,
    log_lines: usize,
    pub logs_dropped: usize,
    pub panic_message: Option<String>,
}

impl CallState {
    /// Host queries would make a verdict depend on more than the call's
    /// input: a plugin whose verdicts are reused does not get them.
    fn refuse_if_cacheable(&self, query: &str) -> Result<(), wit::Error> {
        match &self.ctx.verdicts {
            Some(_) => Err(wit::Error::Other(format!(
                "{query} is not available to a plugin whose verdicts are reused (verdict-cache)"
            ))),
            None => Ok(()),
        }
    }

    pub fn new(ctx: Arc<CallContext>) -> Result<Self, String> {
        let limits = &ctx.settings.limits;
        let grants = &ctx.settings.grants;
        let stderr = BoundedPipe::new(limits.max_stdio_bytes);
        let mut b = WasiCtxBuilder::new();
        b.stderr(stderr.clone())
            .stdout(BoundedPipe::new(limits.max_stdio_bytes));
        for dir in &grants.read_only_dirs {
            b.preopened_dir(&dir.host_path, &dir.guest_path, FsPerms::ReadOnly)
                .map_err(|e| {
                    format!(
                        "cannot open granted directory {}: {e}",
                        dir.host_path.display()
                    )
                })?;
        }
        for (k, v) in &grants.env {
            b.env(k, v);
        }
        if !grants.clocks {
            b.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        Ok(CallState {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            ctx,
            stderr,
            log_lines: 0,
            logs_dropped: 0,
            panic_message: None,
        })
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for CallState {}

impl host::Host for CallState {
    fn log(&mut self, level: wit::Level, message: String) {
        let limits = &self.ctx.settings.limits;
        if let Some(rest) = message.strip_prefix(PANIC_PREFIX) {
            self.panic_message = Some(convert::truncate(rest.to_string(), limits.max_log_bytes));
        }
        if self.log_lines >= limits.max_log_lines {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let record = LogRecord {
            plugin: self.ctx.name.to_string(),
            level: convert::level(level),
            message: convert::truncate(message, limits.max_log_bytes),
        };
        emit(&record);
        if let Some(sink) = &self.ctx.log_sink {
            sink(&record);
        }
    }

    fn get_instance(
        &mut self,
        project: String,
        name: String,
    ) -> Result<wit::InstanceView, wit::Error> {
        self.refuse_if_cacheable("get-instance")?;
        self.ctx
            .queries
            .get_instance(&project, &name)
            .map(|v| convert::instance(&v))
            .map_err(convert::query_error)
    }

    fn list_instances(&mut self, project: String) -> Result<Vec<wit::InstanceView>, wit::Error> {
        self.refuse_if_cacheable("list-instances")?;
        self.ctx
            .queries
            .list_instances(&project)
            .map(|l| l.iter().map(convert::instance).collect())
            .map_err(convert::query_error)
    }

    fn get_profile(
        &mut self,
        project: String,
        name: String,
    ) -> Result<wit::ProfileView, wit::Error> {
        self.refuse_if_cacheable("get-profile")?;
        self.ctx
            .queries
            .get_profile(&project, &name)
            .map(|p| convert::profile(&p))
            .map_err(convert::query_error)
    }

    fn get_project(&mut self, name: String) -> Result<wit::ProjectView, wit::Error> {
        self.refuse_if_cacheable("get-project")?;
        self.ctx
            .queries
            .get_project(&name)
            .map(|p| convert::project(&p))
            .map_err(convert::query_error)
    }

    fn plugin_config(&mut self) -> Vec<(String, String)> {
        self.ctx.config.clone()
    }
}

/// Send a plugin log line to tracing, at the plugin's level.
pub(crate) fn emit(r: &LogRecord) {
    let (plugin, message) = (&r.plugin, &r.message);
    match r.level {
        Level::Trace => tracing::trace!(plugin = %plugin, "{message}"),
        Level::Debug => tracing::debug!(plugin = %plugin, "{message}"),
        Level::Info => tracing::info!(plugin = %plugin, "{message}"),
        Level::Warn => tracing::warn!(plugin = %plugin, "{message}"),
        Level::Error => tracing::error!(plugin = %plugin, "{message}"),
    }
}

/// A clock stuck at zero: plugins without the clock grant see no time, so
/// their decisions depend only on their inputs.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Resource limiter that counts total linear memory (not per memory) and
/// remembers whether the limit was hit, so a trap can be reported as
/// "out of memory" rather than a generic error.
pub(crate) struct Limiter {
    memory_limit: usize,
    memory_used: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    pub memory_exceeded: bool,
}

impl Limiter {
    fn new(l: &crate::settings::Limits) -> Self {
        Limiter {
            memory_limit: l.memory_bytes,
            memory_used: 0,
            table_elements: l.table_elements,
            instances: l.instances,
            tables: l.tables,
            memories: l.memories,
            memory_exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.memory_used.saturating_add(growth) > self.memory_limit {
            self.memory_exceeded = true;
            // An error (not `Ok(false)`) traps at once instead of trusting the
            // guest to handle a failed `memory.grow`.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded",
                self.memory_limit
            ));
        }
        self.memory_used += growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(wasmtime::format_err!(
                "table limit of {} elements exceeded",
                self.table_elements
            ));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}
