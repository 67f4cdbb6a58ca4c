//! Redis through `INFO` against a real `redis-server`, PostgreSQL through `pg_stat` against a
//! real `postgres`, both without an exporter.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use aibench_monitor::{Credentials, Monitor, MonitorConfig, Target, TargetKind};

use crate::util::{
    free_port, missing, read_csv, scrape_times, wait_port, wait_until, ChildGuard, Row,
};

fn monitor_config(dir: &Path, targets: Vec<Target>) -> MonitorConfig {
    let mut c = MonitorConfig::new(dir.join("metrics"), Instant::now(), SystemTime::now());
    c.interval = Duration::from_millis(100);
    // A loaded machine may be slow to answer; only real failures should count.
    c.scrape_timeout = Some(crate::util::PATIENCE);
    c.targets = targets;
    c.system = false;
    c.gpu = false;
    c
}

/// Send one RESP command and read the first line of the reply.
fn redis_command(port: u16, args: &[&str]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn last(rows: &[Row], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    rows.iter()
        .rev()
        .find(|r| {
            r.name == name
                && label.is_none_or(|(k, v)| r.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|r| r.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_info_without_an_exporter() {
    if missing("redis-server", "redis-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (open, locked) = (free_port(), free_port());
    let start = |port: u16, extra: &[&str]| {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .current_dir(tmp.path());
        ChildGuard::spawn(
            "redis-server",
            &mut cmd,
            &tmp.path().join(format!("redis-{port}.log")),
        )
    };
    let _a = start(open, &[]);
    let _b = start(locked, &["--requirepass", "s3cret"]);
    wait_port(open).await;
    wait_port(locked).await;
    assert!(redis_command(open, &["SET", "k1", "v"]).starts_with("+OK"));
    assert!(redis_command(open, &["GET", "k1"]).starts_with("$1"));

    let cache = Target::new("cache", TargetKind::Redis, "127.0.0.1", open);
    let with_password = Target::new("locked", TargetKind::Redis, "127.0.0.1", locked)
        .with_credentials(Credentials {
            password: Some("s3cret".into()),
            ..Credentials::default()
        });
    let no_password = Target::new("refused", TargetKind::Redis, "127.0.0.1", locked);
    let monitor = Monitor::start(monitor_config(
        tmp.path(),
        vec![cache, with_password, no_password],
    ))
    .unwrap();
    let csv = tmp.path().join("metrics/cache.csv");
    wait_until("three INFO scrapes", || {
        scrape_times(&read_csv(&csv)).len() >= 3
    })
    .await;
    let report = monitor.stop().await;

    let rows = read_csv(&csv);
    assert_eq!(last(&rows, "redis_up", None), Some(1.0));
    assert!(last(&rows, "redis_connected_clients", None).unwrap() >= 1.0);
    assert!(last(&rows, "redis_used_memory", None).unwrap() > 0.0);
    assert_eq!(last(&rows, "redis_db_keys", Some(("db", "db0"))), Some(1.0));
    assert_eq!(
        last(&rows, "redis_commands_calls", Some(("cmd", "set"))),
        Some(1.0)
    );
    assert!(last(&rows, "redis_total_commands_processed", None).unwrap() >= 2.0);
    // The default filter leaves out configuration numbers.
    assert!(last(&rows, "redis_tcp_port", None).is_none());

    let by_name = |n: &str| report.targets.iter().find(|t| t.name == n).unwrap().clone();
    assert_eq!(by_name("cache").failures, 0);
    assert_eq!(by_name("locked").failures, 0);
    let locked_rows = read_csv(&tmp.path().join("metrics/locked.csv"));
    assert_eq!(last(&locked_rows, "redis_up", None), Some(1.0));
    let refused = by_name("refused");
    assert_eq!(refused.failures, refused.attempts);
    let err = refused.last_error.unwrap();
    assert!(
        err.contains("NOAUTH") && err.contains("credentials"),
        "{err}"
    );
}

/// PostgreSQL's binaries (Debian keeps them out of PATH).
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("postgres").is_file())
        .or_else(|| crate::util::which("postgres").and_then(|p| p.parent().map(Path::to_path_buf)))
}

/// The uid/gid to run PostgreSQL as: ourselves, or the `postgres` account when we are root
/// (PostgreSQL refuses to run as root).
fn pg_user() -> Option<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(None);
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: a valid NUL-terminated name; the returned record is read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null record from getpwnam.
    Some(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pg_stat_without_an_exporter() {
    let Some(bin) = pg_bin() else {
        eprintln!("SKIPPED: PostgreSQL is not installed (Debian package `postgresql`)");
        return;
    };
    let Some(user) = pg_user() else {
        eprintln!(
            "SKIPPED: running as root and there is no `postgres` account to run PostgreSQL as"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("pgdata");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid)).unwrap();
    }
    let init = as_user(
        Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "aibench", "--auth=trust", "--no-sync"])
            .current_dir(tmp.path()),
        user,
    )
    .output()
    .unwrap();
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = free_port();
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(tmp.path())
        .current_dir(tmp.path());
    as_user(&mut cmd, user);
    let mut server = ChildGuard::spawn("postgres", &mut cmd, &tmp.path().join("postgres.log"));
    server.stop_signal = Some(libc::SIGINT);
    wait_port(port).await;
    // The port opens before the database accepts sessions.
    wait_until("PostgreSQL to accept connections", || {
        Command::new(bin.join("pg_isready"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "aibench",
                "-d",
                "postgres",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await;

    let creds = |user: &str| Credentials {
        user: Some(user.into()),
        database: Some("postgres".into()),
        ..Credentials::default()
    };
    let db = Target::new("db", TargetKind::Postgres, "127.0.0.1", port)
        .with_credentials(creds("aibench"));
    let stranger = Target::new("stranger", TargetKind::Postgres, "127.0.0.1", port)
        .with_credentials(creds("nobody"));
    let metrics_dir = tmp.path().join("out");
    let monitor = Monitor::start(monitor_config(&metrics_dir, vec![db, stranger])).unwrap();
    let csv = metrics_dir.join("metrics/db.csv");
    let commits = |rows: &[Row]| -> Vec<f64> {
        rows.iter()
            .filter(|r| {
                r.name == "pg_stat_database_xact_commit"
                    && r.labels == vec![("datname".to_string(), "postgres".to_string())]
            })
            .map(|r| r.value)
            .collect()
    };
    // PostgreSQL publishes a session's counts at most once a second.
    wait_until("transactions to show up in pg_stat_database", || {
        let c = commits(&read_csv(&csv));
        c.len() >= 3 && c.last() > c.first()
    })
    .await;
    let report = monitor.stop().await;
    drop(server);

    let rows = read_csv(&csv);
    let pg = Some(("datname", "postgres"));
    assert_eq!(last(&rows, "pg_up", None), Some(1.0));
    assert!(last(&rows, "pg_stat_database_xact_commit", pg).unwrap() >= 1.0);
    assert!(last(&rows, "pg_stat_database_blks_hit", pg).unwrap() > 0.0);
    assert!(last(&rows, "pg_stat_database_numbackends", pg).unwrap() >= 1.0);
    assert!(last(&rows, "pg_database_size_bytes", pg).unwrap() > 1_000_000.0);
    assert!(last(&rows, "pg_settings_max_connections", None).unwrap() >= 1.0);
    assert!(rows.iter().any(|r| r.name == "pg_locks_count"));
    assert!(rows.iter().any(|r| r.name.starts_with("pg_stat_bgwriter_")));
    // Our own session is not counted as activity.
    assert!(last(&rows, "pg_stat_activity_count", Some(("state", "active"))).is_none());
    // Transactions only go up (every scrape is a few).
    let commits = commits(&rows);
    assert!(commits.windows(2).all(|w| w[0] <= w[1]), "{commits:?}");

    let db = report.targets.iter().find(|t| t.name == "db").unwrap();
    assert_eq!(db.failures, 0, "{:?}", db.last_error);
    assert_eq!(db.partial_failures, 0, "{:?}", db.first_partial_failure);
    let stranger = report
        .targets
        .iter()
        .find(|t| t.name == "stranger")
        .unwrap();
    assert_eq!(stranger.failures, stranger.attempts);
    let err = stranger.last_error.as_deref().unwrap();
    assert!(
        err.contains("refused the connection") && err.contains("nobody"),
        "{err}"
    );
}
