//! The filters for real: a forked child sets no_new_privs, installs a
//! compiled profile, makes syscalls and reports what they returned through
//! a pipe. Needs root (the child first makes itself a private mount
//! namespace, so that a filter that wrongly allowed mount could not touch
//! the host); skipped otherwise.
//!
//! The child of a fork in a multi-threaded test process may only make
//! async-signal-safe calls: everything it does is a raw syscall on data
//! prepared before the fork (CompiledSeccomp::install allocates nothing).

use std::os::fd::AsRawFd;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

use super::tests::{compiled, fixture};
use super::{shipped, CompiledSeccomp};

const EPERM: i64 = -(libc::EPERM as i64);
const ENOSYS: i64 = -(libc::ENOSYS as i64);
const EINVAL: i64 = -(libc::EINVAL as i64);

/// Exit code of a child whose install() failed.
const INSTALL_FAILED: i32 = 100;
/// Exit code of a child that could not make its mount namespace private.
const NO_PRIVATE_MOUNTS: i32 = 101;

/// A syscall made by hand, returning the result or -errno.
///
/// Only for the probes below, which pass numbers, null, or pointers to
/// static data that the syscall reads (never buffers it would write).
fn raw(nr: libc::c_long, args: [libc::c_long; 6]) -> i64 {
    // SAFETY: per the contract above, no argument is a pointer the kernel
    // could write through; the call cannot touch memory we rely on.
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if r == -1 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        r
    }
}

fn ptr(s: &'static std::ffi::CStr) -> libc::c_long {
    s.as_ptr() as libc::c_long
}

/// mount("none", "/tmp", "tmpfs", 0, NULL)
fn mount_tmpfs() -> i64 {
    raw(libc::SYS_mount, [ptr(c"none"), ptr(c"/tmp"), ptr(c"tmpfs"), 0, 0, 0])
}

fn getpid() -> i64 {
    raw(libc::SYS_getpid, [0; 6])
}

/// socket(family, type, protocol); closes what it opened.
fn socket(family: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> i64 {
    let fd = raw(libc::SYS_socket, [family.into(), kind.into(), protocol.into(), 0, 0, 0]);
    if fd >= 0 {
        raw(libc::SYS_close, [fd as libc::c_long, 0, 0, 0, 0, 0]);
    }
    fd
}

/// How the child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Exit(i32),
    Signal(Signal),
}

/// Runs `probe` in a forked child under `profile` and returns its results;
/// then runs `then` (which may get the child killed) and reports how the
/// child ended. `drop_caps`: switch to uid 65534 first, which empties the
/// capability sets, as in a jail.
fn in_child<const N: usize>(
    profile: &CompiledSeccomp,
    drop_caps: bool,
    probe: fn() -> [i64; N],
    then: fn(),
) -> Option<([i64; N], Ended)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: live seccomp tests need root");
        return None;
    }
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only makes raw syscalls (see the module comment)
    // and leaves with _exit, never returning into the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        ForkResult::Child => {
            let fd = write_end.as_raw_fd();
            child(profile, drop_caps, probe, then, fd)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(read_end), &mut bytes).unwrap();
            let ended = match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, code) => Ended::Exit(code),
                WaitStatus::Signaled(_, sig, _) => Ended::Signal(sig),
                other => panic!("child: {other:?}"),
            };
            assert_ne!(ended, Ended::Exit(INSTALL_FAILED), "install() failed in the child");
            assert_ne!(ended, Ended::Exit(NO_PRIVATE_MOUNTS), "the child could not make a private mount namespace");
            assert_eq!(bytes.len(), N * 8, "child reported {} bytes, {ended:?}", bytes.len());
            let mut out = [0i64; N];
            for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *slot = i64::from_ne_bytes(chunk.try_into().unwrap());
            }
            Some((out, ended))
        }
    }
}

