//! Runtime trust state: the server's own TLS identity, the trust password hash, the
//! per-address limiter for failed password attempts, and the slot of the HTTPS listener.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// The server config key holding the (hashed) trust password.
pub const TRUST_PASSWORD_KEY: &str = "core.trust_password";

/// A failure around the server identity or the trust password.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} does not hold a usable PEM certificate or key")]
    BadPem { path: String },
    #[error("generating the server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("hashing the trust password: {0}")]
    Hash(String),
}

/// The daemon's self-signed certificate (`server.crt`/`server.key` in the data dir).
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// SHA-256 of the DER certificate, lower-case hex (what clients pin).
    pub fingerprint: String,
}

impl ServerIdentity {
    /// Loads the identity, generating it on first run (key file mode 0600).
    pub fn load_or_create(dir: &Path) -> Result<Self, TrustError> {
        let crt = dir.join("server.crt");
        let key = dir.join("server.key");
        if crt.exists() && key.exists() {
            let cert_pem = read(&crt)?;
            let key_pem = read(&key)?;
            return Self::from_pem(cert_pem, key_pem, &crt, &key);
        }
        let (cert_pem, key_pem) = generate(&hostname(), &local_ips())?;
        write(&key, &key_pem, 0o600)?;
        write(&crt, &cert_pem, 0o644)?;
        Self::from_pem(cert_pem, key_pem, &crt, &key)
    }

    fn from_pem(cert_pem: String, key_pem: String, crt: &Path, key: &Path) -> Result<Self, TrustError> {
        use rustls_pki_types::pem::PemObject;
        let cert_der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| TrustError::BadPem { path: crt.display().to_string() })?
            .to_vec();
        // Checked here so a bad key fails at start, not at the first HTTPS handshake.
        rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| TrustError::BadPem { path: key.display().to_string() })?;
        let fingerprint = fingerprint(&cert_der);
        Ok(ServerIdentity { cert_pem, key_pem, cert_der, fingerprint })
    }
}

fn read(p: &Path) -> Result<String, TrustError> {
    std::fs::read_to_string(p).map_err(|source| TrustError::Read { path: p.display().to_string(), source })
}

fn write(p: &Path, text: &str, mode: u32) -> Result<(), TrustError> {
    let err = |source| TrustError::Write { path: p.display().to_string(), source };
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    std::fs::rename(&tmp, p).map_err(err)
}

/// A self-signed certificate with the hostname as first DNS SAN (the `lxc` client uses it
/// as the TLS server name) plus IP SANs, as LXD makes its own.
fn generate(host: &str, ips: &[IpAddr]) -> Result<(String, String), TrustError> {
    let mut sans = vec![host.to_string()];
    sans.extend(ips.iter().map(IpAddr::to_string));
    let mut params = match rcgen::CertificateParams::new(sans.clone()) {
        Ok(p) => p,
        // A hostname that is no valid DNS name: fall back to a fixed one.
        Err(_) => {
            sans[0] = "berth".into();
            rcgen::CertificateParams::new(sans)?
        }
    };
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "berth");
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("root@{host}"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(86_400)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "berth".into())
}

