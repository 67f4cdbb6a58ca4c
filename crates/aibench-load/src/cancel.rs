//! A cloneable cancellation handle.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// Cancels a run from outside (Ctrl-C, SIGTERM, the caller). Cloning gives another handle to the
/// same signal. Cancelling stops scheduling; requests in flight get the spec's grace period.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
    /// Set before the watch changes: a check that costs one load, for [`AbortWatch`].
    set: Arc<AtomicBool>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel {
            tx: Arc::new(watch::Sender::new(false)),
            set: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Signal cancellation (idempotent).
    pub fn cancel(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Waits for a [`Cancel`] across many requests of one task, polled through `&mut`.
///
/// `Cancel::cancelled` subscribes to the signal and registers a waker each time it is created,
/// and each poll of it takes the signal's locks. A request polls its cancel branch at every
/// wake-up (once per streamed chunk), so this registers once, when first polled, and afterwards
/// only loads a flag while it is polled with the same waker (the same task); polled with another
/// (a request started on the open-loop scheduler's thread, then handed to the runtime), it
/// registers again.
pub(crate) struct AbortWatch {
    set: Arc<AtomicBool>,
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The waker registered with `wait`.
    armed: Option<Waker>,
}

impl AbortWatch {
    pub fn new(cancel: &Cancel) -> AbortWatch {
        let c = cancel.clone();
        AbortWatch {
            set: Arc::clone(&cancel.set),
            wait: Box::pin(async move { c.cancelled().await }),
            armed: None,
        }
    }
}

impl Future for AbortWatch {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if self.wait.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            self.armed = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelled_resolves_for_every_clone() {
        let c = Cancel::new();
        let d = c.clone();
        let waiter = tokio::spawn(async move { d.cancelled().await });
        assert!(!c.is_cancelled());
        c.cancel();
        waiter.await.unwrap();
        assert!(c.is_cancelled());
        c.cancelled().await;
    }

    #[tokio::test]
    async fn abort_watch_wakes_its_task_and_stays_ready() {
        let c = Cancel::new();
        let d = c.clone();
        let waiter = tokio::spawn(async move {
            let mut w = AbortWatch::new(&d);
            // Polled many times while pending, as a request's select does.
            for _ in 0..3 {
                assert!(futures_poll_once(&mut w).await.is_pending());
            }
            (&mut w).await;
            (&mut w).await;
        });
        tokio::task::yield_now().await;
        c.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }

    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }
}
