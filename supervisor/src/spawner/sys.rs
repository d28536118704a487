//! The spawner's only `unsafe`: thin wrappers, one call each, with the
//! invariant each relies on written next to it.

use std::io;
use std::os::fd::OwnedFd;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::ForkResult;

/// fork(2) through libc, so its at-fork bookkeeping runs (the child is a
/// long-lived process running ordinary Rust code, unlike a child that only
/// sets itself up and execs).
///
/// The caller must have checked that the process is single-threaded
/// ([`super::ensure_single_threaded`]).
pub(crate) fn fork_single_threaded() -> io::Result<ForkResult> {
    // SAFETY: the caller checked that this process has one thread, so the
    // child cannot inherit a lock (malloc's, stdio's) held by another
    // thread; the child may then run any code, as a fork of a
    // single-threaded process may.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// Restores SIGCHLD's default action, so that children stay waitable (an
/// inherited SIG_IGN would make the kernel reap jails before wait4 sees
/// them) and the jails' inits start with it too.
pub(crate) fn default_sigchld() -> io::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so there is no handler code to
    // be async-signal-unsafe.
    unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    Ok(())
}

/// Registers `fd` with the current tokio runtime's reactor.
pub(crate) fn async_fd(fd: OwnedFd, interest: tokio::io::Interest) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open fd that only it closes, and its
    // `as_raw_fd` is the same fd for as long as it lives inside the
    // AsyncFd, which is what registration requires.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}