fn child<const N: usize>(
    profile: &CompiledSeccomp,
    drop_caps: bool,
    probe: fn() -> [i64; N],
    then: fn(),
    fd: i32,
) -> ! {
    // A private mount namespace, so that nothing mounted here is seen
    // outside; without one, no probe runs.
    let private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_long;
    if raw(libc::SYS_unshare, [libc::CLONE_NEWNS as libc::c_long, 0, 0, 0, 0, 0]) != 0
        || raw(libc::SYS_mount, [0, ptr(c"/"), 0, private, 0, 0]) != 0
    {
        // SAFETY: _exit ends the process at once, running nothing of ours.
        unsafe { libc::_exit(NO_PRIVATE_MOUNTS) };
    }
    if drop_caps {
        raw(libc::SYS_setresuid, [65534, 65534, 65534, 0, 0, 0]);
    }
    raw(libc::SYS_prctl, [libc::PR_SET_NO_NEW_PRIVS as libc::c_long, 1, 0, 0, 0, 0]);
    if profile.install().is_err() {
        // SAFETY: _exit ends the process at once, running nothing of ours.
        unsafe { libc::_exit(INSTALL_FAILED) };
    }
    let results = probe();
    // SAFETY: writes N * 8 bytes from `results`, which lives on our stack
    // for the whole call; the pipe is ours.
    unsafe { libc::write(fd, results.as_ptr().cast(), std::mem::size_of_val(&results)) };
    then();
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

fn nothing() {}

#[test]
fn shipped_default_in_the_kernel() {
    let c = compiled(shipped("default").unwrap().as_bytes());
    let probe = || {
        [
            mount_tmpfs(),
            raw(libc::SYS_clone3, [0; 6]),
            socket(libc::AF_NETLINK, libc::SOCK_RAW, 0),
            socket(libc::AF_PACKET, libc::SOCK_RAW, 0),
            socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
            socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
            getpid(),
            raw(500, [0; 6]),
            raw(libc::SYS_ioctl, [0, libc::TIOCSTI as libc::c_long, ptr(c"x"), 0, 0, 0]),
            raw(libc::SYS_unshare, [libc::CLONE_NEWUSER as libc::c_long, 0, 0, 0, 0, 0]),
            raw(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0, 0]),
        ]
    };
    let Some((r, ended)) = in_child(&c, false, probe, nothing) else {
        return;
    };
    assert_eq!(ended, Ended::Exit(0));
    let [mount, clone3, netlink, packet, inet, unix, pid, n500, tiocsti, unshare, uring] = r;
    assert_eq!(mount, EPERM, "mount");
    assert_eq!(clone3, ENOSYS, "clone3");
    assert_eq!(netlink, EPERM, "socket(AF_NETLINK)");
    assert_eq!(packet, EPERM, "socket(AF_PACKET)");
    assert!(inet >= 0, "socket(AF_INET): {inet}");
    assert!(unix >= 0, "socket(AF_UNIX): {unix}");
    assert!(pid > 0, "getpid: {pid}");
    assert_eq!(n500, ENOSYS, "syscall 500");
    assert_eq!(tiocsti, EPERM, "ioctl(TIOCSTI)");
    assert_eq!(unshare, EPERM, "unshare");
    assert_eq!(uring, EPERM, "io_uring_setup");
}

#[test]
fn docker_default_in_the_kernel() {
    let c = compiled(&fixture("docker-default.json"));
    // Root with every capability: an EPERM here comes from the filter.
    let probe = || [mount_tmpfs(), getpid(), raw(libc::SYS_clone3, [0; 6]), socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)];
    let Some((r, ended)) = in_child(&c, false, probe, nothing) else {
        return;
    };
    assert_eq!(ended, Ended::Exit(0));
    assert_eq!(r[0], EPERM, "mount");
    assert!(r[1] > 0, "getpid: {}", r[1]);
    assert_eq!(r[2], ENOSYS, "clone3");
    assert!(r[3] >= 0, "socket(AF_UNIX): {}", r[3]);
}

