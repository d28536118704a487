//! Runs each check in a forked child, so that whatever a check manages to do
//! (a new namespace, a changed root, a raised capability, a setuid) dies with
//! that child and cannot colour the checks after it.
//!
//! The child sends its `Report` back as one JSON line over a pipe. A child
//! that dies before reporting (seccomp's SIGSYS kill, a crash, the timeout)
//! is reported from its wait status instead.

use crate::outcome::{Outcome, Report};
use crate::sys;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, read, write, ForkResult, Pid};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// No check needs more than a few seconds (the slowest is a TCP connect with
/// a 3 s timeout); a child still running after this is killed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Run `check` in a child process and return what it reported.
pub fn run(name: &str, check: &dyn Fn() -> Outcome) -> Report {
    // Anything buffered now would be written twice, once by each process.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let (rd, wr) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Report::new(name, probe_failure(e, "pipe2")),
    };
    // SAFETY: the probe is single-threaded, so the child inherits no lock
    // held by another thread and may run ordinary Rust code.
    match unsafe { fork() } {
        Err(e) => Report::new(name, probe_failure(e, "fork")),
        Ok(ForkResult::Child) => {
            drop(rd);
            // If the probe dies, this child must not outlive it.
            let _ = prctl::set_pdeathsig(Signal::SIGKILL);
            let report = Report::new(name, check());
            let mut line = serde_json::to_vec(&report).unwrap_or_default();
            line.push(b'\n');
            write_all(&wr, &line);
            sys::exit_now(0)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            collect(name, child, rd)
        }
    }
}

fn probe_failure(e: Errno, what: &str) -> Outcome {
    Outcome::refused(e, format!("probe could not run the check: {what} failed: {}", e.desc()))
}

fn write_all(fd: &OwnedFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn collect(name: &str, child: Pid, rd: OwnedFd) -> Report {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut out = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(rd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
        let mut buf = [0u8; 4096];
        match read(&rd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // The report is one line; a grandchild the check left behind
                // may still hold the pipe open, so do not wait for EOF.
                if out.ends_with(b"\n") {
                    break;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    if timed_out {
        let _ = kill(child, Signal::SIGKILL);
    }
    let status = loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    if let Ok(report) = serde_json::from_slice::<Report>(&out) {
        return report;
    }
    let detail = match status {
        _ if timed_out => format!("check did not finish within {}s and was killed", CHECK_TIMEOUT.as_secs()),
        Ok(WaitStatus::Signaled(_, Signal::SIGSYS, _)) => {
            "check process was killed by SIGSYS before reporting (seccomp kill/trap action)".to_owned()
        }
        Ok(WaitStatus::Signaled(_, sig, _)) => {
            format!("check process was killed by {sig} before reporting")
        }
        Ok(WaitStatus::Exited(_, code)) => {
            format!("check process exited with status {code} without reporting")
        }
        Ok(other) => format!("check process ended without reporting: {other:?}"),
        Err(e) => format!("waitpid failed: {}", e.desc()),
    };
    Report::new(name, Outcome::contained(detail))
}
