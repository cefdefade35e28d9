//! The HTTPS listener, trust store, trust password and tokens, against an in-process
//! daemon (see `support`), plus the real `lxc` client in `lxc`.

mod lxc;
mod support;

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use support::{https, https_json, tls_connect, ClientCert, TestDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_follows_core_https_address_at_runtime() {
    let d = TestDaemon::start().await;
    let a1 = d.enable_https().await;
    let r = https(a1, None, Method::GET, "/1.0", None).await;
    assert_eq!(r.status, 200);
    let keys: Vec<&String> = r.json["metadata"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["api_extensions", "api_status", "api_version", "auth", "auth_methods", "public"]);
    assert_eq!(r.json["metadata"]["auth"], "untrusted");

    // Moving the listener closes the old port.
    let a2 = d.enable_https().await;
    assert!(tls_connect(a1, None).await.is_err(), "old address still served");
    assert_eq!(https(a2, None, Method::GET, "/1.0", None).await.status, 200);

    // Bad and busy addresses are refused and change nothing.
    let (s, b) = d.set("core.https_address", "127.0.0.1:notaport").await;
    assert_eq!(s, 400, "{b}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (s, b) = d.set("core.https_address", &busy.local_addr().unwrap().to_string()).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("Cannot listen"), "{b}");
    let (_, info) = d.unix(Method::GET, "/1.0", None).await;
    assert_eq!(info["metadata"]["config"]["core.https_address"], a2.to_string());
    assert_eq!(https(a2, None, Method::GET, "/1.0", None).await.status, 200);

    // A wildcard bind serves loopback and advertises it first.
    let port = support::free_port();
    assert_eq!(d.set("core.https_address", &format!(":{port}")).await.0, 200);
    let local: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(https(local, None, Method::GET, "/1.0", None).await.status, 200);
    let (_, info) = d.unix(Method::GET, "/1.0", None).await;
    assert_eq!(info["metadata"]["environment"]["addresses"][0], local.to_string());
    let a2 = d.enable_https().await;

    // Unsetting stops it.
    let (s, _) = d.unix(Method::PUT, "/1.0", Some(json!({"config": {}}))).await;
    assert_eq!(s, 200);
    assert!(tls_connect(a2, None).await.is_err());
    let (_, info) = d.unix(Method::GET, "/1.0", None).await;
    assert_eq!(info["metadata"]["environment"]["addresses"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_is_shown_and_served() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let (_, seen) = tls_connect(addr, None).await.unwrap();
    let (_, info) = d.unix(Method::GET, "/1.0", None).await;
    let env = &info["metadata"]["environment"];
    assert_eq!(env["certificate_fingerprint"], support::sha256(&seen));
    let on_disk = std::fs::read_to_string(d.dir.path().join("server.crt")).unwrap();
    assert_eq!(env["certificate"], on_disk);
    assert_eq!(env["addresses"], json!([addr.to_string()]));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.dir.path().join("server.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(info["metadata"]["auth"], "trusted");
    let exts: Vec<&str> =
        info["metadata"]["api_extensions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(exts.contains(&"certificate_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_clients_are_refused_everywhere_else() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let stranger = ClientCert::new("stranger");
    for (m, p) in [
        (Method::GET, "/1.0/instances"),
        (Method::GET, "/1.0/projects"),
        (Method::GET, "/1.0/certificates"),
        (Method::GET, "/1.0/operations"),
        (Method::GET, "/1.0/events"),
        (Method::PUT, "/1.0"),
        (Method::PUT, "/internal/shutdown"),
        (Method::DELETE, "/1.0/certificates/00"),
    ] {
        for cert in [None, Some(&stranger)] {
            let r = https(addr, cert, m.clone(), p, None).await;
            assert_eq!(r.status, 403, "{m} {p}: {}", r.json);
            assert_eq!(r.json["error"], "not authorized");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_password_adds_the_peer_certificate() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let c = ClientCert::new("client");
    let post = json!({"type": "client", "password": "sekrit"});
    let r = https_json(addr, Some(&c), Method::POST, "/1.0/certificates", post.clone()).await;
    assert_eq!(r.status, 403, "no password configured yet: {}", r.json);

    assert_eq!(d.set("core.trust_password", "sekrit").await.0, 200);
    let (_, info) = d.unix(Method::GET, "/1.0", None).await;
    assert_eq!(info["metadata"]["config"]["core.trust_password"], "true");
    // Stored hashed, never in clear.
    let stored = d.daemon().model().server.get("core.trust_password").cloned().unwrap();
    assert!(stored.starts_with("$argon2"), "{stored}");
    // A PATCH of another key, or a PUT echoing "true", keeps it.
    assert_eq!(d.set("user.x", "1").await.0, 200);
    let config = json!({"config": {"core.trust_password": "true", "core.https_address": addr.to_string()}});
    assert_eq!(d.unix(Method::PUT, "/1.0", Some(config)).await.0, 200);
    assert_eq!(d.daemon().model().server.get("core.trust_password"), Some(&stored));

    let r = https_json(addr, Some(&c), Method::POST, "/1.0/certificates", json!({"password": "nope"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json["error"], "Invalid trust password");
    let r = https_json(addr, None, Method::POST, "/1.0/certificates", post.clone()).await;
    assert_eq!(r.status, 400, "no client certificate: {}", r.json);

    let r = https_json(addr, Some(&c), Method::POST, "/1.0/certificates", post.clone()).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.headers["location"], format!("/1.0/certificates/{}", c.fingerprint));
    let r = https(addr, Some(&c), Method::GET, "/1.0", None).await;
    assert_eq!(r.json["metadata"]["auth"], "trusted");
    assert_eq!(https(addr, Some(&c), Method::GET, "/1.0/instances", None).await.status, 200);
    let r = https_json(addr, Some(&c), Method::POST, "/1.0/certificates", post).await;
    assert_eq!(r.status, 409, "already trusted: {}", r.json);

    // pylxd: the certificate in the body, PEM without armor, newlines kept.
    let p = ClientCert::new("pylxd");
    let body = json!({"type": "client", "certificate": p.pylxd_body(), "password": "sekrit", "name": ""});
    let r = https_json(addr, Some(&p), Method::POST, "/1.0/certificates", body).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert!(r.headers.contains_key("location"));
    assert_eq!(https(addr, Some(&p), Method::GET, "/1.0", None).await.json["metadata"]["auth"], "trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_back_off_per_address() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    d.set("core.trust_password", "right").await;
    let c = ClientCert::new("guesser");
    let attempt = |pw: &'static str| {
        let c = &c;
        async move { https_json(addr, Some(c), Method::POST, "/1.0/certificates", json!({"password": pw})).await }
    };
    for _ in 0..5 {
        let r = attempt("wrong").await;
        assert_eq!((r.status, r.json["error"].as_str().unwrap()), (403, "Invalid trust password"));
    }
    let r = attempt("right").await;
    assert_eq!(r.status, 403);
    assert!(r.json["error"].as_str().unwrap().starts_with("Too many failed authentication attempts"), "{}", r.json);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(attempt("right").await.status, 201);
}

fn token_of(op: &Value) -> String {
    let m = &op["metadata"];
    let wire = json!({
        "client_name": m["request"]["name"],
        "fingerprint": m["fingerprint"],
        "addresses": m["addresses"],
        "secret": m["secret"],
        "expires_at": m["expiresAt"],
    });
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&wire).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_single_use_and_expire() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let (s, op) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"token": true, "name": "t1"}))).await;
    assert_eq!(s, 202, "{op}");
    let m = &op["metadata"];
    assert_eq!((m["class"].as_str(), m["status"].as_str()), (Some("token"), Some("Running")));
    assert_eq!(m["metadata"]["fingerprint"], d.daemon().trust.identity.fingerprint);
    assert_eq!(m["metadata"]["addresses"], json!([addr.to_string()]));
    assert_eq!(m["metadata"]["request"]["name"], "t1");
    assert!(m["metadata"]["expiresAt"].is_null());
    let token = token_of(m);

    let c = ClientCert::new("c1");
    let r = https_json(addr, Some(&c), Method::POST, "/1.0/certificates", json!({"password": token})).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.headers["location"], format!("/1.0/certificates/{}", c.fingerprint));
    let (_, cert) = d.unix(Method::GET, &format!("/1.0/certificates/{}", c.fingerprint), None).await;
    assert_eq!(cert["metadata"]["name"], "t1");
    let (_, after) = d.unix(Method::GET, &format!("/1.0/operations/{}", m["id"].as_str().unwrap()), None).await;
    assert_eq!(after["metadata"]["status"], "Cancelled");

    let c2 = ClientCert::new("c2");
    let r = https_json(addr, Some(&c2), Method::POST, "/1.0/certificates", json!({"password": token})).await;
    assert_eq!(r.status, 403, "reused token: {}", r.json);
    // The newer `trust_token` field is taken too.
    let (_, op) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"token": true, "name": "tt"}))).await;
    let body = json!({"trust_token": token_of(&op["metadata"]), "password": ""});
    let r = https_json(addr, Some(&c2), Method::POST, "/1.0/certificates", body).await;
    assert_eq!(r.status, 201, "{}", r.json);
    let c2 = ClientCert::new("c2b");

    // Expiry.
    assert_eq!(d.set("core.remote_token_expiry", "1S").await.0, 200);
    assert_eq!(d.set("core.remote_token_expiry", "soon").await.0, 400);
    let (_, op) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"token": true, "name": "t2"}))).await;
    assert!(op["metadata"]["metadata"]["expiresAt"].is_string(), "{op}");
    let token = token_of(&op["metadata"]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = https_json(addr, Some(&c2), Method::POST, "/1.0/certificates", json!({"password": token})).await;
    assert_eq!(r.status, 403, "expired token: {}", r.json);

    // Untrusted clients cannot make tokens.
    let r = https_json(addr, Some(&c2), Method::POST, "/1.0/certificates", json!({"token": true})).await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_certificates_stay_in_their_projects() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    assert_eq!(d.unix(Method::POST, "/1.0/projects", Some(json!({"name": "p1"}))).await.0, 201);
    let c = ClientCert::new("r");
    let add = json!({"type": "client", "certificate": c.pylxd_body(), "restricted": true, "projects": ["p1"], "name": "r"});
    let (s, b) = d.unix(Method::POST, "/1.0/certificates", Some(add)).await;
    assert_eq!(s, 201, "{b}");
    let get = |p: &'static str| {
        let c = &c;
        async move { https(addr, Some(c), Method::GET, p, None).await }
    };
    assert_eq!(get("/1.0/instances?project=p1").await.status, 200);
    assert_eq!(get("/1.0/profiles?project=p1").await.status, 200);
    assert_eq!(get("/1.0/instances").await.status, 403);
    assert_eq!(get("/1.0/instances?all-projects=true").await.status, 403);
    assert_eq!(get("/1.0/projects/default").await.status, 403);
    assert_eq!(get("/1.0/certificates").await.status, 403);
    assert_eq!(get("/1.0/projects").await.json["metadata"], json!(["/1.0/projects/p1"]));
    let r = https_json(addr, Some(&c), Method::PATCH, "/1.0", json!({"config": {"user.a": "b"}})).await;
    assert_eq!(r.status, 403);
    assert_eq!(get("/1.0").await.json["metadata"]["auth"], "trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_api_round_trip() {
    let d = TestDaemon::start().await;
    let c = ClientCert::new("x");
    let (s, b) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"type": "client"}))).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Can't use TLS data on non-TLS link")));
    for bad in [json!({"certificate": "!!"}), json!({"certificate": "aGVsbG8="}), json!({"certificate": c.pylxd_body(), "type": "admin"}), json!({"certificate": c.pylxd_body(), "restricted": true, "projects": ["nope"]})] {
        let (s, b) = d.unix(Method::POST, "/1.0/certificates", Some(bad)).await;
        assert_eq!(s, 400, "{b}");
    }
    let (s, _) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"certificate": c.pylxd_body(), "name": "x"}))).await;
    assert_eq!(s, 201);
    let (s, _) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"certificate": c.pylxd_body()}))).await;
    assert_eq!(s, 409);
    let (_, list) = d.unix(Method::GET, "/1.0/certificates", None).await;
    assert_eq!(list["metadata"], json!([format!("/1.0/certificates/{}", c.fingerprint)]));
    let (_, full) = d.unix(Method::GET, "/1.0/certificates?recursion=1", None).await;
    assert_eq!(full["metadata"][0]["name"], "x");
    assert!(full["metadata"][0]["certificate"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));

    let short = format!("/1.0/certificates/{}", &c.fingerprint[..12]);
    let (s, one) = d.unix(Method::GET, &short, None).await;
    assert_eq!((s, one["metadata"]["fingerprint"].as_str()), (200, Some(c.fingerprint.as_str())));
    let (s, _) = d.unix(Method::PATCH, &short, Some(json!({"name": "renamed"}))).await;
    assert_eq!(s, 200);
    let (s, _) = d.unix(Method::PUT, &short, Some(json!({"name": "put", "type": "client", "restricted": false, "projects": []}))).await;
    assert_eq!(s, 200);
    let (_, one) = d.unix(Method::GET, &short, None).await;
    assert_eq!(one["metadata"]["name"], "put");
    let (s, b) = d.unix(Method::PUT, &short, Some(json!({"name": 5}))).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = d.unix(Method::GET, "/1.0/certificates/ffff", None).await;
    assert_eq!(s, 404);
    let (s, _) = d.unix(Method::DELETE, &short, None).await;
    assert_eq!(s, 200);
    let (_, list) = d.unix(Method::GET, "/1.0/certificates", None).await;
    assert_eq!(list["metadata"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_does_not_stop_the_listener() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    for i in 0..20u8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let junk: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let junk = if i % 4 == 0 { b"GET /1.0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec() } else { junk };
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
    }
    // A half-open client that never completes the handshake does not block others.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = https(addr, None, Method::GET, "/1.0", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(d.unix(Method::GET, "/1.0", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let big = vec![b' '; 200 << 10];
    let r = https(addr, None, Method::POST, "/1.0/certificates", Some(big)).await;
    assert_eq!(r.status, 413, "{}", r.json);
    let (s, _) = d.unix(Method::PUT, "/1.0", Some(json!({"config": {"user.big": "x".repeat(5 << 20)}}))).await;
    assert_eq!(s, 413);
    assert_eq!(https(addr, None, Method::GET, "/1.0", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_websocket_works_over_tls() {
    let d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let c = ClientCert::new("ws");
    let (s, _) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"certificate": c.pylxd_body()}))).await;
    assert_eq!(s, 201);
    let (tls, _) = tls_connect(addr, Some(&c)).await.unwrap();
    let url = format!("wss://{addr}/1.0/events?type=lifecycle");
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.expect("websocket upgrade");
    assert_eq!(resp.status(), 101);
    let (s, _) = d.unix(Method::POST, "/1.0/profiles", Some(json!({"name": "evp"}))).await;
    assert_eq!(s, 201);
    let ev: Value = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("event in time").unwrap().unwrap();
        if msg.is_text() {
            break serde_json::from_str(msg.to_text().unwrap()).unwrap();
        }
    };
    assert_eq!(ev["type"], "lifecycle");
    assert_eq!(ev["metadata"]["action"], "profile-created");

    // Untrusted: no upgrade.
    let (tls, _) = tls_connect(addr, None).await.unwrap();
    assert!(tokio_tungstenite::client_async(format!("wss://{addr}/1.0/events"), tls).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_and_listener_survive_a_restart() {
    let mut d = TestDaemon::start().await;
    let addr = d.enable_https().await;
    let c = ClientCert::new("keep");
    let (s, _) = d.unix(Method::POST, "/1.0/certificates", Some(json!({"certificate": c.pylxd_body()}))).await;
    assert_eq!(s, 201);
    let fp = d.daemon().trust.identity.fingerprint.clone();
    d.restart().await;
    assert_eq!(d.daemon().trust.identity.fingerprint, fp, "server certificate kept");
    let r = https(addr, Some(&c), Method::GET, "/1.0", None).await;
    assert_eq!(r.json["metadata"]["auth"], "trusted", "{}", r.json);
}
