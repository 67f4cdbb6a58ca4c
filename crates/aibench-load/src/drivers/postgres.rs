//! PostgreSQL: weighted scripts of prepared statements, one connection per user, and a built-in
//! TPC-B-like workload as pgbench defines it.
//!
//! An operation picks a script by weight (from the seed and its id, so a run repeats), draws
//! the script's named parameters, and runs its statements: one statement alone, several as one
//! transaction (`BEGIN` ... `COMMIT`). One operation is one record: `op` is the script's name,
//! its latency the whole transaction, and each statement of a transaction is a `step` with its
//! own latency (`tpcb: UPDATE pgbench_accounts`). Every statement is prepared once per
//! connection when the connection opens, and executed with binary parameters, as
//! `pgbench -M prepared` does.
//!
//! Parameters: a statement names them as `{{name}}`; each is an integer drawn uniformly from a
//! range or from a Zipfian distribution over it, once per operation (a name used by several
//! statements of a script has one value in the whole transaction). `{{n}}` without a
//! declaration is uniform in `1..=1_000_000`. Each `{{name}}` becomes a `$k` placeholder, and its
//! value is sent in the type PostgreSQL inferred for `$k` (`integer` for `aid = $1` when `aid`
//! is an `integer`), so statements need a cast only where the server cannot infer one.
//!
//! The protocol comes from `tokio-postgres` rather than being written here: startup and
//! authentication (SCRAM-SHA-256, MD5), the extended query protocol with parameter type
//! inference, and error fields with their SQLSTATE are several hundred lines that must be
//! right for every server version, and the crate does it with a small set of dependencies (its
//! `runtime` feature only: no TLS). The price, one channel hop per statement between the client
//! and its connection task, is measured against pgbench in `bench/postgres`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aibench_results::{ErrorClass, RequestRecord, Step};
use bytes::{BufMut, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use crate::client::{Clock, Limits};
use crate::driver::{ensure, finish, guarded, Driver, Failure};
use crate::error::LoadError;

/// Where and what to drive on PostgreSQL.
#[derive(Clone)]
pub struct PostgresSpec {
    /// `host:port`, `postgres://host:port` or `http://host:port` (the port defaults to 5432).
    pub address: String,
    /// The role to log in as.
    pub user: String,
    /// Sent when the server asks for one; never recorded, logged or printed.
    pub password: Option<String>,
    /// The database to connect to.
    pub database: String,
    /// What operations run: the built-in TPC-B-like transaction, or weighted scripts.
    pub builtin: Option<Builtin>,
    /// Weighted scripts (ignored with `builtin`).
    pub scripts: Vec<SqlScript>,
    /// Declared parameters; `n` needs no declaration.
    pub params: Vec<SqlParam>,
    /// Statements run once in [`crate::Workload::prepare`], before the clock (after the
    /// built-in workload's tables are created).
    pub setup: Vec<String>,
    pub seed: u64,
    /// Per-operation limit.
    pub timeout: Duration,
}

/// A built-in workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// pgbench's TPC-B-like transaction on its four tables at `scale` (scale branches, 10
    /// tellers and 100000 accounts per branch), created and filled before the clock.
    Tpcb { scale: u32 },
}

/// Statements an operation runs: one alone, several as one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlScript {
    /// The operation's name in records and summaries.
    pub name: String,
    /// Relative weight in the mix (at least 1).
    pub weight: u32,
    /// SQL with `{{name}}` parameters.
    pub statements: Vec<String>,
}

/// A named integer parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlParam {
    pub name: String,
    pub min: i64,
    pub max: i64,
    /// Zipfian over `min..=max` (`min` the most frequent) with this exponent; None: uniform.
    pub zipf_exponent: Option<f64>,
}

impl std::fmt::Debug for PostgresSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSpec")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("builtin", &self.builtin)
            .field("scripts", &self.scripts)
            .field("params", &self.params)
            .field("setup", &self.setup)
            .field("seed", &self.seed)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The range `{{n}}` is drawn from when the recipe does not declare it.
pub const DEFAULT_N: (i64, i64) = (1, 1_000_000);

/// Distinct parameters one script may use.
const MAX_PARAMS: usize = 32;

/// TPC-B's sizes per unit of scale, as pgbench defines them.
const TELLERS_PER_BRANCH: i64 = 10;
const ACCOUNTS_PER_BRANCH: i64 = 100_000;

