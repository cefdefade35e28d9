//! Pre-instantiation: each plugin keeps a few fresh instances ready, made by a
//! background thread, so a call on the request path only pays for the call
//! itself. Every instance still serves exactly one call and is then dropped.
//! Isolation is unchanged: no instance is reused (its pool slot is, after
//! wasmtime resets it).
//!
//! Used stores are dropped here too: returning a slot to the pool (resetting
//! the pages the call dirtied) costs ~25 µs per store, measured, when done by
//! the caller. At most [`MAX_DISCARDS`] stores wait in the queue (each holds a
//! pool slot); past that the caller drops its own, so a burst of calls cannot
//! pile up slots. The queue holds at most one pending refill per plugin (a
//! flag coalesces requests).
//!
//! The thread stays off the request path: it instantiates only once no call
//! has been running for [`QUIET`] (so the plugins of one validation round, called
//! one after the other, do not compete with it for the address-space lock and
//! the CPU), waiting at most [`MAX_WAIT`], and it runs at a lower priority.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Engine, Store};

use crate::state::{CallContext, CallState};

/// Ready instances kept per plugin (and per settings version).
pub(crate) const READY: usize = 2;

/// How long no plugin call must have run before the thread instantiates.
const QUIET: Duration = Duration::from_micros(300);

/// Longest wait for [`QUIET`]: under steady load the pools still get refilled.
const MAX_WAIT: Duration = Duration::from_millis(5);

/// Nice value of the thread (Linux: per thread): request threads come first.
const NICE: i32 = 10;

/// Counts plugin calls in flight, so the background thread can wait for a lull.
pub(crate) struct Gate {
    /// (calls in flight, when the last one ended)
    state: Mutex<(usize, Instant)>,
    idle: Condvar,
    /// Stores queued for dropping.
    discards: AtomicUsize,
}

/// Marks a call in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Gate);

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate { state: Mutex::new((0, Instant::now())), idle: Condvar::new(), discards: AtomicUsize::new(0) })
    }

    pub fn enter(&self) -> InFlight<'_> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        InFlight(self)
    }

    /// Returns once no call has run for [`QUIET`], or after [`MAX_WAIT`].
    fn wait_quiet(&self) {
        let give_up = Instant::now() + MAX_WAIT;
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let until = if g.0 > 0 { give_up } else { (g.1 + QUIET).min(give_up) };
            if (g.0 == 0 && now >= g.1 + QUIET) || now >= give_up {
                return;
            }
            g = self
                .idle
                .wait_timeout(g, until.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut g = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 = g.0.saturating_sub(1);
        g.1 = Instant::now();
        if g.0 == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// A fresh instance and its store, never called.
pub(crate) type Fresh = (Store<CallState>, Instance);

/// Used stores waiting in the queue to be dropped, at most; past this the
/// caller drops its store itself (each one holds a pool slot until dropped).
const MAX_DISCARDS: usize = 16;

/// Work for the background thread.
pub(crate) enum Job {
    /// Top up this pool to [`READY`] instances.
    Refill(Weak<Warm>),
    /// Drop a used store (returning its pool slot) off the request path, then
    /// top up the pool it came from (one wake-up of the thread per call).
    Discard(Box<Store<CallState>>, Weak<Warm>),
}

/// The ready instances of one plugin with one settings version.
pub(crate) struct Warm {
    ready: Mutex<Vec<Fresh>>,
    pre: InstancePre<CallState>,
    ctx: Arc<CallContext>,
    jobs: Sender<Job>,
    /// A refill is queued and not started yet.
    queued: AtomicBool,
    gate: Arc<Gate>,
}

impl Warm {
    pub fn new(
        pre: InstancePre<CallState>,
        ctx: Arc<CallContext>,
        jobs: Sender<Job>,
        gate: Arc<Gate>,
    ) -> Arc<Self> {
        let warm = Arc::new(Warm {
            ready: Mutex::new(Vec::new()),
            pre,
            ctx,
            jobs,
            queued: AtomicBool::new(false),
            gate,
        });
        warm.request_refill();
        warm
    }

    /// A ready instance if there is one. An empty pool asks for a refill now;
    /// otherwise [`Warm::discard`] tops it up after the call.
    pub fn take(self: &Arc<Self>) -> Option<Fresh> {
        let fresh = self.ready.lock().unwrap_or_else(PoisonError::into_inner).pop();
        if fresh.is_none() {
            self.request_refill();
        }
        fresh
    }

    fn request_refill(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) && self.jobs.send(Job::Refill(Arc::downgrade(self))).is_err() {
            self.queued.store(false, Ordering::Release);
        }
    }

    /// Drops `store` on the background thread (unless too many are queued),
    /// which then tops up this pool.
    pub fn discard(self: &Arc<Self>, store: Store<CallState>) {
        if self.gate.discards.fetch_add(1, Ordering::AcqRel) >= MAX_DISCARDS {
            self.gate.discards.fetch_sub(1, Ordering::AcqRel);
            drop(store);
            self.request_refill();
            return;
        }
        if let Err(e) = self.jobs.send(Job::Discard(Box::new(store), Arc::downgrade(self))) {
            self.gate.discards.fetch_sub(1, Ordering::AcqRel);
            drop(e);
        }
    }

    fn refill(&self, engine: &Engine, gate: &Gate) {
        self.queued.store(false, Ordering::Release);
        loop {
            if self.ready.lock().unwrap_or_else(PoisonError::into_inner).len() >= READY {
                return;
            }
            gate.wait_quiet();
            // A failure here (e.g. a full pool) is reported by the inline
            // instantiation of the call.
            let Ok(fresh) = crate::plugin::instantiate(engine, &self.pre, &self.ctx) else { return };
            self.ready.lock().unwrap_or_else(PoisonError::into_inner).push(fresh);
        }
    }
}

/// Starts the background thread; it ends when every sender is gone.
pub(crate) fn start(engine: Engine, gate: Arc<Gate>) -> std::io::Result<Sender<Job>> {
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new().name("plugin-warm".into()).spawn(move || {
        lower_priority();
        for job in rx {
            match job {
                Job::Refill(w) => {
                    if let Some(w) = w.upgrade() {
                        w.refill(&engine, &gate);
                    }
                }
                Job::Discard(store, w) => {
                    drop(store);
                    gate.discards.fetch_sub(1, Ordering::AcqRel);
                    if let Some(w) = w.upgrade() {
                        w.refill(&engine, &gate);
                    }
                }
            }
        }
    })?;
    Ok(tx)
}

/// Lowers the calling thread's priority (on Linux, `setpriority` with a thread id
/// applies to that thread only). Failure is harmless: the thread just keeps the
/// default priority.
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread; no memory is passed.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if r != 0 {
        tracing::debug!("cannot lower the plugin-warm thread's priority: {}", std::io::Error::last_os_error());
    }
}
