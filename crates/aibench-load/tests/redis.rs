//! The Redis driver against a real `redis-server` (Debian package `redis-server`): preload,
//! GET/SET mix, pipelining, hit ratio, AUTH, and what a refused password looks like.

mod common;

use std::time::Duration;

use aibench_load::{KeyAccess, KeySpace, RedisSpec, RunOptions, ValueSize, Workload};
use aibench_results::{read_records, ErrorClass};
use common::servers::{answers, closed, installed, start, Proc};

/// A fresh redis-server on a free port (None outside CI when it is not installed).
fn redis(extra: &[&str]) -> Option<Proc> {
    if !installed("redis-server", "Debian package redis-server") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let mut p = start(
        "redis-server",
        |port| {
            let mut a: Vec<String> = [
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &path,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.extend(extra.iter().cloned());
            a
        },
        // A NOAUTH error counts: it is there.
        |port| answers(port, b"PING\r\n", &[b"+", b"-"]),
    );
    p._keep = Some(dir);
    Some(p)
}

fn spec(port: u16, read_share: f64, pipeline: u32) -> RedisSpec {
    RedisSpec {
        address: format!("redis://127.0.0.1:{port}"),
        user: None,
        password: None,
        keys: KeySpace {
            keys: 500,
            prefix: "t:".into(),
            access: KeyAccess::Zipfian { exponent: 0.99 },
            value_size: ValueSize::Uniform { min: 100, max: 300 },
            read_share,
            seed: 3,
        },
        pipeline,
        preload: true,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_and_sets_with_preloaded_keys() {
    let Some(server) = redis(&[]) else { return };
    let mut w = Workload::Redis(spec(server.port, 0.75, 1));
    let prepared = w.prepare().await.unwrap();
    assert_eq!(prepared.as_deref(), Some("preloaded 500 Redis keys"));
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let out = w
        .run(
            &closed(4, 2000),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.total, 2000);
    assert_eq!(s.counts.successes, 2000, "{:?}", s.counts.errors_by_class);
    let get = &s.operations["GET"];
    let set = &s.operations["SET"];
    assert_eq!(get.operations + set.operations, 2000);
    // 75 % reads, drawn per request from the seed: well inside 70..80 % of 2000.
    assert!((1400..1600).contains(&get.operations), "{}", get.operations);
    // Every key was preloaded, so every read hits and brings back 100..=300 bytes.
    assert_eq!(get.hit_ratio, Some(1.0));
    assert!(get.bytes_in >= 100 * get.operations && get.bytes_in <= 300 * get.operations);
    assert!(set.bytes_out >= 100 * set.operations && set.bytes_out <= 300 * set.operations);
    assert_eq!(set.hit_ratio, None);
    assert!(get.latency.is_some() && set.latency.is_some());
    // One record per command, each naming its operation.
    let recs: Vec<_> = read_records(&records)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs.len(), 2000);
    assert!(recs
        .iter()
        .all(|r| matches!(r.op.as_deref(), Some("GET") | Some("SET"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_are_counted_without_a_preload() {
    let Some(server) = redis(&[]) else { return };
    let mut sp = spec(server.port, 1.0, 1);
    sp.preload = false;
    let mut w = Workload::Redis(sp);
    assert_eq!(w.prepare().await.unwrap(), None);
    let out = w.run(&closed(2, 300), RunOptions::default()).await.unwrap();
    let get = &out.summary.operations["GET"];
    assert_eq!(get.successes, 300);
    assert_eq!(get.hit_ratio, Some(0.0));
    assert_eq!(get.bytes_in, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_is_one_record_and_many_operations() {
    let Some(server) = redis(&[]) else { return };
    let mut w = Workload::Redis(spec(server.port, 0.5, 16));
    w.prepare().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let out = w
        .run(
            &closed(2, 100),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.successes, 100);
    let ops: u64 = s.operations.values().map(|o| o.successes).sum();
    assert_eq!(ops, 1600, "16 commands per round trip");
    let recs: Vec<_> = read_records(&records)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(recs.iter().all(|r| r.batch == Some(16)));
    // The first reply of a batch comes no later than its last.
    assert!(recs
        .iter()
        .all(|r| r.first_byte_us.unwrap() <= r.end_us.unwrap()));
    let reads: Vec<_> = recs
        .iter()
        .filter(|r| r.op.as_deref() == Some("GET"))
        .collect();
    assert!(reads.iter().all(|r| r.hits == Some(16)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_only_when_a_password_is_set() {
    let Some(server) = redis(&["--requirepass", "s3cret-pw"]) else {
        return;
    };
    // The right password.
    let mut good = spec(server.port, 0.9, 1);
    good.password = Some("s3cret-pw".into());
    let mut w = Workload::Redis(good);
    w.prepare().await.unwrap();
    let out = w.run(&closed(2, 200), RunOptions::default()).await.unwrap();
    assert_eq!(out.summary.counts.successes, 200);

    // No password: the server refuses every command, and says why.
    let mut none = spec(server.port, 1.0, 1);
    none.preload = false;
    let out = Workload::Redis(none)
        .run(&closed(1, 5), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        out.summary
            .counts
            .errors_by_class
            .get(&ErrorClass::ServerError),
        Some(&5)
    );

    // A wrong password: connections fail with a message that names the fix and not the secret.
    let mut wrong = spec(server.port, 1.0, 1);
    wrong.preload = false;
    wrong.password = Some("not-the-pw".into());
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let out = Workload::Redis(wrong)
        .run(
            &closed(1, 3),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        out.summary.counts.errors_by_class.get(&ErrorClass::Connect),
        Some(&3)
    );
    let text = std::fs::read_to_string(&records).unwrap();
    assert!(text.contains("AUTH was refused"), "{text}");
    assert!(!text.contains("not-the-pw"));
}
