//! The jail's network: a fresh namespace whose only interface is `lo`.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::profile::NetworkMode;
use crate::sys;

/// Brings `lo` up for [`NetworkMode::Loopback`]; leaves it down for
/// [`NetworkMode::None`]. Acts on the calling thread's network namespace.
fn configure_current(mode: NetworkMode) -> std::io::Result<()> {
    if mode == NetworkMode::None {
        return Ok(());
    }
    let sock: OwnedFd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    sys::set_interface_up(&sock, b"lo")
}

/// Brings `lo` up, from outside, in the network namespace the jail's init
/// `pid` made at clone (its /proc/PID/ns/net). The parent does this while
/// its child builds the root, which takes the interface's start-up (IPv6
/// address and routes for `lo`, about a tenth of a millisecond) off the
/// jail's path, and leaves the jail's init nothing to do with the network
/// at all.
pub(crate) fn bring_up_from_outside(pid: nix::unistd::Pid, mode: NetworkMode) -> std::io::Result<()> {
    if mode == NetworkMode::None {
        return Ok(());
    }
    bring_lo_up_in(&std::fs::File::open(format!("/proc/{pid}/ns/net"))?)
}

/// Brings `lo` up in the namespace `ns`: the calling thread enters it only
/// to open a socket there; the ioctl on the socket then acts on the
/// socket's namespace.
fn bring_lo_up_in(ns: &impl AsFd) -> std::io::Result<()> {
    let home = Home::here()?;
    let sock =
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from).and_then(|()| {
            socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(Into::into)
        });
    home.go_back();
    sys::set_interface_up(&sock?, b"lo")
}

/// A fresh network namespace made ahead of a spawn ([`JailSpec::network_ready`](crate::JailSpec)),
/// so that making it, the costliest namespace to make (about half a
/// millisecond of registering devices and sysctls), happens off the
/// spawn's path: the supervisor's spawner keeps one ready while it waits
/// for requests, and `ccos-jail run` makes one while a second thread reads
/// its profile (see [`crate::beside`]).
///
/// It belongs to the host's user namespace, not the jail's: the jail's root
/// has no CAP_NET_ADMIN over it, so it cannot change it at all (bring `lo`
/// down or up, add addresses, routes or devices), which is stricter than a
/// namespace of its own. Like one of its own it holds only `lo`, and it is
/// used by exactly one jail: [`PreparedNetwork`] is not `Clone`, and spawn
/// takes it.
#[derive(Debug)]
pub struct PreparedNetwork {
    ns: OwnedFd,
    lo_up: bool,
}

impl PreparedNetwork {
    /// Makes one (needs CAP_SYS_ADMIN): the calling thread moves into a new
    /// network namespace, sets `lo` for `mode`, keeps a handle and moves
    /// back.
    pub fn make(mode: NetworkMode) -> std::io::Result<PreparedNetwork> {
        let home = Home::here()?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        let made = configure_current(mode).and_then(|()| open_own_namespace());
        home.go_back();
        Ok(PreparedNetwork { ns: made?, lo_up: mode == NetworkMode::Loopback })
    }

    /// Whether a jail of `mode` can use it: one with `lo` down serves
    /// both modes (spawn brings `lo` up for a loopback jail), one with
    /// `lo` up only loopback jails.
    pub fn serves(&self, mode: NetworkMode) -> bool {
        mode == NetworkMode::Loopback || !self.lo_up
    }

    /// Moves the calling thread into this namespace (for the jail's clone,
    /// which then inherits it); the [`Home`] brings it back.
    pub(crate) fn enter(&self) -> std::io::Result<Home> {
        let home = Home::here()?;
        nix::sched::setns(&self.ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(home)
    }

    /// Sets `lo` for a jail of `mode` (one it [serves](Self::serves)).
    pub(crate) fn finish_for(&self, mode: NetworkMode) -> std::io::Result<()> {
        if mode == NetworkMode::Loopback && !self.lo_up {
            bring_lo_up_in(&self.ns)?;
        }
        Ok(())
    }
}

/// The network namespace a thread was in before it entered another.
#[must_use = "go_back returns the thread to its own network namespace"]
pub(crate) struct Home(OwnedFd);

impl Home {
    fn here() -> std::io::Result<Home> {
        open_own_namespace().map(Home)
    }

    /// Returns to the namespace. This cannot fail for a process that could
    /// leave it (the handle is ours, and so is the privilege); if it still
    /// did, the process would go on in a jail's namespace, so it stops.
    pub(crate) fn go_back(self) {
        if let Err(e) = nix::sched::setns(&self.0, nix::sched::CloneFlags::CLONE_NEWNET) {
            eprintln!("ccos-jail: returning to the host's network namespace failed ({e}); stopping");
            std::process::abort();
        }
    }
}

fn open_own_namespace() -> std::io::Result<OwnedFd> {
    let file = std::fs::File::open("/proc/thread-self/ns/net")?;
    Ok(file.into())
}
