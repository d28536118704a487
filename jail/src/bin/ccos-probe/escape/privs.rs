//! Privilege state and privilege-raising calls.
//!
//! Safe unconfined: setuid(0) and capset() only change the forked check
//! process, which exits right after.

use crate::outcome::Outcome;
use crate::sys;
use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::{getuid, setuid, Uid};

const CAP_SYS_ADMIN: u32 = 21;

const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

const CAP_SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

/// `Key:\tvalue` lines of /proc/self/status.
fn status_field(key: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim().to_owned())
    })
}

/// The five capability sets, from /proc/self/status or, without /proc, from
/// capget(2) and prctl(2).
fn cap_sets() -> Result<([u64; 5], &'static str), Errno> {
    let from_proc: Option<Vec<u64>> =
        CAP_SETS.iter().map(|k| status_field(k).and_then(|v| u64::from_str_radix(&v, 16).ok())).collect();
    if let Some(v) = from_proc {
        return Ok(([v[0], v[1], v[2], v[3], v[4]], "/proc/self/status"));
    }
    let data = sys::capget()?;
    let join = |f: fn(&sys::CapData) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    let (mut bnd, mut amb) = (0u64, 0u64);
    for cap in 0..64u32 {
        let arg = libc::c_ulong::from(cap);
        match sys::prctl_query(libc::PR_CAPBSET_READ, arg, 0) {
            Ok(1) => bnd |= 1 << cap,
            Ok(_) => {}
            Err(_) => break, // EINVAL past the last capability
        }
        let is_set = libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_IS_SET).unwrap_or(1);
        if sys::prctl_query(libc::PR_CAP_AMBIENT, is_set, arg) == Ok(1) {
            amb |= 1 << cap;
        }
    }
    let sets = [join(|d| d.inheritable), join(|d| d.permitted), join(|d| d.effective), bnd, amb];
    Ok((sets, "capget/prctl (no /proc)"))
}

fn cap_names(mask: u64) -> String {
    (0..64)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| CAP_NAMES.get(bit).map_or_else(|| format!("cap_{bit}"), |n| format!("cap_{n}")))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn caps_effective() -> Outcome {
    let (sets, source) = match cap_sets() {
        Ok(s) => s,
        Err(e) => return Outcome::refused(e, "cannot read capability sets"),
    };
    let nonzero: Vec<String> = CAP_SETS
        .iter()
        .zip(sets)
        .filter(|(_, v)| *v != 0)
        .map(|(name, v)| {
            // Name the capabilities when there are few; a full set is noise.
            if v.count_ones() <= 8 {
                format!("{name}={v:016x}({})", cap_names(v))
            } else {
                format!("{name}={v:016x}")
            }
        })
        .collect();
    if nonzero.is_empty() {
        Outcome::contained(format!("all capability sets are empty ({source})"))
    } else {
        Outcome::escaped(format!("non-empty capability sets ({source}): {}", nonzero.join(" ")))
    }
}

pub fn no_new_privs() -> Outcome {
    match prctl::get_no_new_privs() {
        Ok(true) => Outcome::contained("NoNewPrivs=1"),
        Ok(false) => {
            Outcome::escaped("NoNewPrivs=0: execve of setuid/file-capability binaries can still gain privileges")
        }
        Err(e) => Outcome::refused(e, "prctl(PR_GET_NO_NEW_PRIVS) failed"),
    }
}

pub fn seccomp_mode() -> Outcome {
    let (mode, source) = match status_field("Seccomp").and_then(|v| v.parse::<i32>().ok()) {
        Some(m) => (m, "/proc/self/status"),
        // PR_GET_SECCOMP returns the mode; in strict mode (1) it would kill
        // us, but a strict-mode process could not have got this far.
        None => match sys::prctl_query(libc::PR_GET_SECCOMP, 0, 0) {
            Ok(m) => (m, "prctl(PR_GET_SECCOMP)"),
            Err(e) => return Outcome::refused(e, "cannot read the seccomp mode"),
        },
    };
    let filters = status_field("Seccomp_filters").unwrap_or_else(|| "?".to_owned());
    let detail = format!("Seccomp={mode} Seccomp_filters={filters} ({source})");
    if mode == 2 {
        Outcome::contained(detail)
    } else {
        Outcome::escaped(format!("{detail}: no seccomp filter installed"))
    }
}

pub fn setuid_root() -> Outcome {
    let before = getuid();
    match setuid(Uid::from_raw(0)) {
        Ok(()) => Outcome::escaped(format!("setuid(0) succeeded (uid was {before})")),
        Err(e) => Outcome::refused(e, format!("setuid(0) failed (uid {before}): {}", e.desc())),
    }
}

pub fn capset_raise() -> Outcome {
    let mut data = match sys::capget() {
        Ok(d) => d,
        Err(e) => return Outcome::refused(e, format!("capget failed: {}", e.desc())),
    };
    let bit = 1u32 << CAP_SYS_ADMIN;
    let held = data[0].effective & bit != 0;
    data[0].effective |= bit;
    data[0].permitted |= bit;
    match sys::capset(&data) {
        Ok(()) => {
            Outcome::escaped(format!("capset raised CAP_SYS_ADMIN into effective+permitted (already held: {held})"))
        }
        Err(e) => Outcome::refused(e, format!("capset of CAP_SYS_ADMIN into effective+permitted failed: {}", e.desc())),
    }
}
