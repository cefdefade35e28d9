//! Shared helpers: a host in a temp dir, a recording log sink, a fake
//! database behind the host queries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_plugin_host::{
    HostQueries, InstanceView, LogRecord, PluginHost, PluginInfo, PluginSettings, ProfileView,
    ProjectView, QueryError,
};

/// Instances keyed by (project, name).
#[derive(Default)]
pub struct FakeDb {
    pub instances: Mutex<BTreeMap<(String, String), InstanceView>>,
}

impl FakeDb {
    pub fn put(&self, v: InstanceView) {
        self.instances
            .lock()
            .unwrap()
            .insert((v.project.clone(), v.name.clone()), v);
    }
}

impl HostQueries for FakeDb {
    fn get_instance(&self, project: &str, name: &str) -> Result<InstanceView, QueryError> {
        self.instances
            .lock()
            .unwrap()
            .get(&(project.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| QueryError::NotFound(format!("{project}/{name}")))
    }
    fn list_instances(&self, project: &str) -> Result<Vec<InstanceView>, QueryError> {
        Ok(self
            .instances
            .lock()
            .unwrap()
            .values()
            .filter(|v| v.project == project)
            .cloned()
            .collect())
    }
    fn get_profile(&self, project: &str, name: &str) -> Result<ProfileView, QueryError> {
        Err(QueryError::NotFound(format!("{project}/{name}")))
    }
    fn get_project(&self, name: &str) -> Result<ProjectView, QueryError> {
        Ok(ProjectView {
            name: name.to_string(),
            ..Default::default()
        })
    }
}

pub struct Harness {
    pub host: PluginHost,
    pub db: Arc<FakeDb>,
    pub logs: Arc<Mutex<Vec<LogRecord>>>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::in_dir(dir)
    }

    pub fn in_dir(dir: tempfile::TempDir) -> Self {
        let db = Arc::new(FakeDb::default());
        let logs: Arc<Mutex<Vec<LogRecord>>> = Arc::default();
        let sink = logs.clone();
        // One cache for the whole test binary: compiling in a debug build
        // takes about a second per plugin (the cache itself is tested in
        // manage.rs with its own directory).
        static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
        let host = PluginHost::with(
            cache.path(),
            db.clone(),
            Some(Arc::new(move |r: &LogRecord| {
                sink.lock().unwrap().push(r.clone())
            })),
        )
        .unwrap();
        Harness {
            host,
            db,
            logs,
            dir,
        }
    }

    pub fn install(&self, name: &str, wasm: &str, settings: PluginSettings) -> PluginInfo {
        let bytes = std::fs::read(wasm).unwrap();
        self.host
            .install(name, &bytes, settings)
            .unwrap_or_else(|e| panic!("install {name}: {e}"))
    }

    pub fn logs(&self) -> Vec<LogRecord> {
        self.logs.lock().unwrap().clone()
    }

    pub fn clear_logs(&self) {
        self.logs.lock().unwrap().clear();
    }
}

pub fn settings(config: &[(&str, &str)]) -> PluginSettings {
    PluginSettings {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PluginSettings::default()
    }
}

/// An instance with both local and expanded config set to `config`.
pub fn instance(project: &str, name: &str, config: &[(&str, &str)]) -> InstanceView {
    let mut v = InstanceView::new(project, name);
    v.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.expanded_config = v.config.clone();
    v
}
