//! What each service kind runs by default, from its spec ([`aibench_recipe::kinds`]): command,
//! health check, metrics endpoint, named ports, the user it runs as, where its programs are.

use aibench_recipe::{ArgValue, HealthCheck, Service};

#[derive(Clone, Debug)]
pub struct KindDefaults {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub setup: Vec<Vec<String>>,
    pub health: HealthCheck,
    pub health_path: Option<String>,
    pub health_timeout_s: f64,
    pub metrics_path: Option<String>,
    /// Named ports the command needs besides the main one (`${AIBENCH_PORT_<NAME>}`).
    pub named_ports: Vec<&'static str>,
    /// The system user the setup commands and the service run as when aibench runs as root,
    /// for programs that refuse root (PostgreSQL's `initdb` and `postgres`); that user then
    /// owns the data directory.
    pub run_as: Option<&'static str>,
    /// Folders searched for the programs after PATH, a `*` standing for a version (the
    /// highest first): Debian keeps PostgreSQL's server programs in
    /// `/usr/lib/postgresql/<version>/bin`, off PATH.
    pub program_dirs: Vec<&'static str>,
}

/// The defaults for a service's kind, with its model filled in.
pub fn defaults(s: &Service) -> KindDefaults {
    let spec = s.kind.spec();
    let command = (spec.command)(s);
    KindDefaults {
        argv: command.argv,
        env: command.env,
        setup: command.setup,
        health: spec.health,
        health_path: spec.health_path.map(String::from),
        health_timeout_s: spec.health_timeout_s,
        metrics_path: spec.metrics_path.map(String::from),
        named_ports: spec.named_ports.to_vec(),
        run_as: spec.run_as,
        program_dirs: spec.program_dirs.to_vec(),
    }
}

/// A word for `sh -c`: as it is when it needs no quoting, single-quoted otherwise (`${VAR}`
/// references stay unquoted, to be expanded when the service starts).
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,${}".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Append the service's `args` (`--key value`, `true` as a bare flag) and `extra_args`.
pub fn render_args(s: &Service, mut argv: Vec<String>) -> Vec<String> {
    for (key, value) in &s.args {
        let flag = if key.starts_with('-') {
            key.clone()
        } else {
            format!("--{key}")
        };
        match value {
            ArgValue::Bool(true) => argv.push(flag),
            ArgValue::Bool(false) => {}
            ArgValue::Int(i) => argv.extend([flag, i.to_string()]),
            ArgValue::Float(f) => argv.extend([flag, f.to_string()]),
            ArgValue::Text(t) => argv.extend([flag, t.clone()]),
        }
    }
    argv.extend(s.extra_args.iter().cloned());
    argv
}

/// The kind's work between health and load (a model pull), for every platform to run.
pub fn prepare_steps(s: &Service) -> Vec<crate::PrepareStep> {
    (s.kind.spec().prepare)(s)
}

#[cfg(test)]
mod tests {
    fn service(kind: &str) -> aibench_recipe::Service {
        let yaml = format!("name: t\nservices:\n  - name: s\n    kind: {kind}\n");
        let loaded = aibench_recipe::load_str("r.yaml", &yaml, &|_: &str| None)
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        loaded.recipe.services[0].clone()
    }

    #[test]
    fn postgres_runs_as_its_own_user_and_is_looked_for_where_debian_keeps_it() {
        let d = super::defaults(&service("postgres"));
        assert_eq!(d.run_as, Some("postgres"));
        assert_eq!(d.program_dirs, ["/usr/lib/postgresql/*/bin"]);
        assert_eq!(d.setup[0][0], "initdb");
        let r = super::defaults(&service("redis"));
        assert_eq!(r.run_as, None);
        assert!(r.program_dirs.is_empty());
    }
}