/// The TPC-B-like transaction of pgbench (its default `tpcb-like` script) as a script.
fn tpcb_script() -> SqlScript {
    SqlScript {
        name: "tpcb".into(),
        weight: 1,
        statements: vec![
            "UPDATE pgbench_accounts SET abalance = abalance + {{delta}} WHERE aid = {{aid}}".into(),
            "SELECT abalance FROM pgbench_accounts WHERE aid = {{aid}}".into(),
            "UPDATE pgbench_tellers SET tbalance = tbalance + {{delta}} WHERE tid = {{tid}}".into(),
            "UPDATE pgbench_branches SET bbalance = bbalance + {{delta}} WHERE bid = {{bid}}".into(),
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({{tid}}, {{bid}}, {{aid}}, {{delta}}, CURRENT_TIMESTAMP)".into(),
        ],
    }
}

/// The TPC-B transaction's parameters at `scale`.
fn tpcb_params(scale: u32) -> Vec<SqlParam> {
    let s = i64::from(scale.max(1));
    let uniform = |name: &str, min: i64, max: i64| SqlParam {
        name: name.into(),
        min,
        max,
        zipf_exponent: None,
    };
    vec![
        uniform("aid", 1, ACCOUNTS_PER_BRANCH * s),
        uniform("bid", 1, s),
        uniform("tid", 1, TELLERS_PER_BRANCH * s),
        uniform("delta", -5000, 5000),
    ]
}

// ---------------------------------------------------------------- statements

/// A `{{name}}` in a statement: byte range and name.
fn placeholders(sql: &str) -> Result<Vec<(usize, usize, &str)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = sql[at..].find("{{").map(|i| at + i) {
        let Some(close) = sql[open + 2..].find("}}").map(|i| open + 2 + i) else {
            return Err(format!("`{{{{` without `}}}}` in `{sql}`"));
        };
        let name = sql[open + 2..close].trim();
        if !is_identifier(name) {
            return Err(format!(
                "`{{{{{name}}}}}` is not a parameter name (letters, digits and `_`) in `{sql}`"
            ));
        }
        out.push((open, close + 2, name));
        at = close + 2;
    }
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The names of the `{{name}}` parameters of a statement, in order (repeats included).
pub fn parameter_names(sql: &str) -> Result<Vec<String>, String> {
    Ok(placeholders(sql)?
        .into_iter()
        .map(|(_, _, n)| n.to_string())
        .collect())
}

/// A short name for a statement: its verb and the table it works on (`UPDATE
/// pgbench_accounts`, `SELECT docs`), else its first two words.
pub fn statement_label(sql: &str) -> String {
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let Some(verb) = words.first() else {
        return "empty".into();
    };
    let verb = verb.to_ascii_uppercase();
    let after = |kw: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(kw))
            .and_then(|i| words.get(i + 1))
    };
    let table = match verb.as_str() {
        "UPDATE" => words
            .get(1)
            .filter(|w| !w.eq_ignore_ascii_case("ONLY"))
            .or(words.get(2)),
        "INSERT" => after("INTO"),
        "SELECT" | "DELETE" => after("FROM"),
        _ => None,
    };
    match table {
        Some(t) => format!("{verb} {}", t.trim_matches('"')),
        None => match words.get(1) {
            Some(w) => format!("{verb} {w}"),
            None => verb,
        },
    }
}

