//! Exit codes, so that scripts and CI can act on the outcome.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the run finished but failed its gate: a regression, an SLO miss, a failed run |
//! | 2 | bad input: an invalid recipe or bad arguments (clap also uses 2) |
//! | 3 | an internal fault or an environment problem (I/O, a service that could not start) |
//! | 130 | interrupted by Ctrl-C or SIGTERM; partial results were written |

pub const SUCCESS: u8 = 0;
pub const FAILED: u8 = 1;
pub const INVALID_INPUT: u8 = 2;
pub const INTERNAL: u8 = 3;
pub const INTERRUPTED: u8 = 130;
