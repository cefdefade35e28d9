//! Server config keys for `PUT/PATCH /1.0` (LXD 5.0.2 `lxd/cluster/config.go` global keys
//! and `lxd/node/config.go` member-local keys).

use std::collections::BTreeMap;

use super::validators::Validator as V;
use super::ConfigError;

/// Where a server key is stored in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerScope {
    /// Shared by every cluster member.
    Global,
    /// Per member.
    Local,
}

impl ServerScope {
    /// `global` or `local` for the reference.
    pub fn label(self) -> &'static str {
        match self {
            ServerScope::Global => "global",
            ServerScope::Local => "local",
        }
    }
}

/// One server key.
#[derive(Debug, Clone, Copy)]
pub struct ServerKey {
    /// The key.
    pub key: &'static str,
    /// The value check.
    pub validator: V,
    /// Global or member-local.
    pub scope: ServerScope,
    /// Default value (empty: none).
    pub default: &'static str,
    /// Never shown in `GET /1.0` (write-only secrets).
    pub hidden: bool,
    /// One doc line.
    pub doc: &'static str,
}

const fn g(key: &'static str, validator: V, default: &'static str, doc: &'static str) -> ServerKey {
    ServerKey { key, validator, scope: ServerScope::Global, default, hidden: false, doc }
}

const fn l(key: &'static str, validator: V, doc: &'static str) -> ServerKey {
    ServerKey { key, validator, scope: ServerScope::Local, default: "", hidden: false, doc }
}

fn offline_threshold(v: &str) -> Result<(), String> {
    let n: i64 = v.parse().map_err(|_| format!("Invalid value for an integer {v:?}"))?;
    if n <= 10 {
        return Err("Value must be greater than '10'".into());
    }
    Ok(())
}

fn images_minimal_replica(v: &str) -> Result<(), String> {
    let n: i64 = v.parse().map_err(|_| format!("Invalid value for an integer {v:?}"))?;
    if n < 1 && n != -1 {
        return Err("Value must be -1 (all members) or at least 1".into());
    }
    Ok(())
}

fn max_voters(v: &str) -> Result<(), String> {
    let n: i64 = v.parse().map_err(|_| format!("Invalid value for an integer {v:?}"))?;
    if n < 3 || n % 2 != 1 {
        return Err("Value must be an odd number equal to or higher than 3".into());
    }
    Ok(())
}

fn max_standby(v: &str) -> Result<(), String> {
    let n: i64 = v.parse().map_err(|_| format!("Invalid value for an integer {v:?}"))?;
    if !(0..=5).contains(&n) {
        return Err("Value must be between 0 and 5".into());
    }
    Ok(())
}

fn cluster_address(v: &str) -> Result<(), String> {
    V::ListenAddress.check(v)?;
    let host = v.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(h, _)| h).unwrap_or_else(|| {
        if v.matches(':').count() == 1 { v.split(':').next().unwrap_or("") } else { v }
    });
    let wildcard = host.is_empty() || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    if wildcard {
        return Err("Wildcard addresses aren't allowed".into());
    }
    Ok(())
}

fn pool_volume(v: &str) -> Result<(), String> {
    match v.split_once('/') {
        Some((p, vol)) if !p.is_empty() && !vol.is_empty() && !vol.contains('/') => Ok(()),
        _ => Err(format!("Invalid syntax {v:?}, expected POOL/VOLUME")),
    }
}

/// Token expiry (`core.remote_token_expiry`): space-separated `<n><unit>` tokens with the
/// units of LXD's GetExpiry plus `S` for seconds.
fn expiry(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    for tok in v.split_whitespace() {
        let split = tok.find(|c: char| !c.is_ascii_digit()).unwrap_or(tok.len());
        let (n, unit) = tok.split_at(split);
        if n.is_empty() || n.parse::<u64>().is_err() || !matches!(unit, "S" | "M" | "H" | "d" | "w" | "m" | "y") {
            return Err(format!("Invalid expiry {v:?}, expected e.g. 30M, 2H, 1d"));
        }
    }
    Ok(())
}

