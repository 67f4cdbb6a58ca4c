//! The run: schedule requests (open or closed loop), send them, collect their records into the
//! accumulator and `requests.jsonl`, stop when told to, and lose nothing that completed.
//!
//! Threads and tasks:
//! - open loop: one OS thread paces arrivals against absolute deadlines (sub-millisecond, see
//!   [`crate::pacing`]) and spawns one task per request on the tokio runtime;
//! - closed loop: one task per user;
//! - one collector task feeds the accumulator, the error budget, the progress events and the
//!   record writer (whose own thread does the encoding and the I/O).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aibench_results::{
    Accumulator, AccumulatorConfig, ErrorClass, Phase, Progress, RecordWriter, RequestRecord,
    StopReason, Summary,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::arrival::Schedule;
use crate::cancel::Cancel;
use crate::client::{Activity, Clock, HttpDriver, Limits};
use crate::dataset::Dataset;
use crate::driver::Driver;
use crate::error::LoadError;
use crate::pacing;
use crate::protocol::{prepare, Endpoint, Target};
use crate::spec::{Arrival, CapPolicy, ErrorRate, LoadSpec, Pattern, Shard, Stop, ThinkTime};

/// Interval between progress snapshots.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// The live request rate is over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Records go to the writer thread in batches of this many, or whatever is pending every
/// [`WRITE_INTERVAL`] (see [`crate::records`] for why not one by one).
const WRITE_BATCH: usize = 512;
const WRITE_INTERVAL: Duration = Duration::from_millis(100);
/// Most connections opened ahead of an open-loop run.
const MAX_PREWARM: usize = 256;

/// How to run besides the load itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Write every request to this `requests.jsonl` (None: do not record).
    pub records: Option<PathBuf>,
    /// Progress snapshots every [`PROGRESS_INTERVAL`]; never blocks (a full channel skips one).
    pub events: Option<mpsc::Sender<Progress>>,
    /// Cancel from outside.
    pub cancel: Option<Cancel>,
    /// This process's part of a multi-process load.
    pub shard: Shard,
    /// Common start time of all shards (None: start as soon as connections are open).
    pub start_at: Option<SystemTime>,
    /// SLO thresholds and the late threshold for the summary.
    pub accumulator: AccumulatorConfig,
    /// Open loop: how long before each deadline the scheduler stops sleeping and spins.
    pub spin: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            records: None,
            events: None,
            cancel: None,
            shard: Shard::default(),
            start_at: None,
            accumulator: AccumulatorConfig::default(),
            spin: pacing::DEFAULT_SPIN,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// Everything measured, ready to merge with other shards or to save as a shard file.
    pub accumulator: Accumulator,
    pub summary: Summary,
    pub stop_reason: StopReason,
    /// Wall-clock time of the run's zero (all record times are relative to it).
    pub started_at: SystemTime,
    /// Lines written to `requests.jsonl`.
    pub records_written: u64,
    /// Requests written to a connection by this process.
    pub sent: u64,
}

/// Decides each request's phase from its intended send time, and when scheduling ends.
#[derive(Debug)]
struct Gate {
    warmup_us: u64,
    cooldown_us: u64,
    measure_end_us: Option<u64>,
    requests_left: Option<u64>,
    reason: Option<StopReason>,
}

impl Gate {
    fn new(spec: &LoadSpec, requests: Option<u64>) -> Gate {
        let warmup_us = micros(spec.warmup);
        Gate {
            warmup_us,
            cooldown_us: micros(spec.cooldown),
            measure_end_us: spec.stop.duration.map(|d| warmup_us + micros(d)),
            requests_left: requests,
            reason: spec.stop.duration.map(|_| StopReason::Duration),
        }
    }

    /// The phase of a request intended at `t_us`, or None when scheduling is over.
    fn admit(&mut self, t_us: u64) -> Option<Phase> {
        if t_us < self.warmup_us {
            return Some(Phase::Warmup);
        }
        if let Some(end) = self.measure_end_us {
            if t_us >= end {
                return (t_us < end + self.cooldown_us).then_some(Phase::Cooldown);
            }
        }
        if let Some(left) = &mut self.requests_left {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.measure_end_us = Some(t_us + 1);
                self.reason = Some(StopReason::Requests);
            }
        }
        Some(Phase::Measure)
    }

    /// Whether nothing intended at `t_us` or later would be admitted.
    fn over_by(&self, t_us: u64) -> bool {
        self.measure_end_us
            .is_some_and(|end| t_us >= end + self.cooldown_us)
    }

    fn phase_at(&self, t_us: u64) -> Phase {
        if t_us < self.warmup_us {
            Phase::Warmup
        } else if self.measure_end_us.is_some_and(|end| t_us >= end) {
            Phase::Cooldown
        } else {
            Phase::Measure
        }
    }
}

