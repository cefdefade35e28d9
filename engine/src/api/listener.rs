//! Listeners: the unix socket (root/group only, mode 0660).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// Binds the unix socket, replacing a stale one left by a crash.
pub fn bind_unix(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        // A live daemon answers on it; a dead one left a stale file.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::conflict(format!("another daemon is listening on {}", path.display())));
        }
        std::fs::remove_file(path).map_err(|e| Error::internal(format!("removing stale {}: {e}", path.display())))?;
    }
    let l = UnixListener::bind(path).map_err(|e| Error::internal(format!("binding {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| Error::internal(format!("chmod {}: {e}", path.display())))?;
    Ok(l)
}

/// Serves HTTP on the unix socket until shutdown is requested.
pub async fn serve_unix(daemon: Arc<Daemon>, listener: UnixListener) {
    let mut shutdown = daemon.shutdown_signal();
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.changed() => break,
        };
        let (stream, _) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let d = daemon.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let d = d.clone();
                async move { Ok::<_, std::convert::Infallible>(super::handle(d, req, true).await) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}
