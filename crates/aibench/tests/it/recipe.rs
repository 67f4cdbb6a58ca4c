//! validate, plan, schema: recipes from the user's point of view.

use std::collections::HashSet;

use crate::harness::{aibench, workspace, Cmd};

fn examples() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(workspace().join("examples"))
        .expect("examples")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("examples/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_valid_and_declares_the_schema() {
    let files = examples();
    assert!(files.len() >= 12, "one example per system: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(workspace().join(f)).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/recipe.schema.json"),
            "{f} must start with the schema line for editors"
        );
        let run = aibench(&["validate", f]);
        assert_eq!(run.code, 0, "{f} should be valid:\n{}", run.stderr);
        assert!(run.stdout.contains("valid"), "{}", run.stdout);
    }
}

/// Write a recipe into a temp dir and validate it.
fn invalid(name: &str, text: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let run = Cmd::new(&["validate", path.to_str().unwrap()]).run();
    assert_eq!(
        run.code, 2,
        "expected exit 2 for {name}; stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "errors go to stderr only, stdout was: {}",
        run.stdout
    );
    run.stderr
        .replace(&format!("{}/", dir.path().display()), "")
}

const BASE: &str = "name: t
services:
  - name: llm
    kind: sim
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    load: { pattern: closed-loop, users: 4 }
";

#[test]
fn unknown_key_points_at_it_and_suggests() {
    let text = BASE.replace("users: 4 }", "users: 4 }\n    stopp: { duration: 10s }");
    let err = invalid("unknown-key.yaml", text.as_bytes());
    assert!(
        err.contains("unknown-key.yaml:10:5: error: unknown field `stopp`"),
        "{err}"
    );
    assert!(err.contains("(at workloads[0])"), "{err}");
    assert!(err.contains("did you mean `stop`?"), "{err}");
    assert!(
        err.contains("10 |     stopp: { duration: 10s }\n"),
        "source line shown: {err}"
    );
    assert!(
        err.contains("   |     ^^^^^\n"),
        "caret under the key: {err}"
    );
}

#[test]
fn wrong_type() {
    let err = invalid(
        "wrong-type.yaml",
        BASE.replace("users: 4", "users: many").as_bytes(),
    );
    assert!(
        err.contains("wrong-type.yaml:9:42: error: expected an integer, found a string `many`"),
        "{err}"
    );
    assert!(err.contains("(at workloads[0].load.users)"), "{err}");
}

#[test]
fn bad_duration() {
    let text = format!("{BASE}    stop: {{ duration: 10 minutes }}\n");
    let err = invalid("bad-duration.yaml", text.as_bytes());
    assert!(
        err.contains("bad-duration.yaml:10:23: error: invalid duration `10 minutes`"),
        "{err}"
    );
    assert!(err.contains("(at workloads[0].stop.duration)"), "{err}");
    assert!(err.contains("`2m`"), "the fix is shown: {err}");
}

#[test]
fn missing_variable_is_named() {
    let text = BASE.replace(
        "kind: sim",
        "kind: sim\n    model: ${AIBENCH_SURELY_UNSET_VAR}",
    );
    let err = invalid("missing-var.yaml", text.as_bytes());
    assert!(err.contains("missing-var.yaml:5:12: error: environment variable `AIBENCH_SURELY_UNSET_VAR` is not set"), "{err}");
    assert!(err.contains("(at services[0].model)"), "{err}");
    assert!(err.contains("${AIBENCH_SURELY_UNSET_VAR:-value}"), "{err}");
}

#[test]
fn dangling_target() {
    let err = invalid(
        "dangling.yaml",
        BASE.replace("target: llm", "target: lm").as_bytes(),
    );
    assert!(
        err.contains("dangling.yaml:7:13: error: unknown service `lm` (at workloads[0].target)"),
        "{err}"
    );
    assert!(err.contains("did you mean `llm`?"), "{err}");
}

