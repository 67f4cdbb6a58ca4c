//! Checks beyond the schema: references between sections, port collisions, platform settings,
//! and plausibility of resources and load.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::kinds::MultiNode;
use crate::locate::KeyPath;
use crate::model::*;
use crate::yaml::Node;

struct Ctx<'a> {
    tree: &'a Node,
    diags: Diagnostics,
}

impl Ctx<'_> {
    fn error(&mut self, path: &KeyPath, msg: impl Into<String>, help: Option<String>) {
        let (pos, width) = path.pos(self.tree);
        let mut d = Diagnostic::error(pos, path.to_string(), msg).with_width(width);
        d.help = help;
        self.diags.push(d);
    }

    fn warn(&mut self, path: &KeyPath, msg: impl Into<String>, help: Option<String>) {
        let (pos, width) = path.pos(self.tree);
        let mut d = Diagnostic::warning(pos, path.to_string(), msg).with_width(width);
        d.help = help;
        self.diags.push(d);
    }
}

/// Names of the top-level sections a sweep key may start with.
pub const SECTIONS: [&str; 6] = ["platform", "slo", "monitor", "output", "seed", "regression"];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

pub fn validate(recipe: &Recipe, tree: &Node, base_dir: &Path) -> Diagnostics {
    let mut cx = Ctx {
        tree,
        diags: Diagnostics::default(),
    };
    let root = KeyPath::root();

    if recipe.name.trim().is_empty() {
        cx.error(
            &root.key("name"),
            "the recipe name is empty",
            Some("give it a short name, e.g. `opt125m-sweep`".into()),
        );
    }

    // Names: unique, file-safe, and not a section name (sweep keys start with them).
    let mut seen: BTreeMap<&str, KeyPath> = BTreeMap::new();
    let named = recipe
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), root.key("services").index(i).key("name")))
        .chain(
            recipe
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| (w.name.as_str(), root.key("workloads").index(i).key("name"))),
        );
    for (name, path) in named {
        if !valid_name(name) {
            cx.error(
                &path,
                format!("invalid name `{name}`"),
                Some("names are letters, digits, `-` and `_` (up to 63), starting with a letter or digit".into()),
            );
        } else if SECTIONS.contains(&name) {
            cx.error(
                &path,
                format!("`{name}` is reserved for the `{name}:` section"),
                Some("choose another name".into()),
            );
        }
        if let Some(first) = seen.get(name) {
            let line = first.pos(tree).0.line;
            cx.error(
                &path,
                format!("the name `{name}` is used twice"),
                Some(format!(
                    "it is first used at line {line}; services and workloads need distinct names"
                )),
            );
        } else {
            seen.insert(name, path);
        }
    }

    platform(&mut cx, recipe);
    for (i, s) in recipe.services.iter().enumerate() {
        service(&mut cx, recipe, s, &root.key("services").index(i));
    }
    dependency_cycles(&mut cx, recipe);
    ports(&mut cx, recipe);
    for (i, w) in recipe.workloads.iter().enumerate() {
        workload(
            &mut cx,
            recipe,
            w,
            &root.key("workloads").index(i),
            base_dir,
        );
    }
    if recipe.monitor.interval.std() < std::time::Duration::from_millis(100) {
        cx.error(
            &root.key("monitor").key("interval"),
            "the monitor interval is below 100ms",
            Some(
                "sampling that often disturbs the service being measured; use `1s` or more".into(),
            ),
        );
    }
    cx.diags
}

/// Services that depend on each other in a circle can never start: the first service of each
/// circle is reported once, with the circle.
fn dependency_cycles(cx: &mut Ctx, recipe: &Recipe) {
    let index = |name: &str| recipe.services.iter().position(|s| s.name == name);
    let mut reported = vec![false; recipe.services.len()];
    for start in 0..recipe.services.len() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start, 0usize)];
        let mut on_path = vec![start];
        let mut seen = vec![false; recipe.services.len()];
        seen[start] = true;
        while let Some((at, next)) = stack.pop() {
            let deps = &recipe.services[at].depends_on;
            if next >= deps.len() {
                on_path.pop();
                continue;
            }
            stack.push((at, next + 1));
            let Some(to) = index(&deps[next]) else {
                continue;
            };
            if to == start && on_path.len() > 1 && !on_path.iter().any(|&i| reported[i]) {
                let circle: Vec<&str> = on_path
                    .iter()
                    .chain(std::iter::once(&start))
                    .map(|&i| recipe.services[i].name.as_str())
                    .collect();
                for &i in &on_path {
                    reported[i] = true;
                }
                let j = recipe.services[start]
                    .depends_on
                    .iter()
                    .position(|d| index(d).is_some_and(|k| on_path.get(1) == Some(&k)))
                    .unwrap_or(0);
                cx.error(
                    &KeyPath::root()
                        .key("services")
                        .index(start)
                        .key("depends_on")
                        .index(j),
                    format!(
                        "services depend on each other in a circle: {}",
                        circle.join(" -> ")
                    ),
                    Some("none of them could start first; remove one of these dependencies".into()),
                );
            } else if !seen[to] {
                seen[to] = true;
                on_path.push(to);
                stack.push((to, 0));
            }
        }
    }
}

/// The time a workload's load runs: warm-up, measurement and cool-down, in seconds.
fn measure_secs(w: &Workload) -> u64 {
    w.load_time().map_or(0, |t| t.as_secs())
}