/// Soft stop: no more scheduling (cancellation or error budget).
#[derive(Debug, Default)]
struct StopSignal {
    flag: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    notify: Cancel,
}

impl StopSignal {
    fn trigger(&self, reason: StopReason) {
        let mut r = self.reason.lock().expect("stop reason lock");
        if r.is_none() {
            *r = Some(reason);
        }
        self.flag.store(true, Ordering::SeqCst);
        self.notify.cancel();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().expect("stop reason lock")
    }
}

// Records move by value: boxing the large variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(RequestRecord),
    Batch(Vec<RequestRecord>),
    End,
}

/// State shared by the scheduler, the request tasks and the collector.
struct Ctx<D: Driver> {
    driver: D,
    clock: Clock,
    timeout: Duration,
    shard: u32,
    tx: mpsc::UnboundedSender<Msg>,
    stop: StopSignal,
    abort: Cancel,
    gate: Mutex<Gate>,
    in_flight: AtomicU64,
    /// The last sign of progress, for the stall detector (see [`Activity`]).
    activity: Activity,
    idle: Notify,
    sent: AtomicU64,
    pool: Mutex<Vec<D::Conn>>,
    budget: Mutex<Budget>,
}

/// The error budget, judged as each request finishes (every phase counts).
#[derive(Debug)]
struct Budget {
    max_consecutive: Option<u64>,
    max_rate: Option<ErrorRate>,
    consecutive: u64,
    completed: u64,
    failed: u64,
}

impl Budget {
    fn new(stop: &Stop) -> Budget {
        Budget {
            max_consecutive: stop.max_consecutive_errors,
            max_rate: stop.max_error_rate,
            consecutive: 0,
            completed: 0,
            failed: 0,
        }
    }

    /// Count one outcome; true when the budget is spent.
    fn count(&mut self, error: Option<ErrorClass>) -> bool {
        match error {
            None => {
                self.consecutive = 0;
                self.completed += 1;
            }
            Some(e) if e.is_failure() => {
                self.consecutive += 1;
                self.failed += 1;
                self.completed += 1;
            }
            Some(_) => return false,
        }
        self.max_consecutive.is_some_and(|n| self.consecutive >= n)
            || self.max_rate.is_some_and(|r| {
                self.completed >= r.min_requests.max(1)
                    && self.failed as f64 / self.completed as f64 > r.rate
            })
    }
}

