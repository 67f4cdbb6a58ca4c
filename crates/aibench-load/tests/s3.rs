//! The S3 driver against a real S3 API: moto's server (PyPI `moto[server]`), which
//! scripts/test.sh installs. Bucket creation, the GET/PUT/DELETE/LIST mix, multipart uploads,
//! and byte-for-byte verification of what a GET returns.

mod common;

use std::time::Duration;

use aibench_load::{KeyAccess, KeySpace, LoadSpec, RunOptions, S3Spec, ValueSize, Workload};
use aibench_results::{read_records, ErrorClass, RequestRecord};
use common::servers::{answers, closed, installed, start, Proc};

/// A fresh moto server on a free port (None outside CI when it is not installed).
fn moto() -> Option<Proc> {
    if !installed("moto_server", "pip install 'moto[server]'") {
        return None;
    }
    Some(start(
        "moto_server",
        |port| {
            vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]
        },
        |port| {
            answers(
                port,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &[b"HTTP/"],
            )
        },
    ))
}

fn spec(port: u16, bucket: &str, size: ValueSize, keys: u64, read_share: f64) -> S3Spec {
    S3Spec {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        access_key: "test-key".into(),
        secret_key: "test-secret".into(),
        keys: KeySpace {
            keys,
            prefix: "objects/".into(),
            access: KeyAccess::Uniform,
            value_size: size,
            read_share,
            seed: 11,
        },
        list_share: 0.0,
        delete_share: 0.0,
        list_max_keys: 50,
        multipart_threshold: 64 << 20,
        part_size: 16 << 20,
        preload: true,
        timeout: Duration::from_secs(60),
    }
}

async fn run(w: &Workload, load: &LoadSpec) -> (aibench_load::RunOutcome, Vec<RequestRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let out = w
        .run(
            load,
            RunOptions {
                records: Some(path.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let recs = read_records(&path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (out, recs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_mix_against_an_s3_api() {
    let Some(server) = moto() else { return };
    let mut s = spec(
        server.port,
        "mix",
        ValueSize::Uniform {
            min: 1024,
            max: 8192,
        },
        40,
        0.6,
    );
    s.list_share = 0.1;
    s.delete_share = 0.1;
    let mut w = Workload::S3(s);
    let done = w.prepare().await.unwrap().unwrap();
    assert!(done.contains("wrote 40 objects"), "{done}");
    let (out, recs) = run(&w, &closed(3, 300)).await;
    let ops = &out.summary.operations;
    // moto's server, under concurrent DELETEs of the objects being read, now and then answers
    // 500 (InternalError); a real store does not. Anything else fails the test.
    let failed: Vec<_> = recs
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| (r.op.clone(), r.error, r.error_message.clone()))
        .collect();
    assert!(
        failed.len() <= 6 && failed.iter().all(|f| f.1 == Some(ErrorClass::Http5xx)),
        "{failed:?}"
    );
    if !failed.is_empty() {
        eprintln!("moto answered 500 to: {failed:?}");
    }
    for name in ["GET", "PUT", "DELETE", "LIST"] {
        assert!(ops[name].successes > 0, "{name}: {ops:?}");
        assert!(ops[name].latency.is_some());
    }
    // Every byte read was verified against what was written; deleted objects are misses.
    let get = &ops["GET"];
    let hit = get.hit_ratio.unwrap();
    assert!(hit > 0.3 && hit < 1.0, "{hit}");
    assert!(get.bytes_in >= 1024 * (get.successes as f64 * hit) as u64);
    assert!(ops["PUT"].bytes_out >= 1024 * ops["PUT"].successes);
    assert!(ops["LIST"].bytes_in > 0);
    assert!(recs.iter().all(|r| r.first_byte_us.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_up_in_parts_and_come_back_whole() {
    let Some(server) = moto() else { return };
    let size = 12 << 20;
    let mut s = spec(server.port, "multipart", ValueSize::Fixed(size), 2, 0.0);
    s.multipart_threshold = 5 << 20;
    s.part_size = 5 << 20;
    s.preload = false;
    let mut w = Workload::S3(s.clone());
    w.prepare().await.unwrap();
    let (out, recs) = run(&w, &closed(1, 4)).await;
    assert_eq!(out.summary.counts.successes, 4, "{:?}", recs);
    let parts = &out.summary.operations["PUT: part"];
    assert_eq!(
        parts.successes, 12,
        "three parts of 5, 5 and 2 MiB, four times"
    );
    assert_eq!(out.summary.operations["PUT"].bytes_out, 4 * size);
    assert!(recs.iter().all(|r| r.steps.len() == 5));
    // Read back: every byte as written, across the parts.
    s.keys.read_share = 1.0;
    let (out, _) = run(&Workload::S3(s), &closed(1, 4)).await;
    let get = &out.summary.operations["GET"];
    assert_eq!(get.successes, 4, "{:?}", out.summary.counts);
    assert_eq!(get.bytes_in, 4 * size);
    assert_eq!(get.hit_ratio, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_is_a_mismatch() {
    let Some(server) = moto() else { return };
    let s = spec(server.port, "corrupt", ValueSize::Fixed(4096), 1, 1.0);
    let mut w = Workload::S3(s);
    w.prepare().await.unwrap();
    // Overwrite the only object behind the driver's back: same length, one byte changed
    // after a valid header (key 0, version 0).
    let mut body = vec![0u8; 4096];
    body[16] = 1;
    let bucket = rusty_s3::Bucket::new(
        format!("http://127.0.0.1:{}", server.port).parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        "corrupt",
        "us-east-1",
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new("test-key", "test-secret");
    use rusty_s3::S3Action as _;
    let url = rusty_s3::actions::PutObject::new(&bucket, Some(&creds), "objects/0")
        .sign(Duration::from_secs(600));
    let raw = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n",
        url.path(),
        url.query().unwrap(),
        server.port
    );
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        c.write_all(raw.as_bytes()).unwrap();
        c.write_all(&body).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let (out, recs) = run(&w, &closed(1, 3)).await;
    assert_eq!(
        out.summary
            .counts
            .errors_by_class
            .get(&ErrorClass::Mismatch),
        Some(&3),
        "{:?}",
        out.summary.counts
    );
    let msg = recs[0].error_message.as_deref().unwrap();
    assert!(msg.contains("differ from the bytes written"), "{msg}");
}
