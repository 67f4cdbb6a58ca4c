//! From a recipe workload to what the load engine runs: the load spec, the target, the dataset.

use std::path::Path;
use std::time::Duration;

use aibench_load::{
    Arrival, CapPolicy, Dataset, DatasetFormat, ErrorRate, LengthDist, LoadSpec, Pattern, Process,
    Stop, Target, ThinkTime,
};
use aibench_recipe as r;
use aibench_results::AccumulatorConfig;

/// How many prompts to prepare before the clock starts: enough for the expected requests, so
/// that sampling repeats rarely, without preparing millions.
fn prompt_count(w: &r::Workload) -> usize {
    let window = w.stop.duration.map(|d| d.as_secs_f64()).unwrap_or(60.0)
        + w.warmup.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let expected = match &w.load {
        r::Load::OpenLoop { rate, .. } => rate.map(|r| r.0 * window).unwrap_or(1000.0),
        r::Load::ClosedLoop { users, .. } => (*users as f64) * 50.0,
    };
    let expected = w.stop.requests.map(|n| n as f64).unwrap_or(expected);
    (expected.ceil() as usize).clamp(64, 20_000)
}

fn length(l: &r::Length) -> LengthDist {
    match l {
        r::Length::Fixed(n) => LengthDist::Fixed(*n),
        r::Length::Uniform { min, max } => LengthDist::Uniform {
            min: *min,
            max: *max,
        },
        r::Length::Normal { mean, stddev } => LengthDist::Normal {
            mean: f64::from(*mean),
            stddev: f64::from(*stddev),
        },
    }
}

fn std(d: r::Duration) -> Duration {
    d.std()
}

/// The engine's load spec for a workload.
pub fn load_spec(w: &r::Workload, seed: u64, base_dir: &Path) -> anyhow::Result<LoadSpec> {
    let pattern = match &w.load {
        r::Load::ClosedLoop {
            users,
            think_time,
            think_time_distribution,
            ramp_up,
        } => Pattern::ClosedLoop {
            users: *users as usize,
            think_time: match (think_time, think_time_distribution) {
                (None, _) => ThinkTime::None,
                (Some(t), r::ThinkTime::Fixed) => ThinkTime::Fixed(std(*t)),
                (Some(t), r::ThinkTime::Exponential) => ThinkTime::Exponential { mean: std(*t) },
                (Some(t), r::ThinkTime::Uniform) => ThinkTime::Uniform {
                    min: Duration::ZERO,
                    max: std(*t) * 2,
                },
            },
            ramp_up: ramp_up.map(std).unwrap_or_default(),
        },
        r::Load::OpenLoop {
            arrival,
            rate,
            burstiness,
            steps,
            ramp,
            bursts,
            trace,
            max_in_flight,
        } => {
            let rate = rate.map(|r| r.0).unwrap_or(1.0);
            let process = match (arrival, burstiness) {
                (_, Some(b)) => Process::Gamma { burstiness: *b },
                (r::Arrival::Constant, None) => Process::Constant,
                _ => Process::Poisson,
            };
            let arrival = match arrival {
                r::Arrival::Constant => Arrival::Constant { rate },
                r::Arrival::Poisson => Arrival::Poisson { rate },
                r::Arrival::Gamma => Arrival::Gamma {
                    rate,
                    burstiness: burstiness.unwrap_or(1.0),
                },
                r::Arrival::Step => Arrival::Step {
                    steps: steps.iter().map(|s| (s.rate.0, std(s.duration))).collect(),
                    process,
                },
                r::Arrival::Ramp => {
                    let ramp = ramp
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("`arrival: ramp` needs `ramp`"))?;
                    Arrival::Ramp {
                        from: ramp.from.0,
                        to: ramp.to.0,
                        over: std(ramp.over),
                        process,
                    }
                }
                r::Arrival::Bursts => {
                    let b = bursts
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("`arrival: bursts` needs `bursts`"))?;
                    Arrival::OnOff {
                        rate,
                        on: std(b.on),
                        off: std(b.off),
                        process,
                    }
                }
                r::Arrival::Trace => {
                    let path = trace
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("`arrival: trace` needs `trace`"))?;
                    Arrival::Trace {
                        offsets: aibench_recipe::trace::read_trace(&base_dir.join(path))
                            .map_err(|e| anyhow::anyhow!(e))?,
                    }
                }
            };
            Pattern::OpenLoop {
                arrival,
                max_in_flight: max_in_flight.map(|m| m as usize),
                on_cap: CapPolicy::Drop,
            }
        }
    };
    Ok(LoadSpec {
        pattern,
        stop: Stop {
            duration: w.stop.duration.map(std),
            requests: w.stop.requests,
            max_consecutive_errors: w.stop.max_consecutive_errors.map(u64::from),
            max_error_rate: w.stop.max_error_rate.map(|p| ErrorRate {
                rate: p.fraction(),
                min_requests: 100,
            }),
            error_backoff: w.stop.error_backoff.map(std).unwrap_or_default(),
            max_duration: w.stop.max_duration.map(std),
            stall: w.stop.stall.map(std),
        },
        warmup: w.warmup.map(std).unwrap_or_default(),
        cooldown: w.cooldown.map(std).unwrap_or_default(),
        seed,
        timeout: std(w.timeout),
        grace: Duration::from_secs(10),
    })
}