#[test]
fn podman_default_in_the_kernel() {
    let c = compiled(&fixture("podman-default.json"));
    // Podman's profile allows mount; without capabilities (as in a jail)
    // the kernel refuses it.
    let probe = || {
        [
            mount_tmpfs(),
            getpid(),
            socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_AUDIT),
            raw(libc::SYS_kexec_load, [0; 6]),
            raw(500, [0; 6]),
        ]
    };
    let Some((r, ended)) = in_child(&c, true, probe, nothing) else {
        return;
    };
    assert_eq!(ended, Ended::Exit(0));
    assert_eq!(r[0], EPERM, "mount");
    assert!(r[1] > 0, "getpid: {}", r[1]);
    assert_eq!(r[2], EINVAL, "socket(AF_NETLINK, NETLINK_AUDIT)");
    assert_eq!(r[3], EPERM, "kexec_load");
    assert_eq!(r[4], ENOSYS, "syscall 500");
}

#[test]
fn shipped_strict_in_the_kernel() {
    let c = compiled(shipped("strict").unwrap().as_bytes());
    let probe = || {
        // fork: if the filter wrongly allowed it, the new child leaves at once.
        let fork = raw(libc::SYS_clone, [libc::SIGCHLD as libc::c_long, 0, 0, 0, 0, 0]);
        if fork == 0 {
            // SAFETY: _exit ends the process at once.
            unsafe { libc::_exit(0) };
        }
        [
            fork,
            socket(libc::AF_INET, libc::SOCK_STREAM, 0),
            socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
            raw(libc::SYS_execveat, [-1, ptr(c""), 0, 0, 0, 0]),
            getpid(),
        ]
    };
    let Some((r, ended)) = in_child(&c, false, probe, nothing) else {
        return;
    };
    assert_eq!(ended, Ended::Exit(0));
    assert_eq!(r[0], EPERM, "fork");
    assert_eq!(r[1], EPERM, "socket(AF_INET)");
    assert!(r[2] >= 0, "socket(AF_UNIX): {}", r[2]);
    assert_eq!(r[3], EPERM, "execveat");
    assert!(r[4] > 0, "getpid");
}

#[test]
fn enosys_threshold_in_the_kernel() {
    // The profile names nothing above exit_group (231): statx (332) exists
    // on this kernel but is newer than the profile, so ENOSYS; getppid
    // (110) is simply not allowed, so EPERM.
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["write", "exit", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    let probe = || {
        [
            raw(libc::SYS_statx, [libc::AT_FDCWD as libc::c_long, ptr(c"/"), 0, 0, 0, 0]),
            raw(libc::SYS_getppid, [0; 6]),
            getpid(),
            raw(0x4000_0000 | libc::SYS_getpid, [0; 6]),
        ]
    };
    let Some((r, ended)) = in_child(&c, false, probe, nothing) else {
        return;
    };
    assert_eq!(ended, Ended::Exit(0));
    assert_eq!(r, [ENOSYS, EPERM, r[2], ENOSYS]);
    assert!(r[2] > 0);
}

#[test]
fn kill_default_in_the_kernel() {
    // Default KILL_PROCESS: ENOSYS above the threshold still works (the
    // guard is inside the base filter), and an unlisted call kills.
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
            {"names": ["write", "exit", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    let probe = || [raw(libc::SYS_statx, [0; 6]), getpid()];
    let then = || {
        raw(libc::SYS_getppid, [0; 6]);
    };
    let Some((r, ended)) = in_child(&c, false, probe, then) else {
        return;
    };
    assert_eq!(r[0], ENOSYS);
    assert!(r[1] > 0);
    assert_eq!(ended, Ended::Signal(Signal::SIGSYS));
}

#[test]
fn precedence_in_the_kernel() {
    // Default ALLOW; for getpgid two ERRNO rules (the later one wins) and a
    // KILL_PROCESS rule on one argument value (beats any ERRNO).
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["getpgid"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 4242, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    let probe = || [raw(libc::SYS_getpgid, [0; 6]), raw(libc::SYS_getppid, [0; 6])];
    let then = || {
        raw(libc::SYS_getpgid, [4242, 0, 0, 0, 0, 0]);
    };
    let Some((r, ended)) = in_child(&c, false, probe, then) else {
        return;
    };
    assert_eq!(r[0], EPERM);
    assert!(r[1] > 0, "getppid allowed by default");
    assert_eq!(ended, Ended::Signal(Signal::SIGSYS));
}