impl<D: Driver> Ctx<D> {
    fn begin(&self) {
        // A stall is counted from the later of the last progress and the moment requests were
        // in flight again.
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.activity.reset(self.clock.now_us());
        }
    }

    /// Count the request, hand its record to the collector, then leave the in-flight count
    /// (in this order, so that an idle engine has every open-loop record queued; closed-loop
    /// users hand theirs over by the time they stop, see [`Held`]).
    fn finish(&self, rec: RequestRecord) {
        self.account(&rec);
        let _ = self.tx.send(Msg::Record(rec));
        self.leave();
    }

    /// The sent count and the error budget, as soon as a request is over.
    fn account(&self, rec: &RequestRecord) {
        self.activity.touch(self.clock.now_us());
        if rec.sent_us.is_some() {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        if self.budget.lock().expect("budget lock").count(rec.error) {
            self.stop.trigger(StopReason::ErrorBudget);
        }
    }

    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn new_record(&self, id: u64, phase: Phase, intended_us: u64) -> RequestRecord {
        let mut r = RequestRecord::new(id, phase, intended_us);
        r.shard = self.shard;
        r
    }

    /// Returns once requests have been in flight for `stall` with no progress (never if
    /// `stall` is `None`).
    async fn stalled(&self, stall: Option<Duration>) {
        let Some(stall) = stall else {
            return std::future::pending().await;
        };
        let check = (stall / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::time::sleep(check).await;
            let quiet = self.clock.now_us().saturating_sub(self.activity.last_us());
            if self.in_flight.load(Ordering::SeqCst) > 0 && quiet >= micros(stall) {
                return;
            }
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Run the load described by `spec` against `target` with prompts from `dataset`.
///
/// Needs a tokio runtime (multi-thread recommended). Request bodies are serialized and
/// connections opened before the clock starts. Returns once every request has been recorded.
pub async fn run(
    spec: &LoadSpec,
    target: &Target,
    dataset: &Dataset,
    options: RunOptions,
) -> Result<RunOutcome, LoadError> {
    spec.validate(options.shard)?;
    if dataset.is_empty() {
        return Err(LoadError::InvalidSpec(vec![
            "the dataset has no prompts".into()
        ]));
    }
    let driver = HttpDriver {
        endpoint: Endpoint::resolve(target).await?,
        prepared: prepare(target, dataset)?,
        timeout: spec.timeout,
    };
    run_driver(spec, driver, options).await
}

/// Run the load described by `spec` through `driver` (see [`crate::driver`]): the one engine
/// behind every protocol.
pub(crate) async fn run_driver<D: Driver>(
    spec: &LoadSpec,
    driver: D,
    options: RunOptions,
) -> Result<RunOutcome, LoadError> {
    spec.validate(options.shard)?;
    let handle =
        tokio::runtime::Handle::try_current().map_err(|e| LoadError::Runtime(e.to_string()))?;
    let writer = match &options.records {
        Some(path) => Some(
            RecordWriter::create(path).map_err(|source| LoadError::Records {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let shard = options.shard;
    let gate_requests = match (&spec.pattern, spec.stop.requests) {
        (Pattern::ClosedLoop { .. }, Some(n)) => Some(shard.share(n)),
        (_, n) => n,
    };

    // Open connections before the clock starts.
    let prewarm_n = match &spec.pattern {
        Pattern::ClosedLoop { users, .. } => shard.share(*users as u64) as usize,
        Pattern::OpenLoop {
            arrival,
            max_in_flight,
            ..
        } => {
            let want =
                max_in_flight.unwrap_or_else(|| arrival.peak_rate().ceil().max(1.0) as usize);
            (shard.share(want as u64) as usize).clamp(1, MAX_PREWARM)
        }
    };
    let stall = spec.stall(driver.streams());
    let driver = Arc::new(driver);
    let mut conns = prewarm(
        &driver,
        prewarm_n,
        spec.timeout.min(Duration::from_secs(10)),
    )
    .await;
    let driver = Arc::try_unwrap(driver).unwrap_or_else(|_| unreachable!("prewarm is over"));
    // Closed-loop users' timers enter the timer wheel now, not in the first burst of requests
    // (see `Limits`).
    let abort = Cancel::new();
    let activity = Activity::default();
    let mut user_limits: Vec<Limits> = match &spec.pattern {
        Pattern::ClosedLoop { .. } => (0..prewarm_n)
            .map(|_| Limits::new(&abort, spec.timeout, &activity))
            .collect(),
        Pattern::OpenLoop { .. } => Vec::new(),
    };

    let (tx, rx) = mpsc::unbounded_channel();
    let (clock, started_at) = start_clock(options.start_at);
    let ctx = Arc::new(Ctx {
        driver,
        clock,
        timeout: spec.timeout,
        shard: shard.index,
        tx,
        stop: StopSignal::default(),
        abort,
        gate: Mutex::new(Gate::new(spec, gate_requests)),
        in_flight: AtomicU64::new(0),
        activity,
        idle: Notify::new(),
        sent: AtomicU64::new(0),
        pool: Mutex::new(Vec::new()),
        budget: Mutex::new(Budget::new(&spec.stop)),
    });
    let collector = tokio::spawn(collect(
        rx,
        Arc::clone(&ctx),
        Accumulator::new(AccumulatorConfig {
            // A duration-bounded measurement has a planned window: throughput counts what
            // completes inside it, and what drains after never stretches it.
            window_us: spec.stop.duration.map(|d| {
                let start = micros(spec.warmup);
                [start, start.saturating_add(micros(d))]
            }),
            ..options.accumulator
        }),
        writer,
        options.events.clone(),
    ));

    // Wait for the common start (a cancel meanwhile stops the run before its first request).
    let external = options.cancel.clone().unwrap_or_default();
    if clock.start > Instant::now() {
        tokio::select! {
            () = tokio::time::sleep_until(clock.start.into()) => {}
            () = external.cancelled() => ctx.stop.trigger(StopReason::Cancelled),
        }
    }
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<Option<StopReason>>();
    match &spec.pattern {
        Pattern::ClosedLoop {
            users,
            think_time,
            ramp_up,
        } => {
            let users = *users as u64;
            let mut handles = tokio::task::JoinSet::new();
            for u in (0..users).filter(|u| shard.owns(*u)) {
                let start_us = if users > 1 {
                    micros(*ramp_up) * u / users
                } else {
                    0
                };
                let user = User {
                    ctx: Arc::clone(&ctx),
                    index: u,
                    users,
                    start_us,
                    think: *think_time,
                    backoff: spec.stop.error_backoff,
                    seed: spec.seed,
                    conn: conns.pop(),
                };
                handles.spawn(user.run(user_limits.pop()));
            }
            let watch = Arc::clone(&ctx);
            tokio::spawn(async move {
                while let Some(ended) = handles.join_next().await {
                    // A user task that panicked is a bug of aibench: stop, keep what was
                    // recorded, and say so in the summary.
                    if ended.is_err_and(|e| e.is_panic()) {
                        watch.stop.trigger(StopReason::InternalError);
                    }
                }
                let _ = done_tx.send(None);
            });
        }
        Pattern::OpenLoop {
            arrival,
            max_in_flight,
            on_cap,
        } => {
            ctx.pool.lock().expect("pool lock").append(&mut conns);
            let scheduler = OpenLoop {
                ctx: Arc::clone(&ctx),
                arrival: arrival.clone(),
                cap: max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
                on_cap: *on_cap,
                seed: spec.seed,
                shard,
                spin: options.spin,
                handle: handle.clone(),
            };
            std::thread::Builder::new()
                .name("aibench-scheduler".into())
                .spawn(move || {
                    pacing::tighten_timer_slack();
                    pacing::request_short_slice(pacing::SHORT_SLICE);
                    let stop = Arc::clone(&scheduler.ctx);
                    // A panic here is a bug of aibench: stop, keep what was recorded, and say
                    // so in the summary (the panic message is on stderr).
                    let reason =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scheduler.run()))
                            .unwrap_or_else(|_| {
                                stop.stop.trigger(StopReason::InternalError);
                                Some(StopReason::InternalError)
                            });
                    let _ = done_tx.send(reason);
                })
                .map_err(|e| {
                    LoadError::Runtime(format!("cannot start the scheduler thread: {e}"))
                })?;
        }
    }

    // The hard deadline: whatever happens, scheduling and draining end by then.
    let deadline = tokio::time::Instant::from_std(clock.start)
        .checked_add(spec.deadline())
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    // Scheduling: until the pattern ends, or a stop.
    let mut schedule_end: Option<Option<StopReason>> = None;
    tokio::select! {
        r = &mut done_rx => schedule_end = Some(r.ok().flatten()),
        () = external.cancelled() => ctx.stop.trigger(StopReason::Cancelled),
        () = ctx.stop.notify.cancelled() => {}
        () = tokio::time::sleep_until(deadline) => ctx.stop.trigger(StopReason::Deadline),
        () = ctx.stalled(stall) => ctx.stop.trigger(StopReason::Stalled),
    }
    // Draining: requests in flight finish (each bounded by its timeout), unless stopped.
    if !ctx.stop.is_set() {
        tokio::select! {
            () = ctx.wait_idle() => {}
            () = external.cancelled() => ctx.stop.trigger(StopReason::Cancelled),
            () = ctx.stop.notify.cancelled() => {}
            () = tokio::time::sleep_until(deadline) => ctx.stop.trigger(StopReason::Deadline),
            () = ctx.stalled(stall) => ctx.stop.trigger(StopReason::Stalled),
        }
    }
    // Stopped: the pattern stops scheduling at once; what is in flight gets the grace period,
    // then is abandoned (and recorded as cancelled).
    if ctx.stop.is_set() {
        let everything_done = async {
            if schedule_end.is_none() {
                schedule_end = Some((&mut done_rx).await.ok().flatten());
            }
            ctx.wait_idle().await;
        };
        if tokio::time::timeout(spec.grace, everything_done)
            .await
            .is_err()
        {
            ctx.abort.cancel();
        }
    }
    if schedule_end.is_none() {
        schedule_end = Some(done_rx.await.ok().flatten());
    }
    // Nothing can start any more: once idle, every record is in the collector's queue.
    ctx.wait_idle().await;
    let _ = ctx.tx.send(Msg::End);
    let (mut accumulator, writer) = collector
        .await
        .map_err(|e| LoadError::Runtime(format!("collector: {e}")))?;

    let gate_reason = ctx.gate.lock().expect("gate lock").reason;
    let stop_reason = ctx
        .stop
        .reason()
        .or(schedule_end.flatten())
        .or(gate_reason)
        .unwrap_or(StopReason::ScheduleEnd);
    accumulator.set_stop_reason(stop_reason);
    let records_written = match writer {
        Some(w) => {
            let path = w.path().map(Path::to_path_buf).unwrap_or_default();
            w.close()
                .map_err(|source| LoadError::Records { path, source })?
        }
        None => 0,
    };
    Ok(RunOutcome {
        summary: accumulator.summary(),
        accumulator,
        stop_reason,
        started_at,
        records_written,
        sent: ctx.sent.load(Ordering::Relaxed),
    })
}

/// The run's zero: the common start if given (even if already past, so that all shards share
/// one time base), otherwise now.
fn start_clock(start_at: Option<SystemTime>) -> (Clock, SystemTime) {
    let (now_sys, now) = (SystemTime::now(), Instant::now());
    match start_at {
        Some(t) => {
            let start = match t.duration_since(now_sys) {
                Ok(ahead) => now + ahead,
                Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
            };
            (Clock { start }, t)
        }
        None => (Clock { start: now }, now_sys),
    }
}

/// Open `n` connections at once; the ones that fail are simply not there (the requests will
/// connect, and record the failure if it persists).
async fn prewarm<D: Driver>(driver: &Arc<D>, n: usize, limit: Duration) -> Vec<D::Conn> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let d = Arc::clone(driver);
            tokio::spawn(async move { tokio::time::timeout(limit, d.connect()).await })
        })
        .collect();
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Ok(Ok(c))) = t.await {
            conns.push(c);
        }
    }
    conns
}