#[test]
fn bad_sweep_key_and_value() {
    let text = format!(
        "{BASE}sweep:\n  matrix:\n    chat.load.user: [1, 2]\n    chat.load.users: [1, two]\n"
    );
    let err = invalid("sweep.yaml", text.as_bytes());
    assert!(
        err.contains("sweep.yaml:12:5: error: unknown field `user` in `load`"),
        "{err}"
    );
    assert!(err.contains("did you mean `users`?"), "{err}");
    assert!(
        err.contains("sweep.yaml:13:26: error: expected an integer, found a string `two`"),
        "{err}"
    );
    assert!(
        err.contains("(at sweep.matrix.chat.load.users[1])"),
        "{err}"
    );
}

#[test]
fn every_problem_in_one_pass() {
    let text = BASE
        .replace("kind: sim", "kind: simm")
        .replace("users: 4", "users: -1")
        .replace("name: t\n", "name: t\nplatfrom: {}\n");
    let err = invalid("many.yaml", text.as_bytes());
    assert!(
        err.contains("many.yaml:2:1: error: unknown field `platfrom`"),
        "{err}"
    );
    assert!(
        err.contains("many.yaml:5:11: error: unknown value `simm`"),
        "{err}"
    );
    assert!(
        err.contains("many.yaml:10:42: error: must be at least 1, found -1"),
        "{err}"
    );
    assert!(err.contains("3 errors found"), "{err}");
}

#[test]
fn yaml_syntax_error() {
    let err = invalid(
        "syntax.yaml",
        b"name: t\nservices:\n  - name: llm\n   kind: sim\n",
    );
    assert!(err.contains("syntax.yaml:4:"), "{err}");
    assert!(err.contains("YAML syntax error"), "{err}");
}

#[test]
fn duplicate_key() {
    let err = invalid("dup.yaml", format!("{BASE}name: again\n").as_bytes());
    assert!(
        err.contains("dup.yaml:10:1: error: duplicate key `name`"),
        "{err}"
    );
    assert!(err.contains("already set at line 1"), "{err}");
}

#[test]
fn empty_file() {
    let err = invalid("empty.yaml", b"");
    assert!(
        err.contains("empty.yaml:1:1: error: the recipe is empty"),
        "{err}"
    );
}

#[test]
fn binary_garbage() {
    let mut bytes = b"name: t\n".to_vec();
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let err = invalid("garbage.yaml", &bytes);
    assert!(err.contains("garbage.yaml:"), "{err}");
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn ten_megabyte_file() {
    let big = "# padding\n".repeat(1 << 20);
    let err = invalid("big.yaml", big.as_bytes());
    assert!(
        err.contains("big.yaml:1:1: error: the file is 10.0 MiB"),
        "{err}"
    );
}

#[test]
fn port_collision_and_slurm_settings() {
    let text = "name: t
platform: { kind: slurm }
services:
  - { name: a, kind: redis, port: 7000 }
  - { name: b, kind: redis, port: 7000 }
";
    let err = invalid("ports.yaml", text.as_bytes());
    assert!(
        err.contains("ports.yaml:2:19: error: `kind: slurm` needs a `slurm:` block"),
        "{err}"
    );
    assert!(
        err.contains("ports.yaml:5:35: error: port 7000 is already taken by `services[0].port`"),
        "{err}"
    );
}

#[test]
fn secrets_in_recipes_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.yaml");
    let text = BASE.replace(
        "protocol: openai-completions",
        "protocol: openai-completions\n    api_key: sk-live-123",
    );
    std::fs::write(&path, text).unwrap();
    let run = aibench(&["validate", path.to_str().unwrap()]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr
            .contains("warning: a secret is written into the recipe"),
        "{}",
        run.stderr
    );
    let run = aibench(&["validate", "--deny-warnings", path.to_str().unwrap()]);
    assert_eq!(run.code, 2);
}

#[test]
fn validate_json_output() {
    let run = aibench(&["validate", "--json", "examples/quickstart.yaml"]);
    assert_eq!(run.code, 0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["trials"], 3);
}

