//! Capabilities: what the program and the jail's init keep (nothing, and
//! CAP_KILL only, respectively).
//!
//! Capabilities here are those of the jail's own user namespace: they give
//! no power over the host. Dropping them still matters, because with them
//! the program could remount its root read-write, undo the /proc masks, or
//! make new namespaces to attack the kernel from.

use caps::{CapSet, Capability, CapsHashSet};

use crate::sys;

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(63)
}

/// Drops every capability from the bounding set and clears the ambient set,
/// so no execve can ever give one back. Needs CAP_SETPCAP, so it comes
/// before the switch to the program's uid.
pub fn drop_bounding_and_ambient() -> std::io::Result<()> {
    for cap in 0..=last_cap() {
        match sys::capbset_drop(cap) {
            Ok(()) => {}
            // Numbers above what this kernel knows: nothing to drop.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(std::io::Error::other)
}

/// Leaves exactly `keep` in the effective and permitted sets and nothing
/// inheritable.
pub fn keep_only(keep: &[Capability]) -> std::io::Result<()> {
    let set: CapsHashSet = keep.iter().copied().collect();
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(std::io::Error::other)?;
    caps::set(None, CapSet::Effective, &set).map_err(std::io::Error::other)?;
    caps::set(None, CapSet::Permitted, &set).map_err(std::io::Error::other)
}