/// On Slurm, consecutive trials whose services do not change share the services' jobs (see the
/// plan): their measurements together must fit the jobs' time limit.
pub fn shared_jobs(recipe: &Recipe, trials: &[crate::sweep::Trial], tree: &Node) -> Diagnostics {
    let mut cx = Ctx {
        tree,
        diags: Diagnostics::default(),
    };
    let (PlatformKind::Slurm, Some(limit)) = (
        recipe.platform.kind,
        recipe.platform.slurm.as_ref().and_then(|s| s.time),
    ) else {
        return cx.diags;
    };
    // (first trial, last trial, seconds) of each run of trials on the same jobs.
    let mut groups: Vec<(usize, usize, u64)> = Vec::new();
    let mut previous: Option<serde_json::Value> = None;
    for (i, t) in trials.iter().enumerate() {
        let services = serde_json::to_value(&t.recipe.services).unwrap_or_default();
        let secs = t
            .recipe
            .workloads
            .iter()
            .map(measure_secs)
            .max()
            .unwrap_or(0);
        match groups.last_mut() {
            Some(g) if previous.as_ref() == Some(&services) => {
                g.1 = i;
                g.2 += secs;
            }
            _ => groups.push((i, i, secs)),
        }
        previous = Some(services);
    }
    if let Some(&(first, last, secs)) = groups.iter().find(|g| g.0 != g.1 && g.2 > limit.0) {
        cx.error(
            &KeyPath::root().key("platform").key("slurm").key("time"),
            format!(
                "trials {} to {} share their services' jobs and measure for {secs}s in all, longer \
                 than the Slurm time limit of {}s",
                trials[first].id, trials[last].id, limit.0
            ),
            Some("raise `time`, shorten the measurements, or split the sweep".into()),
        );
    }
    cx.diags
}

fn platform(cx: &mut Ctx, recipe: &Recipe) {
    let p = KeyPath::root().key("platform");
    match (recipe.platform.kind, &recipe.platform.slurm) {
        (PlatformKind::Slurm, None) => cx.error(
            &p.key("kind"),
            "`kind: slurm` needs a `slurm:` block",
            Some(
                "add `slurm: { account: ..., partition: ..., time: 01:00:00 }` under `platform`"
                    .into(),
            ),
        ),
        (PlatformKind::Slurm, Some(s)) => {
            if s.partition.is_none() && s.account.is_none() {
                cx.warn(
                    &p.key("slurm"),
                    "no `account` or `partition`: jobs go to the cluster's defaults",
                    Some(
                        "most clusters need `account:`; set `partition:` to pick GPU nodes".into(),
                    ),
                );
            }
            if s.time.is_none() {
                cx.warn(
                    &p.key("slurm"),
                    "no `time` limit: jobs get the partition's default, which may be short",
                    Some("add `time: 01:00:00`".into()),
                );
            }
        }
        (PlatformKind::Local, Some(_)) => cx.warn(
            &p.key("slurm"),
            "`slurm` settings are ignored on the local platform",
            Some("set `platform.kind: slurm` to use them".into()),
        ),
        (PlatformKind::Local, None) => {}
    }
    if let Some(c) = &recipe.platform.container {
        container(cx, c, &p.key("container"));
    }
}

fn container(cx: &mut Ctx, c: &Container, path: &KeyPath) {
    if c.runtime != ContainerRuntime::None && c.image.as_deref().unwrap_or("").is_empty() {
        cx.error(
            &path.key("runtime"),
            format!("a `{}` container needs an `image`", runtime_name(c.runtime)),
            Some("add `image: /path/to/image.sif` (Apptainer) or `image: repo/name:tag`".into()),
        );
    }
}

fn runtime_name(r: ContainerRuntime) -> &'static str {
    match r {
        ContainerRuntime::None => "none",
        ContainerRuntime::Apptainer => "apptainer",
        ContainerRuntime::Docker => "docker",
        ContainerRuntime::Podman => "podman",
    }
}