/// The collector: accumulator, error budget, progress, record writer.
async fn collect<D: Driver>(
    mut rx: mpsc::UnboundedReceiver<Msg>,
    ctx: Arc<Ctx<D>>,
    mut acc: Accumulator,
    writer: Option<RecordWriter>,
    events: Option<mpsc::Sender<Progress>>,
) -> (Accumulator, Option<RecordWriter>) {
    let (mut succeeded, mut errors, mut dropped) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Completions at recent ticks, for a rate over the last few seconds: over one 250 ms tick a
    // few requests a second read as 0 or 8/s in turn.
    let mut recent: std::collections::VecDeque<(Instant, u64)> =
        std::collections::VecDeque::from([(Instant::now(), 0u64)]);
    let mut batch: Vec<RequestRecord> = Vec::new();
    let mut write_tick = tokio::time::interval(WRITE_INTERVAL);
    write_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hand_over = |batch: &mut Vec<RequestRecord>| {
        if let Some(w) = &writer {
            if !batch.is_empty() {
                w.write_batch(std::mem::replace(batch, Vec::with_capacity(WRITE_BATCH)));
            }
        }
    };
    let snapshot = |acc: &Accumulator, succeeded, errors, dropped, rate, done| {
        let elapsed_us = ctx.clock.now_us();
        Progress {
            elapsed: Duration::from_micros(elapsed_us),
            phase: ctx.gate.lock().expect("gate lock").phase_at(elapsed_us),
            sent: ctx.sent.load(Ordering::Relaxed),
            succeeded,
            errors,
            dropped,
            in_flight: ctx.in_flight.load(Ordering::Relaxed),
            rate_rps: rate,
            ttft_p99_ms: acc.ttft_quantile_ms(0.99),
            e2e_p99_ms: acc.e2e_quantile_ms(0.99),
            done,
        }
    };
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let mut take = |r: RequestRecord| {
                    match r.error {
                        None => succeeded += 1,
                        Some(ErrorClass::Dropped) => dropped += 1,
                        Some(ErrorClass::Cancelled) => {}
                        Some(_) => errors += 1,
                    }
                    acc.add(&r);
                    if writer.is_some() {
                        batch.push(r);
                        if batch.len() >= WRITE_BATCH {
                            hand_over(&mut batch);
                        }
                    }
                };
                match msg {
                    Some(Msg::Record(r)) => take(r),
                    Some(Msg::Batch(rs)) => rs.into_iter().for_each(take),
                    Some(Msg::End) | None => break,
                }
            }
            _ = write_tick.tick(), if !batch.is_empty() => hand_over(&mut batch),
            _ = tick.tick(), if events.is_some() => {
                let now = Instant::now();
                while recent.len() > 1
                    && now.duration_since(recent[1].0) >= RATE_WINDOW
                {
                    recent.pop_front();
                }
                let (since, base) = recent[0];
                let dt = now.duration_since(since).as_secs_f64();
                let rate = if dt > 0.0 { (succeeded - base) as f64 / dt } else { 0.0 };
                recent.push_back((now, succeeded));
                if let Some(ev) = &events {
                    let _ = ev.try_send(snapshot(&acc, succeeded, errors, dropped, rate, false));
                }
            }
        }
    }
    hand_over(&mut batch);
    if let Some(ev) = &events {
        let elapsed = ctx.clock.now_us() as f64 / 1e6;
        let rate = if elapsed > 0.0 {
            succeeded as f64 / elapsed
        } else {
            0.0
        };
        let _ = ev.try_send(snapshot(&acc, succeeded, errors, dropped, rate, true));
    }
    (acc, writer)
}

