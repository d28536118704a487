//! The child side: PID 1 of the jail, and the program it starts.
//!
//! The clone child becomes the jail's init. It builds the profile's part of
//! the jail (the base of the root; its parent sets up its network), waits
//! for the run's part (see [`crate::handover`]), adds it (the run's mounts,
//! then pivot_root; host name, cgroup, cgroup namespace), starts the
//! program (a child
//! sharing init's memory until its execve), locks itself down, then
//! reaps and forwards signals until the program ends, and reports its exit
//! on the status pipe. When init exits, the kernel kills
//! everything left in the jail's pid namespace, so nothing the program
//! forked can outlive it.
//!
//! The program's child goes from init's privileges to none, in an order where
//! each step still has what it needs: rlimits, ids, the remaining
//! capability sets, no_new_privs, fds, seccomp (last, so the set-up itself
//! is not filtered), execve. Init empties the bounding and ambient sets
//! (which needs CAP_SETPCAP) before forking it, for both.
//!
//! Everything here runs in a process forked from a single-threaded parent,
//! so allocating is safe; any failure is sent to the parent as a
//! [`SetupFailure`] before exec, never a silent exit.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use crate::mount::{self, MountOp};
use crate::placement::CpuPlacement;
use crate::profile::Rlimit;
use crate::report::{ChildMessage, SetupFailure};
use crate::seccomp::CompiledSeccomp;
use crate::{caps, handover, sys};

/// What the child needs of the jail itself (its profile's part), prepared
/// by the parent before clone. The run's part (program, stdio, host name,
/// binds) comes later over the sync socket ([`crate::handover`]).
pub struct ChildPlan<'a> {
    /// The profile's part of the root.
    pub mounts: &'a [MountOp],
    /// The parent's handles on the profile's bind sources
    /// ([`mount::Plan::source_fds`]): kept until the base of the root is
    /// built, then closed.
    pub bind_source_fds: Vec<RawFd>,
    pub uid: u32,
    pub gid: u32,
    pub rlimits: &'a [Rlimit],
    pub cwd: &'a Path,
    pub seccomp: &'a CompiledSeccomp,
    /// The child's end of a SEQPACKET socket: "G" from the parent once the
    /// id maps are written, then the run's part; end of file if the parent
    /// died or dropped the jail unstarted.
    pub sync_fd: RawFd,
    /// Write end, close-on-exec: set-up failures; EOF at execve.
    pub setup_fd: RawFd,
    /// Write end: the program's exit.
    pub status_fd: RawFd,
    /// cgroup v1: move into the jail's group (by the files that come with
    /// the run's part) before forking the program. On v2 clone3 placed the
    /// child.
    pub join_cgroup: bool,
    /// The caller's CPUs, given back once released (the parent kept us off
    /// its own CPU until then: see [`crate::placement`]).
    pub cpus: Option<CpuPlacement>,
}

/// The program to start, from the run's part.
struct Program {
    argv: Vec<CString>,
    env: Vec<CString>,
    path_var: String,
    /// Replacement stdin, stdout and stderr, if any.
    stdio: [Option<RawFd>; 3],
}

