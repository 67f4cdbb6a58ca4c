//! The one way aibench starts a child that must not outlive it: services, Prometheus, load
//! client processes, Slurm helpers.
//!
//! [`die_with_parent`] returns the code to run in the child between `fork` and `exec`: its own
//! process group (so that a terminal's Ctrl-C reaches aibench alone, which then stops children
//! in order, and so that the whole group can be signalled), and a parent-death signal, with
//! the race closed where the parent died before the signal was armed. The parent is the thread
//! that spawned the child: spawn from a thread that lives as long as the child should (the
//! runner spawns from the main thread).

use std::io;

/// The `pre_exec` hook: a new process group, then `signal` when the parent dies. Pass it to
/// `std::process::Command::pre_exec` or `tokio::process::Command::pre_exec`.
///
/// Only async-signal-safe calls (setpgid, prctl, getppid, kill, getpid) run in it.
pub fn die_with_parent(signal: libc::c_int) -> impl FnMut() -> io::Result<()> + Send + Sync {
    move || {
        // SAFETY: these libc calls are async-signal-safe and touch only the child.
        unsafe {
            if libc::setpgid(0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), signal);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    /// The child runs in a process group of its own.
    #[test]
    fn the_child_leads_its_own_group() {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "ps -o pgid= -p $$"]);
        // SAFETY: the hook is async-signal-safe.
        unsafe {
            cmd.pre_exec(super::die_with_parent(libc::SIGTERM));
        }
        let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let pgid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(pgid, pid);
    }
}
