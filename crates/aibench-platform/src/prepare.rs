//! The plan's prepare steps (a model pull), run against a healthy service from whichever
//! platform started it: locally for `run` and `up`, over the network for Slurm jobs.

use std::time::Duration;

use aibench_plan::{PrepareStep, ServicePlan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::registry::ServiceRecord;

/// The longest a model pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a step does, for progress lines.
pub fn describe(step: &PrepareStep, service: &str) -> String {
    match step {
        PrepareStep::PullModel { model } => format!("pulling {model} into {service}"),
    }
}

/// Run every prepare step of `plan` against each of its started replicas in `records`.
/// `progress` hears what is about to happen.
pub async fn prepare(
    plan: &ServicePlan,
    records: &[ServiceRecord],
    mut progress: impl FnMut(String),
) -> Result<(), String> {
    for step in &plan.prepare {
        for r in records.iter().filter(|r| r.service == plan.name) {
            progress(describe(step, &r.name));
            let url = r
                .url
                .clone()
                .unwrap_or_else(|| format!("http://{}:{}", r.host, r.port));
            run(step, &url)
                .await
                .map_err(|e| format!("{}: {e}", describe(step, &r.name)))?;
        }
    }
    Ok(())
}

/// Run one step against the service at `url` (`http://host:port`).
pub async fn run(step: &PrepareStep, url: &str) -> Result<(), String> {
    match step {
        PrepareStep::PullModel { model } => ollama_pull(url, model).await,
    }
}

/// `POST /api/pull` and read the NDJSON status stream to its end; an `error` line fails it.
async fn ollama_pull(url: &str, model: &str) -> Result<(), String> {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let work = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let body = serde_json::json!({ "model": model, "name": model }).to_string();
        let req = format!(
            "POST /api/pull HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        Ok::<Vec<u8>, String>(out)
    };
    let out = tokio::time::timeout(PULL_TIMEOUT, work)
        .await
        .map_err(|_| format!("no end within {PULL_TIMEOUT:?}"))??;
    check_pull(&String::from_utf8_lossy(&out))
}

/// Judge a pull's whole HTTP answer.
fn check_pull(text: &str) -> Result<(), String> {
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    if let Some(line) = text.lines().find(|l| l.contains("\"error\"")) {
        return Err(line.trim().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_fails_on_a_bad_status_or_an_error_line() {
        assert!(check_pull("HTTP/1.1 200 OK\r\n\r\n{\"status\":\"success\"}\n").is_ok());
        assert_eq!(
            check_pull("HTTP/1.1 404 Not Found\r\n\r\n").unwrap_err(),
            "HTTP 404"
        );
        assert!(check_pull(
            "HTTP/1.1 200 OK\r\n\r\n{\"status\":\"pulling\"}\n{\"error\":\"model not found\"}\n"
        )
        .unwrap_err()
        .contains("model not found"));
    }

    #[tokio::test]
    async fn the_simulator_pull_endpoint_is_driven_to_its_end() {
        // A one-shot server answering like Ollama.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(req.starts_with("POST /api/pull "), "{req}");
            assert!(req.contains("\"model\":\"tiny\""), "{req}");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{\"status\":\"pulling manifest\"}\n{\"status\":\"success\"}\n")
                .await
                .unwrap();
        });
        run(
            &PrepareStep::PullModel {
                model: "tiny".into(),
            },
            &format!("http://{addr}"),
        )
        .await
        .unwrap();
    }
}
