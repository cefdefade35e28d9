//! The trust store: client certificates trusted by SHA-256 fingerprint, optionally
//! restricted to projects, and the single-use add tokens of `lxc config trust add`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::trust::{self, TRUST_PASSWORD_KEY};
use super::Daemon;
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::ConfigMap;
use crate::operations::{Class, OpSpec, Operation, Status};

/// Server key: how long an add token stays valid (LXD's expiry syntax, e.g. `1H 30M`).
pub const TOKEN_EXPIRY_KEY: &str = "core.remote_token_expiry";
/// Server key: the HTTPS listen address.
pub const HTTPS_ADDRESS_KEY: &str = "core.https_address";

/// A trusted certificate as stored and as the API renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub name: String,
    #[serde(rename = "type")]
    pub cert_type: String,
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub projects: Vec<String>,
    /// PEM.
    pub certificate: String,
    pub fingerprint: String,
}

/// The writable part (`PUT /1.0/certificates/<fp>`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificatePut {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub cert_type: Option<String>,
    #[serde(default)]
    pub restricted: Option<bool>,
    #[serde(default)]
    pub projects: Option<Vec<String>>,
    #[serde(default)]
    pub certificate: Option<String>,
}

/// What a token grants once redeemed (the `request` the token was made for).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub cert_type: String,
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub projects: Vec<String>,
}

/// The base64 JSON a client gets from `lxc config trust add`.
#[derive(Debug, Deserialize)]
struct TokenWire {
    #[serde(default)]
    secret: String,
}

/// DER bytes of a certificate sent by a client: base64 DER, with or without PEM armor,
/// embedded newlines and spaces tolerated (pylxd sends them).
pub fn parse_certificate(input: &str) -> Result<Vec<u8>> {
    let body: String = input
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| Error::bad(format!("Invalid certificate: not base64: {e}")))?;
    check_der(&der)?;
    Ok(der)
}

/// Refuses bytes that are not an X.509 certificate.
pub fn check_der(der: &[u8]) -> Result<()> {
    let c = rustls_pki_types::CertificateDer::from(der);
    webpki::EndEntityCert::try_from(&c).map_err(|e| Error::bad(format!("Invalid certificate: {e:?}")))?;
    Ok(())
}

