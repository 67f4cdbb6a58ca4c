//! One module per subcommand. Each has an `Args` struct (clap derive) and a `run` function that
//! returns how it ended (`exit::Outcome`) or a typed error; `exit` turns either into the code.

pub mod bench;
pub mod client;
pub mod compare;
pub mod completions;
pub mod export;
pub mod plan;
pub mod report;
pub mod runs;
pub mod schema;
pub mod selfcheck;
pub mod services;
pub mod sim;
pub mod validate;

use std::io::IsTerminal;
use std::path::Path;

use aibench_recipe::{LoadError, Loaded};

/// Colour on stderr when it is a terminal and `NO_COLOR` is unset.
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Load a recipe; print its warnings (or errors) to stderr.
pub fn load_recipe(path: &Path) -> Result<Loaded, LoadError> {
    match aibench_recipe::load_file(path) {
        Ok(loaded) => {
            if !loaded.warnings.items.is_empty() {
                eprint!("{}", loaded.warnings.render(&loaded.source, stderr_color()));
            }
            Ok(loaded)
        }
        Err(e) => {
            eprint!("{}", e.render(stderr_color()));
            let n = e.diagnostics.error_count();
            eprintln!(
                "{}: {} error{} found; the recipe was not run",
                e.source.name,
                n,
                if n == 1 { "" } else { "s" }
            );
            Err(e)
        }
    }
}
