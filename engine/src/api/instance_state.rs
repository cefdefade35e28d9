//! Instance power: `PUT /1.0/instances/N/state` (start, stop, restart, freeze,
//! unfreeze), the bulk `PUT /1.0/instances {"state":…}`, and the live `InstanceState`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{Ctx, Reply};
use crate::daemon::{timeout_of, Daemon, Model, PowerState};
use crate::error::{Error, Result};
use crate::instance::{State, Status};
use crate::operations::OpSpec;

#[derive(Deserialize, Clone)]
pub struct StatePut {
    pub action: String,
    #[serde(default = "minus_one")]
    pub timeout: i64,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub stateful: bool,
}

fn minus_one() -> i64 {
    -1
}

#[derive(Deserialize)]
struct BulkPut {
    state: StatePut,
}

fn check(req: &StatePut) -> Result<()> {
    if !matches!(req.action.as_str(), "start" | "stop" | "restart" | "freeze" | "unfreeze") {
        return Err(Error::bad("Unknown action"));
    }
    if req.stateful {
        return Err(Error::bad("Stateful start and stop are not supported"));
    }
    Ok(())
}

/// Runs one state change (blocking).
fn apply(d: &Arc<Daemon>, project: &str, name: &str, req: &StatePut) -> Result<()> {
    let t = timeout_of(req.timeout);
    match req.action.as_str() {
        "start" => d.start_instance(project, name),
        "stop" => d.stop_instance(project, name, req.force, t),
        "restart" => d.restart_instance(project, name, req.force, t),
        "freeze" => d.freeze_instance(project, name, true),
        "unfreeze" => d.freeze_instance(project, name, false),
        _ => Err(Error::bad("Unknown action")),
    }
}

fn description(action: &str) -> &'static str {
    match action {
        "start" => "Starting instance",
        "stop" => "Stopping instance",
        "restart" => "Restarting instance",
        "freeze" => "Freezing instance",
        _ => "Unfreezing instance",
    }
}

/// `PUT /1.0/instances/N/state`.
pub async fn put(mut ctx: Ctx, name: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    if ctx.daemon.model().instance(&project, name).is_none() {
        return Err(Error::not_found("Instance not found"));
    }
    let req: StatePut = ctx.json().await?;
    check(&req)?;
    let spec = OpSpec::task(description(&req.action), &project, "instances", vec![Model::instance_url(&project, name)]);
    let d = ctx.daemon.clone();
    let n = name.to_string();
    let op = ctx.daemon.ops.start(spec, move |_| async move { blocking(move || apply(&d, &project, &n, &req)).await });
    Ok(Reply::Async(op))
}

/// `PUT /1.0/instances {"state":…}`: the same change on every instance of the project
/// that it applies to.
pub async fn bulk(mut ctx: Ctx) -> Result<Reply> {
    let project = ctx.project().to_string();
    let req: BulkPut = ctx.json().await?;
    let req = req.state;
    check(&req)?;
    let names: Vec<(String, PowerState)> = {
        let m = ctx.daemon.model();
        m.instances.values().filter(|i| i.project == project).map(|i| (i.name.clone(), m.power(&project, &i.name))).collect()
    };
    let todo: Vec<String> = names
        .into_iter()
        .filter(|(_, p)| match req.action.as_str() {
            "start" => *p == PowerState::Stopped,
            "stop" | "restart" | "freeze" => *p != PowerState::Stopped,
            _ => *p == PowerState::Frozen,
        })
        .map(|(n, _)| n)
        .collect();
    let urls = todo.iter().map(|n| Model::instance_url(&project, n)).collect();
    let spec = OpSpec::task(description(&req.action), &project, "instances", urls);
    let d = ctx.daemon.clone();
    let op = ctx.daemon.ops.start(spec, move |_| async move {
        let mut tasks = Vec::new();
        for n in todo {
            let (d, p, r) = (d.clone(), project.clone(), req.clone());
            tasks.push(tokio::spawn(async move { blocking(move || apply(&d, &p, &n, &r).map_err(|e| Error::bad(format!("{n}: {e}")))).await }));
        }
        let mut errs = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errs.push(e.to_string()),
                Err(e) => errs.push(e.to_string()),
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::bad(errs.join("; ")))
        }
    });
    Ok(Reply::Async(op))
}

/// `InstanceState` for a power state and (when running) the driver's live state.
pub fn render(p: PowerState, st: Option<&State>) -> Value {
    let Some(s) = st else {
        return json!({
            "status": p.name(), "status_code": p.code(),
            "disk": {}, "memory": {"usage": 0, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0},
            "network": null, "pid": 0, "processes": 0, "cpu": {"usage": 0},
        });
    };
    let p = match s.status {
        Status::Frozen => PowerState::Frozen,
        Status::Running => PowerState::Running,
        Status::Stopped => PowerState::Stopped,
    };
    let mut network = serde_json::Map::new();
    for (name, ni) in &s.network {
        network.insert(
            name.clone(),
            json!({
                "addresses": ni.addresses.iter().map(|a| json!({"family": a.family, "address": a.address, "netmask": a.netmask, "scope": a.scope})).collect::<Vec<_>>(),
                "counters": {
                    "bytes_received": ni.counters.bytes_received, "bytes_sent": ni.counters.bytes_sent,
                    "packets_received": ni.counters.packets_received, "packets_sent": ni.counters.packets_sent,
                    "errors_received": 0, "errors_sent": 0, "packets_dropped_inbound": 0, "packets_dropped_outbound": 0,
                },
                "hwaddr": ni.hwaddr, "host_name": "", "mtu": ni.mtu, "state": ni.state, "type": ni.kind,
            }),
        );
    }
    let disk: serde_json::Map<String, Value> = s.disk.iter().map(|(k, v)| (k.clone(), json!({"usage": v}))).collect();
    json!({
        "status": p.name(), "status_code": p.code(),
        "disk": disk,
        "memory": {"usage": s.memory_usage, "usage_peak": s.memory_peak, "swap_usage": 0, "swap_usage_peak": 0},
        "network": network, "pid": s.pid, "processes": s.processes, "cpu": {"usage": s.cpu_usage_ns},
    })
}