fn service(cx: &mut Ctx, recipe: &Recipe, s: &Service, path: &KeyPath) {
    let kind = s.kind.name();
    if s.command.is_none() && (s.kind.spec().command)(s).argv.is_empty() {
        cx.error(
            &path.key("kind"),
            format!("`kind: {kind}` needs a `command`"),
            Some("add `command: \"my-server --port ${PORT}\"`, or choose a known kind".into()),
        );
    }
    let empty_command = match &s.command {
        Some(CommandLine::Argv(v)) => v.is_empty(),
        Some(CommandLine::Shell(t)) => t.0.trim().is_empty(),
        None => false,
    };
    if empty_command {
        cx.error(&path.key("command"), "the command is empty", None);
    }
    if let (Some(hint), None, None) = (s.kind.spec().model_required, &s.model, &s.command) {
        cx.error(
            &path.key("kind"),
            format!("a `{kind}` service needs a `model`"),
            Some(hint.into()),
        );
    }
    if let Some(options) = s.kind.spec().options {
        for (key, value) in &s.args {
            let name = key.trim_start_matches('-');
            let ap = path.key("args").key(key);
            match options.iter().find(|(o, _)| *o == name) {
                None => {
                    let help = match did_you_mean(name, options.iter().map(|(o, _)| *o)) {
                        Some(o) => format!("did you mean `{o}`?"),
                        None => format!(
                            "`{kind}` takes: {}",
                            options
                                .iter()
                                .map(|(o, _)| *o)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    cx.error(&ap, format!("`{kind}` has no option `{name}`"), Some(help));
                }
                Some((_, ty)) => {
                    if let Some(problem) = ty.problem(value) {
                        cx.error(&ap, format!("`{name}`: {problem}"), None);
                    }
                }
            }
        }
    }
    let r = &s.resources;
    let rp = path.key("resources");
    if r.nodes == 0 {
        cx.error(&rp.key("nodes"), "a service needs at least one node", None);
    }
    if s.replicas == 0 {
        cx.error(&path.key("replicas"), "`replicas` must be at least 1", None);
    }
    if r.gpus > 0 && !s.kind.can_use_gpu() {
        cx.warn(
            &rp.key("gpus"),
            format!("`{kind}` does not use GPUs; {} requested", r.gpus),
            Some("drop `gpus` so the GPUs stay free for services that use them".into()),
        );
    }
    if r.gpus == 0 && s.kind.needs_gpu() && recipe.platform.kind == PlatformKind::Slurm {
        cx.warn(
            &rp,
            format!("`{kind}` runs on GPUs, but the service asks for none"),
            Some("add `resources: { gpus: 1 }`".into()),
        );
    }
    if r.gpus > 16 {
        cx.warn(
            &rp.key("gpus"),
            format!("{} GPUs per node is more than any common node has", r.gpus),
            None,
        );
    }
    if let Some(m) = r.memory {
        if m.0 > 16 << 40 {
            cx.warn(
                &rp.key("memory"),
                format!("{m} of memory per node is implausible"),
                None,
            );
        } else if m.0 < 16 << 20 {
            cx.warn(
                &rp.key("memory"),
                format!("{m} of memory is too little to start a server"),
                Some("sizes need a unit: `64GiB`".into()),
            );
        }
    }
    if let Some(d) = &s.distributed {
        let dp = path.key("distributed");
        if s.kind.spec().multi_node == MultiNode::No {
            cx.error(
                &dp,
                format!("`distributed` is for vLLM over Ray, not `{kind}`"),
                None,
            );
        }
        let world = d
            .tensor_parallel_size
            .saturating_mul(d.pipeline_parallel_size);
        let gpus = r.nodes.saturating_mul(r.gpus);
        if world == 0 {
            cx.error(&dp, "parallel sizes must be at least 1", None);
        } else if gpus > 0 && world != gpus {
            cx.error(
                &dp,
                format!(
                    "tensor_parallel_size x pipeline_parallel_size = {world}, but the service has {} node(s) x {} GPU(s) = {gpus}",
                    r.nodes, r.gpus
                ),
                Some("vLLM needs one GPU per rank: make the product equal nodes x gpus".into()),
            );
        }
        if r.nodes < 2 {
            cx.warn(
                &dp,
                "`distributed` on one node: a Ray cluster is not needed",
                Some("use `args: { tensor-parallel-size: N }` instead".into()),
            );
        }
    } else if r.nodes > 1 && s.kind.spec().multi_node != MultiNode::Any {
        cx.error(
            &rp.key("nodes"),
            format!(
                "a `{kind}` service spans {} nodes but has no `distributed` settings",
                r.nodes
            ),
            Some(
                "add `distributed: { tensor_parallel_size: ..., pipeline_parallel_size: ... }`"
                    .into(),
            ),
        );
    }
    if let Some(c) = &s.container {
        container(cx, c, &path.key("container"));
    }
    for (j, dep) in s.depends_on.iter().enumerate() {
        let dp = path.key("depends_on").index(j);
        if dep == &s.name {
            cx.error(&dp, "a service cannot depend on itself", None);
        } else if !recipe.services.iter().any(|o| &o.name == dep) {
            let help = did_you_mean(dep, recipe.services.iter().map(|o| o.name.as_str()))
                .map(|n| format!("did you mean `{n}`?"));
            cx.error(&dp, format!("unknown service `{dep}`"), help);
        }
    }
    if let Some(h) = &s.health {
        if h.check == HealthCheck::Http && h.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            cx.error(
                &path.key("health").key("path"),
                "an HTTP path starts with `/`",
                None,
            );
        }
        if h.timeout.std().is_zero() {
            cx.error(
                &path.key("health").key("timeout"),
                "a health timeout of 0s gives up before the first check",
                Some("loading a model takes minutes: `timeout: 10m`".into()),
            );
        }
        if h.interval > h.timeout {
            cx.warn(
                &path.key("health"),
                "the check interval is longer than the timeout",
                None,
            );
        }
    }
}

fn ports(cx: &mut Ctx, recipe: &Recipe) {
    let mut used: BTreeMap<u16, KeyPath> = BTreeMap::new();
    for (i, s) in recipe.services.iter().enumerate() {
        let sp = KeyPath::root().key("services").index(i);
        let mut mine: Vec<(u16, KeyPath)> = Vec::new();
        if let Some(p) = s.port {
            mine.push((p, sp.key("port")));
        }
        for (name, p) in &s.ports {
            mine.push((*p, sp.key("ports").key(name.clone())));
        }
        if let Some(m) = &s.metrics {
            if let Some(p) = m.port {
                if Some(p) != s.port {
                    mine.push((p, sp.key("metrics").key("port")));
                }
            }
        }
        if let Some(d) = &s.distributed {
            mine.push((d.ray_port, sp.key("distributed").key("ray_port")));
        }
        if s.replicas > 1 && s.port.is_some() && recipe.platform.kind == PlatformKind::Local {
            cx.error(
                &sp.key("port"),
                format!(
                    "{} replicas cannot share port {} on one machine",
                    s.replicas,
                    s.port.unwrap_or(0)
                ),
                Some("leave `port` unset and each replica gets a free port".into()),
            );
        }
        for (port, path) in mine {
            if port == 0 {
                continue;
            }
            if port < 1024 {
                cx.warn(
                    &path,
                    format!("port {port} needs root privileges"),
                    Some("use a port above 1023".into()),
                );
            }
            match used.get(&port) {
                Some(first) => {
                    let line = first.pos(cx.tree).0.line;
                    cx.error(
                        &path,
                        format!("port {port} is already taken by `{first}` (line {line})"),
                        Some(
                            "give each service its own port, or leave `port` unset for a free one"
                                .into(),
                        ),
                    );
                }
                None => {
                    used.insert(port, path);
                }
            }
        }
    }
}

/// What is wrong with a URL's host and port, if anything: no host, or a port that is not a
/// number from 1 to 65535 (`:99999` must not quietly become port 80).
fn authority_problem(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (v6, None),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Some((
            format!("the URL `{url}` has no host"),
            "give one, e.g. `http://127.0.0.1:8000`".into(),
        ));
    }
    match port {
        Some(p) if p.parse::<u16>().map_or(true, |n| n == 0) => Some((
            format!("the URL `{url}` has port `{p}`, which is not a port"),
            "ports are numbers from 1 to 65535".into(),
        )),
        _ => None,
    }
}

