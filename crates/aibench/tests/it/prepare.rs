//! A kind's prepare step (Ollama's model pull) runs on every path that starts a service:
//! `run` and `up` here, Slurm jobs in the Slurm tests' module. The simulator speaks Ollama's
//! API, `/api/pull` included, so it stands in for `ollama serve`.

use crate::harness::Cmd;

const RECIPE: &str = "name: pull
services:
  - name: llm
    kind: ollama
    model: tiny
    command: [\"${AIBENCH_EXE}\", sim, --host, \"${HOST}\", --port, \"${PORT}\", --model, tiny]
workloads:
  - name: gen
    target: llm
    protocol: ollama-generate
    dataset: { kind: synthetic, prompt_tokens: 8, output_tokens: 4 }
    load: { pattern: closed-loop, users: 1 }
    stop: { requests: 3 }
";

#[test]
fn run_pulls_the_model_before_the_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("pull.yaml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("pulling tiny into llm"),
        "{}",
        run.stderr
    );
    let dir = std::fs::read_dir(tmp.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let events = std::fs::read_to_string(dir.join("logs/events.jsonl")).unwrap();
    let pull = events.find("pulling tiny into llm").expect("a pull event");
    let measure = events.find("\"measure\"").expect("a measure event");
    assert!(pull < measure, "the pull comes before the clock:\n{events}");
}

#[test]
fn up_pulls_the_model_too() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("pull.yaml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let home = tmp.path().join("home");
    let up = Cmd::new(&["up", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", home.to_str().unwrap())
        .run();
    let down = Cmd::new(&["down", "--all"])
        .dir(tmp.path())
        .env("AIBENCH_HOME", home.to_str().unwrap())
        .run();
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(up.stderr.contains("pulling tiny into llm"), "{}", up.stderr);
    assert_eq!(down.code, 0, "{}", down.stderr);
}
