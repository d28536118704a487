//! Capabilities: what the program and the jail's init keep (nothing, and
//! CAP_KILL only, respectively).
//!
//! Capabilities here are those of the jail's own user namespace: they give
//! no power over the host. Dropping them still matters, because with them
//! the program could remount its root read-write, undo the /proc masks, or
//! make new namespaces to attack the kernel from.

use caps::{CapSet, Capability, CapsHashSet};

use crate::sys;

/// Drops every capability from the bounding set and clears the ambient set,
/// so no execve can ever give one back. Needs CAP_SETPCAP, so it comes
/// before the switch to the program's uid.
///
/// Capability numbers are dense: the kernel answers EINVAL from the first
/// one past the highest it knows, which ends the loop. (Asking
/// /proc/sys/kernel/cap_last_cap instead costs an open of a sysctl file,
/// tens of microseconds, on every spawn.)
pub fn drop_bounding_and_ambient() -> std::io::Result<()> {
    // The capability sets are 64 bits wide: no kernel knows more.
    for cap in 0..64 {
        match sys::capbset_drop(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
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
