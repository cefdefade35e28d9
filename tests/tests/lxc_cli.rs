//! Acceptance: the real `lxc` 5.0.2 client drives berthd (issue 2's command list).

use berth_tests::{probe_lxc, require, Daemon, Tier};
use serde_json::Value;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn lxc_drives_records_profiles_projects_and_operations() {
    if !require("lxc_drives_records_profiles_projects_and_operations", Tier::LxcClient, probe_lxc()) {
        return;
    }
    let d = Daemon::start();

    // info
    let info = d.lxc_ok(&["info"]);
    assert!(info.contains("api_version: \"1.0\""), "{info}");
    assert!(info.contains("server_clustered: false"), "{info}");

    // init --empty, list in every format
    d.lxc_ok(&["init", "--empty", "c1"]);
    d.lxc_ok(&["init", "--empty", "c2", "-c", "user.role=db"]);
    let table = d.lxc_ok(&["list"]);
    assert!(table.contains("| c1") && table.contains("| c2") && table.contains("STOPPED"), "{table}");
    let csv = d.lxc_ok(&["list", "--format", "csv", "-c", "ns"]);
    assert_eq!(csv.trim(), "c1,STOPPED\nc2,STOPPED");
    let json: Value = serde_json::from_str(&d.lxc_ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["state"]["status"], "Stopped");
    // filters: a server-side one (status=) and client-side ones (config key, name regex)
    let f = d.lxc_ok(&["list", "--format", "csv", "-c", "n", "status=stopped", "user.role=db"]);
    assert_eq!(f.trim(), "c2");
    let f = d.lxc_ok(&["list", "--format", "csv", "-c", "n", "c1"]);
    assert_eq!(f.trim(), "c1");

    // config set/unset/show/edit; a bad value is refused and its message shown
    d.lxc_ok(&["config", "set", "c1", "limits.cpu=2"]);
    d.lxc_ok(&["config", "set", "c1", "user.note", "hello"]);
    let show = d.lxc_ok(&["config", "show", "c1"]);
    assert!(show.contains("limits.cpu: \"2\"") && show.contains("user.note: hello"), "{show}");
    let bad = d.lxc(&["config", "set", "c1", "limits.memory=lots"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("limits.memory"), "message names the key: {}", stderr(&bad));
    let bad = d.lxc(&["config", "set", "c1", "no.such.key=1"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("no.such.key"), "{}", stderr(&bad));
    d.lxc_ok(&["config", "unset", "c1", "user.note"]);
    assert!(!d.lxc_ok(&["config", "show", "c1"]).contains("user.note"));
    let edited: String = show
        .replace("limits.cpu: \"2\"", "limits.cpu: \"1\"")
        .lines()
        .filter(|l| !l.contains("user.note"))
        .map(|l| format!("{l}\n"))
        .collect();
    let o = d.lxc_stdin(&["config", "edit", "c1"], Some(&edited));
    assert!(o.status.success(), "config edit: {}", stderr(&o));
    assert!(d.lxc_ok(&["config", "show", "c1"]).contains("limits.cpu: \"1\""));
    let o = d.lxc_stdin(&["config", "edit", "c1"], Some(&edited.replace("limits.cpu: \"1\"", "limits.cpu: \"-3\"")));
    assert!(!o.status.success(), "bad edit refused");
    assert!(d.lxc_ok(&["config", "show", "c1"]).contains("limits.cpu: \"1\""), "refused edit left no trace");

    // profiles
    d.lxc_ok(&["profile", "create", "web"]);
    d.lxc_ok(&["profile", "set", "web", "user.tier", "front"]);
    let bad = d.lxc(&["profile", "set", "web", "limits.memory", "nope"]);
    assert!(!bad.status.success() && stderr(&bad).contains("limits.memory"), "{}", stderr(&bad));
    d.lxc_ok(&["profile", "add", "c1", "web"]);
    assert!(d.lxc_ok(&["config", "show", "c1", "--expanded"]).contains("user.tier: front"));
    let plist = d.lxc_ok(&["profile", "list", "--format", "csv"]);
    assert!(plist.contains("web,"), "{plist}");
    let busy = d.lxc(&["profile", "delete", "web"]);
    assert!(!busy.status.success(), "a used profile cannot be deleted");
    d.lxc_ok(&["profile", "remove", "c1", "web"]);
    d.lxc_ok(&["profile", "delete", "web"]);
    assert!(!d.lxc_ok(&["profile", "list"]).contains("web"));

    // projects
    d.lxc_ok(&["project", "create", "team", "-c", "features.profiles=false"]);
    let pl = d.lxc_ok(&["project", "list", "--format", "csv"]);
    assert!(pl.contains("team"), "{pl}");
    d.lxc_ok(&["project", "switch", "team"]);
    d.lxc_ok(&["init", "--empty", "t1"]);
    let l = d.lxc_ok(&["list", "--format", "csv", "-c", "n"]);
    assert_eq!(l.trim(), "t1", "list is per project");
    let all = d.lxc_ok(&["list", "--all-projects", "--format", "csv", "-c", "n"]);
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(!d.lxc(&["project", "delete", "team"]).status.success(), "non-empty project stays");
    d.lxc_ok(&["delete", "t1"]);
    d.lxc_ok(&["project", "switch", "default"]);
    d.lxc_ok(&["project", "delete", "team"]);

    // rename, delete
    d.lxc_ok(&["rename", "c2", "c3"]);
    let l = d.lxc_ok(&["list", "--format", "csv", "-c", "n"]);
    assert_eq!(l.trim(), "c1\nc3");
    d.lxc_ok(&["delete", "c3"]);
    let gone = d.lxc(&["info", "c3"]);
    assert!(!gone.status.success());

    // operation list shows what ran
    let ops = d.lxc_ok(&["operation", "list", "--format", "csv"]);
    assert!(ops.contains("Deleting instance") || ops.contains("DELETING"), "{ops}");
}
