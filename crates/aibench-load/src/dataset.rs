//! Prompts to send: synthetic (seeded, with exact word counts) or loaded from a file.
//!
//! Formats:
//! - JSONL: one object per line with `prompt` or `text`, optionally `output_tokens`
//!   (or `max_tokens`).
//! - ShareGPT: a JSON array (or JSONL) of `{"conversations": [{"from": "human", "value": ...},
//!   {"from": "gpt", "value": ...}, ...]}`; the first human turn is the prompt and the reply
//!   that follows sets the output length (estimated at four characters per token).
//! - HellaSwag: JSONL of `{"ctx": ..., "endings": [...], "label": n}`; the context is the prompt
//!   and the labelled ending sets the output length.
//!
//! Sampling is seeded; the same seed gives the same prompts in the same order.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::Deserialize;

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no usable prompts (expected {expected})")]
    Empty {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("invalid length distribution: {0}")]
    Length(String),
}

/// A distribution of token counts. Samples are rounded and at least 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LengthDist {
    Fixed(u32),
    /// Uniform over `min..=max`.
    Uniform {
        min: u32,
        max: u32,
    },
    Normal {
        mean: f64,
        stddev: f64,
    },
}

impl LengthDist {
    pub fn validate(&self) -> Result<(), DatasetError> {
        match *self {
            LengthDist::Fixed(0) => Err(DatasetError::Length("a length must be at least 1".into())),
            LengthDist::Uniform { min, max } if min > max || max == 0 => Err(DatasetError::Length(
                format!("uniform length {min}..={max} is empty"),
            )),
            LengthDist::Normal { mean, stddev }
                if !(mean.is_finite() && stddev.is_finite() && stddev >= 0.0) =>
            {
                Err(DatasetError::Length(format!(
                    "normal length mean {mean} stddev {stddev} is not valid"
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let v = match *self {
            LengthDist::Fixed(n) => n,
            LengthDist::Uniform { min, max } => rng.random_range(min..=max),
            LengthDist::Normal { mean, stddev } => {
                let x = Normal::new(mean, stddev)
                    .map(|d| d.sample(rng))
                    .unwrap_or(mean);
                x.round().clamp(1.0, f64::from(u32::MAX)) as u32
            }
        };
        v.max(1)
    }
}

/// One prompt and how many tokens to ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    /// Known input length: exact for synthetic prompts (one word per token under a whitespace
    /// tokenizer), an estimate for loaded text.
    pub input_tokens: Option<u32>,
    pub output_tokens: u32,
}

/// Dataset file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    Jsonl,
    ShareGpt,
    HellaSwag,
}

/// The prompts of a run, in the order requests use them (cycling when there are more requests
/// than prompts).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    prompts: Vec<Prompt>,
}

/// Words every common tokenizer keeps as a single token (with a leading space), so that a
/// synthetic prompt of n words is close to n tokens for real models and exactly n for a
/// whitespace tokenizer.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by", "at", "from",
    "that", "this", "it", "be", "are", "or", "an", "which", "one", "have", "not", "but", "had",
    "all", "were", "they", "their", "there", "been", "has", "when", "who", "will", "more", "no",
    "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only",
    "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any",
    "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after",
    "also", "did", "many", "before", "must", "through", "back", "years", "where", "much", "your",
    "way", "well", "down", "should", "because", "each", "just", "those", "people", "how", "too",
    "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work",
    "long", "get", "here", "between", "both", "life", "being", "under", "never", "day", "same",
    "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come",
    "since", "against", "go", "came", "right", "used", "take", "three", "water", "light", "house",
    "city", "river", "music", "paper", "table", "green",
];

impl Dataset {
    /// Use these prompts as they are.
    pub fn from_prompts(prompts: Vec<Prompt>) -> Dataset {
        Dataset { prompts }
    }

