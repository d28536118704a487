//! The filesystem view: device nodes, writable system directories, kernel
//! settings, secrets, and what /proc and /dev reveal about the host.
//!
//! Safe unconfined: files and device nodes are created with O_EXCL under
//! names of our own and removed at once; kernel settings are only *opened*
//! for writing and closed without a byte written; /etc/shadow and /dev/mem
//! are opened read-only and their contents never printed.

use crate::outcome::{errno_of, io_res, Outcome};
use nix::errno::Errno;
use nix::sys::stat::{mknod, Mode, SFlag};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::Path;

pub fn mknod_device() -> Outcome {
    // The kernel checks CAP_MKNOD (in the initial user namespace) before it
    // creates anything; if it does create the node, we remove it again.
    let path = format!("/tmp/ccos-probe-mknod-{}", std::process::id());
    let dev = libc::makedev(1, 3);
    match mknod(path.as_str(), SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), dev) {
        Ok(()) => {
            // Opening tells whether the node is usable (nodev mounts say
            // no); it does not change the verdict: creating it was refused
            // or not.
            let usable = File::open(&path)
                .map_or_else(|e| format!("open refused: {}", errno_of(&e).desc()), |_| "it opens".to_owned());
            let removed = fs::remove_file(&path).is_ok();
            Outcome::escaped(format!("mknod of char device 1:3 at {path} succeeded ({usable}; removed: {removed})"))
        }
        Err(e) => Outcome::refused(e, format!("mknod of char device 1:3 at {path} failed: {}", e.desc())),
    }
}

/// Create (exclusively) and remove a file in `dir`.
pub fn write_in(dir: &str) -> Outcome {
    let path = Path::new(dir).join(format!(".ccos-probe-write-{}", std::process::id()));
    let path_s = path.display();
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(_) => {
            let removed = fs::remove_file(&path).is_ok();
            Outcome::escaped(format!("created {path_s} (removed: {removed})"))
        }
        Err(e) => {
            let e = errno_of(&e);
            Outcome::refused(e, format!("cannot create {path_s}: {}", e.desc()))
        }
    }
}

/// Open `path` write-only (no O_TRUNC, no O_CREAT) and close it unwritten.
fn open_for_write(path: &str) -> Result<File, Errno> {
    io_res(OpenOptions::new().write(true).open(path))
}

pub fn write_proc_sys() -> Outcome {
    Outcome::attempt(
        open_for_write("/proc/sys/kernel/hostname"),
        "open /proc/sys/kernel/hostname O_WRONLY (nothing written)",
    )
}

/// Root-writable sysfs files present on most kernels, best target first.
/// uevent_helper is missing on kernels without CONFIG_UEVENT_HELPER, so the
/// others stand in for it.
const SYS_TARGETS: [&str; 4] =
    ["/sys/kernel/uevent_helper", "/sys/kernel/rcu_expedited", "/sys/power/state", "/sys/kernel/profiling"];

pub fn write_sys() -> Outcome {
    for path in SYS_TARGETS {
        match open_for_write(path) {
            Err(Errno::ENOENT) => continue,
            result => return Outcome::attempt(result, &format!("open {path} O_WRONLY (nothing written)")),
        }
    }
    Outcome::refused(Errno::ENOENT, format!("none of {} exists (no /sys?)", SYS_TARGETS.join(", ")))
}

pub fn read_shadow() -> Outcome {
    let mut buf = [0u8; 64];
    let result = io_res(File::open("/etc/shadow").and_then(|mut f| f.read(&mut buf)));
    match result {
        Ok(n) => Outcome::escaped(format!("read {n} bytes of /etc/shadow (not shown)")),
        Err(e) => Outcome::refused(e, format!("cannot read /etc/shadow: {}", e.desc())),
    }
}

fn comm(pid: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
}

pub fn host_pid_visible(pid: u32) -> Outcome {
    let path = format!("/proc/{pid}");
    match fs::metadata(&path) {
        Ok(_) => Outcome::escaped(format!("{path} exists (comm: {})", comm(&pid.to_string()))),
        Err(e) => {
            let e = errno_of(&e);
            Outcome::refused(e, format!("{path}: {}", e.desc()))
        }
    }
}

/// More processes than this in /proc means we see beyond our own jail (the
/// jail's init, the probe, its check process, and a few helpers).
const MAX_JAIL_PIDS: usize = 8;

pub fn proc_pid_count() -> Outcome {
    let entries = match fs::read_dir("/proc") {
        Ok(d) => d,
        Err(e) => {
            let e = errno_of(&e);
            return Outcome::refused(e, format!("cannot list /proc: {}", e.desc()));
        }
    };
    let mut pids: Vec<u32> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    let init = comm("1");
    let detail = format!("{} pids in /proc: {:?}; pid 1 is {init:?}", pids.len(), pids);
    if pids.len() > MAX_JAIL_PIDS || init == "systemd" || init == "init" {
        Outcome::escaped(detail)
    } else {
        Outcome::contained(detail)
    }
}

/// What a minimal jail /dev holds. console is left out on purpose: it is
/// the host's console unless the jail replaces it.
const DEV_ALLOWLIST: [&str; 13] =
    ["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin", "stdout", "stderr"];

pub fn host_devices() -> Outcome {
    let entries = match fs::read_dir("/dev") {
        Ok(d) => d,
        Err(e) => {
            let e = errno_of(&e);
            return Outcome::refused(e, format!("cannot list /dev: {}", e.desc()));
        }
    };
    let mut names: Vec<String> =
        entries.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect();
    names.sort();
    let extras: Vec<&String> = names.iter().filter(|n| !DEV_ALLOWLIST.contains(&n.as_str())).collect();
    if extras.is_empty() {
        Outcome::contained(format!("/dev holds only {names:?}"))
    } else {
        Outcome::escaped(format!("/dev entries beyond the allowlist: {extras:?}"))
    }
}

pub fn dev_mem() -> Outcome {
    // Read-only open, closed unread.
    Outcome::attempt(io_res(File::open("/dev/mem")), "open /dev/mem O_RDONLY (nothing read)")
}