/// What keeps a prompt dataset file from loading, judged from its start: missing, unreadable,
/// empty, or not JSON (JSON Lines: one object per line; ShareGPT may also be one JSON array).
fn dataset_file_problem(file: &Path, given: &str) -> Option<(String, String)> {
    use std::io::Read;
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some((
                format!("dataset file `{given}` not found"),
                "relative paths are taken from the recipe's folder".into(),
            ))
        }
        Err(e) => {
            return Some((
                format!("dataset file `{given}` cannot be read: {e}"),
                "check its permissions".into(),
            ))
        }
    };
    let mut head = Vec::new();
    if let Err(e) = f.by_ref().take(1 << 20).read_to_end(&mut head) {
        return Some((
            format!("dataset file `{given}` cannot be read: {e}"),
            "is it a regular file?".into(),
        ));
    }
    let text = String::from_utf8_lossy(&head);
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Some((
            format!("dataset file `{given}` is empty"),
            "a dataset needs at least one prompt".into(),
        ));
    };
    if first.starts_with('[') {
        return None;
    }
    // A line cut by the 1 MiB read limit is not judged.
    let whole_line = head.len() < (1 << 20) || text.contains('\n');
    match serde_json::from_str::<serde_json::Value>(first) {
        Ok(v) if v.is_object() => None,
        Ok(_) => Some((
            format!("dataset file `{given}`: its first line is not a JSON object"),
            "JSON Lines datasets have one object per line, e.g. `{\"prompt\": \"...\"}`".into(),
        )),
        Err(_) if !whole_line => None,
        Err(e) => Some((
            format!("dataset file `{given}`: its first line is not JSON ({e})"),
            "JSON Lines datasets have one object per line, e.g. `{\"prompt\": \"...\"}`".into(),
        )),
    }
}