/// Loopback plus every address of the host's interfaces.
pub fn local_ips() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])];
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// SHA-256 of a DER certificate as lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Hashes a trust password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, TrustError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| TrustError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TrustError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC hash; a malformed hash never matches.
pub fn verify_password(stored: &str, password: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Whether a stored value is already a hash (so a PATCH that merges it back is a no-op).
pub fn is_password_hash(v: &str) -> bool {
    v.starts_with("$argon2") && PasswordHash::new(v).is_ok()
}

/// Failed attempts allowed before the backoff starts.
pub const FREE_FAILURES: u32 = 5;
/// Longest wait imposed between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a quiet address is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(600);

struct Attempts {
    failures: u32,
    last: Instant,
}

/// Failed password/token attempts per remote address, with exponential backoff:
/// after [`FREE_FAILURES`] failures each new attempt must wait 1 s, 2 s, 4 s… (capped).
#[derive(Default)]
pub struct AttemptLimiter {
    map: Mutex<HashMap<IpAddr, Attempts>>,
}

impl AttemptLimiter {
    /// `Err(wait)` when `ip` must wait before trying again.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = map.get(&ip) else { return Ok(()) };
        let wait = backoff(a.failures);
        let elapsed = a.last.elapsed();
        if elapsed < wait {
            Err(wait - elapsed)
        } else {
            Ok(())
        }
    }

    /// Records a failure.
    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 4096 {
            map.retain(|_, a| a.last.elapsed() < FORGET_AFTER);
        }
        let a = map.entry(ip).or_insert(Attempts { failures: 0, last: Instant::now() });
        if a.last.elapsed() > FORGET_AFTER {
            a.failures = 0;
        }
        a.failures = a.failures.saturating_add(1);
        a.last = Instant::now();
    }

    /// Forgets an address after a success.
    pub fn succeeded(&self, ip: IpAddr) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&ip);
    }
}

fn backoff(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES).min(10);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// A running HTTPS listener; dropping `stop` ends its accept loop.
pub struct HttpsHandle {
    /// The normalized `core.https_address` it serves.
    pub address: String,
    pub local_addr: SocketAddr,
    pub stop: tokio::sync::watch::Sender<bool>,
}

/// Everything about trust that lives only in memory.
pub struct TrustState {
    pub identity: ServerIdentity,
    pub limiter: AttemptLimiter,
    /// The HTTPS listener; the async mutex serializes address changes.
    pub https: tokio::sync::Mutex<Option<HttpsHandle>>,
    /// What `environment.addresses` shows (kept apart so sync readers never wait on `https`).
    pub addresses: Mutex<Vec<String>>,
    /// Serializes token redemption so a token is used at most once.
    pub token_lock: Mutex<()>,
}

impl TrustState {
    /// State for a daemon whose identity is `identity`.
    pub fn new(identity: ServerIdentity) -> Self {
        TrustState {
            identity,
            limiter: AttemptLimiter::default(),
            https: tokio::sync::Mutex::new(None),
            addresses: Mutex::new(Vec::new()),
            token_lock: Mutex::new(()),
        }
    }

    /// The addresses clients can reach the HTTPS listener at.
    pub fn addresses(&self) -> Vec<String> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the advertised addresses.
    pub fn set_addresses(&self, v: Vec<String>) {
        *self.addresses.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_generated_once_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServerIdentity::load_or_create(dir.path()).unwrap();
        let b = ServerIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let mode = std::fs::metadata(dir.path().join("server.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The certificate parses and carries the DNS name first.
        let der = rustls_pki_types::CertificateDer::from(a.cert_der.clone());
        webpki::EndEntityCert::try_from(&der).unwrap();
    }

    #[test]
    fn corrupt_identity_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.crt"), "garbage").unwrap();
        std::fs::write(dir.path().join("server.key"), "garbage").unwrap();
        assert!(matches!(ServerIdentity::load_or_create(dir.path()), Err(TrustError::BadPem { .. })));
    }

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("secret").unwrap();
        assert!(is_password_hash(&h));
        assert_ne!(h, hash_password("secret").unwrap(), "salted");
        assert!(verify_password(&h, "secret"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("secret", "secret"), "a plain value is not a hash");
    }

    #[test]
    fn limiter_backs_off_after_free_failures() {
        let l = AttemptLimiter::default();
        let ip = IpAddr::from([127, 0, 0, 9]);
        for _ in 0..FREE_FAILURES - 1 {
            l.failed(ip);
            assert!(l.check(ip).is_ok());
        }
        l.failed(ip);
        let wait = l.check(ip).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(500));
        l.failed(ip);
        assert!(l.check(ip).unwrap_err() > Duration::from_millis(1500));
        assert!(l.check(IpAddr::from([127, 0, 0, 10])).is_ok(), "other addresses are unaffected");
        l.succeeded(ip);
        assert!(l.check(ip).is_ok());
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
