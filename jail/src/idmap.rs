//! Per-jail uid/gid ranges and the maps the parent writes for them.
//!
//! Every jail maps ids 0..RANGE_SIZE inside to a range of its own outside,
//! so root inside is never root outside and two live jails never share an
//! outside id (a process in one could otherwise signal or ptrace, or read
//! the files of, a process in the other). Ranges are slots above
//! [`OUTSIDE_BASE`], taken with an open-file-description lock on one byte of
//! a lock file: the kernel drops the lock when the last holder of the fd goes
//! away, even on SIGKILL, so a crash never leaks a range and nothing is left
//! on disk but the lock file itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg};
use nix::unistd::Pid;

/// How many ids a jail has (0..65535 inside, like a classic Unix system).
pub const RANGE_SIZE: u32 = 65536;
/// The first outside id used for jails. Well above the host's users and the
/// /etc/subuid ranges useradd hands out (100000 + 65536 n), and below the
/// ranges systemd reserves for nspawn/nsresourced (0x70000000 and up).
pub const OUTSIDE_BASE: u32 = 0x5000_0000;
/// How many ranges (so how many jails alive at once).
pub const SLOTS: u32 = 4096;
/// Where the lock file lives by default.
pub const DEFAULT_LOCK_PATH: &str = "/run/ccos/jail-ids.lock";

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("opening the id-range lock file {path}: {source}")]
    LockFile { path: PathBuf, source: std::io::Error },
    #[error("all {SLOTS} id ranges are in use (one per live jail); wait for jails to end")]
    Exhausted,
    #[error("locking id range {slot} in {path}: {source}")]
    Lock { path: PathBuf, slot: u32, source: nix::Error },
    #[error("writing {file} for pid {pid} ({map:?}): {source}")]
    Write { file: String, pid: i32, map: String, source: std::io::Error },
}

/// One jail's outside id range, held for as long as this value (or a copy of
/// its fd in a child) lives.
#[derive(Debug)]
pub struct IdRange {
    pub slot: u32,
    pub outside_base: u32,
    lock: File,
}

impl IdRange {
    /// Takes a free slot. The search starts at a slot derived from our pid
    /// so concurrent spawners rarely contend for the same byte.
    pub fn allocate(lock_path: &Path) -> Result<IdRange, IdMapError> {
        if let Some(dir) = lock_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(lock_path)
            .map_err(|source| IdMapError::LockFile { path: lock_path.to_path_buf(), source })?;
        let start = std::process::id() % SLOTS;
        for i in 0..SLOTS {
            let slot = (start + i) % SLOTS;
            let flock = libc::flock {
                l_type: libc::F_WRLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: slot as libc::off_t,
                l_len: 1,
                l_pid: 0,
            };
            match fcntl(lock.as_fd(), FcntlArg::F_OFD_SETLK(&flock)) {
                Ok(_) => {
                    return Ok(IdRange { slot, outside_base: OUTSIDE_BASE + slot * RANGE_SIZE, lock });
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => continue,
                Err(source) => return Err(IdMapError::Lock { path: lock_path.to_path_buf(), slot, source }),
            }
        }
        Err(IdMapError::Exhausted)
    }

    /// The outside uid (and gid) that `inside` maps to.
    pub fn outside(&self, inside: u32) -> u32 {
        self.outside_base + inside
    }

    /// The raw fd of the lock, so a child can keep it open (or close it).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.lock.as_raw_fd()
    }

    /// Writes the child's uid_map and gid_map: inside 0..RANGE_SIZE to this
    /// range. Only a parent privileged in the child's parent user namespace
    /// may write a range this size, so setgroups need not be denied and the
    /// jail's init can still clear its supplementary groups.
    pub fn write_maps_from_parent(&self, child: Pid) -> Result<(), IdMapError> {
        let map = format!("0 {} {}\n", self.outside_base, RANGE_SIZE);
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{}/{file}", child.as_raw());
            let result = OpenOptions::new().write(true).open(&path).and_then(|mut f| f.write_all(map.as_bytes()));
            result.map_err(|source| IdMapError::Write {
                file: path,
                pid: child.as_raw(),
                map: map.trim_end().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_live_ranges_never_overlap_and_slots_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.lock");
        let a = IdRange::allocate(&path).unwrap();
        let b = IdRange::allocate(&path).unwrap();
        assert_ne!(a.slot, b.slot);
        let (lo, hi) = if a.outside_base < b.outside_base { (&a, &b) } else { (&b, &a) };
        assert!(lo.outside_base + RANGE_SIZE <= hi.outside_base);
        assert!(a.outside(0) >= OUTSIDE_BASE, "root inside must not be a low id outside");
        let slot = a.slot;
        drop(a);
        // The released slot is the first one probed again (same pid start).
        let c = IdRange::allocate(&path).unwrap();
        assert_eq!(c.slot, slot);
    }

    #[test]
    fn unusable_lock_path_is_named() {
        let e = IdRange::allocate(Path::new("/proc/ccos-no/ids.lock")).unwrap_err().to_string();
        assert!(e.contains("/proc/ccos-no/ids.lock"), "{e}");
    }
}
