//! The catalog of runs: one SQLite file, `<results root>/catalog.sqlite`, one row per run.
//!
//! `aibench run` adds each run when it ends ([`catalog_add`]); `aibench runs` lists and filters
//! them and first indexes any run directory under the root that the catalog is missing
//! ([`catalog_sync`]), so runs copied in, made by an older aibench or interrupted before the end
//! show up too. Paths inside the root are stored relative to it, so a results tree can move.

use crate::error::{ReportError, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::rundir::RunData;

/// The catalog's file name under the results root.
pub const CATALOG_FILE: &str = "catalog.sqlite";

/// Layout version of the catalog (`PRAGMA user_version`).
const CATALOG_VERSION: i64 = 1;

pub fn catalog_path(results_root: &Path) -> PathBuf {
    results_root.join(CATALOG_FILE)
}

/// One run in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    /// The run id (the run directory's name).
    pub id: String,
    /// The run directory (absolute, or relative to the working directory as given).
    pub path: PathBuf,
    /// The recipe's name.
    pub recipe: String,
    pub status: String,
    pub started_at: f64,
    pub started_at_utc: String,
    pub finished_at: Option<f64>,
    pub platform: String,
    pub host: String,
    /// Service kinds and names, e.g. `sim:llm`.
    pub services: Vec<String>,
    pub trials: u64,
    /// Measured requests over every trial.
    pub requests: u64,
    /// The best successful request rate of any trial.
    pub max_requests_per_s: Option<f64>,
    pub aibench_version: String,
}

/// Filters for [`catalog_list`]; every one given must match.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// The recipe's name (exact, or a `*` pattern).
    pub recipe: Option<String>,
    /// Runs that started at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    pub status: Option<aibench_results::Status>,
    /// A service kind (`vllm`) or name (`llm`).
    pub service: Option<String>,
}

fn open(results_root: &Path) -> Result<Connection> {
    std::fs::create_dir_all(results_root).map_err(ReportError::io("create", results_root))?;
    let path = catalog_path(results_root);
    let conn = Connection::open(&path)?;
    // Runs that end together write together.
    conn.busy_timeout(Duration::from_secs(10))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CATALOG_VERSION {
        return Err(ReportError::NewerCatalog { path, version });
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            recipe TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at REAL NOT NULL,
            started_at_utc TEXT NOT NULL,
            finished_at REAL,
            platform TEXT NOT NULL,
            host TEXT NOT NULL,
            services TEXT NOT NULL,
            trials INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            max_requests_per_s REAL,
            aibench_version TEXT NOT NULL,
            indexed_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS runs_started_at ON runs(started_at);
        CREATE INDEX IF NOT EXISTS runs_recipe ON runs(recipe);",
    )?;
    conn.pragma_update(None, "user_version", CATALOG_VERSION)?;
    Ok(conn)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn entry_of(run_dir: &Path) -> Result<CatalogEntry> {
    let data = RunData::read(run_dir)?;
    let r = &data.run;
    let id = if r.run_id.is_empty() {
        run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        r.run_id.clone()
    };
    let max = data
        .trials
        .iter()
        .map(|t| t.summary.throughput.requests_per_s)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Ok(CatalogEntry {
        id,
        path: run_dir.to_path_buf(),
        recipe: r.name.clone(),
        status: crate::model::status_text(data.status).to_string(),
        started_at: r.started_at,
        started_at_utc: r.started_at_utc.clone(),
        finished_at: r.finished_at,
        platform: r.platform.clone(),
        host: r.host.hostname.clone(),
        services: data
            .recipe
            .services
            .iter()
            .map(|s| format!("{}:{}", s.kind, s.name))
            .collect(),
        trials: r.trials.len().max(data.trials.len()) as u64,
        requests: data.trials.iter().map(|t| t.summary.counts.total).sum(),
        max_requests_per_s: max,
        aibench_version: r.aibench_version.clone(),
    })
}

/// The path stored for a run: relative to the root when inside it.
fn stored_path(results_root: &Path, run_dir: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (root, dir) = (abs(results_root), abs(run_dir));
    match dir.strip_prefix(&root) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => dir.display().to_string(),
    }
}

fn upsert(conn: &Connection, results_root: &Path, e: &CatalogEntry) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO runs (id, path, recipe, status, started_at, started_at_utc,
            finished_at, platform, host, services, trials, requests, max_requests_per_s,
            aibench_version, indexed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            e.id,
            stored_path(results_root, &e.path),
            e.recipe,
            e.status,
            e.started_at,
            e.started_at_utc,
            e.finished_at,
            e.platform,
            e.host,
            e.services.join(" "),
            e.trials as i64,
            e.requests as i64,
            e.max_requests_per_s,
            e.aibench_version,
            now(),
        ],
    )?;
    Ok(())
}

/// Add (or refresh) one run in the catalog under `results_root`.
pub fn catalog_add(results_root: &Path, run_dir: &Path) -> Result<CatalogEntry> {
    let e = entry_of(run_dir)?;
    let conn = open(results_root)?;
    upsert(&conn, results_root, &e)?;
    Ok(e)
}

/// What [`catalog_sync`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub added: usize,
    pub updated: usize,
    /// Entries whose run directory is gone.
    pub removed: usize,
}

