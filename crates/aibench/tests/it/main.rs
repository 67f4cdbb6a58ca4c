//! Integration tests: they run the real `aibench` binary. One test binary, one module per area.

mod bench;
mod exit_codes;
mod factory;
mod faults;
mod harness;
mod prepare;
mod recipe;
mod report;
mod run;
mod slurm;
mod snapshots;
mod verdicts;