    /// `count` synthetic prompts: seeded word sequences whose word count is the sampled prompt
    /// length, each different from the others (no shared prefixes for a prefix cache to reuse).
    pub fn synthetic(
        prompt_tokens: LengthDist,
        output_tokens: LengthDist,
        count: usize,
        seed: u64,
    ) -> Result<Dataset, DatasetError> {
        prompt_tokens.validate()?;
        output_tokens.validate()?;
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x7072_6f6d_7074_7321);
        let prompts = (0..count.max(1))
            .map(|_| {
                let n = prompt_tokens.sample(&mut rng);
                let mut text = String::with_capacity(n as usize * 6);
                for i in 0..n {
                    if i > 0 {
                        text.push(' ');
                    }
                    text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
                }
                Prompt {
                    text,
                    input_tokens: Some(n),
                    output_tokens: output_tokens.sample(&mut rng),
                }
            })
            .collect();
        Ok(Dataset { prompts })
    }

    /// Load a file, shuffle it with `seed`, and keep at most `limit` prompts. `output_tokens`
    /// overrides the output length the file gives (or that is estimated from it).
    pub fn load(
        format: DatasetFormat,
        path: &Path,
        output_tokens: Option<LengthDist>,
        limit: Option<usize>,
        seed: u64,
    ) -> Result<Dataset, DatasetError> {
        if let Some(d) = output_tokens {
            d.validate()?;
        }
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
            path: path.into(),
            source,
        })?;
        let (mut prompts, expected) = match format {
            DatasetFormat::Jsonl => (
                parse_jsonl(path, &text)?,
                "lines like {\"prompt\": \"...\"} or {\"text\": \"...\"}",
            ),
            DatasetFormat::ShareGpt => (
                parse_sharegpt(path, &text)?,
                "objects with \"conversations\": [{\"from\": \"human\", \"value\": ...}, ...]",
            ),
            DatasetFormat::HellaSwag => (
                parse_hellaswag(path, &text)?,
                "lines with \"ctx\" and \"endings\"",
            ),
        };
        if prompts.is_empty() {
            return Err(DatasetError::Empty {
                path: path.into(),
                expected,
            });
        }
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6461_7461_7365_7473);
        prompts.shuffle(&mut rng);
        if let Some(limit) = limit {
            prompts.truncate(limit.max(1));
        }
        if let Some(d) = output_tokens {
            for p in &mut prompts {
                p.output_tokens = d.sample(&mut rng);
            }
        }
        Ok(Dataset { prompts })
    }

    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

/// Output length when a file gives none and no override is set.
const DEFAULT_OUTPUT_TOKENS: u32 = 128;

fn estimate_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4).max(1)
}

fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> DatasetError {
    DatasetError::Parse {
        path: path.into(),
        line,
        message: message.into(),
    }
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<Prompt>, DatasetError> {
    #[derive(Deserialize)]
    struct Line {
        prompt: Option<String>,
        text: Option<String>,
        output_tokens: Option<u32>,
        max_tokens: Option<u32>,
    }
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let line: Line =
            serde_json::from_str(l).map_err(|e| parse_err(path, i + 1, e.to_string()))?;
        let Some(prompt) = line.prompt.or(line.text) else {
            return Err(parse_err(
                path,
                i + 1,
                "expected a \"prompt\" or \"text\" field",
            ));
        };
        out.push(Prompt {
            input_tokens: Some(estimate_tokens(&prompt)),
            output_tokens: line
                .output_tokens
                .or(line.max_tokens)
                .unwrap_or(DEFAULT_OUTPUT_TOKENS)
                .max(1),
            text: prompt,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Turn {
    from: String,
    value: String,
}

#[derive(Deserialize)]
struct Conversation {
    conversations: Vec<Turn>,
}

fn parse_sharegpt(path: &Path, text: &str) -> Result<Vec<Prompt>, DatasetError> {
    let conversations: Vec<Conversation> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| parse_err(path, e.line(), e.to_string()))?
    } else {
        let mut v = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if !l.trim().is_empty() {
                v.push(serde_json::from_str(l).map_err(|e| parse_err(path, i + 1, e.to_string()))?);
            }
        }
        v
    };
    let is_user = |from: &str| matches!(from, "human" | "user");
    Ok(conversations
        .into_iter()
        .filter_map(|c| {
            let i = c
                .conversations
                .iter()
                .position(|t| is_user(&t.from) && !t.value.trim().is_empty())?;
            let reply = c.conversations.get(i + 1).filter(|t| !is_user(&t.from))?;
            let prompt = c.conversations[i].value.clone();
            Some(Prompt {
                input_tokens: Some(estimate_tokens(&prompt)),
                output_tokens: estimate_tokens(&reply.value),
                text: prompt,
            })
        })
        .collect())
}

fn parse_hellaswag(path: &Path, text: &str) -> Result<Vec<Prompt>, DatasetError> {
    #[derive(Deserialize)]
    struct Item {
        ctx: String,
        endings: Vec<String>,
        #[serde(default)]
        label: Option<serde_json::Value>,
    }
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let item: Item =
            serde_json::from_str(l).map_err(|e| parse_err(path, i + 1, e.to_string()))?;
        // The label is a number in some copies and a string in others.
        let label = match &item.label {
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        let ending = item.endings.get(label).or(item.endings.first());
        if item.ctx.trim().is_empty() {
            continue;
        }
        out.push(Prompt {
            input_tokens: Some(estimate_tokens(&item.ctx)),
            output_tokens: ending.map_or(DEFAULT_OUTPUT_TOKENS, |e| estimate_tokens(e)),
            text: item.ctx,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn synthetic_word_count_is_prompt_tokens_and_seeded() {
        let d = Dataset::synthetic(
            LengthDist::Uniform { min: 5, max: 50 },
            LengthDist::Fixed(7),
            200,
            9,
        )
        .unwrap();
        for p in d.prompts() {
            assert_eq!(
                p.text.split_whitespace().count() as u32,
                p.input_tokens.unwrap()
            );
            assert_eq!(p.output_tokens, 7);
        }
        let again = Dataset::synthetic(
            LengthDist::Uniform { min: 5, max: 50 },
            LengthDist::Fixed(7),
            200,
            9,
        )
        .unwrap();
        assert_eq!(d, again);
        let other = Dataset::synthetic(
            LengthDist::Uniform { min: 5, max: 50 },
            LengthDist::Fixed(7),
            200,
            10,
        )
        .unwrap();
        assert_ne!(d, other);
        let mut texts: Vec<&str> = d.prompts().iter().map(|p| p.text.as_str()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), 200);
    }

    #[test]
    fn normal_lengths_center_on_mean() {
        let d = LengthDist::Normal {
            mean: 100.0,
            stddev: 10.0,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 20_000;
        let mean = (0..n).map(|_| f64::from(d.sample(&mut rng))).sum::<f64>() / f64::from(n);
        assert!((mean - 100.0).abs() < 0.5, "{mean}");
    }

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn jsonl_prompt_or_text() {
        let f = file("{\"prompt\": \"a b c\", \"output_tokens\": 3}\n\n{\"text\": \"hello\"}\n");
        let d = Dataset::load(DatasetFormat::Jsonl, f.path(), None, None, 0).unwrap();
        assert_eq!(d.len(), 2);
        let mut outs: Vec<u32> = d.prompts().iter().map(|p| p.output_tokens).collect();
        outs.sort();
        assert_eq!(outs, vec![3, 128]);
        let f = file("{\"question\": \"x\"}\n");
        let err = Dataset::load(DatasetFormat::Jsonl, f.path(), None, None, 0).unwrap_err();
        assert!(err.to_string().contains(":1:"), "{err}");
    }

    #[test]
    fn sharegpt_first_human_turn() {
        let f = file(
            r#"[{"id": "1", "conversations": [{"from": "human", "value": "Why is the sky blue?"},
                                               {"from": "gpt", "value": "Because of Rayleigh scattering."}]},
                {"id": "2", "conversations": [{"from": "gpt", "value": "lonely"}]}]"#,
        );
        let d = Dataset::load(
            DatasetFormat::ShareGpt,
            f.path(),
            Some(LengthDist::Fixed(64)),
            None,
            0,
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d.prompts()[0].text, "Why is the sky blue?");
        assert_eq!(d.prompts()[0].output_tokens, 64);
    }

    #[test]
    fn hellaswag_context_and_labelled_ending() {
        let f = file(
            "{\"ctx\": \"A man is sitting on a roof. he\", \"endings\": [\"is using wrap.\", \"starts pulling up roofing on a roof.\"], \"label\": \"1\"}\n",
        );
        let d = Dataset::load(DatasetFormat::HellaSwag, f.path(), None, None, 0).unwrap();
        assert_eq!(d.prompts()[0].text, "A man is sitting on a roof. he");
        assert_eq!(d.prompts()[0].output_tokens, 9);
    }
}