#[test]
fn plan_expands_the_matrix_with_stable_ids() {
    let ids = |run: &crate::harness::Run| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = aibench(&["plan", "--json", "examples/sweep-matrix.yaml"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let a = ids(&first);
    assert_eq!(a.len(), 18);
    assert_eq!(
        a.iter().collect::<HashSet<_>>().len(),
        18,
        "ids are distinct: {a:?}"
    );
    assert_eq!(a[0], "01_max-batch=1_users=1_prompt_tokens=128");
    let b = ids(&aibench(&["plan", "--json", "examples/sweep-matrix.yaml"]));
    assert_eq!(a, b, "ids stay the same from run to run");
    let v: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    let restarts: Vec<bool> = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["restart_services"].as_bool().unwrap())
        .collect();
    assert_eq!(
        restarts.iter().filter(|r| **r).count(),
        3,
        "the simulator restarts only when max-batch changes"
    );
    let text = aibench(&["plan", "examples/sweep-matrix.yaml"]);
    assert!(text.stdout.contains("18 trials"), "{}", text.stdout);
}

#[test]
fn zipped_parameters_vary_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zip.yaml");
    let text = format!(
        "{BASE}sweep:\n  matrix:\n    chat.load.users: [1, 8]\n  zip:\n    - chat.dataset.prompt_tokens: [128, 512, 1024]\n      chat.dataset.output_tokens: [16, 64, 256]\n"
    )
    .replace("load: {", "dataset: { kind: synthetic }\n    load: {");
    std::fs::write(&path, text).unwrap();
    let run = aibench(&["plan", "--json", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    for t in trials {
        let p = t["params"]["chat.dataset.prompt_tokens"].as_i64().unwrap();
        let o = t["params"]["chat.dataset.output_tokens"].as_i64().unwrap();
        let pairs = [(128, 16), (512, 64), (1024, 256)];
        assert!(
            pairs.contains(&(p, o)),
            "zipped values stay paired: {p}, {o}"
        );
    }
}

#[test]
fn committed_schema_matches_the_types() {
    let run = aibench(&["schema"]);
    assert_eq!(run.code, 0);
    let committed = std::fs::read_to_string(workspace().join("schema/recipe.schema.json")).unwrap();
    assert!(
        committed == run.stdout,
        "schema/recipe.schema.json is stale; regenerate it with `cargo run -- schema -o schema/recipe.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
}

#[test]
fn readme_reference_matches_the_types() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = "<!-- recipe-reference:start -->\n";
    let end = "<!-- recipe-reference:end -->";
    let a = readme
        .find(start)
        .expect("README has the reference start marker")
        + start.len();
    let b = readme
        .find(end)
        .expect("README has the reference end marker");
    let run = aibench(&["schema", "--markdown"]);
    assert!(
        readme[a..b] == run.stdout,
        "the recipe reference in README.md is stale; regenerate it with `cargo run -- schema --markdown` between the markers"
    );
}

#[test]
fn help_teaches_with_examples() {
    for cmd in ["validate", "plan", "schema", "completions"] {
        let run = aibench(&[cmd, "--help"]);
        assert_eq!(run.code, 0);
        assert!(
            run.stdout.contains("Examples:"),
            "`aibench {cmd} --help` shows examples"
        );
    }
    let run = aibench(&["--help"]);
    assert!(run.stdout.contains("Exit codes"), "{}", run.stdout);
}

#[test]
fn completions_for_bash() {
    let run = aibench(&["completions", "bash"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("aibench"));
}

/// What `run` would refuse, `validate` reports first, located (issue: validate is run's
/// pre-flight).
#[test]
fn validate_is_the_pre_flight_of_run() {
    // A measurement of nothing, a timeout that fails everything, a health check that gives up
    // at once.
    let err = invalid(
        "zero.yaml",
        b"name: t
services:
  - name: llm
    kind: sim
    health: { timeout: 0s }
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    timeout: 0s
    load: { pattern: closed-loop, users: 1 }
    stop: { duration: 0s }
",
    );
    assert!(err.contains("zero.yaml:5:"), "{err}");
    assert!(err.contains("a health timeout of 0s"), "{err}");
    assert!(err.contains("zero.yaml:10:"), "{err}");
    assert!(
        err.contains("a request timeout of 0s fails every request"),
        "{err}"
    );
    assert!(err.contains("zero.yaml:12:"), "{err}");
    assert!(
        err.contains("a measurement of 0s measures nothing"),
        "{err}"
    );

    // A hard deadline shorter than the plan it would cut.
    let err = invalid(
        "deadline.yaml",
        b"name: t
services:
  - name: llm
    kind: sim
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    load: { pattern: closed-loop, users: 1 }
    warmup: 2s
    stop: { duration: 5s, max_duration: 6s }
",
    );
    assert!(err.contains("deadline.yaml:11:41"), "{err}");
    assert!(
        err.contains("ends the measurement before its plan does") && err.contains("at least 7s"),
        "{err}"
    );

    // Services waiting for each other forever.
    let err = invalid(
        "cycle.yaml",
        b"name: t
services:
  - name: a
    kind: sim
    depends_on: [b]
  - name: b
    kind: sim
    depends_on: [a]
workloads:
  - name: chat
    target: a
    protocol: openai-completions
    load: { pattern: closed-loop, users: 1 }
",
    );
    assert!(
        err.contains("services depend on each other in a circle: a -> b -> a"),
        "{err}"
    );
    assert_eq!(
        err.matches("in a circle").count(),
        1,
        "reported once: {err}"
    );

    // A dataset that is missing, empty, or not JSON Lines.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.jsonl"), "\n\n").unwrap();
    std::fs::write(dir.path().join("text.jsonl"), "just some words\n").unwrap();
    for (file, expect) in [
        ("missing.jsonl", "not found"),
        ("empty.jsonl", "is empty"),
        ("text.jsonl", "its first line is not JSON"),
    ] {
        let recipe = format!(
            "{BASE}    dataset: {{ kind: jsonl, path: {} }}\n",
            dir.path().join(file).display()
        );
        let err = invalid("data.yaml", recipe.as_bytes());
        assert!(err.contains(expect), "{file}: {err}");
    }

    // An arrival trace that is missing, or holds an offset no clock can wait for.
    std::fs::write(dir.path().join("far.txt"), "0\n1e300\n").unwrap();
    for (file, expect) in [
        ("nope.txt", "cannot read the trace"),
        ("far.txt", "far.txt:2: expected seconds from the start"),
    ] {
        let recipe = BASE.replace(
            "load: { pattern: closed-loop, users: 4 }",
            &format!(
                "load: {{ pattern: open-loop, arrival: trace, trace: {} }}",
                dir.path().join(file).display()
            ),
        );
        let err = invalid("trace.yaml", recipe.as_bytes());
        assert!(err.contains(expect), "{file}: {err}");
        assert!(err.contains("trace.yaml:9:"), "located at `load`: {err}");
    }

    // A measurement longer than the Slurm jobs may run.
    let err = invalid(
        "slurm.yaml",
        b"name: t
platform:
  kind: slurm
  slurm: { account: a, partition: p, time: 00:01:00 }
services:
  - name: llm
    kind: sim
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    load: { pattern: closed-loop, users: 1 }
    warmup: 10s
    stop: { duration: 100s }
",
    );
    assert!(
        err.contains("take 110s, longer than the Slurm time limit of 60s"),
        "{err}"
    );

    // Trials that share the services' jobs, together longer than the jobs may run.
    let err = invalid(
        "shared.yaml",
        b"name: t
platform:
  kind: slurm
  slurm: { account: a, partition: p, time: 00:01:00 }
services:
  - name: llm
    kind: sim
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    load: { pattern: closed-loop, users: 1 }
    stop: { duration: 25s }
sweep:
  matrix:
    chat.load.users: [1, 2, 4]
",
    );
    assert!(
        err.contains(
            "trials 01_users=1 to 03_users=4 share their services' jobs and measure for 75s in all"
        ),
        "{err}"
    );
    assert!(err.contains("shared.yaml:4:"), "at `platform.slurm`: {err}");
}

/// Thousands of problems print the first 50 and a count, not megabytes.
#[test]
fn a_flood_of_errors_is_capped() {
    let mut text = String::from(BASE);
    text.push_str("    stop: { duration: 10s }\n");
    for i in 0..2_000 {
        text.push_str(&format!("unknown_key_{i}: 1\n"));
    }
    let err = invalid("flood.yaml", text.as_bytes());
    assert_eq!(
        err.matches("error:").count(),
        50,
        "{}",
        &err[..2000.min(err.len())]
    );
    assert!(
        err.contains("... and 1950 more (1950 errors, 0 warnings) not shown"),
        "{}",
        &err[err.len().saturating_sub(500)..]
    );
}

/// `args` of a service with a command of its own follow that command (a sweep over
/// `llm.args.x` changes it), for both command forms.
#[test]
fn args_follow_a_services_own_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("args.yaml");
    std::fs::write(
        &path,
        "name: t
services:
  - name: shell
    kind: command
    command: \"my-server --port ${PORT}\"
    args: { batch: 8, name: \"a b\", fast: true }
  - name: argv
    kind: command
    command: [my-server, --port, \"${PORT}\"]
    args: { batch: 8 }
workloads:
  - name: w
    target: shell
    protocol: http
    load: { pattern: closed-loop, users: 1 }
",
    )
    .unwrap();
    let run = Cmd::new(&["plan", path.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("my-server --port ${PORT} --batch 8 --name 'a b' --fast"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("my-server --port ${PORT} --batch 8"),
        "{}",
        run.stdout
    );
}

/// A type error in one place hides nothing elsewhere: the simulator's options are checked by
/// type, and a dangling target is still found beside a type error in another workload.
#[test]
fn a_type_error_does_not_hide_other_problems() {
    let err = invalid(
        "hide.yaml",
        b"name: t
services:
  - name: llm
    kind: sim
    args: { max-batch: lots, decode-base: soonish, max-batchs: 2 }
workloads:
  - name: a
    target: llm
    protocol: openai-completions
    load: { pattern: closed-loop, users: lots }
  - name: b
    target: nowhere
    protocol: openai-completions
    load: { pattern: closed-loop, users: 1 }
",
    );
    for expect in [
        "hide.yaml:5:24: error: `max-batch`: expected a whole number",
        "hide.yaml:5:43: error: `decode-base`: expected a duration",
        "`sim` has no option `max-batchs`",
        "did you mean `max-batch`?",
        "hide.yaml:10:42: error: expected an integer",
        "hide.yaml:12:13: error: unknown service `nowhere`",
        "5 errors found",
    ] {
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

/// No number a user can write crashes, hangs or exhausts the machine: each is bounded where it
/// is parsed, with a located error quoting what was written.
#[test]
fn quantities_are_bounded_where_they_are_parsed() {
    for (load, expect) in [
        (
            "{ pattern: open-loop, arrival: poisson, rate: 1e-300/s }",
            "below one request a day",
        ),
        (
            "{ pattern: open-loop, arrival: poisson, rate: 1e300/s }",
            "above the 1000000/s one client process can keep",
        ),
        (
            "{ pattern: closed-loop, users: 4294967295 }",
            "must be at most 100000, found 4294967295",
        ),
        (
            "{ pattern: closed-loop, users: 99999999999999999999 }",
            "`99999999999999999999` is out of range for an integer",
        ),
    ] {
        let recipe = BASE.replace("{ pattern: closed-loop, users: 4 }", load);
        let err = invalid("bounds.yaml", recipe.as_bytes());
        assert!(
            err.contains("bounds.yaml:9:"),
            "located on the load line: {err}"
        );
        assert!(err.contains(expect), "{load}: {err}");
    }
    let run = Cmd::new(&[
        "bench",
        "http://127.0.0.1:9/",
        "-c",
        "4294967295",
        "-n",
        "1",
    ])
    .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--concurrency: must be at most 100000, found 4294967295"),
        "{}",
        run.stderr
    );
}