/// Every server key of LXD 5.0.2, plus `core.remote_token_expiry` (berth honours token
/// expiry, which later LXD releases added).
pub static SERVER_KEYS: &[ServerKey] = &[
    g("backups.compression_algorithm", V::Compression, "gzip", "Compression for backup tarballs."),
    g("candid.api.key", V::Any, "", "Candid public key (enables Candid authentication)."),
    g("candid.api.url", V::Any, "", "Candid server URL."),
    g("candid.domains", V::Any, "", "Comma list of allowed Candid domains."),
    g("candid.expiry", V::Int64, "3600", "Candid macaroon expiry in seconds."),
    l("cluster.https_address", V::Custom("`host[:port]`, not a wildcard", cluster_address), "Address for clustering traffic."),
    g("cluster.images_minimal_replica", V::Custom("-1 or integer ≥ 1", images_minimal_replica), "3", "Members holding a copy of each image (-1: all)."),
    g("cluster.max_standby", V::Custom("integer 0–5", max_standby), "2", "Standby database members."),
    g("cluster.max_voters", V::Custom("odd integer ≥ 3", max_voters), "3", "Voting database members."),
    g("cluster.offline_threshold", V::Custom("integer > 10 (seconds)", offline_threshold), "20", "Seconds before an unresponsive member is offline."),
    l("core.bgp_address", V::ListenAddress, "Address of the BGP server."),
    g("core.bgp_asn", V::Range(0, 4_294_967_294), "0", "BGP Autonomous System Number of the local server."),
    l("core.bgp_routerid", V::Ipv4, "BGP router id (IPv4 formatted)."),
    l("core.debug_address", V::ListenAddress, "Address of the pprof debug server."),
    l("core.dns_address", V::ListenAddress, "Address of the authoritative DNS server."),
    l("core.https_address", V::ListenAddress, "Address of the remote API (HTTPS)."),
    g("core.https_allowed_credentials", V::Bool, "false", "Access-Control-Allow-Credentials header."),
    g("core.https_allowed_headers", V::Any, "", "Access-Control-Allow-Headers header."),
    g("core.https_allowed_methods", V::Any, "", "Access-Control-Allow-Methods header."),
    g("core.https_allowed_origin", V::Any, "", "Access-Control-Allow-Origin header."),
    g("core.https_trusted_proxy", V::Any, "", "Comma list of proxies trusted to pass the client address."),
    l("core.metrics_address", V::ListenAddress, "Address of the metrics server (HTTPS)."),
    g("core.metrics_authentication", V::Bool, "true", "Require authentication for /1.0/metrics."),
    g("core.proxy_http", V::Any, "", "HTTP proxy for outgoing requests."),
    g("core.proxy_https", V::Any, "", "HTTPS proxy for outgoing requests."),
    g("core.proxy_ignore_hosts", V::Any, "", "Hosts that bypass the proxy."),
    g("core.shutdown_timeout", V::Int64, "5", "Minutes to wait for running operations at shutdown."),
    g("core.remote_token_expiry", V::Custom("expiry (`30M`, `2H`, `1d`, `10S`)", expiry), "", "Lifetime of trust tokens; empty means they never expire."),
    g("core.trust_ca_certificates", V::Bool, "false", "Trust every client certificate signed by the CA."),
    ServerKey {
        key: "core.trust_password",
        validator: V::Any,
        scope: ServerScope::Global,
        default: "",
        hidden: true,
        doc: "Password clients use to add their certificate (stored hashed, never shown).",
    },
    g("images.auto_update_cached", V::Bool, "true", "Refresh cached images automatically."),
    g("images.auto_update_interval", V::Int64, "6", "Hours between image refreshes (0: never)."),
    g("images.compression_algorithm", V::Compression, "gzip", "Compression for new images."),
    g("images.default_architecture", V::Architecture, "", "Architecture used for images without one."),
    g("images.remote_cache_expiry", V::Int64, "10", "Days before an unused cached image is removed."),
    g("instances.nic.host_name", V::OneOf(&["random", "mac"]), "random", "How host-side NIC names are made."),
    g("maas.api.key", V::Any, "", "MAAS API key."),
    g("maas.api.url", V::Any, "", "MAAS server URL."),
    l("maas.machine", V::Any, "Name of this host in MAAS."),
    g("network.ovn.integration_bridge", V::Any, "br-int", "OVS integration bridge for OVN."),
    g("network.ovn.northbound_connection", V::Any, "unix:/var/run/ovn/ovnnb_db.sock", "OVN northbound database connection."),
    g("rbac.agent.private_key", V::Any, "", "RBAC agent private key."),
    g("rbac.agent.public_key", V::Any, "", "RBAC agent public key."),
    g("rbac.agent.url", V::Any, "", "RBAC agent URL."),
    g("rbac.agent.username", V::Any, "", "RBAC agent user name."),
    g("rbac.api.expiry", V::Int64, "3600", "RBAC macaroon expiry in seconds."),
    g("rbac.api.key", V::Any, "", "RBAC public key."),
    g("rbac.api.url", V::Any, "", "RBAC server URL."),
    g("rbac.expiry", V::Int64, "3600", "RBAC session expiry in seconds."),
    l("storage.backups_volume", V::Custom("`POOL/VOLUME`", pool_volume), "Custom volume holding backup tarballs."),
    l("storage.images_volume", V::Custom("`POOL/VOLUME`", pool_volume), "Custom volume holding image tarballs."),
];