/// Signals init passes on to the program (anything else sent to a pid
/// namespace's init is ignored unless it has a handler).
const FORWARDED: &[Signal] =
    &[Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

static PROGRAM_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = PROGRAM_PID.load(Ordering::Relaxed);
    if pid > 0 {
        if let Ok(signal) = Signal::try_from(sig) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

/// The clone child's entry point. Never returns.
pub fn run(plan: &ChildPlan<'_>) -> ! {
    let failure = match init_main(plan) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report_setup_failure(plan.setup_fd, &failure);
    sys::exit_now(failure.exit_code)
}

fn report_setup_failure(fd: RawFd, failure: &SetupFailure) {
    // A failed write has no one to tell: the parent then sees EOF and the
    // exit code.
    let _ = sys::file_view(fd).write_all(&ChildMessage::SetupFailed(failure.clone()).to_line());
}

fn failed(step: &str, what: impl std::fmt::Display, err: impl Into<std::io::Error>) -> SetupFailure {
    let err: std::io::Error = err.into();
    SetupFailure { step: step.into(), message: format!("{what}: {err}"), errno: err.raw_os_error(), exit_code: 125 }
}

enum Never {}

fn init_main(plan: &ChildPlan<'_>) -> Result<Never, SetupFailure> {
    // Keep only our pipes and the profile's bind sources; the parent's
    // other fds (its id-range lock, its sockets) are none of the jail's
    // business.
    let mut keep = vec![plan.sync_fd, plan.setup_fd, plan.status_fd];
    keep.extend(&plan.bind_source_fds);
    sys::close_all_from_except(3, &keep).map_err(|e| failed("close_fds", "close_range", e))?;

    // Wait until the parent has written our id maps. EOF means it died
    // first.
    let mut byte = [0u8; 1];
    match sys::file_view(plan.sync_fd).read(&mut byte) {
        Ok(1) => {}
        Ok(_) => {
            return Err(failed(
                "wait_for_parent",
                "the parent went away",
                std::io::Error::from_raw_os_error(libc::EPIPE),
            ))
        }
        Err(e) => return Err(failed("wait_for_parent", "reading the sync socket", e)),
    }
    if let Some(cpus) = &plan.cpus {
        cpus.restore_in_child();
    }

    // Become root of the new user namespace (so what we create is owned by
    // the jail's root, not the overflow id), with no supplementary groups.
    nix::unistd::setgroups(&[]).map_err(|e| failed("ids", "setgroups([])", e))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| failed("ids", "setresgid(0)", e))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| failed("ids", "setresuid(0)", e))?;

    // Die with the parent: SIGKILL to a pid namespace's init takes the whole
    // jail down with it. Set only now, because the kernel clears it on any
    // change of credentials (the setres*id above); then make sure the parent
    // did not die before it was set: its end of the status pipe would be
    // closed, which poll reports as POLLERR on ours.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| failed("die_with_parent", "prctl", e))?;
    if parent_is_gone(plan.status_fd) {
        sys::exit_now(125);
    }
    let _ = nix::sys::prctl::set_name(c"ccos-init");

    // The profile's part: the base of the root. (The network is the
    // parent's business: see `net::bring_up_from_outside`.)
    mount::build_base_in_child(plan.mounts)?;
    for &fd in &plan.bind_source_fds {
        // SAFETY: inherited from the parent for this process alone, and
        // nothing here uses it once the base of the root is built.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }

    // The run's part, when the parent sends it: the rest of the root, which
    // we then enter, and the host name.
    // SAFETY: the plan's sync fd is open in this process until it is
    // closed below, after its last use.
    let sync = unsafe { std::os::fd::BorrowedFd::borrow_raw(plan.sync_fd) };
    let run = handover::receive(sync).map_err(|e| failed("wait_for_run", "receiving the run's part", e))?;
    mount::finish_root_in_child(&run.part.mounts)?;
    drop(run.trees);
    nix::unistd::sethostname(&run.part.hostname).map_err(|e| failed("hostname", &run.part.hostname, e))?;

    // The jail's cgroup (v1), which the parent made meanwhile; then a
    // cgroup namespace rooted at it, so the jail sees its cgroup as "/".
    if plan.join_cgroup {
        join_cgroup(run.cgroup_files)?;
    }
    let _ = nix::unistd::close(plan.sync_fd);
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| failed("cgroup_namespace", "unshare", e))?;

    // The program.
    let strings = |items: Vec<String>, what: &str| {
        items
            .into_iter()
            .map(|s| {
                CString::new(s).map_err(|e| failed("exec", format!("the program's {what}"), std::io::Error::other(e)))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let program = Program {
        argv: strings(run.part.argv, "arguments")?,
        env: strings(run.part.env, "environment")?,
        path_var: run.part.path_var,
        stdio: run.stdio.each_ref().map(|fd| fd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd)),
    };
    // The bounding set goes now, once for both: the program inherits it
    // empty, and init needs none of it (what it keeps, CAP_KILL, stays in
    // its permitted set). Each drop is a new set of credentials, freed
    // after an RCU grace period; 41 of them per process add up.
    caps::drop_bounding_and_ambient().map_err(|e| failed("capabilities", "dropping the bounding set", e))?;
    let program = sys::spawn_sharing_memory(&mut || exec_program(plan, &program))
        .map_err(|e| failed("fork", "starting the program", e))?;
    PROGRAM_PID.store(program.as_raw(), Ordering::Relaxed);
    // From now on only the program holds the set-up pipe: the parent reads
    // EOF exactly when its execve succeeded.
    let _ = nix::unistd::close(plan.setup_fd);

    // Init keeps nothing but CAP_KILL (to forward signals to the program,
    // which runs as another uid), cannot be ptraced, cannot regain more.
    lock_down_init().map_err(|e| failed("init_lockdown", "dropping init's capabilities", e))?;
    for signal in FORWARDED {
        let _ = sys::set_signal_handler(*signal, forward_signal);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);

    let message = reap_until_program_ends(program);
    let _ = sys::file_view(plan.status_fd).write_all(&message.to_line());
    // Exiting kills whatever is left in the pid namespace.
    sys::exit_now(0)
}

/// Moves this process into the jail's cgroup on every v1 hierarchy: "0"
/// into each `tasks` file the parent sent. A thread moving itself skips the
/// global lock that moving another process by pid takes (an RCU grace
/// period, about 10 ms); and the kernel checks the write against the
/// opener's credentials, the parent's, who sent them with the run's part.
fn join_cgroup(files: Vec<std::fs::File>) -> Result<(), SetupFailure> {
    if files.is_empty() {
        let gone = std::io::Error::from_raw_os_error(libc::EPIPE);
        return Err(failed("cgroup", "the parent sent no cgroup files", gone));
    }
    for (i, mut file) in files.into_iter().enumerate() {
        file.write_all(b"0").map_err(|e| failed("cgroup", format!("joining the jail's cgroup (hierarchy {i})"), e))?;
    }
    Ok(())
}

fn parent_is_gone(status_fd: RawFd) -> bool {
    let fd = sys::file_view(status_fd);
    let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&*fd), nix::poll::PollFlags::POLLOUT)];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok()
        && fds[0].revents().is_some_and(|r| r.contains(nix::poll::PollFlags::POLLERR))
}