/// What the engine drives for this workload: the protocol, where, and its data (secrets
/// expanded only here). `service` is the recipe's service the workload targets, if any.
pub fn driven(
    w: &r::Workload,
    url: &str,
    service: Option<&r::Service>,
    seed: u64,
    base_dir: &Path,
) -> anyhow::Result<aibench_load::Workload> {
    let env = aibench_recipe::ProcessEnv;
    match w.protocol {
        r::Protocol::Redis => {
            let r::Dataset::KeyValue { preload, .. } = &w.dataset else {
                anyhow::bail!("`protocol: redis` needs a `key-value` dataset");
            };
            let creds = service.and_then(|s| s.credentials.as_ref());
            let password = match creds.and_then(|c| c.password.as_ref()) {
                Some(p) => Some(
                    p.expose(&env)
                        .map_err(|e| anyhow::anyhow!("service `{}` password: {e}", w.target))?,
                ),
                None => None,
            };
            Ok(aibench_load::Workload::Redis(aibench_load::RedisSpec {
                address: url.to_string(),
                user: creds.and_then(|c| c.user.clone()),
                password,
                keys: key_space(w, seed, "aibench:")?,
                pipeline: w.redis.as_ref().map_or(1, |r| r.pipeline),
                preload: *preload,
                timeout: std(w.timeout),
            }))
        }
        r::Protocol::S3 => {
            let r::Dataset::KeyValue { preload, .. } = &w.dataset else {
                anyhow::bail!("`protocol: s3` needs a `key-value` dataset");
            };
            let o = w.s3.clone().unwrap_or_default();
            let creds = service.and_then(|s| s.credentials.as_ref());
            let secret = |given: &Option<aibench_recipe::Secret>,
                          what: &str|
             -> anyhow::Result<Option<String>> {
                given
                    .as_ref()
                    .map(|s| {
                        s.expose(&env)
                            .map_err(|e| anyhow::anyhow!("workload `{}` s3.{what}: {e}", w.name))
                    })
                    .transpose()
            };
            let access_key = match secret(&o.access_key, "access_key")? {
                Some(k) => k,
                None => creds
                    .and_then(|c| c.user.clone())
                    .unwrap_or_else(|| "minioadmin".into()),
            };
            let secret_key = match secret(&o.secret_key, "secret_key")? {
                Some(k) => k,
                None => match creds.and_then(|c| c.password.as_ref()) {
                    Some(p) => p
                        .expose(&env)
                        .map_err(|e| anyhow::anyhow!("service `{}` password: {e}", w.target))?,
                    None => "minioadmin".into(),
                },
            };
            Ok(aibench_load::Workload::S3(aibench_load::S3Spec {
                endpoint: url.trim_end_matches('/').to_string(),
                bucket: o.bucket,
                region: o.region,
                access_key,
                secret_key,
                keys: key_space(w, seed, "objects/")?,
                list_share: o.list_share.fraction(),
                delete_share: o.delete_share.fraction(),
                list_max_keys: o.list_max_keys as usize,
                multipart_threshold: o.multipart_threshold.0,
                part_size: o.part_size.0,
                preload: *preload,
                timeout: std(w.timeout),
            }))
        }
        r::Protocol::Vector => Ok(aibench_load::Workload::Vector(vector_spec(
            w, url, service, seed, base_dir,
        )?)),
        r::Protocol::Postgres => Ok(aibench_load::Workload::Postgres(postgres_spec(
            w, url, service, seed,
        )?)),
        _ => Ok(aibench_load::Workload::Http {
            target: target(w, url, service.and_then(service_model).as_deref())?,
            dataset: dataset(w, seed, base_dir)?,
        }),
    }
}

