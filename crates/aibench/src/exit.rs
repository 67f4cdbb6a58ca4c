//! How a command ended, as the exit code scripts and CI act on. This is the one place outcomes
//! and errors become codes: commands return an [`Outcome`] or an error, and [`code_of`] reads
//! the error's type (never its text).
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: everything ran; no SLO missed, no regression |
//! | 1 | a failed gate: an SLO missed, a regression, a workload whose every request failed, an error budget that ran out |
//! | 2 | bad input: arguments, a recipe that does not validate, a path that is not a run directory, an unknown name or id |
//! | 3 | the environment or aibench itself: a service that did not start or crashed, a missing program, Slurm unreachable, I/O, an internal fault |
//! | 130 | interrupted by Ctrl-C or SIGTERM; what completed was written |
//!
//! Printing commands (`plan`, `runs`, `completions`, ...) whose output pipe closes early end
//! as other Unix tools do, by SIGPIPE (the shell shows 141), without a panic.

use std::process::ExitCode;

pub const SUCCESS: u8 = 0;
pub const FAILED: u8 = 1;
pub const INVALID_INPUT: u8 = 2;
pub const INTERNAL: u8 = 3;
pub const INTERRUPTED: u8 = 130;

/// How a command that did its work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A gate failed: an SLO, a regression, a workload where every request failed.
    Failed,
    /// The run could not do its work (a service did not start or crashed, an internal fault);
    /// what it measured until then is written.
    Broken,
    /// Stopped by Ctrl-C or SIGTERM; what completed is written.
    Interrupted,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => SUCCESS,
            Outcome::Failed => FAILED,
            Outcome::Broken => INTERNAL,
            Outcome::Interrupted => INTERRUPTED,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        ExitCode::from(o.code())
    }
}

/// An error in what the user gave: arguments, a recipe, a name, a path. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BadInput {
    pub message: String,
    /// How to fix it, printed under the error.
    pub help: Option<String>,
}

/// A [`BadInput`] error.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    BadInput {
        message: message.into(),
        help: None,
    }
    .into()
}

/// A [`BadInput`] error with a line on how to fix it.
pub fn bad_input_help(message: impl Into<String>, help: impl Into<String>) -> anyhow::Error {
    BadInput {
        message: message.into(),
        help: Some(help.into()),
    }
    .into()
}

/// An error already shown where it happened (a recipe's located diagnostics); only its exit
/// code is left to give.
#[derive(Debug, thiserror::Error)]
#[error("the problems above")]
pub struct Shown {
    pub code: u8,
}

/// Bad input already shown (exit code 2).
pub fn shown_input() -> anyhow::Error {
    Shown {
        code: INVALID_INPUT,
    }
    .into()
}

/// The exit code of an error, from the types in its chain.
pub fn code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(s) = cause.downcast_ref::<Shown>() {
            return s.code;
        }
        if cause.is::<BadInput>() || cause.is::<aibench_recipe::LoadError>() {
            return INVALID_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<aibench_report::ReportError>() {
            return if e.is_input() {
                INVALID_INPUT
            } else {
                INTERNAL
            };
        }
    }
    INTERNAL
}

/// Print an error the one way: `error: ...`, with its causes and the help line if it has one.
pub fn print(err: &anyhow::Error) {
    if err.chain().any(|c| c.is::<Shown>()) {
        return;
    }
    eprintln!("error: {err:#}");
    if let Some(help) = err
        .chain()
        .find_map(|c| c.downcast_ref::<BadInput>())
        .and_then(|b| b.help.as_deref())
    {
        eprintln!("  help: {help}");
    }
}

/// Let a closed stdout end the process quietly, as it ends `cat` or `ls` (SIGPIPE), instead of
/// a panic in `println!`. Only for commands that print and hold no connection or child.
pub fn die_on_broken_pipe() {
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
