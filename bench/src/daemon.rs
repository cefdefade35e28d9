//! Starting, stopping and timing a daemon that serves the LXD API on a unix socket.
//! berthd is always our child; LXD may have been started by the anchor's
//! start-lxd.sh, in which case it is found (and stopped) by its `server_pid`.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::client::Conn;
use crate::procfs;

/// How long a start or stop may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(180);

/// A daemon under test.
pub struct Daemon {
    /// Name in the report (`berthd`, `LXD`).
    pub label: &'static str,
    pub socket: PathBuf,
    /// Command line that starts the daemon in the foreground.
    argv: Vec<String>,
    /// Where the daemon's stdout/stderr go.
    log: PathBuf,
    /// Extra environment for the daemon (experiments such as `MALLOC_ARENA_MAX=1`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    conn: Option<Conn>,
}

/// Times of one start, measured from just before exec.
#[derive(Debug, Clone, Copy)]
pub struct StartTimes {
    /// First `GET /1.0` that answered 200.
    pub first_ok: Duration,
    /// First `GET /1.0/instances` that listed every expected instance.
    pub listed: Duration,
    /// First `GET /internal/ready` that answered 200 (what `lxd waitready` polls);
    /// `None` when the daemon has no such endpoint (404).
    pub internal_ready: Option<Duration>,
}

impl Daemon {
    pub fn new(label: &'static str, socket: PathBuf, argv: Vec<String>, log: PathBuf) -> Daemon {
        Daemon { label, socket, argv, log, env: Vec::new(), child: None, conn: None }
    }

    /// The kept-alive connection, opened on first use.
    pub async fn conn(&mut self) -> anyhow::Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.socket).await?);
        }
        self.conn.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Whether something answers `GET /1.0` with 200 on the socket.
    pub async fn is_up(&mut self) -> bool {
        match self.conn().await {
            Ok(c) => c.get_ok("/1.0").await.is_ok(),
            Err(_) => {
                self.conn = None;
                false
            }
        }
    }

    /// The daemon's pid as it reports it (`environment.server_pid`).
    pub async fn pid(&mut self) -> anyhow::Result<u32> {
        let v = self.conn().await?.get_ok("/1.0").await?.json();
        let pid = v["metadata"]["environment"]["server_pid"].as_u64().ok_or_else(|| anyhow!("{}: no server_pid", self.label))?;
        u32::try_from(pid).context("server_pid out of range")
    }

    /// Execs the daemon and polls until it answers; `expect` is how many instances
    /// `GET /1.0/instances` must list before the second time is taken.
    pub async fn start(&mut self, expect: usize) -> anyhow::Result<StartTimes> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).with_context(|| format!("{}", self.log.display()))?;
        let (prog, args) = self.argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let mut cmd = Command::new(prog);
        cmd.args(args).envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        let t0 = Instant::now();
        let child = cmd.spawn().with_context(|| format!("exec {prog}"))?;
        self.child = Some(child);
        self.conn = None;
        let first_ok = loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!("{} exited during start ({st}); see {}", self.label, self.log.display());
                }
            }
            if self.is_up().await {
                break t0.elapsed();
            }
            if t0.elapsed() > PATIENCE {
                bail!("{} did not answer within {PATIENCE:?}", self.label);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let listed = loop {
            let r = self.conn().await?.request(hyper::Method::GET, "/1.0/instances", None).await?;
            if r.status == 200 && r.json()["metadata"].as_array().is_some_and(|a| a.len() >= expect) {
                break t0.elapsed();
            }
            if t0.elapsed() > PATIENCE {
                bail!("{} did not list {expect} instances within {PATIENCE:?}", self.label);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let internal_ready = loop {
            let r = self.conn().await?.request(hyper::Method::GET, "/internal/ready", None).await?;
            match r.status {
                200 => break Some(t0.elapsed()),
                404 => break None,
                _ if t0.elapsed() > PATIENCE => bail!("{} not ready within {PATIENCE:?}", self.label),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        Ok(StartTimes { first_ok, listed, internal_ready })
    }

    /// SIGTERM to the serving process, then waits for it to exit. For LXD this leaves
    /// instances alone (like the anchor's stop-lxd.sh without --all).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let pid = match self.pid().await {
            Ok(p) => p,
            Err(_) => match &self.child {
                Some(c) => c.id(),
                None => return Ok(()),
            },
        };
        self.conn = None;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        let ret = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if ret != 0 {
            bail!("kill {pid}: {}", std::io::Error::last_os_error());
        }
        let t0 = Instant::now();
        loop {
            let ours_done = match self.child.as_mut() {
                Some(c) if c.id() == pid => c.try_wait()?.is_some(),
                _ => !procfs::alive(pid),
            };
            if ours_done {
                break;
            }
            if t0.elapsed() > PATIENCE {
                bail!("{} (pid {pid}) did not stop within {PATIENCE:?}", self.label);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.child.as_ref().is_some_and(|c| c.id() == pid) {
            self.child = None;
        }
        Ok(())
    }
}