/// PEM armor around DER.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// LXD's expiry syntax: space-separated `<n><unit>` with S, M, H, d, w, m, y.
pub fn parse_expiry(value: &str) -> Result<Duration> {
    let bad = || Error::bad(format!("Invalid expiry \"{value}\": expected e.g. \"30M\" or \"1H 30M\""));
    let mut total = Duration::ZERO;
    for part in value.split_whitespace() {
        let split = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = part.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs: u64 = match unit {
            "S" => 1,
            "M" => 60,
            "H" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "m" => 30 * 86_400,
            "y" => 365 * 86_400,
            _ => return Err(bad()),
        };
        total += Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

fn validate_type(t: &str) -> Result<()> {
    match t {
        "client" | "metrics" => Ok(()),
        _ => Err(Error::bad(format!("Unknown certificate type \"{t}\""))),
    }
}

fn not_found() -> Error {
    Error::not_found("Certificate not found")
}

impl Daemon {
    /// A certificate by fingerprint or unambiguous fingerprint prefix.
    pub fn certificate(&self, prefix: &str) -> Result<Certificate> {
        if prefix.is_empty() {
            return Err(not_found());
        }
        let m = self.model();
        if let Some(c) = m.certificates.get(prefix) {
            return Ok(c.clone());
        }
        let mut hits = m.certificates.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        let first = hits.next().ok_or_else(not_found)?;
        if hits.next().is_some() {
            return Err(Error::bad(format!("More than one certificate matches \"{prefix}\"")));
        }
        Ok(first.1.clone())
    }

    fn check_projects(&self, projects: &[String]) -> Result<()> {
        let m = self.model();
        for p in projects {
            if !m.projects.contains_key(p) {
                return Err(Error::bad(format!("Project \"{p}\" not found")));
            }
        }
        Ok(())
    }

    /// Adds a certificate to the trust store (409 if it is there already).
    pub fn add_certificate(&self, cert: Certificate) -> Result<()> {
        validate_type(&cert.cert_type)?;
        self.check_projects(&cert.projects)?;
        let mut tx = self.txn();
        if tx.model().certificates.contains_key(&cert.fingerprint) {
            return Err(Error::conflict("Certificate already in trust store"));
        }
        let fp = cert.fingerprint.clone();
        tx.commit(
            |db| db.put(&tables::CERTIFICATES, &cert.fingerprint, &cert),
            |m| m.certificates.insert(cert.fingerprint.clone(), cert.clone()),
        )?;
        self.events.lifecycle("default", "certificate-created", &format!("/1.0/certificates/{fp}"), json!({}));
        Ok(())
    }

    /// Replaces the writable fields; absent fields keep their value. Returns the
    /// (possibly new) fingerprint.
    pub fn update_certificate(&self, fingerprint: &str, put: CertificatePut) -> Result<String> {
        let mut tx = self.txn();
        let old = tx.model().certificates.get(fingerprint).cloned().ok_or_else(not_found)?;
        let mut new = old.clone();
        if let Some(n) = put.name {
            new.name = n;
        }
        if let Some(t) = put.cert_type.filter(|t| !t.is_empty()) {
            new.cert_type = t;
        }
        if let Some(r) = put.restricted {
            new.restricted = r;
        }
        if let Some(p) = put.projects {
            new.projects = p;
        }
        if let Some(c) = put.certificate.filter(|c| !c.trim().is_empty()) {
            let der = parse_certificate(&c)?;
            new.fingerprint = trust::fingerprint(&der);
            new.certificate = pem_encode(&der);
            if new.fingerprint != old.fingerprint && tx.model().certificates.contains_key(&new.fingerprint) {
                return Err(Error::conflict("Certificate already in trust store"));
            }
        }
        validate_type(&new.cert_type)?;
        self.check_projects(&new.projects)?;
        let fp = new.fingerprint.clone();
        tx.commit(
            |db| {
                db.delete(&tables::CERTIFICATES, &old.fingerprint)?;
                db.put(&tables::CERTIFICATES, &new.fingerprint, &new)
            },
            |m| {
                m.certificates.remove(&old.fingerprint);
                m.certificates.insert(new.fingerprint.clone(), new.clone());
            },
        )?;
        self.events.lifecycle("default", "certificate-updated", &format!("/1.0/certificates/{fp}"), json!({}));
        Ok(fp)
    }

    /// Removes a certificate (exact fingerprint).
    pub fn delete_certificate(&self, fingerprint: &str) -> Result<()> {
        let mut tx = self.txn();
        if !tx.model().certificates.contains_key(fingerprint) {
            return Err(not_found());
        }
        tx.commit(
            |db| db.delete(&tables::CERTIFICATES, fingerprint),
            |m| m.certificates.remove(fingerprint),
        )?;
        self.events.lifecycle(
            "default",
            "certificate-deleted",
            &format!("/1.0/certificates/{fingerprint}"),
            json!({}),
        );
        Ok(())
    }

    /// Whether `password` matches the configured trust password (false when none is set).
    /// Slow by design: call it off the reactor.
    pub fn check_trust_password(&self, password: &str) -> bool {
        let stored = self.model().server.get(TRUST_PASSWORD_KEY).cloned();
        stored.is_some_and(|h| trust::verify_password(&h, password))
    }

    /// Turns a requested server config into what is stored: the trust password hashed
    /// (a value equal to the stored hash, or the displayed `true`, keeps it), and the
    /// values this module owns checked.
    pub fn prepare_server_config(&self, mut config: ConfigMap) -> Result<ConfigMap> {
        let current = self.model().server.get(TRUST_PASSWORD_KEY).cloned();
        if let Some(v) = config.get(TRUST_PASSWORD_KEY).cloned() {
            let keep = current.as_ref().is_some_and(|c| *c == v || (v == "true" && trust::is_password_hash(c)));
            let stored = match (keep, current) {
                (true, Some(c)) => c,
                _ => trust::hash_password(&v).map_err(|e| Error::internal(e.to_string()))?,
            };
            config.insert(TRUST_PASSWORD_KEY.to_string(), stored);
        }
        if let Some(v) = config.get(TOKEN_EXPIRY_KEY) {
            parse_expiry(v)?;
        }
        Ok(config)
    }

    /// Creates a running token operation for `lxc config trust add`. Its metadata is what
    /// the client turns into the token; redeeming it cancels it.
    pub fn create_token(&self, request: TokenRequest) -> Result<Arc<Operation>> {
        let cert_type = if request.cert_type.is_empty() { "client".to_string() } else { request.cert_type };
        validate_type(&cert_type)?;
        self.check_projects(&request.projects)?;
        let expiry = match self.model().server.get(TOKEN_EXPIRY_KEY) {
            Some(v) if !v.is_empty() => Some(parse_expiry(v)?),
            _ => None,
        };
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let mut metadata = json!({
            "request": {
                "name": request.name,
                "type": cert_type,
                "restricted": request.restricted,
                "projects": request.projects,
                "certificate": "",
                "password": "",
                "token": true,
            },
            "secret": hex::encode(secret),
            "fingerprint": self.trust.identity.fingerprint,
            "addresses": self.trust.addresses(),
        });
        if let Some(e) = expiry {
            let at = chrono::Utc::now() + chrono::Duration::from_std(e).unwrap_or(chrono::Duration::MAX);
            metadata["expiresAt"] = json!(crate::model::rfc3339nano(&at));
        }
        let mut spec = OpSpec::task("Executing operation", "default", "certificates", vec![]);
        spec.resources.clear();
        spec.class = Class::Token;
        spec.may_cancel = true;
        spec.metadata = metadata;
        let op = self.ops.register(spec);
        if let Some(e) = expiry {
            let weak = Arc::downgrade(&op);
            tokio::spawn(async move {
                tokio::time::sleep(e).await;
                if let Some(op) = weak.upgrade() {
                    let _ = op.cancel();
                }
            });
        }
        Ok(op)
    }

    /// Redeems a token given as the `password` of `POST /1.0/certificates`.
    /// `Ok(None)` means the value is no token (so it is a password); a token that matches
    /// no running operation, or has expired, is a 403.
    pub fn redeem_token(&self, value: &str) -> Result<Option<TokenRequest>> {
        let Some(secret) = decode_token(value) else { return Ok(None) };
        let _guard = self.trust.token_lock.lock().unwrap_or_else(|p| p.into_inner());
        let op = self
            .ops
            .list(None)
            .into_iter()
            .find(|op| {
                op.class == Class::Token
                    && op.status() == Status::Running
                    && op.metadata()["secret"].as_str() == Some(secret.as_str())
            })
            .ok_or_else(|| Error::Forbidden("No matching certificate add operation found".into()))?;
        let meta = op.metadata();
        let expired = meta["expiresAt"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|at| at.with_timezone(&chrono::Utc) <= chrono::Utc::now());
        // Single use: the operation ends whether the token was still valid or not.
        let _ = op.cancel();
        if expired {
            return Err(Error::Forbidden("Certificate add token has expired".into()));
        }
        let request: TokenRequest = serde_json::from_value(meta["request"].clone()).unwrap_or_default();
        Ok(Some(request))
    }
}

/// The secret of a base64 JSON token, or None if `value` is not one.
fn decode_token(value: &str) -> Option<String> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(compact.as_bytes()).ok())?;
    let wire: TokenWire = serde_json::from_slice(&bytes).ok()?;
    Some(wire.secret).filter(|s| !s.is_empty())
}