fn workload(cx: &mut Ctx, recipe: &Recipe, w: &Workload, path: &KeyPath, base_dir: &Path) {
    if w.stop.duration.is_some_and(|d| d.std().is_zero()) {
        cx.error(
            &path.key("stop").key("duration"),
            "a measurement of 0s measures nothing",
            Some("give it a length, e.g. `duration: 60s`".into()),
        );
    }
    if w.timeout.std().is_zero() {
        cx.error(
            &path.key("timeout"),
            "a request timeout of 0s fails every request",
            Some("leave it out for the default, or give e.g. `timeout: 60s`".into()),
        );
    }
    if let Some(max) = w.stop.max_duration {
        let planned = w.warmup.map(|d| d.std()).unwrap_or_default()
            + w.stop.duration.map(|d| d.std()).unwrap_or_default()
            + w.cooldown.map(|d| d.std()).unwrap_or_default();
        if max.std().is_zero() || max.std() < planned {
            cx.error(
                &path.key("stop").key("max_duration"),
                format!(
                    "a deadline of {max} ends the measurement before its plan does \
                     (warm-up, duration and cool-down take {})",
                    crate::units::Duration(planned)
                ),
                Some(format!(
                    "leave it out for the default, or give at least {}",
                    crate::units::Duration(planned)
                )),
            );
        }
    }
    if let (PlatformKind::Slurm, Some(limit)) = (
        recipe.platform.kind,
        recipe.platform.slurm.as_ref().and_then(|s| s.time),
    ) {
        let measure = measure_secs(w);
        if measure > limit.0 {
            cx.error(
                &path.key("stop").key("duration"),
                format!(
                    "warm-up, measurement and cool-down take {measure}s, longer than the Slurm \
                     time limit of {}s: the jobs would end before the measurement does",
                    limit.0
                ),
                Some("raise `platform.slurm.time`, or shorten the measurement".into()),
            );
        }
    }
    let target = recipe.services.iter().find(|s| s.name == w.target);
    let is_url = w.target.contains("://");
    match target {
        Some(s) => {
            if !s.kind.protocols().contains(&w.protocol) {
                let allowed: Vec<&str> = s.kind.protocols().iter().map(|p| p.name()).collect();
                cx.error(
                    &path.key("protocol"),
                    format!(
                        "a `{}` service does not speak `{}`",
                        s.kind.name(),
                        w.protocol.name()
                    ),
                    Some(format!("use one of: {}", allowed.join(", "))),
                );
            }
        }
        None if is_url => {
            let scheme = w.target.split("://").next().unwrap_or("");
            if !matches!(
                scheme,
                "http" | "https" | "redis" | "postgres" | "postgresql" | "s3"
            ) {
                cx.error(
                    &path.key("target"),
                    format!("unsupported URL scheme `{scheme}`"),
                    Some("use http://, https://, redis:// or postgres://".into()),
                );
            } else if let Some((problem, help)) = authority_problem(&w.target) {
                cx.error(&path.key("target"), problem, Some(help));
            }
        }
        None => {
            let names: Vec<&str> = recipe.services.iter().map(|s| s.name.as_str()).collect();
            let help = match did_you_mean(&w.target, names.iter().copied()) {
                Some(n) => format!("did you mean `{n}`?"),
                None if names.is_empty() => "no services are defined: add one under `services`, or give a URL such as `http://host:8000`".into(),
                None => format!("the services are: {}; or give a URL such as `http://host:8000`", names.join(", ")),
            };
            cx.error(
                &path.key("target"),
                format!("unknown service `{}`", w.target),
                Some(help),
            );
        }
    }
    if w.protocol.is_llm()
        && w.model.is_none()
        && target.is_some_and(|s| s.model.is_none() && s.kind.spec().default_model.is_none())
    {
        cx.warn(
            path,
            "no model name: neither the workload nor its service names one; the first model the server lists will be used",
            Some("add `model:` to the workload to choose".into()),
        );
    }
    if w.protocol == Protocol::Http && w.http.is_none() {
        cx.warn(
            &path.key("protocol"),
            "`protocol: http` without an `http:` request sends `GET /`",
            Some("add `http: { method: POST, path: /v1/embeddings, body: ... }`".into()),
        );
    }
    if w.ignore_eos
        && !matches!(
            w.protocol,
            Protocol::OpenaiCompletions | Protocol::OpenaiChat
        )
    {
        cx.error(
            &path.key("ignore_eos"),
            format!(
                "`ignore_eos` is an OpenAI-API extension; `protocol: {}` has no such option",
                w.protocol.name()
            ),
            Some("remove it, or use `protocol: openai-completions` / `openai-chat`".into()),
        );
    }
    if w.http.is_some() && w.protocol != Protocol::Http {
        cx.warn(
            &path.key("http"),
            format!("`http` is ignored for `protocol: {}`", w.protocol.name()),
            None,
        );
    }
    if let Some(r) = &w.redis {
        if w.protocol != Protocol::Redis {
            cx.error(
                &path.key("redis"),
                format!(
                    "`redis` options do not apply to `protocol: {}`",
                    w.protocol.name()
                ),
                Some("remove `redis:`, or use `protocol: redis`".into()),
            );
        }
        if r.pipeline == 0 {
            cx.error(
                &path.key("redis").key("pipeline"),
                "the pipeline depth must be at least 1",
                Some("use `pipeline: 1` for one command per round trip".into()),
            );
        }
    }
    if let Some(o) = &w.s3 {
        let sp = path.key("s3");
        if w.protocol != Protocol::S3 {
            cx.error(
                &sp,
                format!(
                    "`s3` options do not apply to `protocol: {}`",
                    w.protocol.name()
                ),
                Some("remove `s3:`, or use `protocol: s3`".into()),
            );
        }
        if o.list_share.0 + o.delete_share.0 > 100.0 {
            cx.error(
                &sp.key("delete_share"),
                "`list_share` and `delete_share` add up to more than 100%",
                None,
            );
        }
        if o.part_size.0 < 5 << 20 {
            cx.error(
                &sp.key("part_size"),
                "S3 needs multipart parts of at least 5MiB",
                Some("use `part_size: 8MiB`".into()),
            );
        }
        if o.list_max_keys == 0 {
            cx.error(
                &sp.key("list_max_keys"),
                "a list asks for at least one key",
                None,
            );
        }
    }
    if w.protocol == Protocol::S3 {
        let min = match &w.dataset {
            Dataset::KeyValue {
                value_size: SizeRange::Fixed(s),
                ..
            } => Some(s.0),
            Dataset::KeyValue {
                value_size: SizeRange::Uniform { min, .. },
                ..
            } => Some(min.0),
            _ => None,
        };
        if min.is_some_and(|m| m < 16) {
            cx.error(
                &path.key("dataset").key("value_size"),
                "S3 objects must be at least 16 bytes: each starts with a header naming its key and version, which lets a GET verify every byte",
                Some("use `value_size: 1KiB` or more".into()),
            );
        }
    }
    vector_options(cx, w, target, path);
    if let Some(e) = &w.endpoint {
        if !e.starts_with('/') {
            cx.error(
                &path.key("endpoint"),
                "an endpoint path starts with `/`",
                Some(format!("write `/{e}`")),
            );
        }
    }

    // The dataset must suit the protocol.
    let dp = path.key("dataset");
    let fits = match &w.dataset {
        Dataset::Synthetic { .. }
        | Dataset::Jsonl { .. }
        | Dataset::Sharegpt { .. }
        | Dataset::Hellaswag { .. } => w.protocol.is_llm() || w.protocol == Protocol::Http,
        Dataset::KeyValue { .. } => matches!(w.protocol, Protocol::Redis | Protocol::S3),
        Dataset::Vectors { .. } => w.protocol == Protocol::Vector,
        Dataset::Sql { .. } => w.protocol == Protocol::Postgres,
    };
    let kind_name = match &w.dataset {
        Dataset::Synthetic { .. } => "synthetic",
        Dataset::Jsonl { .. } => "jsonl",
        Dataset::Sharegpt { .. } => "sharegpt",
        Dataset::Hellaswag { .. } => "hellaswag",
        Dataset::KeyValue { .. } => "key-value",
        Dataset::Vectors { .. } => "vectors",
        Dataset::Sql { .. } => "sql",
    };
    if !fits {
        let suggestion = match w.protocol {
            Protocol::Redis | Protocol::S3 => "key-value",
            Protocol::Vector => "vectors",
            Protocol::Postgres => "sql",
            _ => "synthetic",
        };
        cx.error(
            &dp.key("kind"),
            format!(
                "a `{kind_name}` dataset does not fit `protocol: {}`",
                w.protocol.name()
            ),
            Some(format!("use `dataset: {{ kind: {suggestion} }}`")),
        );
    }
    if let Dataset::Jsonl { path: p, .. }
    | Dataset::Sharegpt { path: p, .. }
    | Dataset::Hellaswag { path: p, .. } = &w.dataset
    {
        if !p.contains("${") {
            let full = base_dir.join(p);
            let file = if full.exists() {
                full
            } else {
                Path::new(p).to_path_buf()
            };
            if let Some((problem, help)) = dataset_file_problem(&file, p) {
                cx.error(&dp.key("path"), problem, Some(help));
            }
        }
    }
    if let Dataset::KeyValue {
        keys,
        value_size,
        access,
        zipf_exponent,
        ..
    } = &w.dataset
    {
        if *keys == 0 {
            cx.error(
                &dp.key("keys"),
                "the key space needs at least one key",
                None,
            );
        }
        if let SizeRange::Uniform { min, max } = value_size {
            if min > max {
                cx.error(
                    &dp.key("value_size"),
                    format!("`min` ({} bytes) is above `max` ({} bytes)", min.0, max.0),
                    Some("swap them".into()),
                );
            }
        }
        if !(zipf_exponent.is_finite() && *zipf_exponent >= 0.0) {
            cx.error(
                &dp.key("zipf_exponent"),
                format!("the Zipfian exponent must be zero or positive (got {zipf_exponent})"),
                Some("YCSB uses `0.99`".into()),
            );
        } else if *access == KeyAccess::Uniform && *zipf_exponent != 0.99 {
            cx.warn(
                &dp.key("zipf_exponent"),
                "`zipf_exponent` applies only to `access: zipfian`",
                Some("add `access: zipfian`".into()),
            );
        }
    }
    if let Dataset::Vectors { .. } = &w.dataset {
        vectors(cx, w, &dp, base_dir);
    }
    if let Dataset::Sql { .. } = &w.dataset {
        sql(cx, &w.dataset, &dp);
    }
    if let Dataset::Synthetic {
        prompt_tokens,
        output_tokens,
        ..
    } = &w.dataset
    {
        length(cx, prompt_tokens, &dp.key("prompt_tokens"));
        length(cx, output_tokens, &dp.key("output_tokens"));
    }

    // Load.
    let lp = path.key("load");
    match &w.load {
        Load::ClosedLoop {
            users,
            think_time,
            think_time_distribution,
            ..
        } => {
            if *users == 0 {
                cx.error(
                    &lp.key("users"),
                    "a closed loop needs at least one user",
                    None,
                );
            }
            if *think_time_distribution != ThinkTime::Fixed && think_time.is_none() {
                cx.warn(
                    &lp.key("think_time_distribution"),
                    "no `think_time` to distribute",
                    None,
                );
            }
        }
        Load::OpenLoop {
            arrival,
            rate,
            burstiness,
            steps,
            ramp,
            bursts,
            trace,
            max_in_flight,
        } => {
            let need = |cx: &mut Ctx, present: bool, field: &str, example: &str| {
                if !present {
                    cx.error(
                        &lp.key("arrival"),
                        format!("`arrival: {}` needs `{field}`", arrival_name(*arrival)),
                        Some(format!("add `{field}: {example}` under `load`")),
                    );
                }
            };
            match arrival {
                Arrival::Constant | Arrival::Poisson => need(cx, rate.is_some(), "rate", "10/s"),
                Arrival::Gamma => {
                    need(cx, rate.is_some(), "rate", "10/s");
                    need(cx, burstiness.is_some(), "burstiness", "0.5");
                }
                Arrival::Step => need(
                    cx,
                    !steps.is_empty(),
                    "steps",
                    "[{ rate: 5/s, duration: 1m }, { rate: 10/s, duration: 1m }]",
                ),
                Arrival::Ramp => need(
                    cx,
                    ramp.is_some(),
                    "ramp",
                    "{ from: 1/s, to: 50/s, over: 5m }",
                ),
                Arrival::Bursts => {
                    need(cx, rate.is_some(), "rate", "50/s");
                    need(cx, bursts.is_some(), "bursts", "{ on: 10s, off: 20s }");
                }
                Arrival::Trace => need(cx, trace.is_some(), "trace", "arrivals.txt"),
            }
            if let Some(t) = trace.as_deref().filter(|t| !t.contains("${")) {
                let full = base_dir.join(t);
                let file = if full.exists() {
                    full
                } else {
                    Path::new(t).to_path_buf()
                };
                if let Err(problem) = crate::trace::read_trace(&file) {
                    cx.error(
                        &lp.key("trace"),
                        problem,
                        Some("one send offset per line, in seconds from the start; relative paths are taken from the recipe's folder".into()),
                    );
                }
            }
            if let Some(b) = burstiness {
                if !(b.is_finite() && *b > 0.0) {
                    cx.error(
                        &lp.key("burstiness"),
                        "burstiness must be above zero",
                        Some("1 is Poisson; 0.5 is burstier".into()),
                    );
                }
                if *arrival != Arrival::Gamma {
                    cx.warn(
                        &lp.key("burstiness"),
                        "`burstiness` only applies to `arrival: gamma`",
                        None,
                    );
                }
            }
            if *max_in_flight == Some(0) {
                cx.error(
                    &lp.key("max_in_flight"),
                    "`max_in_flight` must be at least 1",
                    None,
                );
            }
        }
    }
    let sp = path.key("stop");
    if w.stop.duration.is_none() && w.stop.requests.is_none() {
        let open_ended = !matches!(
            &w.load,
            Load::OpenLoop {
                arrival: Arrival::Step | Arrival::Ramp | Arrival::Trace,
                ..
            }
        );
        if open_ended {
            cx.error(
                &sp,
                "the workload never stops: give `duration` or `requests`",
                Some("add `stop: { duration: 2m }`".into()),
            );
        }
    }
    if w.stop.requests == Some(0) {
        cx.error(&sp.key("requests"), "`requests` must be at least 1", None);
    }
    if let (Some(wu), Some(d)) = (w.warmup, w.stop.duration) {
        if wu >= d {
            cx.warn(
                &path.key("warmup"),
                format!("the warm-up ({wu}) is as long as the measurement ({d})"),
                None,
            );
        }
    }
    if w.clients.nodes == 0 || w.clients.processes == 0 {
        cx.error(
            &path.key("clients"),
            "clients need at least one node and one process",
            None,
        );
    }
    if w.clients.nodes > 1 && recipe.platform.kind == PlatformKind::Local {
        cx.error(
            &path.key("clients").key("nodes"),
            "client nodes beyond one need `platform.kind: slurm`",
            Some("use `processes` for more clients on this machine".into()),
        );
    }
}

