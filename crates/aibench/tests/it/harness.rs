//! A small builder for running the real binary in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aibench"))
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// No panic message, whatever the outcome.
    pub fn assert_no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked"),
            "aibench panicked:\n{}",
            self.stderr
        );
        self
    }
}

pub struct Cmd {
    cmd: Command,
}

#[allow(dead_code)] // some helpers serve only some test modules
impl Cmd {
    pub fn new(args: &[&str]) -> Cmd {
        let mut cmd = Command::new(bin());
        cmd.args(args).current_dir(workspace()).env("NO_COLOR", "1");
        Cmd { cmd }
    }

    pub fn dir(mut self, dir: &Path) -> Cmd {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.cmd.env(k, v);
        self
    }

    pub fn run(mut self) -> Run {
        let out = self.cmd.output().expect("run aibench");
        let run = Run::from(out);
        run.assert_no_panic();
        run
    }
}

pub fn aibench(args: &[&str]) -> Run {
    Cmd::new(args).run()
}
