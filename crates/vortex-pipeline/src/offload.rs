//! Stage compute off the async runtime's worker threads: the work runs on tokio's blocking
//! pool while the slot's task awaits it, so the slot deadline fires on time whatever the
//! compute is doing. Dropping the handle before the work is done (a cancelled slot, a missed
//! deadline) asks the work to stop (a network's run is terminated) and waits for it, so
//! nothing the work holds is reused while it still runs.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::Notify;
use vortex_models::runtime::Terminator;

struct Slot<T> {
    value: Mutex<Option<T>>,
    done: Condvar,
    ready: Notify,
}

/// Work running on the blocking pool.
pub(crate) struct Offloaded<T> {
    slot: Arc<Slot<T>>,
    stop: Option<Terminator>,
    finished: bool,
}

/// Starts `work` on the blocking pool; `stop` stops it early (a network's run).
pub(crate) fn offload<T, F>(stop: Option<Terminator>, work: F) -> Offloaded<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        done: Condvar::new(),
        ready: Notify::new(),
    });
    let theirs = Arc::clone(&slot);
    drop(tokio::task::spawn_blocking(move || {
        let value = work();
        *theirs.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        theirs.done.notify_all();
        theirs.ready.notify_one();
    }));
    Offloaded {
        slot,
        stop,
        finished: false,
    }
}

impl<T> Offloaded<T> {
    /// The work's result, awaited without blocking the runtime.
    pub(crate) async fn wait(mut self) -> T {
        loop {
            let taken = self
                .slot
                .value
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(value) = taken {
                self.finished = true;
                return value;
            }
            self.slot.ready.notified().await;
        }
    }
}

impl<T> Drop for Offloaded<T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(stop) = &self.stop {
            stop.terminate();
        }
        let mut value = self
            .slot
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while value.is_none() {
            value = self
                .slot
                .done
                .wait(value)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
