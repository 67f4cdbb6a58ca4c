//! The driver interface: what the engine needs from a protocol, and nothing more.
//!
//! The engine (arrivals, scheduling, accounting, recording) never knows which protocol it
//! drives. A protocol is one module under `drivers/` that implements [`Driver`], plus one
//! variant of [`crate::Workload`] that registers it:
//!
//! - *prepare before the clock*: done when the driver is built (create keys, tables, buckets,
//!   collections; compute ground truth), in the `prepare` function of its module;
//! - *connect per user*: [`Driver::connect`], called ahead of the clock to open one
//!   connection per closed-loop user or open-loop slot, and again whenever a connection broke;
//! - *one operation, one record*: [`Driver::execute`] fills a [`RequestRecord`]: send time,
//!   first byte, end, operation name, bytes each way, outcome and error class;
//! - *its own summary fields*: the record's `op`, `batch`, `hit` and `neighbours_*` fields,
//!   which the accumulator turns into per-operation rates, hit ratio and recall@k.

use std::future::Future;
use std::time::Duration;

use aibench_results::{ErrorClass, RequestRecord};

use crate::client::{Clock, Limits};

/// A protocol driver. One value serves every user of a run: it holds what was prepared
/// before the clock (request bodies, keys, ground truth), shared read-only.
pub(crate) trait Driver: Send + Sync + 'static {
    /// One user's (or open-loop slot's) connection or session.
    type Conn: Send + Sync + 'static;

    /// Whether responses arrive piece by piece (a token stream), so that silence while a
    /// request is in flight means a stall (see [`crate::LoadSpec::stall`]).
    fn streams(&self) -> bool {
        false
    }

    /// Open a connection. Errors are messages: the engine records them as `connect` failures.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, String>> + Send;

    /// Carry out operation `id` (the request's sequence number: it picks what to do, so a
    /// seeded run repeats) over `slot`, connecting first if the slot is empty, and fill `rec`.
    /// On return `slot` holds the connection if it can be used again. `limits` bounds the
    /// operation by the request timeout and the run's abort (see [`guarded`]).
    fn execute<'a>(
        &'a self,
        slot: &'a mut Option<Self::Conn>,
        id: u64,
        clock: Clock,
        rec: &'a mut RequestRecord,
        limits: &'a mut Limits,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// A failed operation: its class and a short message (never a secret).
pub(crate) type Failure = (ErrorClass, String);

/// Run `work` under the request timeout and the run's abort; the common wrapper of drivers
/// that do not need the HTTP driver's finer timer handling.
pub(crate) async fn guarded<T>(
    limits: &mut Limits,
    timeout: Duration,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let (abort, timer) = limits.parts(timeout);
    tokio::select! {
        biased;
        () = abort => Err((ErrorClass::Cancelled, "run stopped and the grace period ran out".to_string())),
        r = work => r,
        () = timer => Err((ErrorClass::Timeout, format!("no complete response within {timeout:?}"))),
    }
}

/// Fill the record's end of an operation from its outcome.
pub(crate) fn finish(rec: &mut RequestRecord, clock: Clock, outcome: Result<(), Failure>) {
    let now = clock.now_us();
    rec.done_us = Some(now);
    match outcome {
        Ok(()) => {
            if rec.end_us.is_none() {
                rec.end_us = Some(now);
            }
        }
        Err((class, msg)) => {
            rec.end_us = None;
            rec.error = Some(class);
            rec.error_message = Some(crate::protocol::response::truncate(msg, 300));
        }
    }
}

/// Open a connection into an empty slot, bounded like the HTTP driver's connect.
pub(crate) async fn ensure<D: Driver>(
    driver: &D,
    slot: &mut Option<D::Conn>,
    timeout: Duration,
) -> Result<D::Conn, Failure> {
    if let Some(c) = slot.take() {
        return Ok(c);
    }
    let limit = CONNECT_TIMEOUT.min(timeout);
    match tokio::time::timeout(limit, driver.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(m)) => Err((ErrorClass::Connect, m)),
        Err(_) => Err((
            ErrorClass::Connect,
            format!("connect: no answer within {limit:?}"),
        )),
    }
}

/// Longest wait for a connection (the request's own timeout applies if shorter).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