/// The row for a server key.
pub fn lookup_server_key(key: &str) -> Option<&'static ServerKey> {
    SERVER_KEYS.iter().find(|k| k.key == key)
}

/// [`super::validate_server_config`]: unknown keys and bad values are refused.
pub fn validate_server_config(config: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (key, value) in config {
        // Free-form user keys, as on instances.
        if key.starts_with("user.") {
            continue;
        }
        let spec = lookup_server_key(key).ok_or_else(|| ConfigError::UnknownKey(key.clone()))?;
        spec.validator
            .check(value)
            .map_err(|reason| ConfigError::InvalidValue { key: key.clone(), reason })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn accepts_known_keys() {
        let c = cfg(&[
            ("core.https_address", "[::]:8443"),
            ("core.trust_password", "sekret"),
            ("core.proxy_http", "http://proxy:3128"),
            ("images.auto_update_interval", "0"),
            ("images.compression_algorithm", "zstd -19"),
            ("images.default_architecture", "x86_64"),
            ("cluster.max_voters", "5"),
            ("cluster.offline_threshold", "30"),
            ("cluster.images_minimal_replica", "-1"),
            ("core.debug_address", "127.0.0.1:8444"),
            ("core.bgp_routerid", "169.254.0.1"),
            ("storage.images_volume", "default/images"),
            ("maas.machine", "host1"),
            ("cluster.https_address", "169.254.0.1:8443"),
            ("candid.api.url", "https://candid.example"),
            ("core.https_address", ""),
        ]);
        validate_server_config(&c).unwrap();
        for addr in ["", ":8443", "0.0.0.0:8443", "169.254.1.2", "[fe80::1]:8443", "fe80::1", "lxd.example.org:8443"] {
            validate_server_config(&cfg(&[("core.https_address", addr)])).unwrap_or_else(|e| panic!("{addr}: {e}"));
        }
    }

    #[test]
    fn refuses_unknown_and_bad_values() {
        let e = validate_server_config(&cfg(&[("core.bogus", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "Unknown configuration key: core.bogus");
        for (k, v) in [
            ("cluster.max_voters", "4"),
            ("cluster.max_voters", "1"),
            ("cluster.max_standby", "6"),
            ("cluster.offline_threshold", "5"),
            ("cluster.offline_threshold", "10"),
            ("cluster.https_address", ":8443"),
            ("cluster.https_address", "[::]:8443"),
            ("cluster.https_address", "0.0.0.0"),
            ("candid.api_key", "k"),
            ("cluster.images_minimal_replica", "0"),
            ("images.auto_update_interval", "six"),
            ("images.auto_update_cached", "maybe"),
            ("images.compression_algorithm", "rar"),
            ("images.default_architecture", "z80"),
            ("instances.nic.host_name", "pretty"),
            ("core.https_address", "1.2.3.4:99999"),
            ("core.https_address", "bad host!:80"),
            ("core.bgp_routerid", "fe80::1"),
            ("core.bgp_asn", "4294967295"),
            ("storage.backups_volume", "novolume"),
        ] {
            let e = validate_server_config(&cfg(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
    }
}
