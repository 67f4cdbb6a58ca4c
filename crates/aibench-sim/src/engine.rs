//! The batching engine: one task stepping in a loop, like vLLM's continuous batching.
//!
//! Each step it (1) makes room in the KV cache for one more token of every running sequence,
//! preempting the newest sequence back to the waiting queue when the cache is full, (2) when
//! nothing was preempted, admits waiting sequences in arrival order while the batch, the KV cache
//! and the prefill token budget allow, (3) sleeps until the step's absolute deadline, and
//! (4) emits one token to every running sequence. The loop runs on a thread of its own. Step time is
//! `decode_base + decode_per_seq x running`, plus `prefill_base + prefill_per_token x tokens`
//! when sequences were admitted (a preempted sequence recomputes its prompt and its output so
//! far), times the jitter factor.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::Rng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::metrics::{FinishReason, Metrics};
use crate::SimConfig;

/// One token sent to a request, with the engine-side times the metrics are built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenEvent {
    /// Which choice of the request (prompt index x n + completion index).
    pub choice: u32,
    /// When the token was scheduled to be sent (the step's deadline).
    pub at: Instant,
    /// When the sequence was first scheduled (end of its queueing).
    pub scheduled: Instant,
    /// Set on the sequence's last token.
    pub finish: Option<FinishReason>,
}

/// A sequence handed to the engine.
pub(crate) struct SeqRequest {
    pub choice: u32,
    pub prompt_tokens: u32,
    /// How many tokens to generate before finishing with `finish`.
    pub output_tokens: u32,
    pub finish: FinishReason,
    pub events: UnboundedSender<TokenEvent>,
}

struct Seq {
    req: SeqRequest,
    generated: u32,
    blocks: u32,
    scheduled: Option<Instant>,
}

impl Seq {
    /// Tokens the KV cache must hold before this step's token: prompt plus output so far.
    fn tokens(&self) -> u32 {
        self.req.prompt_tokens + self.generated
    }
}

struct Params {
    max_batch: usize,
    block_size: u32,
    total_blocks: u32,
    max_batched_tokens: u32,
    prefill_base: f64,
    prefill_per_token: f64,
    decode_base: f64,
    decode_per_seq: f64,
    jitter: f64,
}

pub(crate) struct Engine {
    rx: UnboundedReceiver<SeqRequest>,
    metrics: Arc<Metrics>,
    params: Params,
    rng: SmallRng,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    free_blocks: u32,
}

impl Engine {
    pub(crate) fn new(
        config: &SimConfig,
        metrics: Arc<Metrics>,
        rng: SmallRng,
        rx: UnboundedReceiver<SeqRequest>,
    ) -> Engine {
        let total_blocks = config.kv_blocks();
        Engine {
            rx,
            metrics,
            params: Params {
                max_batch: config.max_batch as usize,
                block_size: config.block_size,
                total_blocks,
                max_batched_tokens: config.max_batched_tokens,
                prefill_base: config.prefill_base.secs(),
                prefill_per_token: config.prefill_per_token.secs(),
                decode_base: config.decode_base.secs(),
                decode_per_seq: config.decode_per_seq.secs(),
                jitter: config.jitter,
            },
            rng,
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_blocks: total_blocks,
        }
    }

