//! Server state shared by every connection: settings, metrics, and the timing back end.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Geometric};
use tokio::sync::mpsc::{self, UnboundedSender};

use crate::engine::{Engine, SeqRequest};
use crate::metrics::{FinishReason, Metrics};
use crate::pacer::Pacer;
use crate::stream::{FixedSource, Generation, Source};
use crate::SimConfig;

/// Which timing model answers generation requests.
enum Backend {
    Engine(UnboundedSender<SeqRequest>),
    Fixed {
        pacer: Pacer,
        ttft: Duration,
        itl: Duration,
    },
}

/// What a generation request asks for, after parsing and validation.
pub(crate) struct GenRequest {
    pub arrival: Instant,
    /// Prompt length of each prompt.
    pub prompts: Vec<u32>,
    /// Completions per prompt.
    pub n: u32,
    pub max_tokens: u32,
    pub ignore_eos: bool,
}

/// The request was picked by `--failure-rate`.
pub(crate) struct InjectedFailure;

pub(crate) struct App {
    pub config: SimConfig,
    pub metrics: Arc<Metrics>,
    backend: Backend,
    rng: Mutex<SmallRng>,
    ids: AtomicU64,
    id_salt: u64,
    /// The whole expected `Authorization` header value.
    auth: Option<String>,
    /// The model name as a JSON string literal.
    pub model_json: String,
}

impl App {
    /// The state, plus the engine to spawn when the batching model is on.
    pub(crate) fn new(config: SimConfig) -> std::io::Result<(App, Option<Engine>)> {
        let metrics = Arc::new(Metrics::new(&config.model, config.max_model_len));
        let seed = config.seed.unwrap_or_else(rand::random);
        let mut seeder = SmallRng::seed_from_u64(seed);
        let (backend, engine) = match config.fixed_timing() {
            Some((ttft, itl)) => (
                Backend::Fixed {
                    pacer: Pacer::start()?,
                    ttft,
                    itl,
                },
                None,
            ),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let rng = SmallRng::seed_from_u64(seeder.random());
                let engine = Engine::new(&config, metrics.clone(), rng, rx);
                (Backend::Engine(tx), Some(engine))
            }
        };
        let app = App {
            metrics,
            backend,
            rng: Mutex::new(SmallRng::seed_from_u64(seeder.random())),
            ids: AtomicU64::new(0),
            id_salt: seeder.random(),
            auth: config.api_key.as_ref().map(|key| format!("Bearer {key}")),
            model_json: serde_json::to_string(&config.model).unwrap_or_else(|_| "\"sim\"".into()),
            config,
        };
        Ok((app, engine))
    }

    /// `Authorization` is right, or no key is configured.
    pub(crate) fn authorized(&self, header: Option<&[u8]>) -> bool {
        match &self.auth {
            None => true,
            Some(expected) => header.is_some_and(|h| h == expected.as_bytes()),
        }
    }

    /// The request names the served model (a missing name means the served model).
    pub(crate) fn serves(&self, model: Option<&str>) -> bool {
        model.is_none_or(|m| m == self.config.model)
    }

    /// Ollama names: `sim` and `sim:latest` both mean the served model.
    pub(crate) fn serves_ollama(&self, model: &str) -> bool {
        let name = &self.config.model;
        model == name
            || model.strip_suffix(":latest") == Some(name)
            || name.strip_suffix(":latest") == Some(model)
    }

    /// A fresh request id like `cmpl-<32 hex>`.
    pub(crate) fn request_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Relaxed);
        let hi = splitmix64(self.id_salt ^ n);
        let lo = splitmix64(hi ^ n.rotate_left(32));
        format!("{prefix}{hi:016x}{lo:016x}")
    }

    /// Start generating: draw failure and output lengths, then hand the sequences to the pacer
    /// or the engine.
    pub(crate) fn generate(&self, req: &GenRequest) -> Result<Generation, InjectedFailure> {
        let choices = req.prompts.len() * req.n as usize;
        let mut lengths = Vec::with_capacity(choices);
        {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            if self.config.failure_rate > 0.0 && rng.random_bool(self.config.failure_rate) {
                self.metrics.injected_failures.fetch_add(1, Relaxed);
                return Err(InjectedFailure);
            }
            let eos = self.config.eos_probability;
            let geometric = (!req.ignore_eos && eos > 0.0)
                .then(|| Geometric::new(eos).ok())
                .flatten();
            for _ in 0..choices {
                let length = match &geometric {
                    Some(g) => {
                        let first_eos = g.sample(&mut *rng).saturating_add(1);
                        if first_eos <= u64::from(req.max_tokens) {
                            (first_eos as u32, FinishReason::Stop)
                        } else {
                            (req.max_tokens, FinishReason::Length)
                        }
                    }
                    None => (req.max_tokens, FinishReason::Length),
                };
                lengths.push(length);
            }
        }
        let choice_prompts: Vec<u32> = req
            .prompts
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p, req.n as usize))
            .collect();
        let usage_prompt_tokens = req.prompts.iter().sum();
        let source = match &self.backend {
            Backend::Fixed { pacer, ttft, itl } => {
                let longest = lengths.iter().map(|l| l.0).max().unwrap_or(0);
                let slot = pacer.schedule(req.arrival + *ttft, *itl, longest);
                Source::Fixed(FixedSource::new(
                    slot,
                    req.arrival,
                    *ttft,
                    *itl,
                    lengths,
                    self.metrics.clone(),
                ))
            }
            Backend::Engine(engine) => {
                let (events, rx) = mpsc::unbounded_channel();
                for (choice, (&prompt_tokens, (output_tokens, finish))) in
                    choice_prompts.iter().zip(lengths).enumerate()
                {
                    let seq = SeqRequest {
                        choice: choice as u32,
                        prompt_tokens,
                        output_tokens,
                        finish,
                        events: events.clone(),
                    };
                    // A closed engine (shutting down) drops the sequence; the stream then ends.
                    let _ = engine.send(seq);
                }
                Source::Engine(rx)
            }
        };
        Ok(Generation::new(
            source,
            self.metrics.clone(),
            req.arrival,
            &choice_prompts,
            usage_prompt_tokens,
        ))
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
