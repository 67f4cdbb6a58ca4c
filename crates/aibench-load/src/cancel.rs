//! A cloneable cancellation handle.

use std::sync::Arc;

use tokio::sync::watch;

/// Cancels a run from outside (Ctrl-C, SIGTERM, the caller). Cloning gives another handle to the
/// same signal. Cancelling stops scheduling; requests in flight get the spec's grace period.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
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
        }
    }

    /// Signal cancellation (idempotent).
    pub fn cancel(&self) {
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
}