/// `vector:` options, and which engine a `protocol: vector` workload talks to.
fn vector_options(cx: &mut Ctx, w: &Workload, target: Option<&Service>, path: &KeyPath) {
    let vp = path.key("vector");
    if w.vector.is_some() && w.protocol != Protocol::Vector {
        cx.error(
            &vp,
            format!(
                "`vector` options do not apply to `protocol: {}`",
                w.protocol.name()
            ),
            Some("remove `vector:`, or use `protocol: vector`".into()),
        );
        return;
    }
    if w.protocol != Protocol::Vector {
        return;
    }
    let given = w.vector.as_ref().and_then(|v| v.engine);
    match (target.and_then(|s| VectorEngine::of_kind(s.kind)), given) {
        (Some(kind), Some(e)) if kind != e => cx.error(
            &vp.key("engine"),
            format!(
                "`engine: {}` contradicts the target service, which is `kind: {}`",
                e.name(),
                kind.name()
            ),
            Some(format!(
                "remove `engine`, or write `engine: {}`",
                kind.name()
            )),
        ),
        (None, None) => cx.error(
            &path.key("target"),
            "a vector workload needs to know the engine of a URL or `command` target",
            Some("add `vector: { engine: chroma }` (or `qdrant`) to the workload".into()),
        ),
        _ => {}
    }
}

