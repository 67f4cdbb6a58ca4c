//! A service is live when it runs, answers and makes progress. The platform tells whether it
//! runs (`Platform::crashed`), the load engine whether requests make progress (`stop.stall`);
//! this module tells whether it answers: during the measurement each service's health check
//! goes on at its interval, and one that has failed for `health.hung_after` (a stopped or
//! deadlocked process answers nothing; a service whose node went down refuses or times out)
//! ends the trial with that reason.

use std::time::{Duration, Instant};

use aibench_plan::ServicePlan;
use aibench_platform::health::{probe, Check};
use aibench_platform::ServiceRecord;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A service judged hung or down.
#[derive(Debug)]
pub struct Unanswered {
    pub name: String,
    pub message: String,
}

/// The checks running for one measurement; dropping it stops them.
pub struct Liveness {
    rx: mpsc::Receiver<Unanswered>,
    _tasks: JoinSet<()>,
}

impl Liveness {
    /// The first service judged hung; never returns while all answer (or none is checked).
    pub async fn next(&mut self) -> Unanswered {
        match self.rx.recv().await {
            Some(u) => u,
            None => std::future::pending().await,
        }
    }
}

/// The longest a single check may wait for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Start checking every replica in `records` whose plan asks for it.
pub fn watch(records: &[ServiceRecord], plans: &[ServicePlan]) -> Liveness {
    let (tx, rx) = mpsc::channel(8);
    let mut tasks = JoinSet::new();
    for r in records {
        let Some(plan) = plans.iter().find(|p| p.name == r.service) else {
            continue;
        };
        let check = Check::from_plan(r.health, r.health_path.as_deref(), r.kind);
        if check == Check::None || plan.health.hung_after_s <= 0.0 {
            continue;
        }
        let hung_after = Duration::from_secs_f64(plan.health.hung_after_s);
        let interval = Duration::from_secs_f64(plan.health.interval_s.max(0.1));
        let target = Target {
            name: r.name.clone(),
            host: r.host.clone(),
            port: r.port,
            check,
        };
        tasks.spawn(target.watch(hung_after, interval, tx.clone()));
    }
    Liveness { rx, _tasks: tasks }
}

struct Target {
    name: String,
    host: String,
    port: u16,
    check: Check,
}

impl Target {
    async fn watch(self, hung_after: Duration, interval: Duration, tx: mpsc::Sender<Unanswered>) {
        let timeout = PROBE_TIMEOUT.min(hung_after);
        let mut failing_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match self.probe(timeout).await {
                Ok(()) => failing_since = None,
                Err(why) => {
                    let since = *failing_since.get_or_insert(started);
                    let failing = since.elapsed();
                    if failing >= hung_after {
                        let message = format!(
                            "service `{}` stopped answering during the measurement (hung, or its \
                             node is down): its health check ({}) has failed for {:.0}s; last: {why}",
                            self.name,
                            self.check.describe(),
                            failing.as_secs_f64()
                        );
                        let _ = tx
                            .send(Unanswered {
                                name: self.name,
                                message,
                            })
                            .await;
                        return;
                    }
                }
            }
            tokio::time::sleep_until((started + interval).into()).await;
        }
    }

    async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        probe(&self.check, addr, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn target(port: u16) -> Target {
        Target {
            name: "svc".into(),
            host: "127.0.0.1".into(),
            port,
            check: Check::Http {
                path: "/health".into(),
            },
        }
    }

    #[tokio::test]
    async fn a_server_that_accepts_but_never_answers_is_judged_hung() {
        // Accepted by the kernel (the listen backlog) and never read: a stopped process.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, mut rx) = mpsc::channel(1);
        let watching = tokio::spawn(target(port).watch(
            Duration::from_millis(300),
            Duration::from_millis(50),
            tx,
        ));
        let u = rx.recv().await.expect("judged");
        assert_eq!(u.name, "svc");
        assert!(u.message.contains("stopped answering"), "{}", u.message);
        assert!(u.message.contains("GET /health"), "{}", u.message);
        assert!(u.message.contains("no answer within"), "{}", u.message);
        watching.await.unwrap();
        drop(l);
    }

    #[tokio::test]
    async fn a_server_that_answers_is_left_alone_and_one_that_recovers_is_forgiven() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                // Every other check fails with an error status: never for long enough.
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer: &[u8] = if n % 2 == 0 {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
            }
        });
        let (tx, mut rx) = mpsc::channel(1);
        let watching =
            tokio::spawn(target(port).watch(Duration::from_secs(2), Duration::from_millis(10), tx));
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(rx.try_recv().is_err(), "judged a live service");
        watching.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_service_down() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(target(port).watch(Duration::from_millis(100), Duration::from_millis(20), tx));
        let u = rx.recv().await.expect("judged");
        assert!(u.message.contains("refused"), "{}", u.message);
    }
}
