//! Mount-table and namespace changes.
//!
//! Safe unconfined: every change happens in the forked check process and
//! ends with it (unshare, setns, chroot). The one change visible to the host
//! is the tmpfs that `mount` puts on a directory it creates under /tmp, and
//! it unmounts and removes that again at once. pivot_root is only ever asked
//! to pivot onto paths that do not exist.

use crate::outcome::Outcome;
use crate::sys;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{self, mkdir};
use std::fs::File;

pub fn mount_tmpfs() -> Outcome {
    let dir = format!("/tmp/ccos-probe-mount-{}", std::process::id());
    if let Err(e) = mkdir(dir.as_str(), nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        return Outcome::refused(e, format!("cannot create the mount point {dir}: {}", e.desc()));
    }
    // A tiny, inert tmpfs on our own fresh directory: nothing else can be
    // shadowed by it, and it is unmounted straight away.
    let result = mount(
        Some("ccos-probe"),
        dir.as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0700"),
    );
    let outcome = match result {
        Ok(()) => {
            let umount = umount2(dir.as_str(), MntFlags::MNT_DETACH);
            Outcome::escaped(format!("mount -t tmpfs on {dir} succeeded (unmounted again: {})", umount.is_ok()))
        }
        Err(e) => Outcome::refused(e, format!("mount -t tmpfs on {dir} failed: {}", e.desc())),
    };
    let _ = std::fs::remove_dir(&dir);
    outcome
}

pub fn pivot_root() -> Outcome {
    // Both paths do not exist. The kernel checks CAP_SYS_ADMIN over the
    // mount namespace (may_mount) before it looks the paths up, so EPERM
    // means refused and ENOENT means the pivot would have been allowed;
    // nothing can be pivoted onto a path that is not there.
    let id = std::process::id();
    let new_root = format!("/ccos-probe-no-such-dir-{id}/new-root");
    let put_old = format!("/ccos-probe-no-such-dir-{id}/put-old");
    Outcome::past_check(
        unistd::pivot_root(new_root.as_str(), put_old.as_str()),
        &[Errno::ENOENT],
        "pivot_root onto a nonexistent path",
    )
}

pub fn chroot() -> Outcome {
    // chroot("/") needs CAP_SYS_CHROOT but changes nothing even when allowed.
    Outcome::attempt(unistd::chroot("/"), "chroot(\"/\")")
}

fn unshare_flag(flag: CloneFlags, name: &str) -> Outcome {
    Outcome::attempt(unshare(flag), &format!("unshare({name})"))
}

pub fn unshare_user() -> Outcome {
    unshare_flag(CloneFlags::CLONE_NEWUSER, "CLONE_NEWUSER")
}

pub fn unshare_mount() -> Outcome {
    unshare_flag(CloneFlags::CLONE_NEWNS, "CLONE_NEWNS")
}

pub fn unshare_net() -> Outcome {
    unshare_flag(CloneFlags::CLONE_NEWNET, "CLONE_NEWNET")
}

fn reap(result: Result<unistd::Pid, Errno>) -> Result<unistd::Pid, Errno> {
    if let Ok(pid) = result {
        let _ = waitpid(pid, None);
    }
    result
}

pub fn clone_newuser() -> Outcome {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
    Outcome::attempt(reap(sys::clone_exit_child(flags)), "clone(CLONE_NEWUSER|SIGCHLD)")
}

pub fn clone3_newuser() -> Outcome {
    // A seccomp filter cannot inspect clone3's flags (they are behind a
    // pointer), so jails usually make clone3 fail with ENOSYS; libc then
    // falls back to clone, which the filter can inspect.
    let flags = libc::CLONE_NEWUSER as u64;
    Outcome::attempt(reap(sys::clone3_exit_child(flags)), "clone3(CLONE_NEWUSER)")
}

fn ns_link(path: &str) -> String {
    std::fs::read_link(path).map_or_else(|e| format!("?({e})"), |p| p.display().to_string())
}

pub fn setns_pid1() -> Outcome {
    let theirs = ns_link("/proc/1/ns/mnt");
    let ours = ns_link("/proc/self/ns/mnt");
    let file = match File::open("/proc/1/ns/mnt") {
        Ok(f) => f,
        Err(e) => {
            let e = crate::outcome::errno_of(&e);
            return Outcome::refused(e, format!("open /proc/1/ns/mnt failed: {}", e.desc()));
        }
    };
    match setns(&file, CloneFlags::CLONE_NEWNS) {
        Ok(()) => {
            Outcome::escaped(format!("setns into pid 1's mount namespace succeeded (pid 1: {theirs}, ours: {ours})"))
        }
        Err(e) => Outcome::refused(
            e,
            format!("setns into pid 1's mount namespace failed: {} (pid 1: {theirs}, ours: {ours})", e.desc()),
        ),
    }
}
