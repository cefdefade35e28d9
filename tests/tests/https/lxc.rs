//! The real `lxc` 5.0.2 client over HTTPS: `remote add` with a password and with a token,
//! `config trust list/remove`. Each client gets its own LXD_CONF (and HOME).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use berth_engine::testsupport::{probe_program, require, Tier};
use hyper::Method;

use super::support::TestDaemon;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn lxc(conf: &Path, socket: Option<&Path>, args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new("lxc");
    cmd.args(args)
        .env("LXD_CONF", conf)
        .env("HOME", conf)
        .env_remove("LXD_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match socket {
        Some(s) => cmd.env("LXD_SOCKET", s),
        None => cmd.env_remove("LXD_SOCKET"),
    };
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("lxc did not finish in 60s")
        .expect("running lxc");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn can_run(test: &str) -> bool {
    require(test, Tier::LxcClient, probe_program("lxc"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_remote_add_with_password_then_list() {
    if !can_run("lxc_remote_add_with_password_then_list") {
        return;
    }
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    assert_eq!(d.set("core.trust_password", "sekrit").await.0, 200);
    let target = addr.to_string();

    let wrong = tempfile::tempdir().unwrap();
    let o = lxc(wrong.path(), None, &["remote", "add", "w", &target, "--password", "bad", "--accept-certificate"]).await;
    assert!(!o.ok, "{}", o.stdout);
    assert!(o.stderr.contains("Invalid trust password"), "{}", o.stderr);

    let conf = tempfile::tempdir().unwrap();
    let o = lxc(conf.path(), None, &["remote", "add", "r1", &target, "--password", "sekrit", "--accept-certificate"]).await;
    assert!(o.ok, "remote add failed: {}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Client certificate now trusted by server"), "{}", o.stdout);
    let pinned = std::fs::read_to_string(conf.path().join("servercerts/r1.crt")).unwrap();
    assert_eq!(pinned, std::fs::read_to_string(d.dir.path().join("server.crt")).unwrap());

    let o = lxc(conf.path(), None, &["list", "r1:", "--format", "csv"]).await;
    assert!(o.ok, "list failed: {}", o.stderr);
    let o = lxc(conf.path(), None, &["info", "r1:"]).await;
    assert!(o.ok && o.stdout.contains("auth: trusted"), "{}{}", o.stdout, o.stderr);
    let o = lxc(conf.path(), None, &["project", "list", "r1:", "--format", "csv"]).await;
    assert!(o.ok && o.stdout.contains("default"), "{}{}", o.stdout, o.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_token_flow_and_trust_list_remove() {
    if !can_run("lxc_token_flow_and_trust_list_remove") {
        return;
    }
    let d = TestDaemon::start().await;
    d.enable_https().await;
    let admin = tempfile::tempdir().unwrap();
    let sock = d.socket.clone();
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "add", "--name", "joiner"]).await;
    assert!(o.ok, "trust add: {}", o.stderr);
    let token = o.stdout.lines().last().unwrap_or("").trim().to_string();
    assert!(token.len() > 40, "{}", o.stdout);
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "list-tokens", "--format", "csv"]).await;
    assert!(o.ok && o.stdout.contains("joiner"), "{}{}", o.stdout, o.stderr);

    let client = tempfile::tempdir().unwrap();
    let o = lxc(client.path(), None, &["remote", "add", "r2", &token]).await;
    assert!(o.ok, "remote add with token: {}\n{}", o.stdout, o.stderr);
    let o = lxc(client.path(), None, &["list", "r2:", "--format", "csv"]).await;
    assert!(o.ok, "{}", o.stderr);

    // Single use.
    let other = tempfile::tempdir().unwrap();
    let o = lxc(other.path(), None, &["remote", "add", "r3", &token]).await;
    assert!(!o.ok, "a token worked twice");
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "list-tokens", "--format", "csv"]).await;
    assert!(o.ok && !o.stdout.contains("joiner"), "{}", o.stdout);

    // Listed by name; removing it revokes access.
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "list", "--format", "csv"]).await;
    assert!(o.ok, "{}", o.stderr);
    let line = o.stdout.lines().find(|l| l.contains("joiner")).unwrap_or_else(|| panic!("{}", o.stdout)).to_string();
    let fp = line.split(',').nth(3).unwrap().to_string();
    let (_, certs) = d.unix(Method::GET, "/1.0/certificates?recursion=1", None).await;
    assert!(certs["metadata"][0]["fingerprint"].as_str().unwrap().starts_with(&fp), "{certs}");
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "remove", &fp]).await;
    assert!(o.ok, "trust remove: {}", o.stderr);
    let o = lxc(client.path(), None, &["list", "r2:"]).await;
    assert!(!o.ok, "removed certificate still trusted");
    let (_, certs) = d.unix(Method::GET, "/1.0/certificates", None).await;
    assert_eq!(certs["metadata"], serde_json::json!([]));

    // Adding a certificate file, then show/edit through the CLI.
    let file = admin.path().join("extra.crt");
    std::fs::write(&file, super::support::ClientCert::new("extra").cert_pem).unwrap();
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "add", file.to_str().unwrap(), "--name", "extra"]).await;
    assert!(o.ok, "trust add file: {}", o.stderr);
    let (_, certs) = d.unix(Method::GET, "/1.0/certificates?recursion=1", None).await;
    let fp = certs["metadata"][0]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(certs["metadata"][0]["name"], "extra");
    let o = lxc(admin.path(), Some(&sock), &["config", "trust", "show", &fp]).await;
    assert!(o.ok && o.stdout.contains("name: extra"), "{}{}", o.stdout, o.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_restricted_token_limits_the_remote_to_its_project() {
    if !can_run("lxc_restricted_token_limits_the_remote_to_its_project") {
        return;
    }
    let d = TestDaemon::start().await;
    d.enable_https().await;
    let admin = tempfile::tempdir().unwrap();
    let sock = d.socket.clone();
    let o = lxc(admin.path(), Some(&sock), &["project", "create", "p1"]).await;
    assert!(o.ok, "{}", o.stderr);
    let args = ["config", "trust", "add", "--name", "limited", "--restricted", "--projects", "p1"];
    let o = lxc(admin.path(), Some(&sock), &args).await;
    assert!(o.ok, "{}", o.stderr);
    let token = o.stdout.lines().last().unwrap_or("").trim().to_string();

    let client = tempfile::tempdir().unwrap();
    let o = lxc(client.path(), None, &["remote", "add", "lim", &token]).await;
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    // The only visible project becomes the remote's project.
    let o = lxc(client.path(), None, &["project", "list", "lim:", "--format", "csv"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    assert!(o.stdout.starts_with("p1"), "{}", o.stdout);
    assert!(lxc(client.path(), None, &["list", "lim:"]).await.ok);
    let o = lxc(client.path(), None, &["list", "lim:", "--project", "default"]).await;
    assert!(!o.ok && o.stderr.contains("not authorized"), "{}", o.stderr);
    let o = lxc(client.path(), None, &["config", "set", "lim:", "user.x", "y"]).await;
    assert!(!o.ok, "a restricted client changed the server config");
}
