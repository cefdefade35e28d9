//! Pre-instantiation: each plugin keeps a few fresh instances ready, made by a
//! background thread, so a call on the request path only pays for the call
//! itself. Every instance still serves exactly one call and is then dropped
//! (also on the background thread: unmapping its memory is the other half of
//! the instantiation cost). Isolation is unchanged: no instance is reused.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Engine, Store};

use crate::state::{CallContext, CallState};

/// Ready instances kept per plugin (and per settings version).
pub(crate) const READY: usize = 2;

/// A fresh instance and its store, never called.
pub(crate) type Fresh = (Store<CallState>, Instance);

/// Work for the background thread.
pub(crate) enum Job {
    /// Top up this pool to [`READY`] instances.
    Refill(Weak<Warm>),
    /// Drop a used store off the request path, then top up the pool it came from
    /// (one wake-up of the thread per call, not two).
    Discard(Box<Store<CallState>>, Weak<Warm>),
}

/// The ready instances of one plugin with one settings version.
pub(crate) struct Warm {
    ready: Mutex<Vec<Fresh>>,
    pre: InstancePre<CallState>,
    ctx: Arc<CallContext>,
    jobs: Sender<Job>,
}

impl Warm {
    pub fn new(pre: InstancePre<CallState>, ctx: Arc<CallContext>, jobs: Sender<Job>) -> Arc<Self> {
        let warm = Arc::new(Warm { ready: Mutex::new(Vec::new()), pre, ctx, jobs });
        let _ = warm.jobs.send(Job::Refill(Arc::downgrade(&warm)));
        warm
    }

    /// A ready instance if there is one. An empty pool asks for a refill now;
    /// otherwise [`Warm::discard`] tops it up after the call.
    pub fn take(self: &Arc<Self>) -> Option<Fresh> {
        let fresh = self.ready.lock().unwrap_or_else(PoisonError::into_inner).pop();
        if fresh.is_none() {
            let _ = self.jobs.send(Job::Refill(Arc::downgrade(self)));
        }
        fresh
    }

    /// Drops `store` on the background thread (inline if it is gone), which then
    /// refills this pool.
    pub fn discard(self: &Arc<Self>, store: Store<CallState>) {
        if let Err(e) = self.jobs.send(Job::Discard(Box::new(store), Arc::downgrade(self))) {
            drop(e);
        }
    }

    fn refill(&self, engine: &Engine) {
        loop {
            if self.ready.lock().unwrap_or_else(PoisonError::into_inner).len() >= READY {
                return;
            }
            // A failure here is reported by the inline instantiation of the call.
            let Ok(fresh) = crate::plugin::instantiate(engine, &self.pre, &self.ctx) else { return };
            self.ready.lock().unwrap_or_else(PoisonError::into_inner).push(fresh);
        }
    }
}

/// Starts the background thread; it ends when every sender is gone.
pub(crate) fn start(engine: Engine) -> std::io::Result<Sender<Job>> {
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new().name("plugin-warm".into()).spawn(move || {
        for job in rx {
            match job {
                Job::Refill(w) => {
                    if let Some(w) = w.upgrade() {
                        w.refill(&engine);
                    }
                }
                Job::Discard(store, w) => {
                    drop(store);
                    if let Some(w) = w.upgrade() {
                        w.refill(&engine);
                    }
                }
            }
        }
    })?;
    Ok(tx)
}
