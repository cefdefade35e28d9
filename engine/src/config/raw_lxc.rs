//! `raw.lxc`: `key = value` lines with LXD's refused keys (`lxcValidConfig`).

use super::ConfigError;

/// Splits one raw.lxc line into a lowercased key and a trimmed value; `None` for blank
/// and comment lines.
pub fn parse_raw_lxc_line(line: &str) -> Result<Option<(String, String)>, ConfigError> {
    if line.is_empty() {
        return Ok(None);
    }
    let line = line.trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (k, v) = line
        .split_once('=')
        .ok_or_else(|| ConfigError::Other(format!("Invalid raw.lxc line: {line}")))?;
    Ok(Some((k.trim_matches([' ', '\t']).to_lowercase(), v.trim_matches([' ', '\t']).to_string())))
}

/// Checks every line; with `unprivileged_only`, `lxc.idmap`, `lxc.id_map` and
/// `lxc.include` are refused too.
pub fn validate_raw_lxc(raw: &str, unprivileged_only: bool) -> Result<(), ConfigError> {
    for line in raw.split('\n') {
        let Some((key, _)) = parse_raw_lxc_line(line)? else { continue };
        let refuse = |m: String| Err(ConfigError::Other(m));
        if unprivileged_only && matches!(key.as_str(), "lxc.idmap" | "lxc.id_map" | "lxc.include") {
            return refuse(format!(
                "{key} can't be set in raw.lxc as berth was configured to only allow unprivileged containers"
            ));
        }
        match key.as_str() {
            "lxc.logfile" | "lxc.log.file" => return refuse("Setting lxc.logfile is not allowed".into()),
            "lxc.syslog" | "lxc.log.syslog" => return refuse("Setting lxc.log.syslog is not allowed".into()),
            "lxc.ephemeral" => return refuse("Setting lxc.ephemeral is not allowed".into()),
            _ => {}
        }
        if key.starts_with("lxc.prlimit.") {
            return refuse(
                "Process limits should be set via \"limits.kernel.[limit name]\" and not directly via \"lxc.prlimit.[limit name]\""
                    .into(),
            );
        }
        // Only interface-specific ipv4/ipv6 address and gateway keys may touch networking.
        for prefix in ["lxc.net.", "lxc.network."] {
            if let Some(rest) = key.strip_prefix(prefix) {
                let fields: Vec<&str> = rest.split('.').collect();
                let ok = fields.len() == 3
                    && fields[0].bytes().all(|b| b.is_ascii_digit())
                    && !fields[0].is_empty()
                    && matches!(fields[1], "ipv4" | "ipv6")
                    && matches!(fields[2], "address" | "gateway");
                if !ok {
                    return refuse(format!("Only interface-specific ipv4/ipv6 {prefix} keys are allowed"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_comments() {
        let raw = "# comment\n\n  lxc.apparmor.profile = unconfined\n\tlxc.cgroup.devices.allow=a\nlxc.net.0.ipv4.address = 169.254.0.2/24\n";
        assert!(validate_raw_lxc(raw, false).is_ok());
        assert_eq!(
            parse_raw_lxc_line("  LXC.Mount.Entry = a b ").unwrap(),
            Some(("lxc.mount.entry".into(), "a b".into()))
        );
    }

    #[test]
    fn refuses_blocked_keys() {
        for (raw, msg) in [
            ("lxc.logfile = /tmp/x", "lxc.logfile"),
            ("lxc.log.file=/tmp/x", "lxc.logfile"),
            ("lxc.syslog = daemon", "lxc.log.syslog"),
            ("lxc.log.syslog = daemon", "lxc.log.syslog"),
            ("lxc.ephemeral = 1", "lxc.ephemeral"),
            ("lxc.prlimit.nofile = 10", "limits.kernel"),
            ("lxc.net.0.type = veth", "lxc.net."),
            ("lxc.network.0.link = br0", "lxc.network."),
            ("no equals sign", "Invalid raw.lxc line"),
        ] {
            let err = validate_raw_lxc(raw, false).unwrap_err().to_string();
            assert!(err.contains(msg), "{raw}: {err}");
        }
    }

    #[test]
    fn unprivileged_only_refuses_idmap_and_include() {
        for raw in ["lxc.idmap = u 0 100000 65536", "lxc.id_map = u 0 1 1", "lxc.include = /etc/x"] {
            assert!(validate_raw_lxc(raw, false).is_ok(), "{raw}");
            let err = validate_raw_lxc(raw, true).unwrap_err().to_string();
            assert!(err.contains("only allow unprivileged"), "{err}");
        }
    }
}