/// A `protocol: vector` workload: the engine (from the service's kind, or `vector.engine`),
/// the vectors (generated, or files relative to the recipe), credentials expanded only here.
fn vector_spec(
    w: &r::Workload,
    url: &str,
    service: Option<&r::Service>,
    seed: u64,
    base_dir: &Path,
) -> anyhow::Result<aibench_load::VectorSpec> {
    use aibench_load::{Metric, VectorEngine, VectorSource};
    let r::Dataset::Vectors {
        dimensions,
        collection_size,
        top_k,
        queries,
        metric,
        insert_batch,
        query_share,
        filter_buckets,
        path,
        queries_path,
        collection,
    } = &w.dataset
    else {
        anyhow::bail!("`protocol: vector` needs a `vectors` dataset");
    };
    let options = w.vector.clone().unwrap_or_default();
    let engine = match (
        service.and_then(|s| r::VectorEngine::of_kind(s.kind)),
        options.engine,
    ) {
        (Some(kind), Some(e)) if kind != e => anyhow::bail!(
            "workload `{}`: `engine: {}` contradicts its service, a `{}`",
            w.name,
            e.name(),
            kind.name()
        ),
        (Some(e), _) | (None, Some(e)) => e,
        (None, None) => anyhow::bail!(
            "workload `{}`: add `vector: {{ engine: chroma }}` (or `qdrant`) for a URL target",
            w.name
        ),
    };
    let resolve = |p: &str| {
        let full = base_dir.join(p);
        if full.exists() {
            full
        } else {
            Path::new(p).to_path_buf()
        }
    };
    let base = match path {
        Some(p) => VectorSource::File {
            path: resolve(p),
            limit: collection_size.map(|n| n as usize),
        },
        None => VectorSource::Generated {
            count: collection_size.unwrap_or(r::DEFAULT_COLLECTION_SIZE) as usize,
        },
    };
    let query_source = match queries_path {
        Some(p) => VectorSource::File {
            path: resolve(p),
            limit: queries.map(|n| n as usize),
        },
        None => VectorSource::Generated {
            count: queries.unwrap_or(r::DEFAULT_VECTOR_QUERIES) as usize,
        },
    };
    let env = aibench_recipe::ProcessEnv;
    let mut headers = Vec::new();
    if let Some(k) = &w.api_key {
        let key = k
            .expose(&env)
            .map_err(|e| anyhow::anyhow!("workload `{}` api_key: {e}", w.name))?;
        headers.push(match engine {
            r::VectorEngine::Qdrant => ("api-key".to_string(), key),
            r::VectorEngine::Chroma => ("authorization".to_string(), format!("Bearer {key}")),
        });
    }
    for (name, value) in &w.headers {
        let v = value
            .expose(&env)
            .map_err(|e| anyhow::anyhow!("workload `{}` header `{name}`: {e}", w.name))?;
        headers.push((name.clone(), v));
    }
    Ok(aibench_load::VectorSpec {
        address: url.to_string(),
        engine: match engine {
            r::VectorEngine::Chroma => VectorEngine::Chroma,
            r::VectorEngine::Qdrant => VectorEngine::Qdrant,
        },
        collection: collection.clone(),
        tenant: options.tenant.unwrap_or_else(|| "default_tenant".into()),
        database: options
            .database
            .unwrap_or_else(|| "default_database".into()),
        dimensions: match (dimensions, path) {
            (Some(d), _) => Some(*d as usize),
            (None, None) => Some(r::DEFAULT_VECTOR_DIMENSIONS as usize),
            (None, Some(_)) => None,
        },
        base,
        queries: query_source,
        metric: match metric {
            r::VectorMetric::Cosine => Metric::Cosine,
            r::VectorMetric::L2 => Metric::L2,
            r::VectorMetric::Dot => Metric::Dot,
        },
        top_k: *top_k,
        filter_buckets: *filter_buckets,
        query_share: query_share.fraction(),
        insert_batch: *insert_batch,
        seed,
        timeout: std(w.timeout),
        headers,
    })
}

