//! Errors of the cgroup backend. Every message names the cgroup path, the file
//! and the value written where there is one, and adds a hint where the usual
//! cause is known. The OS error is part of the message (not a `source`), so
//! printing a chain does not say it twice.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Controller, Mode};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {}: {err}", path.display())]
    Read { path: PathBuf, err: io::Error },

    #[error("writing {value:?} to {}: {err}{}", path.display(), write_hint(path, err))]
    Write { path: PathBuf, value: String, err: io::Error },

    #[error("parsing {}: {what} (read {text:?})", path.display())]
    Parse { path: PathBuf, text: String, what: String },

    #[error("creating cgroup {}: {err}{}", path.display(), mkdir_hint(err))]
    CreateDir { path: PathBuf, err: io::Error },

    #[error("removing cgroup {}: {err}", path.display())]
    RemoveDir { path: PathBuf, err: io::Error },

    #[error("opening {}: {err}", path.display())]
    Open { path: PathBuf, err: io::Error },

    #[error(
        "no cgroup hierarchy is mounted (read {}): mount cgroup2 on /sys/fs/cgroup, \
         or the v1 memory, pids, cpu, cpuacct and freezer hierarchies",
        mountinfo.display()
    )]
    NoHierarchy { mountinfo: PathBuf },

    #[error("{mode} was asked for but {why}")]
    ModeUnavailable { mode: Mode, why: String },

    #[error("the {controller} controller is not available for {}: {hint}", path.display())]
    ControllerMissing { controller: Controller, path: PathBuf, hint: &'static str },

    #[error("cgroup root {}: {why}", path.display())]
    BadRoot { path: PathBuf, why: String },

    #[error("invalid cgroup name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },

    #[error("invalid limit {what} = {value}: {why}")]
    InvalidLimit { what: &'static str, value: String, why: &'static str },

    #[error("timed out after {waited:?} waiting for {} to show {want}", path.display())]
    Timeout { path: PathBuf, want: &'static str, waited: Duration },

    #[error("sending SIGKILL to pid {pid} in {}: {err}", path.display())]
    Signal { pid: i32, path: PathBuf, err: nix::Error },

    #[error("{} still holds pids {pids:?} after {rounds} rounds of {what}", path.display())]
    NotEmpty { path: PathBuf, pids: Vec<i32>, rounds: u32, what: &'static str },
}

/// Hint text for v2 hosts where the process got no controllers to hand out.
pub(crate) const V2_DELEGATION_HINT: &str = "no cgroup v2 controllers delegated: start under \
     systemd with Delegate=yes or pass --cgroup-root";

/// Hint text for v1 hosts that lack a hierarchy.
pub(crate) const V1_MOUNT_HINT: &str = "its cgroup v1 hierarchy is not mounted \
     (mount -t cgroup -o <controller> cgroup /sys/fs/cgroup/<controller>)";

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// The usual reason behind a failed write to a cgroup file.
fn write_hint(path: &Path, err: &io::Error) -> &'static str {
    use nix::errno::Errno;
    let errno = err.raw_os_error().map(Errno::from_raw);
    match (file_name(path), errno) {
        (_, Some(Errno::EACCES | Errno::EPERM)) => {
            " (hint: run as root, start under systemd with Delegate=yes, \
             or pass --cgroup-root to a cgroup you own)"
        }
        ("cgroup.subtree_control", Some(Errno::EBUSY)) => {
            " (hint: cgroup v2 enables controllers for children only in a cgroup \
             without processes of its own: move them into a leaf first)"
        }
        ("cgroup.subtree_control", Some(Errno::ENOENT | Errno::EINVAL)) => {
            " (hint: the parent cgroup does not offer this controller: it is bound \
             to a v1 hierarchy or not delegated)"
        }
        ("cgroup.procs", Some(Errno::EBUSY)) => {
            " (hint: a cgroup v2 that hands controllers to children cannot hold processes)"
        }
        ("cgroup.procs", Some(Errno::ESRCH)) => " (hint: the process has already exited)",
        ("memory.limit_in_bytes" | "memory.memsw.limit_in_bytes", Some(Errno::EBUSY)) => {
            " (hint: the group already uses more memory than this limit)"
        }
        (f, Some(Errno::ENOENT)) if !f.starts_with("cgroup.") => {
            " (hint: the controller is not enabled for this cgroup)"
        }
        _ => "",
    }
}

fn mkdir_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::AlreadyExists => {
            " (hint: a group of this name exists already, perhaps left by a crash: \
             remove stale groups first)"
        }
        io::ErrorKind::PermissionDenied => " (hint: run as root, or start under systemd with Delegate=yes)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_error_names_value_path_and_os_error() {
        let e = CgroupError::Write {
            path: "/sys/fs/cgroup/memory/ccos/x/memory.limit_in_bytes".into(),
            value: "67108864".into(),
            err: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.to_string(),
            "writing \"67108864\" to /sys/fs/cgroup/memory/ccos/x/memory.limit_in_bytes: \
             Permission denied (os error 13) (hint: run as root, start under systemd with \
             Delegate=yes, or pass --cgroup-root to a cgroup you own)"
        );
    }

    #[test]
    fn subtree_control_busy_explains_the_no_internal_process_rule() {
        let e = CgroupError::Write {
            path: "/sys/fs/cgroup/system.slice/ccos.service/cgroup.subtree_control".into(),
            value: "+memory +pids +cpu".into(),
            err: io::Error::from_raw_os_error(libc::EBUSY),
        };
        let text = e.to_string();
        assert!(text.contains("Device or resource busy"), "{text}");
        assert!(text.contains("without processes of its own"), "{text}");
    }

    #[test]
    fn missing_controller_carries_the_delegation_hint() {
        let e = CgroupError::ControllerMissing {
            controller: Controller::Memory,
            path: "/sys/fs/cgroup/user.slice".into(),
            hint: V2_DELEGATION_HINT,
        };
        assert_eq!(
            e.to_string(),
            "the memory controller is not available for /sys/fs/cgroup/user.slice: no cgroup \
             v2 controllers delegated: start under systemd with Delegate=yes or pass \
             --cgroup-root"
        );
    }
}