/// A closed-loop user hands quick requests' records to the collector this many at a time...
const HELD_BATCH: usize = 16;
/// ...or once the oldest it holds is this old; a request that took longer goes at once (with
/// whatever was held). At tens of thousands of requests per second, one channel message and
/// one wake-up of the collector per request is a tenth of the client's CPU.
const HELD_FOR: Duration = Duration::from_millis(20);

/// A closed-loop user's finished records not yet handed to the collector; whatever is left is
/// handed over when the user stops (so, since the run ends the collector only after every user
/// has stopped, nothing is lost).
struct Held<'a, D: Driver> {
    ctx: &'a Ctx<D>,
    recs: Vec<RequestRecord>,
    /// When the oldest record held was done (µs on the run's clock).
    since_us: Option<u64>,
}

impl<'a, D: Driver> Held<'a, D> {
    fn new(ctx: &'a Ctx<D>) -> Held<'a, D> {
        Held {
            ctx,
            recs: Vec::new(),
            since_us: None,
        }
    }

    fn push(&mut self, rec: RequestRecord) {
        let (quick, done_us) = match (rec.sent_us, rec.done_us) {
            (Some(s), Some(d)) => (d.saturating_sub(s) < micros(HELD_FOR), d),
            _ => (false, 0),
        };
        self.recs.push(rec);
        let since_us = *self.since_us.get_or_insert(done_us);
        if !quick
            || self.recs.len() >= HELD_BATCH
            || done_us.saturating_sub(since_us) >= micros(HELD_FOR)
        {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        self.since_us = None;
        let msg = match self.recs.len() {
            0 => return,
            1 => Msg::Record(self.recs.pop().expect("one record")),
            _ => Msg::Batch(std::mem::replace(
                &mut self.recs,
                Vec::with_capacity(HELD_BATCH),
            )),
        };
        let _ = self.ctx.tx.send(msg);
    }
}

impl<D: Driver> Drop for Held<'_, D> {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// One closed-loop user.
struct User<D: Driver> {
    ctx: Arc<Ctx<D>>,
    index: u64,
    users: u64,
    start_us: u64,
    think: ThinkTime,
    backoff: Duration,
    seed: u64,
    conn: Option<D::Conn>,
}

impl<D: Driver> User<D> {
    /// `limits` made ahead of time, if any (see `Limits`).
    async fn run(mut self, limits: Option<Limits>) {
        let ctx = Arc::clone(&self.ctx);
        let mut rng =
            SmallRng::seed_from_u64(self.seed ^ self.index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if self.start_us > 0 && !self.pause_until(self.start_us).await {
            return;
        }
        let mut failures_in_a_row = 0u32;
        let mut limits =
            limits.unwrap_or_else(|| Limits::new(&ctx.abort, ctx.timeout, &ctx.activity));
        let mut held = Held::new(&ctx);
        for j in 0u64.. {
            if ctx.stop.is_set() {
                return;
            }
            let now_us = ctx.clock.now_us();
            let Some(phase) = ctx.gate.lock().expect("gate lock").admit(now_us) else {
                return;
            };
            let id = j * self.users + self.index;
            let mut rec = ctx.new_record(id, phase, now_us);
            rec.worker = Some(self.index as u32);
            ctx.begin();
            ctx.driver
                .execute(&mut self.conn, id, ctx.clock, &mut rec, &mut limits)
                .await;
            let failed = rec.error.is_some();
            let refused = rec.error == Some(ErrorClass::Connect);
            ctx.account(&rec);
            held.push(rec);
            ctx.leave();

            let wait = if failed {
                failures_in_a_row += 1;
                let configured = if self.backoff.is_zero() {
                    Duration::ZERO
                } else {
                    self.backoff * (1u32 << (failures_in_a_row - 1).min(3))
                };
                // A service that refuses connections is down, not fast: trying again at once
                // would record thousands of errors a second and measure nothing.
                if refused {
                    configured.max(connect_backoff(failures_in_a_row))
                } else if configured.is_zero() {
                    sample_think(&self.think, &mut rng)
                } else {
                    configured
                }
            } else {
                failures_in_a_row = 0;
                sample_think(&self.think, &mut rng)
            };
            if !wait.is_zero() {
                // Nothing waits in `held` while the user thinks.
                held.hand_over();
                if !self.pause_until(ctx.clock.now_us() + micros(wait)).await {
                    return;
                }
            }
        }
    }

    /// Sleep until `t_us`; false if the run stops first or nothing would be admitted then.
    async fn pause_until(&self, t_us: u64) -> bool {
        if self.ctx.gate.lock().expect("gate lock").over_by(t_us) {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.ctx.clock.instant(t_us).into()) => true,
            () = self.ctx.stop.notify.cancelled() => false,
        }
    }
}

/// A closed-loop user's pause after its `n`-th failure in a row that could not connect:
/// 10 ms, doubling, at most 1 s.
pub(crate) fn connect_backoff(n: u32) -> Duration {
    (CONNECT_BACKOFF * (1u32 << n.saturating_sub(1).min(7))).min(MAX_CONNECT_BACKOFF)
}

const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(1);

fn sample_think(think: &ThinkTime, rng: &mut SmallRng) -> Duration {
    match *think {
        ThinkTime::None => Duration::ZERO,
        ThinkTime::Fixed(d) => d,
        ThinkTime::Exponential { mean } => {
            if mean.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(
                    Exp::new(1.0).expect("rate 1").sample(rng) * mean.as_secs_f64(),
                )
            }
        }
        ThinkTime::Uniform { min, max } => {
            Duration::from_secs_f64(rng.random_range(min.as_secs_f64()..=max.as_secs_f64()))
        }
    }
}

/// The open-loop scheduler starts each request on its own thread (see [`OpenLoop::run`]) unless
/// it is at least this late and getting later.
const LATE: Duration = Duration::from_millis(1);

/// The open-loop scheduler, on its own thread.
struct OpenLoop<D: Driver> {
    ctx: Arc<Ctx<D>>,
    arrival: Arrival,
    cap: Option<Arc<Semaphore>>,
    on_cap: CapPolicy,
    seed: u64,
    shard: Shard,
    spin: Duration,
    handle: tokio::runtime::Handle,
}

enum Slot {
    Free,
    Held(OwnedSemaphorePermit),
    Queued(Arc<Semaphore>),
}

impl<D: Driver> OpenLoop<D> {
    /// Returns why scheduling ended (None when the gate ended it).
    fn run(self) -> Option<StopReason> {
        let ctx = &self.ctx;
        // Requests started on this thread register their sockets and timers with the runtime.
        let _runtime = self.handle.enter();
        let mut last_late_us = 0u64;
        for (k, offset) in Schedule::new(&self.arrival, self.seed).enumerate() {
            let id = k as u64;
            let t_us = micros(offset);
            let phase = ctx.gate.lock().expect("gate lock").admit(t_us)?;
            if !self.shard.owns(id) {
                continue;
            }
            if pacing::sleep_until(ctx.clock.instant(t_us), self.spin, &ctx.stop.flag) {
                return None;
            }
            let slot = match &self.cap {
                None => Slot::Free,
                Some(sem) => match Arc::clone(sem).try_acquire_owned() {
                    Ok(p) => Slot::Held(p),
                    Err(_) if self.on_cap == CapPolicy::Late => Slot::Queued(Arc::clone(sem)),
                    Err(_) => {
                        let mut rec = ctx.new_record(id, phase, t_us);
                        rec.error = Some(ErrorClass::Dropped);
                        rec.error_message =
                            Some("in-flight cap reached at the intended send time".into());
                        ctx.begin();
                        ctx.finish(rec);
                        continue;
                    }
                },
            };
            ctx.begin();
            let request = open_request(Arc::clone(ctx), id, phase, t_us, slot);
            let late_us = ctx.clock.now_us().saturating_sub(t_us);
            let falling_behind = late_us >= micros(LATE) && late_us > last_late_us;
            last_late_us = late_us;
            if !falling_behind {
                // Start the request here: it takes a pooled connection and writes the request
                // to the socket before this thread looks at the next arrival; the runtime takes
                // over once it waits for the response. Handing it over first would put a
                // worker's wake-up (another thread scheduled by the OS) between the deadline
                // and the send.
                let mut request = Box::pin(request);
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                if std::future::Future::poll(request.as_mut(), &mut cx).is_pending() {
                    self.handle.spawn(request);
                }
            } else {
                // Falling behind (late, and later than the last arrival): this thread alone
                // may not keep up with the rate, so the workers start requests in parallel.
                // (Catching up after a stall, sending here is quicker.)
                self.handle.spawn(request);
            }
        }
        Some(StopReason::ScheduleEnd)
    }
}

async fn open_request<D: Driver>(
    ctx: Arc<Ctx<D>>,
    id: u64,
    phase: Phase,
    intended_us: u64,
    slot: Slot,
) {
    let mut rec = ctx.new_record(id, phase, intended_us);
    let _permit = match slot {
        Slot::Free => None,
        Slot::Held(p) => Some(p),
        Slot::Queued(sem) => {
            tokio::select! {
                p = sem.acquire_owned() => p.ok(),
                () = ctx.stop.notify.cancelled() => {
                    rec.error = Some(ErrorClass::Cancelled);
                    rec.error_message = Some("run stopped while waiting for an in-flight slot".into());
                    ctx.finish(rec);
                    return;
                }
            }
        }
    };
    let mut conn = ctx.pool.lock().expect("pool lock").pop();
    ctx.driver
        .execute(
            &mut conn,
            id,
            ctx.clock,
            &mut rec,
            &mut Limits::new(&ctx.abort, ctx.timeout, &ctx.activity),
        )
        .await;
    if let Some(c) = conn {
        ctx.pool.lock().expect("pool lock").push(c);
    }
    ctx.finish(rec);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(duration: Option<u64>, requests: Option<u64>, warmup: u64, cooldown: u64) -> LoadSpec {
        LoadSpec {
            warmup: Duration::from_secs(warmup),
            cooldown: Duration::from_secs(cooldown),
            stop: Stop {
                duration: duration.map(Duration::from_secs),
                requests,
                ..Stop::default()
            },
            ..LoadSpec::default()
        }
    }

    #[test]
    fn gate_phases_by_time() {
        let mut g = Gate::new(&spec(Some(10), None, 2, 3), None);
        assert_eq!(g.admit(0), Some(Phase::Warmup));
        assert_eq!(g.admit(2_000_000), Some(Phase::Measure));
        assert_eq!(g.admit(11_999_999), Some(Phase::Measure));
        assert_eq!(g.admit(12_000_000), Some(Phase::Cooldown));
        assert_eq!(g.admit(15_000_000), None);
        assert_eq!(g.reason, Some(StopReason::Duration));
    }

    #[test]
    fn gate_counts_measured_requests() {
        let mut g = Gate::new(&spec(None, Some(3), 1, 1), Some(3));
        assert_eq!(g.admit(500_000), Some(Phase::Warmup));
        for t in [1_000_000, 1_100_000, 1_200_000] {
            assert_eq!(g.admit(t), Some(Phase::Measure));
        }
        assert_eq!(g.admit(1_300_000), Some(Phase::Cooldown));
        assert_eq!(g.admit(2_200_001), None);
        assert_eq!(g.reason, Some(StopReason::Requests));
    }
}
