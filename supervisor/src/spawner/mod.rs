//! The spawner: a single-threaded process, forked from the daemon before
//! the async runtime starts, that makes every jail and is the parent of
//! every jail (see ../shared/DESIGN.md, "Process model").
//!
//! Namespaces cannot be made from a multi-threaded process, and a fork of
//! one may run only async-signal-safe code; so the daemon forks this
//! process once, at start-up, and asks it for jails over a socketpair.
//!
//! ```text
//! fn main() {                                   // still one thread
//!     let handle = Spawner::fork_before_runtime(config)?;
//!     runtime.block_on(async {
//!         let (client, events) = handle.connect()?;
//!         let spawned = client.spawn(request).await?;   // + the jail's pidfd
//!         ... events.recv().await                       // Exited { run_id, report }
//!     })
//! }
//! ```
//!
//! Following one spawn: [`client`] (daemon side, async) -> [`protocol`]
//! (one JSON message each way, [`ccos_jail::fdpass`] for the pidfd) -> [`server`] (the
//! spawner's poll loop) -> `ccos_jail::spawn`.
//!
//! Lifetime: the spawner stops serving when the daemon's end of the socket
//! closes (the daemon dropped its client, or died), or when the daemon dies
//! while the socket is held elsewhere (PR_SET_PDEATHSIG). It then kills and
//! reaps every jail it holds, removes their cgroups and exits; with
//! [`SpawnerConfig::keep_on_exit`] (`--on-shutdown keep`) it instead stays,
//! as their parent, until the last one ends. A jail never outlives the
//! spawner itself: the jail library's init dies with its parent.

pub mod client;
mod live;
pub mod profile_set;
pub mod protocol;
mod ready_jail;
mod server;
mod sys;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ccos_jail::cgroup::{CgroupConfig, Mode};
use ccos_jail::fdpass;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{ForkResult, Pid};

pub use client::{Spawned, SpawnerClient, SpawnerEvent, SpawnerEvents, SpawnerExit};
pub use protocol::{Bind, ErrorKind, LoadedProfile, RunLimits, RunUsage, SpawnRequest};

/// How the spawner is set up.
#[derive(Debug, Clone)]
pub struct SpawnerConfig {
    /// Where the runs' cgroups go (detected and opened once, at start).
    pub cgroup: CgroupConfig,
    /// Leave the jails running when the daemon goes away
    /// (`--on-shutdown keep`): the spawner stays, without a socket, as their
    /// parent (enforcing time limits, logging each end to stderr) and exits
    /// after the last one. By default they are killed.
    pub keep_on_exit: bool,
    /// How long [`Spawner::fork_before_runtime`] waits for the spawner to
    /// say it is ready (it opens the cgroup root and removes stale groups).
    pub start_timeout: Duration,
}

