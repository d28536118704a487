//! The daemon's side of systemd's protocols: socket activation
//! (`sd_listen_fds(3)`) and service notification (`sd_notify(3)`).
//!
//! Each is a few environment variables and one datagram, so they are
//! written here rather than pulled in from a crate (libsystemd would be a C
//! dependency). Outside systemd none of the variables is set and every
//! function here does nothing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;

use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, UnixAddr};

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The listening socket systemd passed, if this process was socket
/// activated (`LISTEN_PID` is this process and `LISTEN_FDS` is set).
///
/// Exactly one fd is accepted, and it must be a listening Unix stream
/// socket: the admin API has one socket, and serving HTTP on something
/// else (a datagram socket, a TCP port) would be a unit file mistake that
/// is better refused at start than half-served. The variables are removed
/// so that nothing started later takes them for its own.
///
/// Call this before any thread starts (it changes the environment) and
/// only once (it takes ownership of fd 3).
pub fn take_listener() -> Result<Option<UnixListener>, String> {
    let Some(count) = listen_fds_for_me()? else {
        return Ok(None);
    };
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    if count != 1 {
        return Err(format!(
            "systemd passed {count} sockets (LISTEN_FDS={count}); ccos-supervisor serves on exactly one: \
             give its .socket unit one ListenStream="
        ));
    }
    // SAFETY: under the socket activation protocol, fd 3 is open, was
    // passed to this process (LISTEN_PID is our pid) and nothing else in
    // it knows the fd; `listen_fds_for_me` ran once, and the variables
    // that announce it are gone, so this is its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    check_listening_unix_stream(&fd)?;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(|e| format!("the socket systemd passed (fd 3): setting close-on-exec: {e}"))?;
    Ok(Some(UnixListener::from(fd)))
}

/// `LISTEN_FDS`, when `LISTEN_PID` names this process.
fn listen_fds_for_me() -> Result<Option<u32>, String> {
    let (Ok(pid), Ok(fds)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None); // meant for another process (a parent that exec'd us would have unset it)
    }
    fds.trim().parse::<u32>().map(Some).map_err(|_| format!("LISTEN_FDS={fds:?} is not a number"))
}

fn check_listening_unix_stream(fd: &OwnedFd) -> Result<(), String> {
    let what = "the socket systemd passed (fd 3)";
    let kind = getsockopt(fd, sockopt::SockType).map_err(|e| format!("{what}: not a socket ({e})"))?;
    let listening = getsockopt(fd, sockopt::AcceptConn).map_err(|e| format!("{what}: {e}"))?;
    let family = getsockname::<UnixAddr>(fd.as_raw_fd()).ok().and_then(|a| a.family());
    if kind != SockType::Stream || !listening || family != Some(AddressFamily::Unix) {
        return Err(format!(
            "{what} is not a listening Unix stream socket ({kind:?}, listening: {listening}, family {family:?}); \
             the .socket unit needs ListenStream=/path"
        ));
    }
    Ok(())
}

/// Where `sd_notify` messages go, from `NOTIFY_SOCKET` (a path, or
/// `@name` for an abstract socket). `None` outside a `Type=notify` unit.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for, if any. A `NOTIFY_SOCKET` that is
    /// not a Unix socket address is an error: systemd would wait for a
    /// READY=1 that can never come.
    pub fn from_env() -> Result<Option<Notifier>, String> {
        let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            None if path.starts_with('/') => SocketAddr::from_pathname(&path),
            None => return Err(format!("NOTIFY_SOCKET={path:?} is neither a path nor an abstract name (@name)")),
        }
        .map_err(|e| format!("NOTIFY_SOCKET={path:?}: {e}"))?;
        let socket = UnixDatagram::unbound().map_err(|e| format!("a socket for sd_notify: {e}"))?;
        Ok(Some(Notifier { socket, addr }))
    }

    /// Sends one notification, e.g. `READY=1` or `WATCHDOG=1`.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr).map(drop)
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (as
/// `sd_watchdog_enabled(3)` advises), when systemd set it for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Environment-reading functions are tested end to end (tests/systemd.rs
    // starts the daemon under systemd-socket-activate and with a
    // NOTIFY_SOCKET); here, the parts that need no environment.

    #[test]
    fn a_notification_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier =
            Notifier { socket: UnixDatagram::unbound().unwrap(), addr: SocketAddr::from_pathname(&path).unwrap() };
        notifier.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_datagram_socket_is_not_taken_for_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let datagram = UnixDatagram::bind(dir.path().join("d")).unwrap();
        let err = check_listening_unix_stream(&OwnedFd::from(datagram)).unwrap_err();
        assert!(err.contains("not a listening Unix stream socket"), "{err}");
        let listener = UnixListener::bind(dir.path().join("l")).unwrap();
        check_listening_unix_stream(&OwnedFd::from(listener)).unwrap();
    }
}
