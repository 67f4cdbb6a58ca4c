//! aibench: deploy AI-factory services, drive load at them, and report how they perform.
//!
//! `main` stays thin: it parses the command line with [`Cli`] and hands over to [`run`], which
//! returns the process exit code. Tests call [`run`] in-process or run the real binary.

pub mod cli;
pub mod cmd;
pub mod exit;
pub mod run;
pub mod table;

use std::process::ExitCode;

pub use exit::Outcome;

use clap::Parser;

pub use cli::{Cli, Command};

/// Entry point used by the binary: parse arguments, run, print the error once, and turn the
/// outcome into the exit code (see [`exit`]).
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            exit::print(&err);
            exit::code_of(&err).into()
        }
    }
}

/// Run one parsed command line: how it ended, or why it could not.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    if cli.command.only_prints() {
        exit::die_on_broken_pipe();
    }
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Client(args) => cmd::client::run(args),
        Command::Up(args) => cmd::services::up(args),
        Command::Services(args) => cmd::services::services(args),
        Command::Down(args) => cmd::services::down(args),
        Command::Watch(args) => cmd::services::watch(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Compare(args) => cmd::compare::run(args),
        Command::Runs(args) => cmd::runs::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Schema(args) => cmd::schema::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Selfcheck(args) => cmd::selfcheck::run(args),
        Command::Completions(args) => cmd::completions::run(args),
    }
}
