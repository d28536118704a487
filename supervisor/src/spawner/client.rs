//! The daemon's side of the spawner socket, for tokio.
//!
//! One task reads the socket: it hands each reply to the request waiting
//! for it (by request id, through a oneshot channel) and each event
//! (`Exited`, `Lost`) to [`SpawnerEvents`]. Requests are written under a
//! mutex, one message each. When the spawner's socket closes, every request
//! in flight fails with [`SpawnerError::Gone`], the task reaps the spawner
//! and sends [`SpawnerEvent::Gone`], the last event.
//!
//! Dropping the last [`SpawnerClient`] clone (or calling
//! [`SpawnerClient::close`]) closes the daemon's end: the spawner then
//! kills its jails (unless configured to keep them) and exits.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ccos_jail::report::SetupFailure;
use ccos_jail::Report;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use nix::sys::socket::{MsgFlags, Shutdown};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot};

use super::protocol::{
    self, ErrorKind, LoadedProfile, Reply, ReplyFrame, Request, RequestFrame, RequestId, RunUsage, SpawnRequest,
};
use super::{sys, SpawnerError, SpawnerHandle};
use ccos_jail::fdpass::{self, Received};

/// A jail the spawner made.
#[derive(Debug)]
pub struct Spawned {
    pub run_id: String,
    /// The jail init's pid (in the daemon's pid namespace).
    pub pid: Pid,
    /// A pidfd of the jail's init: readable once the jail has ended, and
    /// usable with pidfd_send_signal. Only the spawner reaps the jail.
    pub pidfd: OwnedFd,
    /// The hash of the profile the jail was made with.
    pub profile_hash: String,
    /// Set when the jail failed before the program's execve; its `Exited`
    /// (reason `spawn_failed`) follows.
    pub setup_failure: Option<SetupFailure>,
}

/// What the spawner reports without being asked.
#[derive(Debug)]
pub enum SpawnerEvent {
    /// A run's jail ended and was reaped.
    Exited { run_id: String, report: Box<Report> },
    /// The spawner could not reap a run's jail and no longer tracks it:
    /// there will be no `Exited` for it.
    Lost { run_id: String, message: String },
    /// A message that answered no request in flight (a protocol bug).
    Error { run_id: Option<String>, kind: ErrorKind, message: String },
    /// The spawner exited and was reaped: the last event.
    Gone(SpawnerExit),
}

/// How the spawner process ended; both `None` if it was not ours to reap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnerExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// The stream of [`SpawnerEvent`]s. Unbounded, so the reader never waits
/// on the daemon (there is at most one `Exited` per run).
#[derive(Debug)]
pub struct SpawnerEvents {
    rx: mpsc::UnboundedReceiver<SpawnerEvent>,
}

impl SpawnerEvents {
    /// The next event; `None` after [`SpawnerEvent::Gone`].
    pub async fn recv(&mut self) -> Option<SpawnerEvent> {
        self.rx.recv().await
    }
}

/// Asks the spawner for jails and acts on them. Cheap to clone; the socket
/// closes when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SpawnerClient {
    inner: Arc<Closer>,
}

/// Held only by clients (not by the reader task), so that dropping the
/// last client closes the socket.
#[derive(Debug)]
struct Closer {
    shared: Arc<Shared>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.shared.close();
    }
}

