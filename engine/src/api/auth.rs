//! Who is calling and what they may do. The unix socket is always trusted; an HTTPS client
//! is trusted when the SHA-256 fingerprint of its TLS certificate is in the trust store, and
//! a restricted certificate only reaches its own projects.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hyper::Method;
use serde_json::Value;

use super::{Ctx, Reply};
use crate::daemon::Model;
use crate::error::{Error, Result};

/// The trust level of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `projects` is `None` for an unrestricted client (and the unix socket).
    Trusted { projects: Option<BTreeSet<String>> },
    Untrusted,
}

impl Trust {
    /// Whether the client is trusted at all.
    pub fn is_trusted(&self) -> bool {
        matches!(self, Trust::Trusted { .. })
    }

    /// The projects a restricted client is limited to.
    pub fn restricted_to(&self) -> Option<&BTreeSet<String>> {
        match self {
            Trust::Trusted { projects } => projects.as_ref(),
            Trust::Untrusted => None,
        }
    }

    /// The trust of a TLS client presenting a certificate with this fingerprint.
    pub fn of_fingerprint(model: &Model, fingerprint: Option<&str>) -> Trust {
        let Some(c) = fingerprint.and_then(|f| model.certificates.get(f)) else { return Trust::Untrusted };
        let projects = c.restricted.then(|| c.projects.iter().cloned().collect());
        Trust::Trusted { projects }
    }
}

/// The network peer of an HTTPS request.
#[derive(Debug, Clone)]
pub struct Remote {
    pub addr: SocketAddr,
    /// DER of the client certificate, if one was presented.
    pub cert: Option<Vec<u8>>,
    /// Its SHA-256 fingerprint.
    pub fingerprint: Option<String>,
}

fn forbidden() -> Error {
    Error::Forbidden("not authorized".into())
}

/// Checks the request against the caller's trust. Returns the set to filter a project
/// listing by, for restricted clients listing projects.
pub fn authorize(ctx: &Ctx, segs: &[&str]) -> Result<Option<BTreeSet<String>>> {
    match &ctx.trust {
        Trust::Untrusted => match (&ctx.method, segs) {
            (_, []) | (&Method::GET, ["1.0"]) | (&Method::POST, ["1.0", "certificates"]) => Ok(None),
            _ => Err(forbidden()),
        },
        Trust::Trusted { projects: None } => Ok(None),
        Trust::Trusted { projects: Some(allowed) } => restricted(ctx, segs, allowed),
    }
}

/// Rules for a certificate restricted to `allowed` projects.
fn restricted(ctx: &Ctx, segs: &[&str], allowed: &BTreeSet<String>) -> Result<Option<BTreeSet<String>>> {
    let get = ctx.method == Method::GET;
    if ctx.query_bool("all-projects") {
        return Err(forbidden());
    }
    match segs {
        [] => Ok(None),
        ["1.0"] => if get { Ok(None) } else { Err(forbidden()) },
        ["1.0", "projects"] if get => Ok(Some(allowed.clone())),
        ["1.0", "projects", name, ..] if get && allowed.contains(*name) => Ok(None),
        ["1.0", "projects", ..] => Err(forbidden()),
        ["1.0", "certificates", ..] | ["internal", ..] | ["1.0", "cluster", ..] | ["1.0", "plugins", ..] => Err(forbidden()),
        ["1.0", "operations", id, ..] => {
            let op = ctx.daemon.ops.get(id).ok_or_else(|| Error::not_found("Operation not found"))?;
            if allowed.contains(&op.project) { Ok(None) } else { Err(forbidden()) }
        }
        // Resources shared by every project: a restricted client may only look.
        ["1.0", "storage-pools"] | ["1.0", "storage-pools", _] | ["1.0", "networks", ..] | ["1.0", "resources"]
            if !get =>
        {
            Err(forbidden())
        }
        _ if allowed.contains(ctx.project()) => Ok(None),
        _ => Err(forbidden()),
    }
}

/// Drops projects a restricted client may not see from a `GET /1.0/projects` reply.
pub fn filter_listing(reply: Reply, allowed: Option<BTreeSet<String>>) -> Reply {
    let Some(allowed) = allowed else { return reply };
    match reply {
        Reply::Sync(Value::Array(items)) => Reply::Sync(Value::Array(
            items
                .into_iter()
                .filter(|item| {
                    let name = match item {
                        Value::String(url) => url.rsplit('/').next().map(str::to_string),
                        v => v["name"].as_str().map(str::to_string),
                    };
                    name.is_some_and(|n| allowed.contains(&n))
                })
                .collect(),
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_filter_keeps_allowed_projects_only() {
        let allowed: BTreeSet<String> = ["p1".to_string()].into();
        let r = filter_listing(
            Reply::Sync(serde_json::json!(["/1.0/projects/default", "/1.0/projects/p1"])),
            Some(allowed.clone()),
        );
        let Reply::Sync(v) = r else { panic!("not sync") };
        assert_eq!(v, serde_json::json!(["/1.0/projects/p1"]));
        let r = filter_listing(
            Reply::Sync(serde_json::json!([{"name": "default"}, {"name": "p1"}])),
            Some(allowed),
        );
        let Reply::Sync(v) = r else { panic!("not sync") };
        assert_eq!(v, serde_json::json!([{"name": "p1"}]));
    }

    #[test]
    fn trust_from_fingerprint() {
        let mut m = Model::default();
        m.certificates.insert(
            "aa".into(),
            crate::daemon::certificates::Certificate {
                name: "x".into(),
                cert_type: "client".into(),
                restricted: true,
                projects: vec!["p1".into()],
                certificate: String::new(),
                fingerprint: "aa".into(),
            },
        );
        assert_eq!(Trust::of_fingerprint(&m, None), Trust::Untrusted);
        assert_eq!(Trust::of_fingerprint(&m, Some("bb")), Trust::Untrusted);
        let t = Trust::of_fingerprint(&m, Some("aa"));
        assert!(t.is_trusted());
        assert!(t.restricted_to().unwrap().contains("p1"));
    }
}
