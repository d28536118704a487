//! Emptying a group by signals, for v1 (which has no cgroup.kill) and for v2
//! kernels before 5.14: freeze so nothing can fork while we read the pid list,
//! SIGKILL every pid, thaw so the kills are delivered, repeat until empty.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{fs, CgroupError, Result, KILL_TIMEOUT};

/// How long each round waits for the killed processes to exit.
const ROUND_WAIT: Duration = Duration::from_millis(100);

/// `path` names the group in errors; `freezer` freezes (true) or thaws
/// (false), `None` when there is no freezer; `pids` lists the group.
/// Bounded by [`KILL_TIMEOUT`], plus at most one freeze timeout.
pub(crate) fn by_signal(
    path: &Path,
    freezer: Option<&dyn Fn(bool) -> Result<()>>,
    pids: &dyn Fn() -> Result<Vec<Pid>>,
) -> Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut freezer = freezer;
    let mut rounds = 0;
    loop {
        if pids()?.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        rounds += 1;
        if let Some(freeze) = freezer {
            // A freeze that times out (a task stuck in the kernel, D state)
            // would time out every round: go on without the freezer, as
            // SIGKILL still reaches the others.
            if freeze(true).is_err() {
                let _ = freeze(false);
                freezer = None;
            }
        }
        let listed = pids();
        let sent = listed.as_ref().map_or(Ok(()), |l| sigkill_all(path, l));
        if let Some(thaw) = freezer {
            thaw(false)?;
        }
        sent?;
        listed?;
        let _ = fs::wait_until(path, "no processes", ROUND_WAIT, || Ok(pids()?.is_empty()));
    }
    Err(CgroupError::NotEmpty {
        path: path.to_owned(),
        pids: pids()?.iter().map(|p| p.as_raw()).collect(),
        rounds,
        what: "freeze, SIGKILL, thaw",
    })
}

fn sigkill_all(path: &Path, pids: &[Pid]) -> Result<()> {
    for &pid in pids {
        match kill(pid, Signal::SIGKILL) {
            // Gone between the listing and the kill: what we wanted.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(err) => return Err(CgroupError::Signal { pid: pid.as_raw(), path: path.to_owned(), err }),
        }
    }
    Ok(())
}
