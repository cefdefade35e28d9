//! Helpers for the HTTPS tests: an in-process daemon on a temp data dir, client
//! certificates, and an HTTPS client that presents one.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::pki_types::pem::PemObject;
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use berth_engine::daemon::Daemon;
use berth_engine::events::EventHub;

/// A daemon serving its unix socket inside this test's runtime.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    inner: Option<Arc<Daemon>>,
    pub socket: PathBuf,
}

impl TestDaemon {
    pub async fn start() -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Self::open(dir.path().to_path_buf()).await;
        let socket = dir.path().join("unix.socket");
        TestDaemon { dir, inner: Some(daemon), socket }
    }

    /// The running daemon.
    pub fn daemon(&self) -> &Arc<Daemon> {
        self.inner.as_ref().expect("daemon running")
    }

    async fn open(path: PathBuf) -> Arc<Daemon> {
        let p = path.clone();
        let daemon = tokio::task::spawn_blocking(move || Daemon::open(&p, EventHub::new())).await.unwrap().unwrap();
        let daemon = Arc::new(daemon);
        let l = berth_engine::api::listener::bind_unix(&path.join("unix.socket")).unwrap();
        tokio::spawn(berth_engine::api::listener::serve_unix(daemon.clone(), l));
        daemon
    }

    /// Stops everything and opens the same data dir again, as a daemon restart does
    /// (including the start of the configured HTTPS listener).
    pub async fn restart(&mut self) {
        let old = self.inner.take().expect("daemon running");
        old.request_shutdown();
        *old.trust.https.lock().await = None;
        let mut n = 0;
        while Arc::strong_count(&old) > 1 {
            n += 1;
            assert!(n < 500, "daemon references still held after shutdown");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(old);
        let _ = std::fs::remove_file(&self.socket);
        let fresh = Self::open(self.dir.path().to_path_buf()).await;
        berth_engine::api::tls::start_configured(&fresh).await.unwrap();
        self.inner = Some(fresh);
    }

    /// A request over the unix socket (trusted).
    pub async fn unix(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        berth_engine::client::request(&self.socket, method, path, body).await.unwrap()
    }

    /// PATCHes server config keys.
    pub async fn set(&self, key: &str, value: &str) -> (u16, Value) {
        self.unix(Method::PATCH, "/1.0", Some(serde_json::json!({"config": {key: value}}))).await
    }

    /// Listens on a free loopback port; returns the address.
    pub async fn enable_https(&self) -> SocketAddr {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (s, b) = self.set("core.https_address", &addr.to_string()).await;
        assert_eq!(s, 200, "{b}");
        addr
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(d) = &self.inner {
            d.request_shutdown();
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A client certificate and key, as `lxc` or pylxd would have.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub fingerprint: String,
}

impl ClientCert {
    pub fn new(cn: &str) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        ClientCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), fingerprint: sha256(&der), der }
    }

    /// The PEM body without armor lines, newlines kept: what pylxd sends.
    pub fn pylxd_body(&self) -> String {
        self.cert_pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("\n")
    }
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// Accepts any server certificate and records it (the tests pin it by fingerprint).
#[derive(Debug)]
struct RecordServerCert {
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for RecordServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens a TLS 1.3 connection, presenting `cert` if given. Returns the stream and the
/// server certificate it saw.
pub async fn tls_connect(addr: SocketAddr, cert: Option<&ClientCert>) -> std::io::Result<(TlsStream<TcpStream>, Vec<u8>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let verifier = Arc::new(RecordServerCert { seen: seen.clone(), provider: provider.clone() });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cfg = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der.clone())],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    let server_cert = seen.lock().unwrap().clone().unwrap_or_default();
    Ok((tls, server_cert))
}

/// An HTTPS reply.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

/// One HTTPS request on a fresh connection.
pub async fn https(addr: SocketAddr, cert: Option<&ClientCert>, method: Method, path: &str, body: Option<Vec<u8>>) -> Reply {
    let (tls, _) = tls_connect(addr, cert).await.expect("TLS connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, json: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// `https` with a JSON body.
pub async fn https_json(addr: SocketAddr, cert: Option<&ClientCert>, method: Method, path: &str, body: Value) -> Reply {
    https(addr, cert, method, path, Some(serde_json::to_vec(&body).unwrap())).await
}