#[derive(Debug)]
struct Shared {
    sock: AsyncFd<OwnedFd>,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
    /// One writer at a time.
    writer: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Pending {
    /// The reader is done: no reply will come any more.
    closed: bool,
    waiting: HashMap<RequestId, oneshot::Sender<Answer>>,
}

#[derive(Debug)]
struct Answer {
    reply: Reply,
    fd: Option<OwnedFd>,
}

impl SpawnerHandle {
    /// Starts using the spawner from the async runtime: returns the client
    /// and the event stream, and starts the task that reads the socket.
    /// Call it inside a tokio runtime with IO enabled.
    pub fn connect(self) -> Result<(SpawnerClient, SpawnerEvents), SpawnerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnerError::NoRuntime)?;
        let io_err = |what| move |source| SpawnerError::Io { what, source };
        let flags = fcntl(self.sock.as_fd(), FcntlArg::F_GETFL).map_err(|e| io_err("fcntl(F_GETFL)")(e.into()))?;
        fcntl(self.sock.as_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
            .map_err(|e| io_err("fcntl(F_SETFL, O_NONBLOCK)")(e.into()))?;
        let sock = sys::async_fd(self.sock, Interest::READABLE | Interest::WRITABLE)
            .map_err(io_err("registering the spawner socket with tokio"))?;
        let pidfd = sys::async_fd(self.pidfd, Interest::READABLE)
            .map_err(io_err("registering the spawner's pidfd with tokio"))?;
        let shared = Arc::new(Shared {
            sock,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending::default()),
            writer: tokio::sync::Mutex::new(()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(read_replies(shared.clone(), tx, pidfd, self.pid));
        Ok((SpawnerClient { inner: Arc::new(Closer { shared }) }, SpawnerEvents { rx }))
    }
}

impl SpawnerClient {
    /// Makes a jail and starts the request's program in it. Cancelling
    /// this future does not cancel the spawn: the run's `Exited` still
    /// comes.
    pub async fn spawn(&self, request: SpawnRequest) -> Result<Spawned, SpawnerError> {
        let answer = self.call("spawn", Request::Spawn(Box::new(request))).await?;
        match answer.reply {
            Reply::Spawned { run_id, pid, profile_hash, setup_failure } => {
                let pidfd = answer.fd.ok_or_else(|| SpawnerError::Protocol {
                    what: "spawn",
                    reply: format!("Spawned for run {run_id} without a pidfd"),
                })?;
                Ok(Spawned { run_id, pid: Pid::from_raw(pid), pidfd, profile_hash, setup_failure })
            }
            other => Err(refused_or_unexpected("spawn", other)),
        }
    }

    /// Sends `signal` to the run's init, which passes the usual termination
    /// and user signals on to the program.
    pub async fn signal(&self, run_id: &str, signal: Signal) -> Result<(), SpawnerError> {
        self.expect_ok("signal", Request::Signal { run_id: run_id.into(), signal: signal as i32 }).await
    }

    /// Kills the whole jail; its `Exited` (reason `killed`) follows.
    pub async fn kill(&self, run_id: &str) -> Result<(), SpawnerError> {
        self.expect_ok("kill", Request::Kill { run_id: run_id.into() }).await
    }

    pub async fn freeze(&self, run_id: &str) -> Result<(), SpawnerError> {
        self.expect_ok("freeze", Request::Freeze { run_id: run_id.into() }).await
    }

    pub async fn thaw(&self, run_id: &str) -> Result<(), SpawnerError> {
        self.expect_ok("thaw", Request::Thaw { run_id: run_id.into() }).await
    }

    /// Replaces the memory and pids limits of the run's cgroup (`None`:
    /// no limit).
    pub async fn set_limits(
        &self,
        run_id: &str,
        memory_bytes: Option<u64>,
        pids: Option<u64>,
    ) -> Result<(), SpawnerError> {
        self.expect_ok("set limits", Request::SetLimits { run_id: run_id.into(), memory_bytes, pids }).await
    }

    pub async fn usage(&self, run_id: &str) -> Result<RunUsage, SpawnerError> {
        match self.call("usage", Request::Usage { run_id: run_id.into() }).await?.reply {
            Reply::Usage { usage, .. } => Ok(usage),
            other => Err(refused_or_unexpected("usage", other)),
        }
    }

    /// Makes the shipped profiles and `dir`'s files the set runs may name;
    /// on an error (which names the file and field) the old set stays.
    pub async fn load_profiles(&self, dir: Option<&Path>) -> Result<Vec<LoadedProfile>, SpawnerError> {
        match self.call("load profiles", Request::LoadProfiles { dir: dir.map(Path::to_path_buf) }).await?.reply {
            Reply::Profiles { profiles } => Ok(profiles),
            other => Err(refused_or_unexpected("load profiles", other)),
        }
    }

    /// Whether the spawner is still there to answer (its socket is open).
    pub fn is_connected(&self) -> bool {
        !self.inner.shared.pending().closed
    }

    /// Closes the daemon's end of the socket now, for every clone: the
    /// spawner kills its jails (unless configured to keep them) and exits,
    /// and the event stream ends with [`SpawnerEvent::Gone`].
    pub fn close(&self) {
        self.inner.shared.close();
    }

    async fn expect_ok(&self, what: &'static str, request: Request) -> Result<(), SpawnerError> {
        match self.call(what, request).await?.reply {
            Reply::Ok { .. } => Ok(()),
            other => Err(refused_or_unexpected(what, other)),
        }
    }

    /// Sends one request and waits for its answer.
    async fn call(&self, what: &'static str, request: Request) -> Result<Answer, SpawnerError> {
        let shared = &self.inner.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = protocol::encode(&RequestFrame { id, request })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = shared.pending();
            if pending.closed {
                return Err(SpawnerError::Gone);
            }
            pending.waiting.insert(id, tx);
        }
        // Whatever happens to this future, its slot does not stay behind.
        let _slot = Slot { shared, id };
        shared.send(&bytes).await.map_err(|e| match e.raw_os_error() {
            Some(libc::EPIPE | libc::ECONNRESET) => SpawnerError::Gone,
            _ => SpawnerError::Io { what, source: e },
        })?;
        rx.await.map_err(|_| SpawnerError::Gone)
    }
}

/// A request's place among those waiting for a reply; removed on drop.
struct Slot<'a> {
    shared: &'a Shared,
    id: RequestId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.pending().waiting.remove(&self.id);
    }
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // The map stays consistent even if a holder panicked.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        let _ = nix::sys::socket::shutdown(self.sock.get_ref().as_raw_fd(), Shutdown::Both);
    }

    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let _writer = self.writer.lock().await;
        loop {
            let mut ready = self.sock.writable().await?;
            let sent = ready.try_io(|sock| {
                fdpass::send(sock.get_ref().as_fd(), bytes, &[], MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
            });
            match sent {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut ready = self.sock.readable().await?;
            let got = ready.try_io(|sock| {
                fdpass::recv(sock.get_ref().as_fd(), buf, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
            });
            match got {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// The reader task: dispatches until the socket closes, then fails what is
/// in flight, reaps the spawner and sends the last event.
async fn read_replies(
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<SpawnerEvent>,
    pidfd: AsyncFd<OwnedFd>,
    pid: Pid,
) {
    let mut buf = vec![0u8; protocol::MAX_MESSAGE];
    loop {
        let got = match shared.recv(&mut buf).await {
            Ok(got) if got.len > 0 => got,
            // End of file (the spawner exited, or we closed), or an error.
            _ => break,
        };
        let frame = if got.truncated {
            Err(format!("a message over {} bytes was cut by the kernel", protocol::MAX_MESSAGE))
        } else {
            protocol::decode::<ReplyFrame>(&buf[..got.len]).map_err(|e| e.to_string())
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(message) => {
                let _ = events.send(SpawnerEvent::Error { run_id: None, kind: ErrorKind::BadRequest, message });
                continue;
            }
        };
        match frame.id {
            Some(id) => {
                let waiter = shared.pending().waiting.remove(&id);
                // Nobody waiting (the request's future was dropped): a
                // pidfd that came with the reply is closed here.
                if let Some(tx) = waiter {
                    let _ = tx.send(Answer { reply: frame.reply, fd: got.fds.into_iter().next() });
                }
            }
            None => {
                let _ = events.send(event_of(frame.reply));
            }
        }
    }
    {
        let mut pending = shared.pending();
        pending.closed = true;
        pending.waiting.clear();
    }
    drop(shared);
    let exit = reap_spawner(&pidfd, pid).await;
    let _ = events.send(SpawnerEvent::Gone(exit));
}

fn event_of(reply: Reply) -> SpawnerEvent {
    match reply {
        Reply::Exited { run_id, report } => SpawnerEvent::Exited { run_id, report: Box::new(report) },
        Reply::Lost { run_id, message } => SpawnerEvent::Lost { run_id, message },
        Reply::Error { run_id, kind, message } => SpawnerEvent::Error { run_id, kind, message },
        other => SpawnerEvent::Error {
            run_id: None,
            kind: ErrorKind::BadRequest,
            message: format!("unexpected message without a request id: {other:?}"),
        },
    }
}

/// Waits (on its pidfd, without blocking a thread) for the spawner to
/// exit, and reaps it.
async fn reap_spawner(pidfd: &AsyncFd<OwnedFd>, pid: Pid) -> SpawnerExit {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return SpawnerExit { code: Some(code), signal: None },
            Ok(WaitStatus::Signaled(_, signal, _)) => return SpawnerExit { code: None, signal: Some(signal as i32) },
            Ok(WaitStatus::StillAlive) => match pidfd.readable().await {
                Ok(mut ready) => ready.clear_ready(),
                Err(_) => return SpawnerExit { code: None, signal: None },
            },
            Ok(_) | Err(Errno::EINTR) => continue,
            // Reaped by someone else (SIGCHLD ignored in the daemon?).
            Err(_) => return SpawnerExit { code: None, signal: None },
        }
    }
}

/// `Error` replies become [`SpawnerError::Refused`]; anything else that is
/// not the expected answer is a protocol error.
fn refused_or_unexpected(what: &'static str, reply: Reply) -> SpawnerError {
    match reply {
        Reply::Error { run_id, kind, message } => SpawnerError::Refused { what, run_id, kind, message },
        other => SpawnerError::Protocol { what, reply: format!("{other:?}") },
    }
}