impl Default for SpawnerConfig {
    fn default() -> Self {
        SpawnerConfig { cgroup: CgroupConfig::default(), keep_on_exit: false, start_timeout: Duration::from_secs(30) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnerError {
    #[error(
        "the spawner must be forked while the process is single-threaded ({threads} threads now): call \
         Spawner::fork_before_runtime before starting the async runtime or any thread"
    )]
    MultiThreaded { threads: u32 },
    #[error("reading /proc/self/status to count threads: {0}")]
    CountThreads(std::io::Error),
    #[error("creating the spawner's socketpair: {0}")]
    Socketpair(nix::Error),
    #[error("forking the spawner: {0}")]
    Fork(std::io::Error),
    #[error("opening a pidfd for the spawner (pid {pid}): {source}")]
    Pidfd { pid: i32, source: std::io::Error },
    #[error("the spawner did not start: {0}")]
    Start(String),
    #[error("the spawner did not say it was ready within {0:?}")]
    StartTimeout(Duration),
    #[error("SpawnerHandle::connect must be called inside a tokio runtime with IO enabled")]
    NoRuntime,
    #[error("the spawner is gone (it exited, or the client was closed)")]
    Gone,
    #[error("the spawner refused {what} for run {run_id:?} ({kind:?}): {message}")]
    Refused { what: &'static str, run_id: Option<String>, kind: ErrorKind, message: String },
    #[error("the spawner answered {what} with an unexpected message: {reply}")]
    Protocol { what: &'static str, reply: String },
    #[error(transparent)]
    Message(#[from] protocol::ProtocolError),
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
}

/// Forks the spawner (an associated function only: the spawner itself is
/// a process, not a value).
pub struct Spawner;

impl Spawner {
    /// Forks the spawner and waits until it is ready. Call it from `main`
    /// while the process has a single thread: before building the tokio
    /// runtime (so not from `#[tokio::main]`), and before anything starts a
    /// thread. Refused otherwise.
    ///
    /// The spawner dies with the thread that calls this (PR_SET_PDEATHSIG
    /// follows the forking thread), so call it from the main thread.
    pub fn fork_before_runtime(config: SpawnerConfig) -> Result<SpawnerHandle, SpawnerError> {
        ensure_single_threaded()?;
        let daemon = nix::unistd::getpid();
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .map_err(SpawnerError::Socketpair)?;
        match sys::fork_single_threaded().map_err(SpawnerError::Fork)? {
            ForkResult::Child => {
                drop(ours);
                server::run(theirs, &config, daemon)
            }
            ForkResult::Parent { child } => {
                drop(theirs);
                let started = SpawnerHandle::wait_ready(child, ours, config.start_timeout);
                if started.is_err() {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                }
                started
            }
        }
    }
}

/// The daemon's end of a running spawner, before the async runtime.
/// Dropping it closes the socket, which ends the spawner.
#[derive(Debug)]
pub struct SpawnerHandle {
    pid: Pid,
    pidfd: OwnedFd,
    sock: OwnedFd,
    cgroup: Mode,
    removed_stale: Vec<String>,
}

impl SpawnerHandle {
    /// Reads the spawner's first message (blocking: there is no runtime
    /// yet): `Ready`, or the `Error` it exits with.
    fn wait_ready(pid: Pid, sock: OwnedFd, timeout: Duration) -> Result<SpawnerHandle, SpawnerError> {
        use protocol::{Reply, ReplyFrame};
        let pidfd =
            ccos_jail::sys::pidfd_open(pid).map_err(|source| SpawnerError::Pidfd { pid: pid.as_raw(), source })?;
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        let millis =
            PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut fds, millis) {
                Ok(0) => return Err(SpawnerError::StartTimeout(timeout)),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SpawnerError::Io { what: "waiting for the spawner", source: e.into() }),
            }
        }
        let mut buf = vec![0u8; protocol::MAX_MESSAGE];
        let got = fdpass::recv(sock.as_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| SpawnerError::Io { what: "reading the spawner's first message", source: e.into() })?;
        if got.len == 0 {
            return Err(SpawnerError::Start("it exited before saying it was ready (see its stderr)".into()));
        }
        match protocol::decode::<ReplyFrame>(&buf[..got.len])?.reply {
            Reply::Ready { cgroup, removed_stale, .. } => Ok(SpawnerHandle { pid, pidfd, sock, cgroup, removed_stale }),
            Reply::Error { message, .. } => Err(SpawnerError::Start(message)),
            other => Err(SpawnerError::Protocol { what: "start-up", reply: format!("{other:?}") }),
        }
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The cgroup version the runs' groups use.
    pub fn cgroup_mode(&self) -> Mode {
        self.cgroup
    }

    /// Empty run groups of dead spawners that were removed at start.
    pub fn removed_stale(&self) -> &[String] {
        &self.removed_stale
    }
}

/// Counts this process's threads the way the kernel does.
fn ensure_single_threaded() -> Result<(), SpawnerError> {
    let threads = ccos_jail::spawn::thread_count().map_err(SpawnerError::CountThreads)?;
    if threads > 1 {
        return Err(SpawnerError::MultiThreaded { threads });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unit-test harness runs tests on threads of its own, so the
    /// check must refuse here; the real fork is tested in tests/spawner.rs.
    #[test]
    fn forking_from_a_threaded_process_is_refused() {
        let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        let err = Spawner::fork_before_runtime(SpawnerConfig::default()).unwrap_err();
        assert!(matches!(err, SpawnerError::MultiThreaded { .. }), "{err}");
        assert!(err.to_string().contains("before starting the async runtime"), "{err}");
    }
}
