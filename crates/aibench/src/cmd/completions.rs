//! `aibench completions`: shell completion scripts.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::exit::Outcome;
use crate::Cli;

const AFTER_HELP: &str = "\
Examples:
  aibench completions bash > ~/.local/share/bash-completion/completions/aibench
  aibench completions zsh > ~/.zfunc/_aibench
  aibench completions fish > ~/.config/fish/completions/aibench.fish";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "aibench", &mut std::io::stdout());
    Ok(Outcome::Success)
}
