//! `/1.0/certificates`: the trust store, adding a certificate with the trust password or
//! a token, and creating tokens (`lxc config trust add`).

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{decode_json, etag_of, Ctx, Reply};
use crate::daemon::certificates::{self as store, Certificate, CertificatePut, TokenRequest};
use crate::daemon::trust;
use crate::error::{Error, Result};

/// Largest body accepted here: a certificate is a few kB.
const MAX_BODY: usize = 64 << 10;

#[derive(Debug, Default, Deserialize)]
struct CertificatesPost {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    cert_type: Option<String>,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// Newer clients send a token here (`explicit_trust_token`); taken like `password`.
    #[serde(default)]
    trust_token: Option<String>,
    #[serde(default)]
    token: bool,
    #[serde(default)]
    restricted: bool,
    #[serde(default)]
    projects: Option<Vec<String>>,
}

fn url(fp: &str) -> String {
    format!("/1.0/certificates/{fp}")
}

fn etag(c: &Certificate) -> String {
    etag_of(&json!([c.name, c.cert_type, c.restricted, c.projects, c.certificate]))
}

/// Routes `/1.0/certificates/...`.
pub async fn route(mut ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    let d = ctx.daemon.clone();
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let m = d.model();
            let v: Vec<Value> = if ctx.recursion() > 0 {
                m.certificates.values().map(store::render).collect()
            } else {
                m.certificates.keys().map(|fp| json!(url(fp))).collect()
            };
            Ok(Reply::Sync(Value::Array(v)))
        }
        (Method::POST, []) => post(ctx).await,
        (Method::GET, [fp]) => {
            let c = d.certificate(fp)?;
            let tag = etag(&c);
            Ok(Reply::SyncEtag(store::render(&c), tag))
        }
        (Method::PUT | Method::PATCH, [fp]) => {
            let current = d.certificate(fp)?;
            ctx.check_etag(&etag(&current))?;
            let body = ctx.body(MAX_BODY).await?;
            let mut put: CertificatePut = decode_json(&body)?;
            if ctx.method == Method::PUT {
                // PUT replaces every writable field; an absent certificate stays.
                put.name.get_or_insert_with(String::new);
                put.cert_type.get_or_insert_with(|| "client".into());
                put.restricted.get_or_insert(false);
                put.projects.get_or_insert_with(Vec::new);
            }
            let fp = current.fingerprint;
            blocking(move || d.update_certificate(&fp, put)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::DELETE, [fp]) => {
            let fp = d.certificate(fp)?.fingerprint;
            blocking(move || d.delete_certificate(&fp)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (_, [] | [_]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

/// `POST /1.0/certificates`: a trusted caller adds a certificate or makes a token; an
/// untrusted one adds its own certificate with the trust password or a token.
async fn post(mut ctx: Ctx) -> Result<Reply> {
    let body = ctx.body(MAX_BODY).await?;
    let req: CertificatesPost = if body.is_empty() { CertificatesPost::default() } else { decode_json(&body)? };
    let d = ctx.daemon.clone();
    let trusted = ctx.trust.is_trusted();
    let mut grant = TokenRequest {
        name: req.name.clone().unwrap_or_default(),
        cert_type: req.cert_type.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "client".into()),
        restricted: req.restricted,
        projects: req.projects.clone().unwrap_or_default(),
    };
    if req.token {
        if !trusted {
            return Err(Error::Forbidden("Only trusted clients can create certificate add tokens".into()));
        }
        let op = d.create_token(grant)?;
        return Ok(Reply::Async(op));
    }

    // The certificate: from the body, else the TLS peer's.
    let (der, peer_name) = match (req.certificate.as_deref().filter(|c| !c.trim().is_empty()), &ctx.remote) {
        (Some(c), _) => (store::parse_certificate(c)?, String::new()),
        (None, Some(r)) => match &r.cert {
            Some(c) => (c.clone(), r.addr.ip().to_string()),
            None => return Err(Error::bad("No client certificate provided")),
        },
        (None, None) => return Err(Error::bad("Can't use TLS data on non-TLS link")),
    };

    if !trusted {
        let ip = ctx.remote.as_ref().map(|r| r.addr.ip()).ok_or_else(|| Error::Forbidden("not authorized".into()))?;
        if let Err(wait) = d.trust.limiter.check(ip) {
            return Err(Error::Forbidden(format!(
                "Too many failed authentication attempts from {ip}; retry in {}s",
                wait.as_secs().max(1)
            )));
        }
        let password = req.password.clone().filter(|p| !p.is_empty()).or(req.trust_token.clone()).unwrap_or_default();
        if password.is_empty() {
            return Err(Error::Forbidden("A trust password or token is required".into()));
        }
        match d.redeem_token(&password) {
            Ok(Some(g)) => {
                grant = TokenRequest { name: if g.name.is_empty() { grant.name } else { g.name }, ..g };
                if grant.cert_type.is_empty() {
                    grant.cert_type = "client".into();
                }
            }
            Ok(None) => {
                let d2 = d.clone();
                let ok = tokio::task::spawn_blocking(move || d2.check_trust_password(&password))
                    .await
                    .map_err(|e| Error::internal(format!("task failed: {e}")))?;
                if !ok {
                    d.trust.limiter.failed(ip);
                    return Err(Error::Forbidden("Invalid trust password".into()));
                }
            }
            Err(e) => {
                d.trust.limiter.failed(ip);
                return Err(e);
            }
        }
        d.trust.limiter.succeeded(ip);
    }

    let fingerprint = trust::fingerprint(&der);
    let cert = Certificate {
        name: if grant.name.is_empty() { peer_name } else { grant.name },
        cert_type: grant.cert_type,
        restricted: grant.restricted,
        projects: grant.projects,
        certificate: store::pem_encode(&der),
        fingerprint: fingerprint.clone(),
    };
    blocking(move || d.add_certificate(cert)).await?;
    Ok(Reply::Created(url(&fingerprint)))
}