fn lock_down_init() -> std::io::Result<()> {
    nix::sys::prctl::set_dumpable(false)?;
    caps::keep_only(&[::caps::Capability::CAP_KILL])?;
    nix::sys::prctl::set_no_new_privs()?;
    Ok(())
}

/// Reaps every child (orphans re-parent to us) until the program ends.
fn reap_until_program_ends(program: Pid) -> ChildMessage {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == program => {
                return ChildMessage::Exited { code: Some(code), signal: None }
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == program => {
                return ChildMessage::Exited { code: None, signal: Some(sig as i32) }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // No children left without having seen the program: cannot
            // happen, but never spin.
            Err(_) => return ChildMessage::Exited { code: None, signal: None },
        }
    }
}

/// The program's child: from init's privileges to none, then execve. It
/// shares init's memory until then (see [`sys::spawn_sharing_memory`]).
fn exec_program(plan: &ChildPlan<'_>, program: &Program) -> ! {
    let failure = match drop_privileges_and_exec(plan, program) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report_setup_failure(plan.setup_fd, &failure);
    sys::exit_now(failure.exit_code)
}

fn drop_privileges_and_exec(plan: &ChildPlan<'_>, run: &Program) -> Result<Never, SetupFailure> {
    // Nothing of init's signal handling, and a session of its own: no
    // controlling terminal, so TIOCSTI into the caller's terminal fails.
    sys::reset_signal_dispositions();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    nix::unistd::setsid().map_err(|e| failed("session", "setsid", e))?;

    // The program's stdio.
    for (target, fd) in run.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            sys::dup2(*fd, target as RawFd).map_err(|e| failed("stdio", format!("dup2 onto fd {target}"), e))?;
        }
    }

    // Resource limits (before the uid switch: raising a hard limit needs
    // CAP_SYS_RESOURCE).
    for limit in plan.rlimits {
        sys::set_rlimit(limit.resource, limit.value)
            .map_err(|e| failed("rlimits", format!("rlimit {}", limit.name), e))?;
    }

    // The bounding and ambient sets are empty already: init emptied them
    // before forking us.

    // The program's ids: no supplementary groups, then gid, then uid.
    nix::unistd::setgroups(&[]).map_err(|e| failed("ids", "setgroups([])", e))?;
    let gid = Gid::from_raw(plan.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| failed("ids", format!("setresgid({})", plan.gid), e))?;
    let uid = Uid::from_raw(plan.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| failed("ids", format!("setresuid({})", plan.uid), e))?;

    // No capabilities at all (a uid switch away from 0 clears them; this
    // also covers a profile that runs the program as the jail's root).
    caps::keep_only(&[]).map_err(|e| failed("capabilities", "clearing all sets", e))?;

    // No execve may ever grant privileges again (setuid bits, file caps).
    nix::sys::prctl::set_no_new_privs().map_err(|e| failed("no_new_privs", "prctl", e))?;

    nix::unistd::chdir(plan.cwd).map_err(|e| failed("cwd", plan.cwd.display(), e))?;
    let program = find_program(run)?;

    // Every fd but stdio closes at execve; the set-up pipe stays usable
    // until then to report an exec failure.
    sys::cloexec_from(3).map_err(|e| failed("close_fds", "close_range", e))?;

    // Seccomp last: everything above ran unfiltered.
    plan.seccomp.install().map_err(|e| failed("seccomp", "installing the filter", e))?;

    let err = match nix::unistd::execve(&program, &run.argv, &run.env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let exit_code = if err == nix::errno::Errno::ENOENT { 127 } else { 126 };
    Err(SetupFailure {
        step: "exec".into(),
        message: format!("executing {}: {err}", program.to_string_lossy()),
        errno: Some(err as i32),
        exit_code,
    })
}

/// Looks the program up on PATH when it has no `/`, like execvp, but with a
/// precise error: exit code 127 and the name and PATH searched.
fn find_program(program: &Program) -> Result<CString, SetupFailure> {
    let name = program.argv[0].to_string_lossy().into_owned();
    let not_found = |detail: String| SetupFailure {
        step: "find_program".into(),
        message: detail,
        errno: Some(libc::ENOENT),
        exit_code: 127,
    };
    if name.contains('/') {
        return if Path::new(&name).exists() {
            Ok(program.argv[0].clone())
        } else {
            Err(not_found(format!("program {name} does not exist in the jail")))
        };
    }
    for dir in program.path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = PathBuf::from(dir).join(&name);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() && candidate.is_file() {
            return CString::new(candidate.into_os_string().into_encoded_bytes())
                .map_err(|_| not_found(format!("program {name}: path has a NUL byte")));
        }
    }
    Err(not_found(format!("program {name:?} not found in the jail (searched PATH={})", program.path_var)))
}
