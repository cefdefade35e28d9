//! The epoch clock behind plugin deadlines. It ticks only while some plugin code may be
//! running, so an idle daemon is not woken every [`TICK`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use wasmtime::Engine;

use crate::plugin::TICK;

#[derive(Default)]
struct Shared {
    /// (calls in flight, stop requested)
    state: Mutex<(usize, bool)>,
    wake: Condvar,
    /// Ticks so far (what the tests observe; wasmtime does not expose the epoch).
    ticks: AtomicU64,
}

/// Owns the ticking thread; stops and joins it on drop.
pub(crate) struct Ticker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What a call holds on to (cheap to clone into every call context).
#[derive(Clone)]
pub(crate) struct TickerHandle(Arc<Shared>);

/// Keeps the clock ticking while alive.
pub(crate) struct Busy(Arc<Shared>);

impl Ticker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || loop {
            {
                let mut g = s.state.lock().unwrap_or_else(PoisonError::into_inner);
                while g.0 == 0 && !g.1 {
                    g = s.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
                }
                if g.1 {
                    return;
                }
            }
            std::thread::sleep(TICK);
            engine.increment_epoch();
            s.ticks.fetch_add(1, Ordering::Relaxed);
        })?;
        Ok(Ticker { shared, thread: Some(thread) })
    }

    pub(crate) fn handle(&self) -> TickerHandle {
        TickerHandle(self.shared.clone())
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TickerHandle {
    /// Marks a call in flight until the returned guard drops.
    pub(crate) fn busy(&self) -> Busy {
        let mut g = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += 1;
        if g.0 == 1 {
            self.0.wake.notify_one();
        }
        Busy(self.0.clone())
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut g = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 = g.0.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Config;

    fn ticks(h: &TickerHandle) -> u64 {
        h.0.ticks.load(Ordering::Relaxed)
    }

    /// The clock advances only while a call is marked busy.
    #[test]
    fn ticks_only_while_busy() {
        let mut c = Config::new();
        c.epoch_interruption(true);
        let ticker = Ticker::start(Engine::new(&c).unwrap()).unwrap();
        let h = ticker.handle();
        std::thread::sleep(TICK * 6);
        assert_eq!(ticks(&h), 0, "an idle clock must not tick");
        let busy = h.busy();
        let nested = h.busy();
        assert_eq!(h.in_flight(), 2);
        std::thread::sleep(TICK * 6);
        drop(nested);
        drop(busy);
        assert_eq!(h.in_flight(), 0);
        let after_busy = ticks(&h);
        assert!(after_busy >= 2, "a busy clock ticks ({after_busy})");
        std::thread::sleep(TICK * 6);
        assert!(ticks(&h) <= after_busy + 1, "the clock stops once idle again");
        drop(ticker);
    }
}