/// A `protocol: postgres` workload: the statements (queries as one-statement scripts of equal
/// weight, scripts, or the built-in TPC-B), and the credentials of the target service (user
/// `aibench` and database `postgres` by default, as the `postgres` kind's `initdb` makes them;
/// the password expanded only here).
fn postgres_spec(
    w: &r::Workload,
    url: &str,
    service: Option<&r::Service>,
    seed: u64,
) -> anyhow::Result<aibench_load::PostgresSpec> {
    let r::Dataset::Sql {
        queries,
        builtin,
        scale,
        scripts,
        params,
        setup,
    } = &w.dataset
    else {
        anyhow::bail!("`protocol: postgres` needs a `sql` dataset");
    };
    let creds = service.and_then(|s| s.credentials.as_ref());
    let password = match creds.and_then(|c| c.password.as_ref()) {
        Some(p) => Some(
            p.expose(&aibench_recipe::ProcessEnv)
                .map_err(|e| anyhow::anyhow!("service `{}` password: {e}", w.target))?,
        ),
        None => None,
    };
    let mut named: Vec<aibench_load::SqlScript> = Vec::new();
    for q in queries {
        // A query's operation is its verb and table; the same twice gets a number.
        let label = aibench_load::drivers::postgres::statement_label(q);
        let mut name = label.clone();
        let mut n = 2;
        while named.iter().any(|s| s.name == name) {
            name = format!("{label} #{n}");
            n += 1;
        }
        named.push(aibench_load::SqlScript {
            name,
            weight: 1,
            statements: vec![q.clone()],
        });
    }
    named.extend(scripts.iter().map(|s| aibench_load::SqlScript {
        name: s.name.clone(),
        weight: s.weight,
        statements: s.statements.clone(),
    }));
    Ok(aibench_load::PostgresSpec {
        address: url.to_string(),
        user: creds
            .and_then(|c| c.user.clone())
            .unwrap_or_else(|| "aibench".into()),
        password,
        database: creds
            .and_then(|c| c.database.clone())
            .unwrap_or_else(|| "postgres".into()),
        builtin: builtin.map(|b| match b {
            r::SqlBuiltin::Tpcb => aibench_load::SqlBuiltin::Tpcb { scale: *scale },
        }),
        scripts: named,
        params: params
            .iter()
            .map(|(name, p)| aibench_load::SqlParam {
                name: name.clone(),
                min: p.min,
                max: p.max,
                zipf_exponent: p.zipf_exponent,
            })
            .collect(),
        setup: setup.clone(),
        seed,
        timeout: std(w.timeout),
    })
}

/// The model name a service serves, as requests should name it.
fn service_model(s: &r::Service) -> Option<String> {
    s.model
        .clone()
        .or_else(|| s.kind.spec().default_model.map(String::from))
}

/// The key space of a `key-value` dataset.
fn key_space(w: &r::Workload, seed: u64, prefix: &str) -> anyhow::Result<aibench_load::KeySpace> {
    let r::Dataset::KeyValue {
        keys,
        value_size,
        read_share,
        access,
        zipf_exponent,
        ..
    } = &w.dataset
    else {
        anyhow::bail!("workload `{}` needs a `key-value` dataset", w.name);
    };
    Ok(aibench_load::KeySpace {
        keys: *keys,
        prefix: prefix.to_string(),
        access: match access {
            r::KeyAccess::Uniform => aibench_load::KeyAccess::Uniform,
            r::KeyAccess::Zipfian => aibench_load::KeyAccess::Zipfian {
                exponent: *zipf_exponent,
            },
        },
        value_size: match value_size {
            r::SizeRange::Fixed(s) => aibench_load::ValueSize::Fixed(s.0),
            r::SizeRange::Uniform { min, max } => aibench_load::ValueSize::Uniform {
                min: min.0,
                max: max.0,
            },
        },
        read_share: read_share.fraction(),
        seed,
    })
}