/// Renders a certificate for the API.
pub fn render(c: &Certificate) -> Value {
    json!({
        "name": c.name,
        "type": c.cert_type,
        "restricted": c.restricted,
        "projects": c.projects,
        "certificate": c.certificate,
        "fingerprint": c.fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_syntax() {
        assert_eq!(parse_expiry("30S").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_expiry("1H 30M").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_expiry("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "H", "10", "5x", "-1H", "99999999999999999999y"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn certificate_input_forms() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["c".to_string()]).unwrap().self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        let pem = pem_encode(&der);
        assert_eq!(parse_certificate(&pem).unwrap(), der);
        // pylxd: the PEM body without armor, newlines kept.
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_certificate(&body).unwrap(), der);
        let plain = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(parse_certificate(&plain).unwrap(), der);
        assert!(parse_certificate("not base64!").is_err());
        assert!(parse_certificate(&base64::engine::general_purpose::STANDARD.encode(b"hello")).is_err());
    }

    #[test]
    fn tokens_decode_only_when_they_are_tokens() {
        let t = base64::engine::general_purpose::STANDARD.encode(br#"{"client_name":"x","secret":"abc"}"#);
        assert_eq!(decode_token(&t).as_deref(), Some("abc"));
        assert_eq!(decode_token("password"), None);
        assert_eq!(decode_token(&base64::engine::general_purpose::STANDARD.encode(b"{}")), None);
    }
}