/// Chroma's rule for collection names, which Qdrant accepts too.
fn valid_collection(name: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && alnum(name.chars().next())
        && alnum(name.chars().last())
}

/// The `vectors` dataset.
fn vectors(cx: &mut Ctx, w: &Workload, dp: &KeyPath, base_dir: &Path) {
    let Dataset::Vectors {
        dimensions,
        collection_size,
        top_k,
        queries,
        insert_batch,
        filter_buckets,
        path,
        queries_path,
        collection,
        ..
    } = &w.dataset
    else {
        return;
    };
    let at_least_one = |cx: &mut Ctx, v: Option<u64>, field: &str, example: &str| {
        if v == Some(0) {
            cx.error(
                &dp.key(field),
                format!("`{field}` must be at least 1"),
                Some(format!("e.g. `{field}: {example}`")),
            );
        }
    };
    at_least_one(cx, dimensions.map(u64::from), "dimensions", "384");
    at_least_one(cx, *collection_size, "collection_size", "10000");
    at_least_one(cx, queries.map(u64::from), "queries", "1000");
    at_least_one(cx, Some(u64::from(*top_k)), "top_k", "10");
    at_least_one(cx, Some(u64::from(*insert_batch)), "insert_batch", "256");
    at_least_one(cx, filter_buckets.map(u64::from), "filter_buckets", "8");
    // The collection size is known unless it is "the whole file".
    let size = match (collection_size, path) {
        (Some(n), _) => Some(*n),
        (None, None) => Some(DEFAULT_COLLECTION_SIZE),
        (None, Some(_)) => None,
    };
    if let Some(n) = size.filter(|n| *n > 0) {
        if u64::from(*top_k) > n {
            cx.error(
                &dp.key("top_k"),
                format!("`top_k` ({top_k}) is above the collection size ({n})"),
                Some(format!(
                    "lower `top_k`, or raise `collection_size` to at least {top_k}"
                )),
            );
        } else if let Some(b) = filter_buckets.filter(|b| *b > 0) {
            let smallest = n / u64::from(b);
            if smallest < u64::from(*top_k) {
                cx.warn(
                    &dp.key("filter_buckets"),
                    format!(
                        "{b} buckets of {n} vectors hold as few as {smallest}, fewer than `top_k` ({top_k}): such queries expect fewer neighbours"
                    ),
                    Some(format!(
                        "use at most {} buckets",
                        (n / u64::from((*top_k).max(1))).max(1)
                    )),
                );
            }
        }
    }
    if *insert_batch > 5461
        && w.vector
            .as_ref()
            .and_then(|v| v.engine)
            .is_none_or(|e| e == VectorEngine::Chroma)
    {
        cx.warn(
            &dp.key("insert_batch"),
            format!(
                "ChromaDB takes at most 5461 vectors per request (`insert_batch: {insert_batch}`)"
            ),
            Some("use `insert_batch: 5000` or less with ChromaDB".into()),
        );
    }
    for (field, p) in [("path", path), ("queries_path", queries_path)] {
        let Some(p) = p else { continue };
        let lower = p.to_ascii_lowercase();
        if !(lower.ends_with(".npy") || lower.ends_with(".fvecs") || p.contains("${")) {
            cx.error(
                &dp.key(field),
                format!("`{p}` is neither a `.npy` nor an `.fvecs` file"),
                Some("save the vectors with numpy.save (float32, 2-D), or as .fvecs".into()),
            );
        } else if !p.contains("${") && !base_dir.join(p).exists() && !Path::new(p).exists() {
            cx.warn(
                &dp.key(field),
                format!("vector file `{p}` not found"),
                Some("relative paths are taken from the recipe's folder".into()),
            );
        }
    }
    if path.is_some() && queries_path.is_none() {
        cx.warn(
            &dp.key("path"),
            "no `queries_path`: queries are midpoints of two collection vectors",
            Some("give the dataset's own query vectors as `queries_path`".into()),
        );
    }
    if !valid_collection(collection) {
        cx.error(
            &dp.key("collection"),
            format!("invalid collection name `{collection}`"),
            Some("use 3 to 63 letters, digits, `.`, `_` or `-`, starting and ending with a letter or digit".into()),
        );
    }
}

/// The `{{name}}` parameters of a SQL statement, in order.
pub fn sql_parameters(sql: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err("`{{` without a closing `}}`".into());
        };
        let name = after[..close].trim();
        let ident = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(format!(
                "`{{{{{name}}}}}` is not a parameter name (letters, digits and `_`)"
            ));
        }
        out.push(name);
        rest = &after[close + 2..];
    }
    Ok(out)
}

