//! The PostgreSQL driver against a real server (Debian package `postgresql`): the built-in
//! TPC-B-like workload, a weighted script mix with a Zipfian parameter, SQL errors, and what
//! refused credentials look like. Each test starts a throwaway server of its own (`initdb` into
//! a temporary folder, then `postgres` on a free port), as the `postgres` system user when the
//! tests run as root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aibench_load::{
    LoadSpec, Pattern, PostgresSpec, RunOptions, SqlBuiltin, SqlParam, SqlScript, Stop, ThinkTime,
    Workload,
};
use aibench_results::{read_records, ErrorClass};

const PASSWORD: &str = "pg-test-s3cret";

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster stops its backends and exits.
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `initdb` and `postgres` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH), else PATH.
fn bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").is_file() {
            return Some(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .filter(|(_, d)| d.join("initdb").is_file())
            .collect();
        found.sort();
        if let Some((_, d)) = found.pop() {
            return Some(d);
        }
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    })
}

/// The `postgres` system user's uid and gid, when running as root (initdb refuses root).
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run `id`");
        assert!(
            out.status.success(),
            "running as root needs the `postgres` system user (Debian's postgresql package creates it)"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A fresh PostgreSQL server on a free port with the role `aibench` (password [`PASSWORD`],
/// SCRAM over TCP), or None (with a note) when PostgreSQL is not installed outside CI; in CI
/// its absence is a failure.
fn postgres() -> Option<Server> {
    let Some(bin) = bindir() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not installed: scripts/test.sh installs the Debian package postgresql"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed (Debian package postgresql)");
        return None;
    };
    let user = unprivileged();
    let dir = tempfile::tempdir().unwrap();
    let chown = |p: &Path| {
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
    };
    chown(dir.path());
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, PASSWORD).unwrap();
    chown(&pwfile);
    let data = dir.path().join("data");
    let out = as_user(&mut Command::new(bin.join("initdb")), user)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "aibench",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--no-sync", "-E", "UTF8", "--locale=C"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A port picked here may be taken by another test's server before this one binds it:
    // try again on another.
    for attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log_path = dir.path().join(format!("log-{attempt}"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = as_user(&mut Command::new(bin.join("postgres")), user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "max_connections=60"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("ready to accept connections") {
                return Some(Server {
                    child,
                    port,
                    _dir: dir,
                });
            }
            if child.try_wait().unwrap().is_some() {
                assert!(
                    text.contains("could not bind") || text.contains("in use"),
                    "postgres did not start:\n{text}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("postgres did not start on any of five ports");
}

fn spec(port: u16) -> PostgresSpec {
    PostgresSpec {
        address: format!("http://127.0.0.1:{port}"),
        user: "aibench".into(),
        password: Some(PASSWORD.into()),
        database: "postgres".into(),
        builtin: None,
        scripts: vec![],
        params: vec![],
        setup: vec![],
        seed: 11,
        timeout: Duration::from_secs(20),
    }
}

fn script(name: &str, weight: u32, statements: &[&str]) -> SqlScript {
    SqlScript {
        name: name.into(),
        weight,
        statements: statements.iter().map(|s| s.to_string()).collect(),
    }
}

fn closed(users: usize, requests: u64) -> LoadSpec {
    LoadSpec {
        pattern: Pattern::ClosedLoop {
            users,
            think_time: ThinkTime::None,
            ramp_up: Duration::ZERO,
        },
        stop: Stop {
            requests: Some(requests),
            ..Stop::default()
        },
        timeout: Duration::from_secs(20),
        ..LoadSpec::default()
    }
}

/// One query's first column of the first row, as a client of the test's own.
async fn scalar(port: u16, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=aibench password={PASSWORD} dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpcb_transactions_all_land_with_their_steps() {
    let Some(server) = postgres() else { return };
    let mut s = spec(server.port);
    s.builtin = Some(SqlBuiltin::Tpcb { scale: 1 });
    let mut w = Workload::Postgres(s);
    let prepared = w.prepare().await.unwrap().unwrap();
    assert!(
        prepared.starts_with(
            "created the TPC-B tables at scale 1 (1 branches, 10 tellers, 100000 accounts)"
        ),
        "{prepared}"
    );
    assert!(prepared.ends_with("prepared 5 statements"), "{prepared}");
    // The second time the tables are there at that scale: kept.
    let again = w.prepare().await.unwrap().unwrap();
    assert!(
        again.starts_with("TPC-B tables already hold scale 1"),
        "{again}"
    );
    assert_eq!(
        scalar(server.port, "SELECT count(*) FROM pgbench_history").await,
        0
    );

    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let out = w
        .run(
            &closed(4, 400),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.total, 400);
    assert_eq!(s.counts.successes, 400, "{:?}", s.counts.errors_by_class);
    let tpcb = &s.operations["tpcb"];
    assert_eq!(tpcb.successes, 400);
    assert!(tpcb.latency.is_some());
    // Eleven `integer` parameters of 4 bytes per transaction (2 + 1 + 2 + 2 + 4 by statement).
    assert_eq!(tpcb.bytes_out, 400 * 11 * 4);
    for step in [
        "tpcb: UPDATE pgbench_accounts",
        "tpcb: SELECT pgbench_accounts",
        "tpcb: UPDATE pgbench_tellers",
        "tpcb: UPDATE pgbench_branches",
        "tpcb: INSERT pgbench_history",
    ] {
        let op = s
            .operations
            .get(step)
            .unwrap_or_else(|| panic!("{step}: {:?}", s.operations.keys()));
        assert_eq!(op.successes, 400, "{step}");
        let lat = op.latency.as_ref().unwrap();
        // A statement takes part of its transaction's time.
        assert!(
            lat.mean_ms <= tpcb.latency.as_ref().unwrap().mean_ms,
            "{step}"
        );
    }
    assert_eq!(s.operations.len(), 6, "{:?}", s.operations.keys());

    // Every transaction committed once: the history grew by exactly their number, and the
    // balances moved together.
    let port = server.port;
    assert_eq!(
        scalar(port, "SELECT count(*) FROM pgbench_history").await,
        400
    );
    let delta = scalar(port, "SELECT sum(delta)::bigint FROM pgbench_history").await;
    assert_eq!(
        scalar(port, "SELECT sum(abalance)::bigint FROM pgbench_accounts").await,
        delta
    );
    assert_eq!(
        scalar(port, "SELECT sum(tbalance)::bigint FROM pgbench_tellers").await,
        delta
    );
    assert_eq!(
        scalar(port, "SELECT sum(bbalance)::bigint FROM pgbench_branches").await,
        delta
    );

    // One record per transaction with five steps, each no longer than the transaction.
    let recs: Vec<_> = read_records(&records)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs.len(), 400);
    for r in &recs {
        assert_eq!(r.op.as_deref(), Some("tpcb"));
        assert_eq!(r.steps.len(), 5);
        let total = r.end_us.unwrap() - r.sent_us.unwrap();
        assert!(r.steps.iter().map(|s| s.latency_us).sum::<u64>() <= total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_mix_with_a_zipfian_parameter() {
    let Some(server) = postgres() else { return };
    let mut s = spec(server.port);
    s.setup = vec![
        "CREATE TABLE kv (k int PRIMARY KEY, v bigint NOT NULL DEFAULT 0)".into(),
        "INSERT INTO kv (k) SELECT g FROM generate_series(1, 1000) g".into(),
        "CREATE TABLE log (k int, n bigint)".into(),
    ];
    s.scripts = vec![
        script("read", 3, &["SELECT v FROM kv WHERE k = {{k}}"]),
        script(
            "write",
            1,
            &[
                "UPDATE kv SET v = v + 1 WHERE k = {{k}}",
                "INSERT INTO log (k, n) VALUES ({{k}}, {{n}})",
            ],
        ),
    ];
    s.params = vec![SqlParam {
        name: "k".into(),
        min: 1,
        max: 1000,
        zipf_exponent: Some(1.1),
    }];
    let mut w = Workload::Postgres(s);
    let prepared = w.prepare().await.unwrap().unwrap();
    assert_eq!(prepared, "ran 3 setup statements; prepared 3 statements");
    let out = w
        .run(&closed(3, 2000), RunOptions::default())
        .await
        .unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.successes, 2000, "{:?}", s.counts.errors_by_class);
    let (read, write) = (&s.operations["read"], &s.operations["write"]);
    assert_eq!(read.successes + write.successes, 2000);
    // Weights 3:1, drawn per operation from the seed: well inside 70..80 % reads.
    assert!((1400..1600).contains(&read.successes), "{}", read.successes);
    // The reads brought back one bigint each (plus its length word in the row).
    assert!(read.bytes_in >= 8 * read.successes);
    assert_eq!(s.operations["write: UPDATE kv"].successes, write.successes);
    assert_eq!(s.operations["write: INSERT log"].successes, write.successes);
    assert!(
        !s.operations.contains_key("read: SELECT kv"),
        "a lone statement has no steps"
    );

    let port = server.port;
    let writes = write.successes as i64;
    assert_eq!(scalar(port, "SELECT count(*) FROM log").await, writes);
    assert_eq!(scalar(port, "SELECT sum(v)::bigint FROM kv").await, writes);
    // Zipf(1.1) over 1000 keys: the ten hottest take about 60 % of the writes (1 % if uniform).
    let hot = scalar(port, "SELECT count(*) FROM log WHERE k <= 10").await;
    assert!(hot * 10 > writes * 4, "{hot} of {writes}");
    // `{{n}}` without a declaration: uniform in 1..=1000000.
    assert!(scalar(port, "SELECT min(n) FROM log").await >= 1);
    assert!(scalar(port, "SELECT max(n) FROM log").await <= 1_000_000);
    assert!(scalar(port, "SELECT max(n) FROM log").await > 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_are_server_errors_with_their_sqlstate() {
    let Some(server) = postgres() else { return };
    let mut s = spec(server.port);
    s.setup = vec!["CREATE TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1)".into()];
    s.scripts = vec![script(
        "dup",
        1,
        &["SELECT count(*) FROM u", "INSERT INTO u VALUES ({{one}})"],
    )];
    s.params = vec![SqlParam {
        name: "one".into(),
        min: 1,
        max: 1,
        zipf_exponent: None,
    }];
    let mut w = Workload::Postgres(s.clone());
    w.prepare().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let out = w
        .run(
            &closed(2, 20),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let s_ = &out.summary;
    let text = std::fs::read_to_string(&records).unwrap();
    assert_eq!(
        s_.counts.errors_by_class.get(&ErrorClass::ServerError),
        Some(&20),
        "{:?}\n{text}",
        s_.counts.errors_by_class
    );
    assert_eq!(s_.operations["dup"].errors, 20);
    assert!(text.contains("\"error\":\"server_error\""), "{text}");
    assert!(
        text.contains("SQLSTATE 23505: duplicate key value violates unique constraint"),
        "{text}"
    );
    // The failed transactions were rolled back, the table is as it was.
    assert_eq!(scalar(server.port, "SELECT count(*) FROM u").await, 1);

    // A statement that cannot be prepared fails before the clock, naming itself.
    let mut missing = s.clone();
    missing.setup.clear();
    missing.scripts = vec![script("q", 1, &["SELECT * FROM nowhere WHERE k = {{n}}"])];
    let err = Workload::Postgres(missing)
        .prepare()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SELECT * FROM nowhere"), "{err}");
    assert!(err.contains("SQLSTATE 42P01"), "{err}");

    // A range beyond the column's type: the message says how to fix it.
    let mut wide = s.clone();
    wide.setup.clear();
    wide.scripts = vec![script("q", 1, &["SELECT k FROM u WHERE k = {{big}}"])];
    wide.params = vec![SqlParam {
        name: "big".into(),
        min: 1,
        max: 1 << 40,
        zipf_exponent: None,
    }];
    let err = Workload::Postgres(wide.clone())
        .prepare()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`{{big}}::bigint`"), "{err}");
    wide.scripts = vec![script(
        "q",
        1,
        &["SELECT k FROM u WHERE k = {{big}}::bigint"],
    )];
    Workload::Postgres(wide).prepare().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_connect_errors_that_say_why() {
    let Some(server) = postgres() else { return };
    let base = {
        let mut s = spec(server.port);
        s.scripts = vec![script("q", 1, &["SELECT {{n}}::bigint"])];
        s
    };
    let run = |s: PostgresSpec| async move {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("requests.jsonl");
        let out = Workload::Postgres(s)
            .run(
                &closed(1, 3),
                RunOptions {
                    records: Some(records.clone()),
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap();
        (out.summary, std::fs::read_to_string(&records).unwrap())
    };

    // The right password works.
    let (summary, _) = run(base.clone()).await;
    assert_eq!(summary.counts.successes, 3);

    // A wrong password: connect errors, the SQLSTATE and the fix, never the password.
    let mut wrong = base.clone();
    wrong.password = Some("not-the-pw".into());
    let (summary, text) = run(wrong.clone()).await;
    assert_eq!(
        summary.counts.errors_by_class.get(&ErrorClass::Connect),
        Some(&3)
    );
    assert!(text.contains("SQLSTATE 28P01"), "{text}");
    assert!(text.contains("check the service's `credentials`"), "{text}");
    assert!(!text.contains("not-the-pw") && !text.contains(PASSWORD));
    let err = Workload::Postgres(wrong)
        .prepare()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("28P01") && !err.contains("not-the-pw"),
        "{err}"
    );

    // An unknown database.
    let mut nodb = base.clone();
    nodb.database = "no_such_db".into();
    let (summary, text) = run(nodb).await;
    assert_eq!(
        summary.counts.errors_by_class.get(&ErrorClass::Connect),
        Some(&3)
    );
    assert!(text.contains("SQLSTATE 3D000"), "{text}");
    assert!(text.contains("database `no_such_db`"), "{text}");

    // Nobody listening.
    let mut gone = base;
    gone.address = "127.0.0.1:1".into();
    let (summary, text) = run(gone).await;
    assert_eq!(
        summary.counts.errors_by_class.get(&ErrorClass::Connect),
        Some(&3)
    );
    assert!(
        text.contains("connect to PostgreSQL at 127.0.0.1:1"),
        "{text}"
    );
}
