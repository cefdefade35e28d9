//! Client tests against an in-process fake agent (the real agent is tested in a VM).

use super::*;
use std::os::unix::net::UnixListener;

/// A fake agent: answers hello, runs `on_frame` for every other frame.
fn fake_agent(
    path: &Path,
    mut on_frame: impl FnMut(Frame, &mut UnixStream) -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        // Garbage first: the client must resync on the magic.
        w.write_all(b"junk").unwrap();
        while let Ok(f) = proto::read_frame(&mut r) {
            if let Msg::Hello { nonce, .. } = f.msg {
                proto::write_frame(&mut w, &Msg::HelloReply { nonce, version: 1, hostname: "fake".into() }, &[]).unwrap();
                continue;
            }
            if !on_frame(f, &mut w) {
                return;
            }
        }
    })
}

#[test]
fn not_ready_after_bounded_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let _l = UnixListener::bind(&path).unwrap(); // accepts (backlog) but never answers
    let t = Instant::now();
    let e = AgentClient::connect(&path, Duration::from_millis(700)).err().unwrap();
    assert!(matches!(e, AgentError::NotReady { .. }), "{e:?}");
    assert!(t.elapsed() >= Duration::from_millis(700) && t.elapsed() < Duration::from_secs(3));
    assert!(e.to_string().contains("not ready"));
}

/// The agent's `Ready` makes the host say hello at once: with a 1 h hello interval, a
/// connect that only answered on its timer could never finish.
#[test]
fn ready_from_the_agent_triggers_a_hello_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        // The first hello is "held by QEMU": dropped unanswered; then the agent opens its port.
        assert!(matches!(proto::read_frame(&mut r).unwrap().msg, Msg::Hello { .. }));
        proto::write_frame(&mut w, &Msg::Ready { version: 1 }, &[]).unwrap();
        let Msg::Hello { nonce, .. } = proto::read_frame(&mut r).unwrap().msg else { panic!("expected a hello") };
        proto::write_frame(&mut w, &Msg::HelloReply { nonce, version: 1, hostname: "ready".into() }, &[]).unwrap();
        r
    });
    let c = AgentClient::connect_every(&path, Duration::from_secs(20), Duration::from_secs(3600)).unwrap();
    assert_eq!(c.hostname, "ready");
    drop(t.join().unwrap());
}

#[test]
fn exec_roundtrip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let t = fake_agent(&path, |f, w| {
        match f.msg {
            Msg::Exec { stream, spec } if spec.argv[0] == "echo" => {
                proto::write_frame(w, &Msg::Started { stream, pid: 42 }, &[]).unwrap();
                proto::write_frame(w, &Msg::Stdout { stream: stream + 1000 }, b"stray").unwrap();
                proto::write_frame(w, &Msg::Stdout { stream }, spec.argv[1].as_bytes()).unwrap();
                proto::write_frame(w, &Msg::Stderr { stream }, b"err").unwrap();
                proto::write_frame(w, &Msg::Exit { stream, code: Some(3), signal: None }, &[]).unwrap();
            }
            Msg::Exec { stream, .. } => {
                proto::write_frame(w, &Msg::Error { stream, message: "no such program".into() }, &[]).unwrap();
            }
            Msg::Delete { .. } => return false, // hang up
            _ => {}
        }
        true
    });
    let c = AgentClient::connect(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(c.hostname, "fake");
    let spec = ExecSpec { argv: vec!["echo".into(), "hi".into()], ..Default::default() };
    let ex = c.exec(spec).unwrap();
    assert_eq!(ex.pid(), 42);
    let out = ex.wait_with_output(Duration::from_secs(5)).unwrap();
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice(), out.return_code()), (&b"hi"[..], &b"err"[..], 3));

    let bad = c.exec(ExecSpec { argv: vec!["nope".into()], ..Default::default() }).err().unwrap();
    assert!(matches!(&bad, AgentError::Guest { message } if message == "no such program"));

    // The fake hangs up on delete: the request and later ones see Closed.
    assert!(matches!(c.delete("/x"), Err(AgentError::Closed)));
    t.join().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!c.is_connected());
}

#[test]
fn push_sends_chunks_then_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let _t = fake_agent(&path, move |f, w| {
        if let Msg::Data { stream } = f.msg {
            if f.payload.is_empty() {
                proto::write_frame(w, &Msg::Done { stream }, &[]).unwrap();
            } else {
                g.lock().unwrap().extend(f.payload);
            }
        }
        true
    });
    let c = AgentClient::connect(&path, Duration::from_secs(5)).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.push_file("/tmp/x", &mut &data[..], 0o644, 0, 0).unwrap();
    assert_eq!(*got.lock().unwrap(), data);
}
