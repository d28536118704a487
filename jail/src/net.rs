//! The jail's network: a fresh namespace whose only interface is `lo`.

use std::os::fd::OwnedFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::profile::NetworkMode;
use crate::sys;

/// Brings `lo` up for [`NetworkMode::Loopback`]; leaves it down for
/// [`NetworkMode::None`]. Runs in the child, inside its network namespace.
pub fn configure_in_child(mode: NetworkMode) -> std::io::Result<()> {
    if mode == NetworkMode::None {
        return Ok(());
    }
    let sock: OwnedFd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    sys::set_interface_up(&sock, b"lo")
}
