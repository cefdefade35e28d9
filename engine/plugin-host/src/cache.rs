//! On-disk cache of compiled components. Compiling costs 50-150 ms per
//! plugin, loading a cached artifact well under 1 ms, so daemon start and
//! re-install of known plugins stay fast.
//!
//! Key: wasmtime's `precompile_compatibility_hash` (version, target, the
//! `Config` flags that change machine code such as epoch interruption) plus
//! the sha256 of the component bytes. A stale or corrupt entry fails to
//! deserialize cleanly and is recompiled.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::PluginError;

pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
}

/// Feeds `Hash` output into sha256: `DefaultHasher` is not stable across
/// Rust releases, a cache key must be.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

impl Cache {
    pub fn new(dir: &Path, engine: &Engine) -> Result<Self, PluginError> {
        let err = |source| PluginError::CacheDir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        // Artifacts are loaded with `unsafe` deserialization: only the
        // daemon may write them.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..12]);
        Ok(Cache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{}-{sha256}.cwasm", self.engine_key))
    }

    /// The compiled component, from the cache when possible. Returns whether
    /// it came from the cache.
    pub fn load(
        &self,
        engine: &Engine,
        name: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), PluginError> {
        let path = self.path(sha256);
        // Read into memory rather than `deserialize_file`: a mapped file
        // that something truncates later would crash the daemon (SIGBUS).
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: the artifact was written by `store` below from
            // `Component::serialize` of an engine with this configuration
            // (the file name includes the compatibility hash), in a 0700
            // directory only the daemon writes; wasmtime still checks the
            // header and refuses artifacts of another configuration.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(plugin = name, path = %path.display(), "discarding unusable cached plugin: {e}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| PluginError::NotAComponent {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        if let Err(e) = self.store(&component, &path) {
            // The plugin still works, only the next load is slower.
            tracing::warn!(plugin = name, path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        Ok((component, false))
    }

    fn store(&self, component: &Component, path: &Path) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // Unique per writer: concurrent installs of the same bytes must not
        // share a temporary file; the rename makes the last one win whole.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Directory holding the artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Hex sha256 of the component bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
