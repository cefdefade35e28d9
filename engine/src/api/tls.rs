//! The HTTPS listener behind `core.https_address`: rustls with the server's self-signed
//! certificate, client certificates requested but never CA-verified (trust is by
//! fingerprint, see [`super::auth`]), started and stopped at runtime.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::auth::Remote;
use crate::daemon::certificates::HTTPS_ADDRESS_KEY;
use crate::daemon::trust::{self, HttpsHandle, ServerIdentity};
use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// LXD's default HTTPS port.
pub const DEFAULT_PORT: u16 = 8443;
/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent complete request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent HTTPS connections; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 512;

/// Requests a client certificate, accepts any that parses and whose handshake signature
/// verifies (proof of the private key); whether it is trusted is decided per request.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls server config for the daemon's identity.
pub fn server_config(identity: &ServerIdentity) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCert { provider: provider.clone() });
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| Error::internal(format!("server key: {e}")))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(identity.cert_der.clone())], key)
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// `core.https_address` in the forms LXD takes (`1.2.3.4`, `1.2.3.4:8443`, `[::]:8443`,
/// `:8443`, `host:port`) as `host:port`; empty means no listener.
pub fn normalize_address(value: &str) -> Result<Option<String>> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || Error::bad(format!("Invalid value for core.https_address \"{value}\""));
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Ok(Some(sa.to_string()));
    }
    if let Ok(ip) = v.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, DEFAULT_PORT).to_string()));
    }
    if let Some(port) = v.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(Some(format!("[::]:{port}")));
    }
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (v, DEFAULT_PORT),
    };
    let valid_host = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_host {
        return Err(bad());
    }
    Ok(Some(format!("{host}:{port}")))
}

async fn bind(address: &str) -> Result<TcpListener> {
    let err = |e: std::io::Error| Error::bad(format!("Cannot listen on https socket \"{address}\": {e}"));
    let sa = tokio::net::lookup_host(address)
        .await
        .map_err(err)?
        .next()
        .ok_or_else(|| Error::bad(format!("Cannot resolve \"{address}\"")))?;
    let sock = if sa.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(sa).map_err(err)?;
    sock.listen(1024).map_err(err)
}

/// What `environment.addresses` shows for a listener.
fn advertised(address: &str, local: SocketAddr) -> Vec<String> {
    if !local.ip().is_unspecified() {
        return vec![address.to_string()];
    }
    let mut ips: Vec<IpAddr> = trust::local_ips()
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => local.is_ipv6() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    // Interface order, loopback first: a client tries each in turn until the
    // certificate fingerprint matches.
    ips.sort_by_key(|ip| !ip.is_loopback());
    ips.into_iter().map(|ip| SocketAddr::new(ip, local.port()).to_string()).collect()
}

/// Changes the HTTPS listener to `wanted` around `commit` (which stores the config): the
/// new address is bound first, so a bad address fails the request and changes nothing.
pub async fn set_https_address<F>(daemon: &Arc<Daemon>, wanted: Option<&str>, commit: F) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    let mut slot = daemon.trust.https.lock().await;
    let normalized = match wanted {
        Some(w) => normalize_address(w)?,
        None => None,
    };
    if normalized == slot.as_ref().map(|h| h.address.clone()) {
        return commit.await;
    }
    let listener = match &normalized {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    commit.await?;
    if let Some(old) = slot.take() {
        let _ = old.stop.send(true);
        tracing::info!(address = %old.address, "stopped HTTPS listener");
    }
    daemon.trust.set_addresses(Vec::new());
    if let (Some(l), Some(address)) = (listener, normalized) {
        let local_addr = l.local_addr().map_err(|e| Error::internal(format!("listener address: {e}")))?;
        let acceptor = TlsAcceptor::from(server_config(&daemon.trust.identity)?);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(serve(daemon.clone(), l, acceptor, stop_rx));
        daemon.trust.set_addresses(advertised(&address, local_addr));
        tracing::info!(address = %address, local = %local_addr, "HTTPS listener started");
        *slot = Some(HttpsHandle { address, local_addr, stop });
    }
    Ok(())
}

/// Starts the listener configured in `core.https_address` (daemon start).
pub async fn start_configured(daemon: &Arc<Daemon>) -> Result<()> {
    let wanted = daemon.model().server.get(HTTPS_ADDRESS_KEY).cloned();
    set_https_address(daemon, wanted.as_deref(), async { Ok(()) }).await
}

/// The address the HTTPS listener is bound to, if any.
pub async fn local_addr(daemon: &Daemon) -> Option<SocketAddr> {
    daemon.trust.https.lock().await.as_ref().map(|h| h.local_addr)
}

/// The accept loop, boxed: it serves requests that may themselves restart the listener,
/// and the box breaks that cycle in the future types.
fn serve(
    daemon: Arc<Daemon>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stop: watch::Receiver<bool>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(accept_loop(daemon, listener, acceptor, stop))
}

async fn accept_loop(daemon: Arc<Daemon>, listener: TcpListener, acceptor: TlsAcceptor, mut stop: watch::Receiver<bool>) {
    let mut shutdown = daemon.shutdown_signal();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (stream, addr) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            _ = shutdown.changed() => break,
        };
        let d = daemon.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
            let fingerprint = cert.as_deref().map(trust::fingerprint);
            let remote = Remote { addr, cert, fingerprint };
            let svc = service_fn(move |req| {
                let d = d.clone();
                let remote = remote.clone();
                async move { Ok::<_, Infallible>(super::handle_remote(d, req, remote).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(peer = %addr, error = %e, "HTTPS connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        let n = |s: &str| normalize_address(s).unwrap();
        assert_eq!(n(""), None);
        assert_eq!(n("127.0.0.1").as_deref(), Some("127.0.0.1:8443"));
        assert_eq!(n("127.0.0.1:9443").as_deref(), Some("127.0.0.1:9443"));
        assert_eq!(n("[::]:8443").as_deref(), Some("[::]:8443"));
        assert_eq!(n("::1").as_deref(), Some("[::1]:8443"));
        assert_eq!(n(":8444").as_deref(), Some("[::]:8444"));
        assert_eq!(n("localhost").as_deref(), Some("localhost:8443"));
        assert_eq!(n("localhost:1234").as_deref(), Some("localhost:1234"));
        for bad in ["127.0.0.1:99999", "a b", ":x", "host:port", "a/b:1"] {
            assert!(normalize_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_builds_from_a_fresh_identity() {
        let dir = tempfile::tempdir().unwrap();
        let id = ServerIdentity::load_or_create(dir.path()).unwrap();
        let cfg = server_config(&id).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