/// A string that lives as long as the program; names of operations are few (scripts and
/// statements of a recipe), so keeping each once is cheap, and records borrow them.
fn intern(s: String) -> &'static str {
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .expect("intern lock");
    if let Some(&known) = seen.get(s.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// A statement with its parameters as `$k`.
#[derive(Debug)]
struct Compiled {
    /// What is prepared.
    sql: String,
    /// The statement as written (for messages).
    source: String,
    /// For `$k` (k = index + 1): the slot of its value in the script's values.
    slots: Vec<usize>,
    /// The step's name: `script: VERB table`.
    step: &'static str,
}

#[derive(Debug)]
struct Script {
    name: &'static str,
    /// Cumulative weight up to and including this script.
    cumulative: u64,
    statements: Vec<Compiled>,
    /// For each value slot: the parameter it is drawn from.
    uses: Vec<usize>,
}

/// How one parameter is drawn.
#[derive(Debug)]
struct Param {
    name: String,
    min: i64,
    max: i64,
    zipf: Option<Zipf<f64>>,
}

impl Param {
    fn sample(&self, rng: &mut SmallRng) -> i64 {
        match &self.zipf {
            Some(z) => {
                let span = (self.max as i128 - self.min as i128) as u64;
                let k = (z.sample(rng) as u64).clamp(1, span.saturating_add(1)) - 1;
                (self.min as i128 + k as i128) as i64
            }
            None => rng.random_range(self.min..=self.max),
        }
    }
}

/// Compile scripts: `{{name}}` to `$k`, parameters resolved, step names made.
fn compile(
    scripts: &[SqlScript],
    declared: &[SqlParam],
) -> Result<(Vec<Script>, Vec<Param>), Vec<String>> {
    let mut errors = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    for p in declared {
        if p.min > p.max {
            errors.push(format!(
                "parameter `{}`: min {} is above max {}",
                p.name, p.min, p.max
            ));
            continue;
        }
        let zipf = match p.zipf_exponent {
            None => None,
            Some(e) if !(e.is_finite() && e >= 0.0) => {
                errors.push(format!(
                    "parameter `{}`: the Zipfian exponent must be zero or positive (got {e})",
                    p.name
                ));
                continue;
            }
            Some(e) => {
                let n = (p.max as i128 - p.min as i128 + 1) as f64;
                match Zipf::new(n, e) {
                    Ok(z) => Some(z),
                    Err(err) => {
                        errors.push(format!("parameter `{}`: {err}", p.name));
                        continue;
                    }
                }
            }
        };
        params.push(Param {
            name: p.name.clone(),
            min: p.min,
            max: p.max,
            zipf,
        });
    }
    if scripts.is_empty() {
        errors.push("no scripts to run".into());
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut names = HashSet::new();
    for s in scripts {
        if s.statements.is_empty() {
            errors.push(format!("script `{}` has no statements", s.name));
        }
        if s.weight == 0 {
            errors.push(format!(
                "script `{}`: the weight must be at least 1",
                s.name
            ));
        }
        if !names.insert(s.name.as_str()) {
            errors.push(format!("the script name `{}` is used twice", s.name));
        }
        total += u64::from(s.weight);
        let mut uses: Vec<usize> = Vec::new();
        let mut slot_names: Vec<String> = Vec::new();
        let mut statements = Vec::new();
        let mut labels = HashSet::new();
        for sql in &s.statements {
            let found = match placeholders(sql) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("script `{}`: {e}", s.name));
                    continue;
                }
            };
            let mut text = String::with_capacity(sql.len());
            let mut at = 0;
            let mut dollars: Vec<&str> = Vec::new();
            let mut slots = Vec::new();
            for (start, end, name) in found {
                text.push_str(&sql[at..start]);
                at = end;
                let k = match dollars.iter().position(|d| *d == name) {
                    Some(k) => k,
                    None => {
                        dollars.push(name);
                        let slot = match slot_names.iter().position(|n| n == name) {
                            Some(i) => i,
                            None => {
                                let p = match params.iter().position(|p| p.name == name) {
                                    Some(i) => i,
                                    None if name == "n" => {
                                        params.push(Param {
                                            name: "n".into(),
                                            min: DEFAULT_N.0,
                                            max: DEFAULT_N.1,
                                            zipf: None,
                                        });
                                        params.len() - 1
                                    }
                                    None => {
                                        errors.push(format!(
                                            "script `{}`: `{{{{{name}}}}}` is not declared in `params`",
                                            s.name
                                        ));
                                        0
                                    }
                                };
                                slot_names.push(name.to_string());
                                uses.push(p);
                                slot_names.len() - 1
                            }
                        };
                        slots.push(slot);
                        dollars.len() - 1
                    }
                };
                text.push('$');
                text.push_str(&(k + 1).to_string());
            }
            text.push_str(&sql[at..]);
            let mut label = statement_label(sql);
            let mut n = 2;
            while !labels.insert(label.clone()) {
                label = format!("{} #{n}", statement_label(sql));
                n += 1;
            }
            statements.push(Compiled {
                sql: text,
                source: sql.clone(),
                slots,
                step: intern(format!("{}: {label}", s.name)),
            });
        }
        if uses.len() > MAX_PARAMS {
            errors.push(format!(
                "script `{}` uses {} parameters; at most {MAX_PARAMS}",
                s.name,
                uses.len()
            ));
        }
        out.push(Script {
            name: intern(s.name.clone()),
            cumulative: total,
            statements,
            uses,
        });
    }
    if errors.is_empty() {
        Ok((out, params))
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------- parameters on the wire

/// An integer parameter, sent in the type the server inferred for its placeholder.
#[derive(Debug, Clone, Copy)]
struct Int(i64);

impl Int {
    /// Whether a value of this type can be sent for a placeholder of type `ty`.
    fn accepts_type(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::OID
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }

    /// The range of values a placeholder of type `ty` holds.
    fn range(ty: &Type) -> (i64, i64) {
        match *ty {
            Type::INT2 => (i16::MIN.into(), i16::MAX.into()),
            Type::INT4 => (i32::MIN.into(), i32::MAX.into()),
            Type::OID => (0, u32::MAX.into()),
            _ => (i64::MIN, i64::MAX),
        }
    }

    /// Bytes the value takes on the wire.
    fn wire_len(self, ty: &Type) -> u64 {
        match *ty {
            Type::INT2 => 2,
            Type::INT4 | Type::FLOAT4 | Type::OID => 4,
            Type::INT8 | Type::FLOAT8 => 8,
            Type::NUMERIC => 8 + 2 * numeric_digits(self.0).len() as u64,
            _ => self.0.to_string().len() as u64,
        }
    }
}

/// An integer's base-10000 digits, most significant first, trailing zero digits dropped
/// (NUMERIC's binary form).
fn numeric_digits(v: i64) -> Vec<i16> {
    let mut n = v.unsigned_abs();
    let mut d = Vec::new();
    while n > 0 {
        d.push((n % 10_000) as i16);
        n /= 10_000;
    }
    d.reverse();
    d
}

impl ToSql for Int {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let v = self.0;
        match *ty {
            Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Type::INT8 => v.to_sql(ty, out),
            Type::OID => u32::try_from(v)?.to_sql(ty, out),
            Type::FLOAT4 => (v as f32).to_sql(ty, out),
            Type::FLOAT8 => (v as f64).to_sql(ty, out),
            Type::NUMERIC => {
                // ndigits, weight, sign, dscale, then the digits.
                let digits = numeric_digits(v);
                let weight = digits.len().saturating_sub(1) as i16;
                let mut kept = digits.len();
                while kept > 0 && digits[kept - 1] == 0 {
                    kept -= 1;
                }
                out.put_i16(kept as i16);
                out.put_i16(weight);
                out.put_u16(if v < 0 { 0x4000 } else { 0 });
                out.put_i16(0);
                for d in &digits[..kept] {
                    out.put_i16(*d);
                }
                Ok(IsNull::No)
            }
            _ => {
                out.put_slice(v.to_string().as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        Int::accepts_type(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

// ---------------------------------------------------------------- the driver

/// The driver: the compiled scripts and how to connect.
pub(crate) struct PostgresDriver {
    addr: SocketAddr,
    spec: PostgresSpec,
    scripts: Vec<Script>,
    params: Vec<Param>,
}

/// One connection: the client and every statement prepared on it.
pub(crate) struct PgConn {
    client: Client,
    begin: Statement,
    commit: Statement,
    /// `[script][statement]`.
    prepared: Vec<Vec<Statement>>,
}

/// Strip a scheme, credentials and a path from an address.
fn host_port(address: &str) -> &str {
    let rest = address.split_once("://").map(|(_, r)| r).unwrap_or(address);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest)
}

/// A PostgreSQL error in one line: SQLSTATE and message (never the detail, which can quote
/// values).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => {
            let mut msg = e.to_string();
            if let Some(src) = e.source() {
                let s = src.to_string();
                if !msg.contains(&s) {
                    msg = format!("{msg}: {s}");
                }
            }
            msg
        }
    }
}

/// Why a script failed.
enum Fail {
    /// The server answered with an error; the connection can be used again if `reusable`.
    Sql { message: String, reusable: bool },
    /// The connection broke; `started`: after the script had begun changing anything.
    Broken { message: String, started: bool },
}

impl PostgresDriver {
    pub(crate) async fn new(spec: &PostgresSpec) -> Result<PostgresDriver, LoadError> {
        let (scripts, declared) = match spec.builtin {
            Some(Builtin::Tpcb { scale }) => {
                if scale == 0 {
                    return Err(LoadError::InvalidSpec(vec![
                        "the TPC-B scale must be at least 1".into(),
                    ]));
                }
                (vec![tpcb_script()], tpcb_params(scale))
            }
            None => (spec.scripts.clone(), spec.params.clone()),
        };
        let (scripts, params) = compile(&scripts, &declared).map_err(LoadError::InvalidSpec)?;
        let addr = crate::drivers::redis::resolve(host_port(&spec.address), 5432).await?;
        Ok(PostgresDriver {
            addr,
            spec: spec.clone(),
            scripts,
            params,
        })
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(self.addr.ip().to_string())
            .port(self.addr.port())
            .user(&self.spec.user)
            .dbname(&self.spec.database)
            .application_name("aibench")
            .connect_timeout(crate::driver::CONNECT_TIMEOUT);
        if let Some(p) = self.spec.password.as_deref().filter(|p| !p.is_empty()) {
            c.password(p);
        }
        c
    }

    /// Open a connection for the one-time preparation (simple queries, nothing prepared).
    async fn plain(&self) -> Result<Client, LoadError> {
        let (client, connection) = self
            .config()
            .connect(NoTls)
            .await
            .map_err(|e| LoadError::InvalidTarget(self.connect_message(&e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    fn connect_message(&self, e: &tokio_postgres::Error) -> String {
        match e.as_db_error() {
            Some(_) => format!(
                "PostgreSQL at {} refused user `{}` on database `{}` ({}): check the service's `credentials` (user, password, database)",
                self.addr,
                self.spec.user,
                self.spec.database,
                describe(e)
            ),
            None => format!("connect to PostgreSQL at {}: {}", self.addr, describe(e)),
        }
    }

    /// Run script `s` with `values` on `conn`, filling the record's steps and byte counts.
    async fn run_script(
        &self,
        conn: &PgConn,
        s: usize,
        values: &[i64],
        clock: Clock,
        rec: &mut RequestRecord,
    ) -> Result<(), Fail> {
        let script = &self.scripts[s];
        let statements = &conn.prepared[s];
        let transaction = statements.len() > 1;
        let broken = |e: &tokio_postgres::Error, started: bool| -> Fail {
            Fail::Broken {
                message: describe(e),
                started,
            }
        };
        if transaction {
            conn.client
                .execute(&conn.begin, &[])
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(_) => Fail::Sql {
                        message: describe(&e),
                        reusable: false,
                    },
                    None => broken(&e, false),
                })?;
        }
        let (mut bytes_out, mut bytes_in) = (0u64, 0u64);
        for (i, (stmt, compiled)) in statements.iter().zip(&script.statements).enumerate() {
            let params: Vec<Int> = compiled.slots.iter().map(|&k| Int(values[k])).collect();
            for (p, ty) in params.iter().zip(stmt.params()) {
                bytes_out += p.wire_len(ty);
            }
            let t0 = clock.now_us();
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            match conn.client.query(stmt, &refs).await {
                Ok(rows) => bytes_in += rows.iter().map(|r| r.raw_size_bytes() as u64).sum::<u64>(),
                Err(e) => return Err(self.failed(conn, e, transaction || i > 0).await),
            }
            if transaction {
                rec.steps.push(Step {
                    op: Cow::Borrowed(compiled.step),
                    latency_us: clock.now_us().saturating_sub(t0),
                });
            }
        }
        if transaction {
            conn.client
                .execute(&conn.commit, &[])
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(_) => Fail::Sql {
                        message: describe(&e),
                        reusable: !conn.client.is_closed(),
                    },
                    None => broken(&e, true),
                })?;
        }
        rec.bytes_out = Some(bytes_out);
        rec.bytes_in = Some(bytes_in);
        Ok(())
    }

    /// Classify a failed statement; after an SQL error inside a transaction, roll it back so
    /// the connection can be used again.
    async fn failed(&self, conn: &PgConn, e: tokio_postgres::Error, started: bool) -> Fail {
        if e.as_db_error().is_none() {
            return Fail::Broken {
                message: describe(&e),
                started,
            };
        }
        let reusable =
            !conn.client.is_closed() && conn.client.batch_execute("ROLLBACK").await.is_ok();
        Fail::Sql {
            message: describe(&e),
            reusable,
        }
    }

    /// The script and parameter values of operation `id`.
    fn draw(&self, id: u64, values: &mut [i64; MAX_PARAMS]) -> usize {
        let mut rng =
            SmallRng::seed_from_u64(self.spec.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let total = self.scripts.last().map_or(1, |s| s.cumulative);
        let s = if self.scripts.len() == 1 {
            0
        } else {
            let x = rng.random_range(0..total);
            self.scripts.partition_point(|s| s.cumulative <= x)
        };
        for (slot, &p) in self.scripts[s].uses.iter().enumerate() {
            values[slot] = self.params[p].sample(&mut rng);
        }
        s
    }

    /// Prepare every statement; a parameter the server wants in a type an integer cannot be
    /// sent as, or whose range exceeds its type, is an error that says how to fix it.
    async fn prepare_all(&self, client: &Client) -> Result<Vec<Vec<Statement>>, String> {
        let mut all = Vec::with_capacity(self.scripts.len());
        for script in &self.scripts {
            let mut prepared = Vec::with_capacity(script.statements.len());
            for c in &script.statements {
                let stmt = client.prepare(&c.sql).await.map_err(|e| {
                    format!(
                        "script `{}`: cannot prepare `{}`: {}",
                        script.name,
                        c.source,
                        describe(&e)
                    )
                })?;
                for (k, ty) in stmt.params().iter().enumerate() {
                    let param = &self.params[script.uses[c.slots[k]]];
                    let name = &param.name;
                    if !Int::accepts_type(ty) {
                        return Err(format!(
                            "script `{}`: in `{}`, PostgreSQL expects `{{{{{name}}}}}` to be of type `{ty}`, which an integer cannot be sent as: cast it, e.g. `{{{{{name}}}}}::bigint`",
                            script.name, c.source
                        ));
                    }
                    let (lo, hi) = Int::range(ty);
                    if param.min < lo || param.max > hi {
                        return Err(format!(
                            "script `{}`: in `{}`, `{{{{{name}}}}}` ranges over {}..={}, beyond PostgreSQL's `{ty}` there: cast it, e.g. `{{{{{name}}}}}::bigint`, or narrow the range",
                            script.name, c.source, param.min, param.max
                        ));
                    }
                }
                prepared.push(stmt);
            }
            all.push(prepared);
        }
        Ok(all)
    }
}

impl Driver for PostgresDriver {
    type Conn = PgConn;

    async fn connect(&self) -> Result<PgConn, String> {
        let (client, connection) = self
            .config()
            .connect(NoTls)
            .await
            .map_err(|e| self.connect_message(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let begin = client
            .prepare("BEGIN")
            .await
            .map_err(|e| format!("prepare BEGIN: {}", describe(&e)))?;
        let commit = client
            .prepare("COMMIT")
            .await
            .map_err(|e| format!("prepare COMMIT: {}", describe(&e)))?;
        let prepared = self.prepare_all(&client).await?;
        Ok(PgConn {
            client,
            begin,
            commit,
            prepared,
        })
    }

    async fn execute<'a>(
        &'a self,
        slot: &'a mut Option<PgConn>,
        id: u64,
        clock: Clock,
        rec: &'a mut RequestRecord,
        limits: &'a mut Limits,
    ) {
        let mut values = [0i64; MAX_PARAMS];
        let s = self.draw(id, &mut values);
        rec.op = Some(Cow::Borrowed(self.scripts[s].name));
        let timeout = self.spec.timeout;
        let work = async {
            // A connection the server closed while it sat idle is replaced before use.
            if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
                *slot = None;
            }
            let reused = slot.is_some();
            for retry in [false, true] {
                let conn = ensure(self, slot, timeout).await?;
                rec.steps.clear();
                rec.sent_us = Some(clock.now_us());
                match self.run_script(&conn, s, &values, clock, rec).await {
                    Ok(()) => {
                        rec.end_us = Some(clock.now_us());
                        *slot = Some(conn);
                        return Ok(());
                    }
                    Err(Fail::Sql { message, reusable }) => {
                        if reusable {
                            *slot = Some(conn);
                        }
                        return Err((ErrorClass::ServerError, message));
                    }
                    // A kept-alive connection that broke before the script began: once,
                    // reconnect and run it again.
                    Err(Fail::Broken { started: false, .. }) if reused && !retry => {
                        rec.sent_us = None;
                    }
                    Err(Fail::Broken { message, started }) => {
                        return Err(if started {
                            (
                                ErrorClass::ClosedMidStream,
                                format!("the connection closed mid-transaction: {message}"),
                            )
                        } else {
                            (ErrorClass::Connect, message)
                        })
                    }
                }
            }
            unreachable!("the second attempt always returns")
        };
        let outcome: Result<(), Failure> = guarded(limits, timeout, work).await;
        finish(rec, clock, outcome);
    }
}

// ---------------------------------------------------------------- before the clock

/// The one-time preparation: the built-in workload's tables, the setup statements, then one
/// connection that prepares every statement (so a statement that cannot run fails here, before
/// the clock, with its text). Returns what was done.
pub(crate) async fn prepare(spec: &PostgresSpec) -> Result<String, LoadError> {
    let driver = PostgresDriver::new(spec).await?;
    let client = driver.plain().await?;
    let mut done = Vec::new();
    if let Some(Builtin::Tpcb { scale }) = spec.builtin {
        done.push(tpcb_init(&client, scale).await?);
    }
    for (i, sql) in spec.setup.iter().enumerate() {
        client.batch_execute(sql).await.map_err(|e| {
            LoadError::InvalidTarget(format!(
                "setup statement {}: `{sql}`: {}",
                i + 1,
                describe(&e)
            ))
        })?;
    }
    if !spec.setup.is_empty() {
        done.push(format!("ran {} setup statements", spec.setup.len()));
    }
    drop(client);
    let conn = driver.connect().await.map_err(LoadError::InvalidTarget)?;
    let n: usize = conn.prepared.iter().map(Vec::len).sum();
    done.push(format!("prepared {n} statements"));
    Ok(done.join("; "))
}

/// Create and fill pgbench's four tables at `scale`, unless they already hold that scale.
async fn tpcb_init(client: &Client, scale: u32) -> Result<String, LoadError> {
    let fail = |what: &str, e: tokio_postgres::Error| {
        LoadError::InvalidTarget(format!("TPC-B init: {what}: {}", describe(&e)))
    };
    let s = i64::from(scale);
    let (tellers, accounts) = (TELLERS_PER_BRANCH * s, ACCOUNTS_PER_BRANCH * s);
    if let Some(found) = tpcb_scale(client).await {
        if found == (s, tellers, accounts) {
            return Ok(format!(
                "TPC-B tables already hold scale {scale} ({s} branches, {tellers} tellers, {accounts} accounts): kept as they are"
            ));
        }
    }
    let started = Instant::now();
    let ddl = "DROP TABLE IF EXISTS pgbench_history, pgbench_tellers, pgbench_accounts, pgbench_branches;
        CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
        CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100);
        CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100);
        CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor = 100);";
    client
        .batch_execute(ddl)
        .await
        .map_err(|e| fail("creating the tables", e))?;
    let fill = format!(
        "BEGIN;
        INSERT INTO pgbench_branches (bid, bbalance) SELECT b, 0 FROM generate_series(1, {s}) AS b;
        INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT t, (t - 1) / {TELLERS_PER_BRANCH} + 1, 0 FROM generate_series(1, {tellers}) AS t;
        INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT a, (a - 1) / {ACCOUNTS_PER_BRANCH} + 1, 0, '' FROM generate_series(1, {accounts}) AS a;
        COMMIT;"
    );
    client
        .batch_execute(&fill)
        .await
        .map_err(|e| fail("filling the tables", e))?;
    client
        .batch_execute(
            "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
            ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
            ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);",
        )
        .await
        .map_err(|e| fail("adding primary keys", e))?;
    client
        .batch_execute(
            "VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history",
        )
        .await
        .map_err(|e| fail("VACUUM ANALYZE", e))?;
    Ok(format!(
        "created the TPC-B tables at scale {scale} ({s} branches, {tellers} tellers, {accounts} accounts) in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}

/// Rows in pgbench's branches, tellers and accounts, if the tables exist with their primary keys.
async fn tpcb_scale(client: &Client) -> Option<(i64, i64, i64)> {
    let keys = client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             WHERE i.indisprimary AND c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
               AND c.relname IN ('pgbench_branches', 'pgbench_tellers', 'pgbench_accounts')",
            &[],
        )
        .await
        .ok()?;
    if keys.get::<_, i64>(0) != 3 {
        return None;
    }
    let history = client
        .query_one("SELECT to_regclass('pgbench_history') IS NOT NULL", &[])
        .await
        .ok()?;
    if !history.get::<_, bool>(0) {
        return None;
    }
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers),
                    (SELECT count(*) FROM pgbench_accounts)",
            &[],
        )
        .await
        .ok()?;
    Some((row.get(0), row.get(1), row.get(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, weight: u32, statements: &[&str]) -> SqlScript {
        SqlScript {
            name: name.into(),
            weight,
            statements: statements.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn placeholders_become_dollar_parameters_shared_within_a_script() {
        let (scripts, params) = compile(&[tpcb_script()], &tpcb_params(2)).unwrap();
        let s = &scripts[0];
        assert_eq!(
            s.statements[0].sql,
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"
        );
        assert_eq!(
            s.statements[4].sql,
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"
        );
        // delta and aid are the same values in every statement of the transaction.
        let names: Vec<&str> = s.uses.iter().map(|&p| params[p].name.as_str()).collect();
        assert_eq!(names, ["delta", "aid", "tid", "bid"]);
        assert_eq!(s.statements[0].slots, [0, 1]);
        assert_eq!(s.statements[1].slots, [1]);
        assert_eq!(s.statements[4].slots, [2, 3, 1, 0]);
        let steps: Vec<&str> = s.statements.iter().map(|c| c.step).collect();
        assert_eq!(
            steps,
            [
                "tpcb: UPDATE pgbench_accounts",
                "tpcb: SELECT pgbench_accounts",
                "tpcb: UPDATE pgbench_tellers",
                "tpcb: UPDATE pgbench_branches",
                "tpcb: INSERT pgbench_history"
            ]
        );
        // The TPC-B ranges at scale 2.
        let range = |n: &str| {
            let p = params.iter().find(|p| p.name == n).unwrap();
            (p.min, p.max)
        };
        assert_eq!(range("aid"), (1, 200_000));
        assert_eq!(range("bid"), (1, 2));
        assert_eq!(range("tid"), (1, 20));
        assert_eq!(range("delta"), (-5000, 5000));
    }

    #[test]
    fn undeclared_parameters_other_than_n_are_errors() {
        let err = compile(
            &[script(
                "q",
                1,
                &["SELECT * FROM t WHERE a = {{a}} AND b = {{ n }}"],
            )],
            &[],
        )
        .unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].contains("`{{a}}` is not declared"), "{err:?}");
        let (scripts, params) = compile(
            &[script("q", 1, &["SELECT body FROM docs WHERE id = {{n}}"])],
            &[],
        )
        .unwrap();
        assert_eq!(
            scripts[0].statements[0].sql,
            "SELECT body FROM docs WHERE id = $1"
        );
        assert_eq!((params[0].min, params[0].max), DEFAULT_N);
        let bad = SqlParam {
            name: "x".into(),
            min: 5,
            max: 1,
            zipf_exponent: None,
        };
        let err = compile(&[script("q", 1, &["SELECT {{x}}"])], &[bad]).unwrap_err();
        assert!(err[0].contains("min 5 is above max 1"), "{err:?}");
    }

    #[test]
    fn labels_name_the_verb_and_table() {
        assert_eq!(
            statement_label("select body from docs where id = $1"),
            "SELECT docs"
        );
        assert_eq!(statement_label("DELETE FROM t WHERE x = 1"), "DELETE t");
        assert_eq!(
            statement_label("INSERT INTO \"h\"(a) VALUES (1)"),
            "INSERT h"
        );
        assert_eq!(statement_label("SELECT 1"), "SELECT 1");
        assert_eq!(statement_label("VACUUM"), "VACUUM");
    }

    #[tokio::test]
    async fn scripts_are_drawn_by_weight_and_repeat_for_an_id() {
        let spec = PostgresSpec {
            address: "postgres://127.0.0.1:5432/db".into(),
            user: "u".into(),
            password: Some("secret".into()),
            database: "d".into(),
            builtin: None,
            scripts: vec![
                script("read", 3, &["SELECT v FROM kv WHERE k = {{k}}"]),
                script("write", 1, &["UPDATE kv SET v = v + 1 WHERE k = {{k}}"]),
            ],
            params: vec![SqlParam {
                name: "k".into(),
                min: 10,
                max: 1009,
                zipf_exponent: Some(0.99),
            }],
            setup: vec![],
            seed: 7,
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{spec:?}").contains("secret"));
        let d = PostgresDriver::new(&spec).await.unwrap();
        let mut v = [0i64; MAX_PARAMS];
        let mut reads = 0;
        let mut hot = 0;
        for id in 0..10_000 {
            let s = d.draw(id, &mut v);
            assert!((10..=1009).contains(&v[0]));
            reads += usize::from(s == 0);
            hot += usize::from(v[0] < 20);
            let mut again = [0i64; MAX_PARAMS];
            assert_eq!(d.draw(id, &mut again), s);
            assert_eq!(again[0], v[0]);
        }
        assert!((7_200..7_800).contains(&reads), "{reads}");
        // Ten hottest of 1000 values: about 40 % under Zipf(0.99), 1 % if uniform.
        assert!(hot > 3_000, "{hot}");
    }

    #[test]
    fn integers_are_encoded_as_numeric() {
        let mut out = BytesMut::new();
        Int(-123_450_000).to_sql(&Type::NUMERIC, &mut out).unwrap();
        // 1,2345,0000: weight 2, two digits kept, negative.
        assert_eq!(&out[..], &[0, 2, 0, 2, 0x40, 0, 0, 0, 0, 1, 0x09, 0x29][..]);
        let mut out = BytesMut::new();
        assert!(Int(1 << 40).to_sql(&Type::INT4, &mut out).is_err());
        assert_eq!(host_port("http://127.0.0.1:5432/"), "127.0.0.1:5432");
        assert_eq!(host_port("postgres://u:p@db:6000/x?y=1"), "db:6000");
    }
}
