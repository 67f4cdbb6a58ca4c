//! One request's tokens as they come due, whichever timing model produces them, turned into
//! protocol chunks.
//!
//! A [`Generation`] pulls [`TokenEvent`]s from its source (the pacer in fixed-timing mode, the
//! engine otherwise), records the token and request metrics as each token is handed on, and
//! yields [`Token`]s. A [`TokenBody`] formats them into one HTTP body frame per wake-up, so a
//! token costs one buffer allocation and no lock shared with other requests.

use std::io::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::TokenEvent;
use crate::metrics::{FinishReason, Metrics};
use crate::pacer::Slot;
use crate::{ollama, openai};

/// Where a request's tokens come from.
pub(crate) enum Source {
    Fixed(FixedSource),
    Engine(UnboundedReceiver<TokenEvent>),
}

impl Source {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<TokenEvent>> {
        match self {
            Source::Fixed(fixed) => fixed.poll_next(cx),
            Source::Engine(rx) => rx.poll_recv(cx),
        }
    }
}

/// Fixed timing: token k of every choice is due at `first + k x itl`.
pub(crate) struct FixedSource {
    slot: Arc<Slot>,
    first: Instant,
    itl: Duration,
    arrival: Instant,
    /// Length and finish reason of each choice.
    lengths: Vec<(u32, FinishReason)>,
    longest: u32,
    step: u32,
    choice: usize,
    metrics: Arc<Metrics>,
}

impl FixedSource {
    pub(crate) fn new(
        slot: Arc<Slot>,
        arrival: Instant,
        ttft: Duration,
        itl: Duration,
        lengths: Vec<(u32, FinishReason)>,
        metrics: Arc<Metrics>,
    ) -> FixedSource {
        metrics.running.fetch_add(1, Relaxed);
        let longest = lengths.iter().map(|l| l.0).max().unwrap_or(0);
        FixedSource {
            slot,
            first: arrival + ttft,
            itl,
            arrival,
            lengths,
            longest,
            step: 0,
            choice: 0,
            metrics,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<TokenEvent>> {
        loop {
            if self.step >= self.longest {
                return Poll::Ready(None);
            }
            let Some(&(len, reason)) = self.lengths.get(self.choice) else {
                self.choice = 0;
                self.step += 1;
                continue;
            };
            if self.step >= len {
                self.choice += 1;
                continue;
            }
            if self.step >= self.slot.released() && self.step >= self.slot.register(cx) {
                return Poll::Pending;
            }
            let event = TokenEvent {
                choice: self.choice as u32,
                at: self.first + self.itl * self.step,
                scheduled: self.arrival,
                finish: (self.step + 1 == len).then_some(reason),
            };
            self.choice += 1;
            return Poll::Ready(Some(event));
        }
    }
}

impl Drop for FixedSource {
    fn drop(&mut self) {
        self.slot.cancel();
        self.metrics.running.fetch_sub(1, Relaxed);
    }
}

/// A token ready to be formatted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub choice: u32,
    /// Position of the token in its choice's output, from 0.
    pub index: u32,
    pub finish: Option<FinishReason>,
}

/// Totals and times of a request, for usage blocks and Ollama's final object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub arrival: Instant,
    /// First scheduled (end of queueing).
    pub scheduled: Instant,
    pub first_token: Instant,
    pub last_token: Instant,
    /// Finish reason of the first choice.
    pub finish: FinishReason,
}

struct ChoiceState {
    prompt_tokens: u32,
    generated: u32,
    scheduled: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    finish: Option<FinishReason>,
}

/// One request's tokens with their metrics.
pub(crate) struct Generation {
    source: Source,
    metrics: Arc<Metrics>,
    arrival: Instant,
    usage_prompt_tokens: u32,
    choices: Vec<ChoiceState>,
    finished: usize,
}

impl Generation {
    /// `choice_prompts[i]` is the prompt length of choice `i`; `usage_prompt_tokens` counts each
    /// distinct prompt once, as OpenAI's usage does.
    pub(crate) fn new(
        source: Source,
        metrics: Arc<Metrics>,
        arrival: Instant,
        choice_prompts: &[u32],
        usage_prompt_tokens: u32,
    ) -> Generation {
        let choices = choice_prompts
            .iter()
            .map(|&prompt_tokens| ChoiceState {
                prompt_tokens,
                generated: 0,
                scheduled: None,
                first: None,
                last: None,
                finish: None,
            })
            .collect();
        Generation {
            source,
            metrics,
            arrival,
            usage_prompt_tokens,
            choices,
            finished: 0,
        }
    }

    /// Every choice has its last token.
    pub(crate) fn is_complete(&self) -> bool {
        self.finished == self.choices.len()
    }

    pub(crate) fn choice_count(&self) -> usize {
        self.choices.len()
    }