/// A `sql` dataset: exactly one source of statements, parameters declared and sane.
fn sql(cx: &mut Ctx, d: &Dataset, dp: &KeyPath) {
    let Dataset::Sql {
        queries,
        builtin,
        scale,
        scripts,
        params,
        setup,
    } = d
    else {
        return;
    };
    let given: Vec<&str> = [
        (!queries.is_empty()).then_some("queries"),
        (!scripts.is_empty()).then_some("scripts"),
        builtin.is_some().then_some("builtin"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.as_slice() {
        [] => cx.error(
            &dp.key("kind"),
            "a `sql` dataset needs `queries`, `scripts` or `builtin`",
            Some(
                "add `queries: [\"SELECT ... WHERE id = {{n}}\"]`, a list of `scripts`, or `builtin: tpcb` (pgbench's TPC-B-like transaction)"
                    .into(),
            ),
        ),
        [_] => {}
        [first, others @ ..] => {
            for other in others {
                cx.error(
                    &dp.key(*other),
                    format!("`{first}` and `{other}` are both given; a workload runs one of them"),
                    Some(format!(
                        "keep one of `{}`; for a mix, write each statement as a script with a weight",
                        given.join("`, `")
                    )),
                );
            }
        }
    }
    if *scale == 0 {
        cx.error(
            &dp.key("scale"),
            "the scale must be at least 1",
            Some("`scale: 1` is 100000 accounts, as `pgbench -i -s 1`".into()),
        );
    } else if *scale != 1 && builtin.is_none() {
        cx.warn(
            &dp.key("scale"),
            "`scale` applies only to a `builtin` workload",
            Some("add `builtin: tpcb`, or remove `scale`".into()),
        );
    }
    if builtin.is_some() && !params.is_empty() {
        cx.warn(
            &dp.key("params"),
            "the built-in workload draws its own parameters; `params` are not used",
            Some("remove `params`, or write the transaction as a script".into()),
        );
    }

    // Statements and the parameters they use.
    let mut used: Vec<&str> = Vec::new();
    let mut statements: Vec<(KeyPath, &str)> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (dp.key("queries").index(i), q.as_str()))
        .collect();
    let mut names = std::collections::HashSet::new();
    for (i, script) in scripts.iter().enumerate() {
        let sp = dp.key("scripts").index(i);
        if !valid_name(&script.name) {
            cx.error(
                &sp.key("name"),
                format!("invalid script name `{}`", script.name),
                Some("names are letters, digits, `-` and `_` (up to 63), starting with a letter or digit".into()),
            );
        } else if !names.insert(script.name.as_str()) {
            cx.error(
                &sp.key("name"),
                format!("the script name `{}` is used twice", script.name),
                Some("each script needs a name of its own".into()),
            );
        }
        if script.weight == 0 {
            cx.error(
                &sp.key("weight"),
                "a script's weight must be at least 1",
                Some("remove the script to leave it out of the mix".into()),
            );
        }
        if script.statements.is_empty() {
            cx.error(
                &sp.key("statements"),
                format!("script `{}` has no statements", script.name),
                Some("add at least one statement".into()),
            );
        }
        statements.extend(
            script
                .statements
                .iter()
                .enumerate()
                .map(|(j, q)| (sp.key("statements").index(j), q.as_str())),
        );
    }
    for (path, text) in statements {
        if text.trim().is_empty() {
            cx.error(&path, "an empty statement", Some("remove it".into()));
            continue;
        }
        match sql_parameters(text) {
            Err(e) => cx.error(&path, e, Some("write a parameter as `{{name}}`".into())),
            Ok(found) => {
                for name in found {
                    if !used.contains(&name) {
                        used.push(name);
                    }
                    if name != "n" && !params.contains_key(name) {
                        cx.error(
                            &path,
                            format!("`{{{{{name}}}}}` is not declared"),
                            Some(format!(
                                "declare it under `params`, e.g. `params: {{ {name}: {{ min: 1, max: 100000 }} }}`"
                            )),
                        );
                    }
                }
            }
        }
    }
    for (i, text) in setup.iter().enumerate() {
        if text.contains("{{") {
            cx.warn(
                &dp.key("setup").index(i),
                "setup statements take no parameters: `{{...}}` is sent as written",
                Some("write the values out, e.g. with `generate_series`".into()),
            );
        }
    }
    for (name, p) in params {
        let pp = dp.key("params").key(name);
        if let Err(e) = sql_parameters(&format!("{{{{{name}}}}}")) {
            cx.error(
                &pp,
                e,
                Some("name parameters with letters, digits and `_`".into()),
            );
        }
        if p.min > p.max {
            cx.error(
                &pp,
                format!("`min` ({}) is above `max` ({})", p.min, p.max),
                Some("swap them".into()),
            );
        }
        if let Some(e) = p.zipf_exponent {
            if !(e.is_finite() && e >= 0.0) {
                cx.error(
                    &pp.key("zipf_exponent"),
                    format!("the Zipfian exponent must be zero or positive (got {e})"),
                    Some("YCSB uses `0.99`".into()),
                );
            }
        }
        if builtin.is_none() && !used.contains(&name.as_str()) {
            cx.warn(
                &pp,
                format!("no statement uses `{{{{{name}}}}}`"),
                Some("remove it, or use it in a statement".into()),
            );
        }
    }
}

fn length(cx: &mut Ctx, l: &Length, path: &KeyPath) {
    match l {
        Length::Fixed(0) => cx.error(path, "a length of 0 tokens", None),
        Length::Uniform { min, max } if min > max => {
            cx.error(path, format!("`min` ({min}) is above `max` ({max})"), None)
        }
        Length::Normal { mean: 0, .. } => cx.error(path, "a mean of 0 tokens", None),
        _ => {}
    }
}

fn arrival_name(a: Arrival) -> &'static str {
    match a {
        Arrival::Constant => "constant",
        Arrival::Poisson => "poisson",
        Arrival::Gamma => "gamma",
        Arrival::Step => "step",
        Arrival::Ramp => "ramp",
        Arrival::Bursts => "bursts",
        Arrival::Trace => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::authority_problem;

    #[test]
    fn urls_need_a_host_and_a_real_port() {
        for ok in [
            "http://127.0.0.1:8000/v1",
            "http://host",
            "redis://:secret@cache:6379/0",
            "http://[::1]:8080/",
            "postgres://u:p@db/bench?sslmode=disable",
        ] {
            assert_eq!(authority_problem(ok), None, "{ok}");
        }
        for bad in [
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0/",
            "http://host:port/",
            "http://:8000/",
            "http:///v1",
            "http://[::1]:70000",
        ] {
            assert!(authority_problem(bad).is_some(), "{bad}");
        }
    }
}