    /// Step until every request sender is gone. Runs on its own thread: steps sleep on the OS's
    /// high-resolution timer, where tokio's timer would round each deadline up to a millisecond.
    pub(crate) fn run(mut self) {
        crate::pacer::tighten_timer_slack();
        let mut step_start = Instant::now();
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.publish_gauges();
                match self.rx.blocking_recv() {
                    Some(req) => self.enqueue(req),
                    None => return,
                }
                step_start = Instant::now();
            }
            while let Ok(req) = self.rx.try_recv() {
                self.enqueue(req);
            }
            self.waiting.retain(|seq| !seq.req.events.is_closed());
            // Sequences admitted now were scheduled now (after they arrived, even when the
            // engine runs late).
            let prefill = self.schedule(Instant::now());
            if self.running.is_empty() {
                continue;
            }
            let step = self.step_time(prefill);
            let deadline = step_start + step;
            self.publish_gauges();
            sleep_until(deadline);
            self.emit(deadline);
            // Absolute deadlines: the next step starts where this one was due to end, unless the
            // engine fell more than a whole step behind (then it restarts from now).
            let now = Instant::now();
            step_start = if now > deadline + step { now } else { deadline };
        }
    }

    fn enqueue(&mut self, req: SeqRequest) {
        self.waiting.push_back(Seq {
            req,
            generated: 0,
            blocks: 0,
            scheduled: None,
        });
    }

    fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.params.block_size)
    }

    /// Reserve room for this step's tokens, preempting when the KV cache is full, then admit
    /// waiting sequences. Returns the prompt tokens to prefill when any sequence was admitted.
    fn schedule(&mut self, now: Instant) -> Option<u32> {
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() {
            let seq = &self.running[i];
            let need = self.blocks_for(seq.tokens() + 1).saturating_sub(seq.blocks);
            if need <= self.free_blocks {
                self.free_blocks -= need;
                self.running[i].blocks += need;
                i += 1;
                continue;
            }
            // Recompute preemption of the newest sequence (which may be this one).
            let Some(mut victim) = self.running.pop() else {
                break;
            };
            self.free_blocks += victim.blocks;
            victim.blocks = 0;
            self.metrics.preemptions.fetch_add(1, Relaxed);
            self.waiting.push_front(victim);
            preempted = true;
        }
        if preempted {
            return None;
        }
        let mut prefill = 0u32;
        let mut admitted = 0usize;
        while self.running.len() < self.params.max_batch {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let tokens = front.tokens();
            let need = self.blocks_for(tokens + 1);
            if need > self.free_blocks {
                break;
            }
            if admitted > 0 && prefill + tokens > self.params.max_batched_tokens {
                break;
            }
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            self.free_blocks -= need;
            seq.blocks = need;
            seq.scheduled.get_or_insert(now);
            prefill += tokens;
            admitted += 1;
            self.running.push(seq);
        }
        (admitted > 0).then_some(prefill)
    }

    fn step_time(&mut self, prefill: Option<u32>) -> Duration {
        let p = &self.params;
        let mut secs = p.decode_base + p.decode_per_seq * self.running.len() as f64;
        if let Some(tokens) = prefill {
            secs += p.prefill_base + p.prefill_per_token * f64::from(tokens);
        }
        if p.jitter > 0.0 {
            secs *= 1.0 + p.jitter * self.rng.random_range(-1.0..=1.0);
        }
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// One token to every running sequence; finished and abandoned sequences leave the batch.
    fn emit(&mut self, at: Instant) {
        let mut freed = 0;
        self.running.retain_mut(|seq| {
            seq.generated += 1;
            let done = seq.generated >= seq.req.output_tokens;
            let event = TokenEvent {
                choice: seq.req.choice,
                at,
                scheduled: seq.scheduled.unwrap_or(at),
                finish: done.then_some(seq.req.finish),
            };
            let delivered = seq.req.events.send(event).is_ok();
            if done || !delivered {
                freed += seq.blocks;
                false
            } else {
                true
            }
        });
        self.free_blocks += freed;
    }

    fn publish_gauges(&self) {
        let m = &self.metrics;
        m.running.store(self.running.len() as u64, Relaxed);
        m.waiting
            .store((self.waiting.len() + self.rx.len()) as u64, Relaxed);
        let total = self.params.total_blocks.max(1);
        m.set_kv_usage(f64::from(total - self.free_blocks) / f64::from(total));
    }
}

/// Sleep until `deadline`, never returning early.
fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tokio::sync::mpsc;

    fn engine(args: &[&str]) -> (Engine, UnboundedSender<SeqRequest>) {
        let config = SimConfig::from_args(args.iter().copied()).unwrap();
        config.validate().unwrap();
        let metrics = Arc::new(Metrics::new("sim", config.max_model_len));
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Engine::new(&config, metrics, SmallRng::seed_from_u64(1), rx),
            tx,
        )
    }

    fn seq(prompt: u32, out: u32) -> (SeqRequest, UnboundedReceiver<TokenEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let req = SeqRequest {
            choice: 0,
            prompt_tokens: prompt,
            output_tokens: out,
            finish: FinishReason::Length,
            events,
        };
        (req, rx)
    }

    #[test]
    fn admission_stops_at_the_batch_limit() {
        let (mut e, _tx) = engine(&["--max-batch", "2"]);
        let mut keep = Vec::new();
        for _ in 0..3 {
            let (req, rx) = seq(10, 4);
            keep.push(rx);
            e.enqueue(req);
        }
        let now = Instant::now();
        assert_eq!(e.schedule(now), Some(20));
        assert_eq!(e.running.len(), 2);
        assert_eq!(e.waiting.len(), 1);
        let step = e.step_time(Some(20));
        // 8ms + 2 x 150us + 2ms + 20 x 50us
        assert!((step.as_secs_f64() - 0.0113).abs() < 1e-9, "{step:?}");
    }

    #[test]
    fn a_full_kv_cache_preempts_the_newest_sequence() {
        // 4 blocks of 16 tokens; two sequences of 16 prompt tokens need 2 blocks each at once.
        let (mut e, _tx) = engine(&[
            "--kv-cache-tokens",
            "64",
            "--max-model-len",
            "64",
            "--block-size",
            "16",
        ]);
        let (a, _ra) = seq(16, 40);
        let (b, _rb) = seq(16, 40);
        e.enqueue(a);
        e.enqueue(b);
        let now = Instant::now();
        assert!(e.schedule(now).is_some());
        assert_eq!(e.running.len(), 2);
        let mut preempted = false;
        for _ in 0..40 {
            e.emit(now);
            e.schedule(now);
            if e.metrics.preemptions.load(Relaxed) > 0 {
                preempted = true;
                break;
            }
        }
        assert!(preempted);
        assert_eq!(e.running.len(), 1);
        assert_eq!(e.waiting.len(), 1);
        assert!(
            e.waiting[0].generated > 0,
            "the preempted sequence keeps its progress"
        );
    }

    #[test]
    fn abandoned_sequences_free_their_blocks() {
        let (mut e, _tx) = engine(&[]);
        let (a, ra) = seq(100, 10);
        e.enqueue(a);
        e.schedule(Instant::now());
        assert!(e.free_blocks < e.params.total_blocks);
        drop(ra);
        e.emit(Instant::now());
        assert!(e.running.is_empty());
        assert_eq!(e.free_blocks, e.params.total_blocks);
    }
}