/// The engine's target: URL, protocol, model, key and headers (secrets expanded only here).
fn target(w: &r::Workload, url: &str, service_model: Option<&str>) -> anyhow::Result<Target> {
    let protocol = match w.protocol {
        r::Protocol::OpenaiCompletions => aibench_load::Protocol::OpenAiCompletions,
        r::Protocol::OpenaiChat => aibench_load::Protocol::OpenAiChat,
        r::Protocol::OllamaGenerate => aibench_load::Protocol::OllamaGenerate,
        r::Protocol::OllamaChat => aibench_load::Protocol::OllamaChat,
        r::Protocol::Http => {
            let h = w.http.clone().unwrap_or(r::HttpRequest {
                method: r::HttpMethod::Get,
                path: "/".into(),
                body: None,
                content_type: None,
            });
            let method = match h.method {
                r::HttpMethod::Get => "GET",
                r::HttpMethod::Post => "POST",
                r::HttpMethod::Put => "PUT",
                r::HttpMethod::Delete => "DELETE",
                r::HttpMethod::Head => "HEAD",
                r::HttpMethod::Patch => "PATCH",
            };
            aibench_load::Protocol::Http {
                method: method.parse().map_err(|_| anyhow::anyhow!("bad method"))?,
                body_template: h.body,
            }
        }
        other => anyhow::bail!("the `{}` protocol does not take prompts", other.name()),
    };
    let mut base = url.trim_end_matches('/').to_string();
    if let Some(e) = &w.endpoint {
        base.push_str(e);
    } else if let (r::Protocol::Http, Some(h)) = (w.protocol, &w.http) {
        base.push_str(&h.path);
    }
    let mut t = Target::new(base, protocol);
    t.model = w.model.clone().or_else(|| service_model.map(String::from));
    t.stream = w.stream;
    t.ignore_eos = w.ignore_eos;
    let env = aibench_recipe::ProcessEnv;
    if let Some(k) = &w.api_key {
        t.api_key = Some(
            k.expose(&env)
                .map_err(|e| anyhow::anyhow!("workload `{}` api_key: {e}", w.name))?,
        );
    }
    for (name, value) in &w.headers {
        let v = value
            .expose(&env)
            .map_err(|e| anyhow::anyhow!("workload `{}` header `{name}`: {e}", w.name))?;
        t.headers.push((name.clone(), v));
    }
    if let (r::Protocol::Http, Some(ct)) = (
        w.protocol,
        w.http.as_ref().and_then(|h| h.content_type.clone()),
    ) {
        t.headers.push(("content-type".into(), ct));
    }
    Ok(t)
}

/// The prompts, all prepared before the clock starts.
fn dataset(w: &r::Workload, seed: u64, base_dir: &Path) -> anyhow::Result<Dataset> {
    let count = prompt_count(w);
    let resolve = |p: &str| {
        let path = base_dir.join(p);
        if path.exists() {
            path
        } else {
            Path::new(p).to_path_buf()
        }
    };
    let d = match &w.dataset {
        r::Dataset::Synthetic {
            prompt_tokens,
            output_tokens,
            ..
        } => Dataset::synthetic(length(prompt_tokens), length(output_tokens), count, seed)?,
        r::Dataset::Jsonl {
            path,
            output_tokens,
            ..
        } => Dataset::load(
            DatasetFormat::Jsonl,
            &resolve(path),
            Some(length(output_tokens)),
            None,
            seed,
        )?,
        r::Dataset::Sharegpt {
            path,
            output_tokens,
        } => Dataset::load(
            DatasetFormat::ShareGpt,
            &resolve(path),
            output_tokens.as_ref().map(length),
            None,
            seed,
        )?,
        r::Dataset::Hellaswag {
            path,
            output_tokens,
        } => Dataset::load(
            DatasetFormat::HellaSwag,
            &resolve(path),
            Some(length(output_tokens)),
            None,
            seed,
        )?,
        other => anyhow::bail!(
            "the `{}` dataset is not driven yet",
            serde_json::to_value(other)
                .ok()
                .and_then(|v| v["kind"].as_str().map(String::from))
                .unwrap_or_default()
        ),
    };
    Ok(d)
}

/// SLO thresholds for goodput.
pub fn accumulator_config(slo: Option<&r::Slo>) -> AccumulatorConfig {
    let mut c = AccumulatorConfig::default();
    if let Some(s) = slo {
        let us = |d: Option<r::Duration>| d.map(|d| d.std().as_micros() as u64);
        c.slo.ttft_us = us(s.ttft);
        c.slo.tpot_us = us(s.tpot);
        c.slo.itl_us = us(s.itl);
        c.slo.e2e_us = us(s.e2e);
    }
    c
}
