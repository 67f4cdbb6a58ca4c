//! The `aibench` binary: parse the command line, run, print the error once.

fn main() -> std::process::ExitCode {
    aibench::main_entry()
}