/// Index the run directories directly under `results_root` that the catalog is missing or has
/// stale (a status that changed), and forget runs whose directory is gone.
pub fn catalog_sync(results_root: &Path) -> Result<SyncOutcome> {
    let conn = open(results_root)?;
    let mut out = SyncOutcome::default();
    let known: Vec<(String, String, String)> = {
        let mut st = conn.prepare("SELECT id, path, status FROM runs")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, path, _) in &known {
        if !resolve(results_root, path).join("run.json").is_file() {
            conn.execute("DELETE FROM runs WHERE id = ?1", params![id])?;
            out.removed += 1;
        }
    }
    let Ok(rd) = std::fs::read_dir(results_root) else {
        return Ok(out);
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("run.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(e) = entry_of(&dir) else { continue };
        match known.iter().find(|k| k.0 == e.id) {
            None => {
                upsert(&conn, results_root, &e)?;
                out.added += 1;
            }
            Some((_, _, status)) if *status != e.status => {
                upsert(&conn, results_root, &e)?;
                out.updated += 1;
            }
            Some(_) => {}
        }
    }
    Ok(out)
}

fn resolve(results_root: &Path, stored: &str) -> PathBuf {
    let p = Path::new(stored);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        results_root.join(p)
    }
}

fn glob_to_like(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The runs in the catalog that match `filter`, newest first.
pub fn catalog_list(results_root: &Path, filter: &RunFilter) -> Result<Vec<CatalogEntry>> {
    let conn = open(results_root)?;
    let mut sql = String::from(
        "SELECT id, path, recipe, status, started_at, started_at_utc, finished_at, platform,
                host, services, trials, requests, max_requests_per_s, aibench_version
         FROM runs WHERE 1 = 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(r) = &filter.recipe {
        sql.push_str(" AND recipe LIKE ? ESCAPE '\\'");
        args.push(glob_to_like(r).into());
    }
    if let Some(s) = filter.since {
        sql.push_str(" AND started_at >= ?");
        args.push(s.into());
    }
    if let Some(s) = filter.status {
        sql.push_str(" AND status = ?");
        args.push(s.as_str().to_string().into());
    }
    if let Some(s) = &filter.service {
        // Services are stored as `kind:name` separated by spaces.
        sql.push_str(" AND (' ' || services || ' ' LIKE ? ESCAPE '\\' OR ' ' || services || ' ' LIKE ? ESCAPE '\\')");
        let e = glob_to_like(s);
        args.push(format!("% {e}:%").into());
        args.push(format!("%:{e} %").into());
    }
    sql.push_str(" ORDER BY started_at DESC, id DESC");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
        let path: String = r.get(1)?;
        let services: String = r.get(9)?;
        Ok(CatalogEntry {
            id: r.get(0)?,
            path: resolve(results_root, &path),
            recipe: r.get(2)?,
            status: r.get(3)?,
            started_at: r.get(4)?,
            started_at_utc: r.get(5)?,
            finished_at: r.get(6)?,
            platform: r.get(7)?,
            host: r.get(8)?,
            services: services.split_whitespace().map(String::from).collect(),
            trials: r.get::<_, i64>(10)? as u64,
            requests: r.get::<_, i64>(11)? as u64,
            max_requests_per_s: r.get(12)?,
            aibench_version: r.get(13)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The run directory of a catalog id: the exact id, or a prefix of exactly one id.
pub fn catalog_find(results_root: &Path, id: &str) -> Result<Option<PathBuf>> {
    if !catalog_path(results_root).is_file() {
        return Ok(None);
    }
    let conn = open(results_root)?;
    let exact: Option<String> = conn
        .query_row("SELECT path FROM runs WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(p) = exact {
        return Ok(Some(resolve(results_root, &p)));
    }
    let mut st =
        conn.prepare("SELECT id, path FROM runs WHERE substr(id, 1, ?1) = ?2 ORDER BY id")?;
    let hits: Vec<(String, String)> = st
        .query_map(params![id.chars().count() as i64, id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    match hits.len() {
        0 => Ok(None),
        1 => Ok(Some(resolve(results_root, &hits[0].1))),
        _ => Err(ReportError::AmbiguousId {
            id: id.to_string(),
            matches: hits.into_iter().map(|h| h.0).collect(),
        }),
    }
}

/// A `--since` value as seconds since the epoch: `2026-11-23`, `2026-11-23T14:05`,
/// `2026-11-23T14:05:02Z` (UTC), or an age: `90m`, `12h`, `7d`, `2w`.
pub fn parse_since(s: &str, now_epoch: f64) -> Result<f64, String> {
    let t = s.trim();
    let hint = "write a UTC date such as `2026-11-23` or `2026-11-23T14:05`, or an age such as `12h`, `7d`";
    if let Some(at) = aibench_results::time::parse_utc(t) {
        return Ok(at);
    }
    if t.starts_with(|c: char| c.is_ascii_digit()) && !t.contains('-') {
        return aibench_results::time::parse_duration(
            t,
            aibench_results::time::BareNumber::Refused,
        )
        .map(|age| now_epoch - age.as_secs_f64())
        .map_err(|e| format!("`{s}`: {e}; or {hint}"));
    }
    aibench_results::time::parse_utc(t).ok_or_else(|| format!("`{s}` is not a date; {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_dates_and_ages() {
        assert_eq!(parse_since("1970-01-02", 0.0), Ok(86_400.0));
        assert_eq!(
            parse_since("2026-11-23T12:45:02Z", 0.0),
            Ok(1_795_437_902.0)
        );
        assert_eq!(parse_since("2026-11-23T12:45", 0.0), Ok(1_795_437_900.0));
        assert_eq!(parse_since("2d", 1_000_000.0), Ok(1_000_000.0 - 172_800.0));
        assert!(parse_since("yesterday", 0.0).is_err());
        assert!(parse_since("2026-13-01", 0.0).is_err());
        assert!(parse_since("5y", 0.0).is_err());
    }

    #[test]
    fn like_patterns() {
        assert_eq!(glob_to_like("quick*"), "quick%");
        assert_eq!(glob_to_like("a_b"), "a\\_b");
    }
}