    /// The next due token, or `None` at the end (complete, or cut off by a shutdown).
    pub(crate) fn poll_token(&mut self, cx: &mut Context<'_>) -> Poll<Option<Token>> {
        loop {
            if self.is_complete() {
                return Poll::Ready(None);
            }
            let event = match self.source.poll_next(cx) {
                Poll::Ready(Some(event)) => event,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            if let Some(token) = self.record(event) {
                return Poll::Ready(Some(token));
            }
        }
    }

    /// Wait for the next token.
    pub(crate) async fn next_token(&mut self) -> Option<Token> {
        std::future::poll_fn(|cx| self.poll_token(cx)).await
    }

    fn record(&mut self, event: TokenEvent) -> Option<Token> {
        let now = Instant::now();
        let m = &self.metrics;
        let choice = self.choices.get_mut(event.choice as usize)?;
        if choice.finish.is_some() {
            return None;
        }
        m.lateness
            .observe_duration(now.saturating_duration_since(event.at));
        m.generation_tokens.fetch_add(1, Relaxed);
        match choice.last {
            None => {
                m.ttft
                    .observe_duration(event.at.saturating_duration_since(self.arrival));
                m.prompt_tokens
                    .fetch_add(u64::from(choice.prompt_tokens), Relaxed);
                choice.first = Some(event.at);
                choice.scheduled = Some(event.scheduled);
            }
            Some(last) => m
                .itl
                .observe_duration(event.at.saturating_duration_since(last)),
        }
        let index = choice.generated;
        choice.generated += 1;
        choice.last = Some(event.at);
        if let Some(reason) = event.finish {
            choice.finish = Some(reason);
            self.finished += 1;
            let first = choice.first.unwrap_or(event.at);
            let scheduled = choice.scheduled.unwrap_or(self.arrival);
            m.count_finished(reason);
            m.e2e
                .observe_duration(event.at.saturating_duration_since(self.arrival));
            m.queue
                .observe_duration(scheduled.saturating_duration_since(self.arrival));
            m.prefill
                .observe_duration(first.saturating_duration_since(scheduled));
            m.decode
                .observe_duration(event.at.saturating_duration_since(first));
            m.inference
                .observe_duration(event.at.saturating_duration_since(scheduled));
            m.prompt_len.observe(u64::from(choice.prompt_tokens));
            m.output_len.observe(u64::from(choice.generated));
        }
        Some(Token {
            choice: event.choice,
            index,
            finish: event.finish,
        })
    }

    pub(crate) fn summary(&self) -> Summary {
        let first = self.choices.first();
        let scheduled = first.and_then(|c| c.scheduled).unwrap_or(self.arrival);
        let first_token = self
            .choices
            .iter()
            .filter_map(|c| c.first)
            .min()
            .unwrap_or(scheduled);
        let last_token = self
            .choices
            .iter()
            .filter_map(|c| c.last)
            .max()
            .unwrap_or(first_token);
        Summary {
            prompt_tokens: self.usage_prompt_tokens,
            completion_tokens: self.choices.iter().map(|c| c.generated).sum(),
            arrival: self.arrival,
            scheduled,
            first_token,
            last_token,
            finish: first.and_then(|c| c.finish).unwrap_or(FinishReason::Abort),
        }
    }

    /// Finish reason of each choice (`Abort` for an unfinished one).
    pub(crate) fn finishes(&self) -> Vec<FinishReason> {
        self.choices
            .iter()
            .map(|c| c.finish.unwrap_or(FinishReason::Abort))
            .collect()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        for choice in &self.choices {
            if choice.finish.is_none() {
                self.metrics.count_finished(FinishReason::Abort);
            }
        }
    }
}

/// The text of output token `index`: deterministic words `t0 `, `t1 `, ...
pub(crate) fn write_token_text(buf: &mut Vec<u8>, index: u32) {
    let _ = write!(buf, "t{index} ");
}

/// How a protocol turns tokens into stream bytes.
pub(crate) enum Format {
    OpenAi(openai::ChunkFormat),
    Ollama(ollama::ChunkFormat),
}

impl Format {
    fn token(&mut self, buf: &mut Vec<u8>, token: &Token) {
        match self {
            Format::OpenAi(f) => f.token(buf, token),
            Format::Ollama(f) => f.token(buf, token),
        }
    }

    fn end(&mut self, buf: &mut Vec<u8>, summary: &Summary) {
        match self {
            Format::OpenAi(f) => f.end(buf, summary),
            Format::Ollama(f) => f.end(buf, summary),
        }
    }
}

/// A streaming response body: the chunks of all tokens due so far in one frame.
pub(crate) struct TokenBody {
    generation: Generation,
    format: Format,
    done: bool,
}

/// Most tokens put in one frame, so a stream that fell behind catches up in bounded pieces.
const TOKENS_PER_FRAME: usize = 64;

impl TokenBody {
    pub(crate) fn new(generation: Generation, format: Format) -> TokenBody {
        TokenBody {
            generation,
            format,
            done: false,
        }
    }

    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut buf = Vec::new();
        for _ in 0..TOKENS_PER_FRAME {
            match self.generation.poll_token(cx) {
                Poll::Ready(Some(token)) => self.format.token(&mut buf, &token),
                Poll::Ready(None) => {
                    // A stream cut short by a shutdown ends without its trailer.
                    if self.generation.is_complete() {
                        self.format.end(&mut buf, &self.generation.summary());
                    }
                    self.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !buf.is_empty() {
            Poll::Ready(Some(Bytes::from(buf)))
        } else if self.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}
