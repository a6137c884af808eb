//! Stage compute off the async runtime's worker threads: the work runs on tokio's blocking
//! pool while the slot's task awaits it, so the slot deadline fires on time whatever the
//! compute is doing. Dropping the handle before the work is done (a cancelled slot, a missed
//! deadline) asks the work to stop (a network's run is terminated) and waits for it, so
//! nothing the work holds is reused while it still runs.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::Notify;
use vortex_runtime::Terminator;

struct Slot<T> {
    value: Mutex<Option<Outcome<T>>>,
    done: Condvar,
    ready: Notify,
}

/// What became of the work.
pub(crate) enum Outcome<T> {
    /// It returned this.
    Done(T),
    /// It panicked, or was dropped before it ran (the runtime shutting down): say so.
    Lost(String),
}

/// Stores the work's outcome exactly once, and wakes both kinds of waiter, whatever happens
/// to the work (a panic, or the closure dropped unrun).
struct Finish<T> {
    slot: Arc<Slot<T>>,
    stored: bool,
}

impl<T> Finish<T> {
    fn store(&mut self, outcome: Outcome<T>) {
        *self
            .slot
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.stored = true;
        self.slot.done.notify_all();
        self.slot.ready.notify_one();
    }
}

impl<T> Drop for Finish<T> {
    fn drop(&mut self) {
        if !self.stored {
            self.store(Outcome::Lost(
                "the work was dropped before it finished".to_owned(),
            ));
        }
    }
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
    let mut finish = Finish {
        slot: Arc::clone(&slot),
        stored: false,
    };
    drop(tokio::task::spawn_blocking(move || {
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(value) => Outcome::Done(value),
            Err(panic) => Outcome::Lost(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned()),
            ),
        };
        finish.store(outcome);
    }));
    Offloaded {
        slot,
        stop,
        finished: false,
    }
}

impl<T> Offloaded<T> {
    /// The work's outcome, awaited without blocking the runtime.
    pub(crate) async fn wait(mut self) -> Outcome<T> {
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