/// Fills `host_name` of the interfaces that carry a nic's `volatile.<dev>.hwaddr`.
fn set_host_names(network: &mut serde_json::Map<String, Value>, config: &BTreeMap<String, String>) {
    for (key, hwaddr) in config {
        let Some(dev) = key.strip_prefix("volatile.").and_then(|k| k.strip_suffix(".hwaddr")) else { continue };
        let Some(host) = config.get(&format!("volatile.{dev}.host_name")).filter(|h| !h.is_empty()) else { continue };
        for iface in network.values_mut() {
            if iface["hwaddr"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(hwaddr)) {
                iface["host_name"] = json!(host);
            }
        }
    }
}

/// The state of one instance (blocking).
pub fn state_of(d: &Daemon, project: &str, name: &str) -> Result<Value> {
    let p = d.model().power(project, name);
    if p == PowerState::Stopped {
        return Ok(render(p, None));
    }
    let st = d.instance_state(project, name)?;
    let mut v = render(p, st.as_ref());
    // As LXD: an interface whose MAC is a nic's volatile.<dev>.hwaddr shows that nic's
    // host-side name (guests name their interfaces themselves).
    if let Some(rec) = d.model().instance(project, name) {
        if let Some(net) = v["network"].as_object_mut() {
            set_host_names(net, &rec.config);
        }
    }
    if st.is_none() {
        v["status"] = json!(PowerState::Stopped.name());
        v["status_code"] = json!(PowerState::Stopped.code());
    }
    Ok(v)
}

/// Replaces the `state` of rendered InstanceFull objects with the live one.
pub async fn fill_live(d: &Arc<Daemon>, items: &mut [Value]) {
    let wanted: Vec<(usize, String, String)> = items
        .iter()
        .enumerate()
        .filter(|(_, v)| v.get("state").is_some() && v["status"] != "Stopped")
        .filter_map(|(i, v)| Some((i, v["project"].as_str()?.to_string(), v["name"].as_str()?.to_string())))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let d2 = d.clone();
    let states = tokio::task::spawn_blocking(move || {
        // A few threads: each state reads cgroup files and asks `ip` for addresses.
        let chunks: Vec<Vec<(usize, String, String)>> = wanted.chunks(wanted.len().div_ceil(4).max(1)).map(|c| c.to_vec()).collect();
        std::thread::scope(|s| {
            let hs: Vec<_> = chunks
                .into_iter()
                .map(|c| {
                    let d = &d2;
                    s.spawn(move || c.into_iter().map(|(i, p, n)| (i, state_of(d, &p, &n).ok())).collect::<Vec<_>>())
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect::<Vec<_>>()
        })
    })
    .await
    .unwrap_or_default();
    for (i, st) in states {
        if let (Some(st), Some(item)) = (st, items.get_mut(i)) {
            item["status"] = st["status"].clone();
            item["status_code"] = st["status_code"].clone();
            item["state"] = st;
        }
    }
}

/// Live states of the running instances among `wanted` (`project/name` → InstanceState),
/// read on a few threads: each reads cgroup files and the namespace's interfaces.
pub async fn live_states(d: &Arc<Daemon>, wanted: Vec<(String, String)>) -> std::collections::HashMap<String, Value> {
    if wanted.is_empty() {
        return Default::default();
    }
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || {
        let chunks: Vec<Vec<(String, String)>> = wanted.chunks(wanted.len().div_ceil(4).max(1)).map(|c| c.to_vec()).collect();
        std::thread::scope(|s| {
            let hs: Vec<_> = chunks
                .into_iter()
                .map(|c| {
                    let d = &d2;
                    s.spawn(move || {
                        c.into_iter()
                            .filter_map(|(p, n)| Some((crate::model::scoped_key(&p, &n), state_of(d, &p, &n).ok()?)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    })
    .await
    .unwrap_or_default()
}

/// Puts a live state (and the status it implies) into a rendered InstanceFull.
pub fn apply_live(v: &mut Value, st: &Value) {
    v["status"] = st["status"].clone();
    v["status_code"] = st["status_code"].clone();
    v["state"] = st.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_the_nic_mac() {
        let mut net = serde_json::Map::new();
        net.insert("enp5s0".into(), json!({"hwaddr": "00:16:3E:AA:BB:CC", "host_name": ""}));
        net.insert("lo".into(), json!({"hwaddr": "", "host_name": ""}));
        let config: BTreeMap<String, String> = [
            ("volatile.eth0.hwaddr", "00:16:3e:aa:bb:cc"),
            ("volatile.eth0.host_name", "tap1234"),
            ("volatile.eth1.hwaddr", "00:16:3e:00:00:01"),
            ("volatile.eth1.host_name", "tap5678"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        set_host_names(&mut net, &config);
        assert_eq!(net["enp5s0"]["host_name"], "tap1234");
        assert_eq!(net["lo"]["host_name"], "");
    }
}
