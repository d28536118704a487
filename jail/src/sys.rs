//! Thin wrappers over the system calls nix does not cover (or covers only as
//! `unsafe fn`). This is the only module with `unsafe`; each wrapper is one
//! call with the invariants it relies on written next to it.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

/// The kernel's CLONE_INTO_CGROUP. libc's constant reads 0 on x86_64-gnu,
/// so it is spelled out here.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), version 2 (with `cgroup`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Reads a file the kernel generates (under /proc or /sys) whole, as text.
///
/// `std::fs::read_to_string` asks such a file its size (0), then probes it
/// with a 32-byte read and grows from there: a stat and eight reads for
/// /proc/self/status, and each read of /proc/self/mountinfo walks the mount
/// table again. These files are seldom over a few KiB, so start there.
pub fn read_kernel_file(path: &std::path::Path) -> io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(8192);
    // Through `take`: File's own read_to_end first asks the size (a stat and
    // a seek) to size the buffer, which says nothing here. With the
    // capacity already there, std reads straight into it (and grows it when
    // a file is larger).
    std::fs::File::open(path)?.take(u64::MAX).read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// What clone3 returned on each side.
pub enum Forked {
    Parent { pid: Pid, pidfd: OwnedFd },
    Child,
}

/// clone3 with fork semantics (no new stack): `flags` are CLONE_NEW* and the
/// like; CLONE_PIDFD is always added and the child's pidfd returned. With
/// `cgroup_fd`, the child starts inside that cgroup (v2 CLONE_INTO_CGROUP).
///
/// The caller must be single-threaded: the child continues on a copy of the
/// caller's memory with only the calling thread, so any lock another thread
/// held (malloc's included) would stay locked forever in the child.
pub fn clone3_fork(flags: u64, cgroup_fd: Option<RawFd>) -> io::Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed; stack 0 makes
    // the child run on a copy of this stack like fork(2); `pidfd` outlives
    // the call. Single-threadedness is the caller's documented duty.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as i32),
            // SAFETY: the kernel just created this fd for us (CLONE_PIDFD);
            // nothing else owns it.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Room for the program's child between [`spawn_sharing_memory`] and its
/// execve: what it runs (dropping privileges, the PATH search, seccomp)
/// needs a few pages; a guard page below catches an overflow.
const SHARED_CHILD_STACK: usize = 1 << 20;

/// Starts `child` in a new process that shares this one's memory, on a
/// stack of its own, and returns its pid once `child` has called execve or
/// exited (clone(2) with CLONE_VM | CLONE_VFORK, as posix_spawn does). The
/// jail's init starts the program this way: no copy of init's page tables
/// to make, and none for the program's execve to tear down.
///
/// `child` must end in execve or [`exit_now`], never return (its `c_int`
/// is only there so a closure calling a `-> !` function fits). It runs while
/// the caller is stopped, so it may allocate (no other thread of the caller
/// can hold malloc's lock: the caller must be single-threaded) but whatever
/// it changes in memory, the caller sees. Signal handlers, fds, ids,
/// capabilities, the working directory and seccomp stay per-process (no
/// CLONE_SIGHAND, CLONE_FILES, CLONE_FS or CLONE_THREAD).
pub fn spawn_sharing_memory(child: &mut dyn FnMut() -> libc::c_int) -> io::Result<Pid> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut &mut dyn FnMut` passed to clone below,
        // alive for the whole call: the caller is stopped until we exec or
        // exit.
        let child = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> libc::c_int) };
        child()
    }
    let page = 4096;
    // SAFETY: an anonymous private mapping; the result is checked.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SHARED_CHILD_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let unmap = |stack| {
        // SAFETY: the mapping made above, no longer used by anyone: the
        // child has exec'd (new memory) or exited.
        unsafe { libc::munmap(stack, SHARED_CHILD_STACK) };
    };
    // SAFETY: the lowest page of our own mapping; stacks grow down into it.
    if unsafe { libc::mprotect(stack, page, libc::PROT_NONE) } == -1 {
        let err = io::Error::last_os_error();
        unmap(stack);
        return Err(err);
    }
    let mut child = child;
    // SAFETY: the stack top is the end of a mapping of ours (16-byte
    // aligned), the trampoline and its argument live across the call, and
    // CLONE_VFORK keeps this thread stopped (and so its stack frame and
    // `child` valid) until the child execs or exits.
    let pid = unsafe {
        libc::clone(
            trampoline,
            stack.cast::<u8>().add(SHARED_CHILD_STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut child as *mut &mut dyn FnMut() -> libc::c_int).cast(),
        )
    };
    let result = if pid == -1 { Err(io::Error::last_os_error()) } else { Ok(Pid::from_raw(pid)) };
    unmap(stack);
    result
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: u32 = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes the mount at `path` (and, with `recursive`, every mount below it)
/// read-only, nosuid and nodev. mount_setattr only adds
/// flags here, so flags the host locked on a bind (e.g. noexec) are kept,
/// where a remount would have to read them back and repeat them.
pub fn make_read_only(path: &CStr, recursive: bool) -> io::Result<()> {
    let set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is NUL-terminated, `attr` is a valid mount_attr of the
    // size passed and lives across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A detached copy of the mount tree at `path` (open_tree(2) with
/// OPEN_TREE_CLONE, recursive), as an fd that [`attach_tree`] can place
/// anywhere, in another mount namespace too. Following symlinks, as a
/// bind mount does.
pub fn clone_tree(path: &CStr) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE as libc::c_uint;
    // SAFETY: `path` is NUL-terminated and outlives the call; open_tree
    // returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches a tree from [`clone_tree`] at `target` (move_mount(2)).
pub fn attach_tree(tree: RawFd, target: &CStr) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: both strings are NUL-terminated and outlive the call; `tree`
    // is an fd (the kernel checks it is a detached tree).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec, so the program starts with
/// only what is below `first` while the setup pipes still work until execve.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags; the range is valid.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every fd from `first` up except `keep`.
pub fn close_all_from_except(first: RawFd, keep: &[RawFd]) -> io::Result<()> {
    let mut sorted: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= first).collect();
    sorted.sort_unstable();
    let mut lo = first;
    for fd in sorted.into_iter().chain(std::iter::once(RawFd::MAX)) {
        if fd > lo {
            let hi = if fd == RawFd::MAX { u32::MAX } else { (fd - 1) as u32 };
            // SAFETY: close_range on a range of fds this process owns; the
            // ones we keep are outside every range closed.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi, 0) };
            if ret == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        lo = fd.saturating_add(1);
    }
    Ok(())
}

/// Drops capability `cap` from the bounding set (PR_CAPBSET_DROP).
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// setrlimit(2) with soft = hard = `value`.
pub fn set_rlimit(resource: i32, value: u64) -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: `lim` is a valid rlimit living across the call.
    let ret = unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &lim) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets IFF_UP on the interface `name` (e.g. "lo") through `sock`, an
/// AF_INET datagram socket.
pub fn set_interface_up(sock: &OwnedFd, name: &[u8]) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS on an open socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union, which is
    // the member we read and write.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above, for SIOCSIFFLAGS.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// wait4(2) on one child: its status and resource usage (which includes the
/// descendants it reaped, i.e. the whole jail when `pid` is the jail's init).
pub fn wait4(pid: Pid) -> io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes during the call.
        let ret = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        return Ok((status, usage));
    }
}

/// Installs `handler` for `signal` with SA_RESTART, in the jail's init.
pub fn set_signal_handler(signal: nix::sys::signal::Signal, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(SigHandler::Handler(handler), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers installed through this only call kill(2), which
    // is async-signal-safe, on a pid read from an atomic.
    unsafe { sigaction(signal, &action) }.map_err(io::Error::from)?;
    Ok(())
}

/// Restores the default action of every catchable signal (in the program's
/// child, before exec, so nothing of init's handling leaks into it).
pub fn reset_signal_dispositions() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if signal == Signal::SIGKILL || signal == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL has no handler to be unsafe about.
        let _ = unsafe { sigaction(signal, &default) };
    }
}

/// A `File` view of a raw fd this process keeps owning: dropping the view
/// does not close the fd.
pub fn file_view(fd: RawFd) -> std::mem::ManuallyDrop<std::fs::File> {
    // SAFETY: the File is never dropped (ManuallyDrop), so it never closes
    // an fd it does not own; callers pass fds open for the view's lifetime.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// dup2(2): makes `target` a copy of `fd` (for the program's stdio).
pub fn dup2(fd: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on integer fds; on success `target` is ours, replacing
    // whatever was there, which is the point.
    if unsafe { libc::dup2(fd, target) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// _exit(2): ends the process at once, without running atexit handlers or
/// flushing stdio buffers shared with the parent (a forked child must not).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// getxattr(2) into `buf`: the length of the value.
pub fn getxattr(path: &CStr, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `path` and `name` are NUL-terminated and outlive the call; the
    // kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether clone3 exists: called with no arguments it fails with EINVAL
/// where it exists and ENOSYS where it does not.
pub fn probe_clone3() -> io::Result<()> {
    // SAFETY: a NULL args pointer with size 0 is rejected by the kernel
    // before anything is read or created.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<CloneArgs>(), 0usize) };
    expect_einval(ret)
}

/// Whether mount_setattr exists (EINVAL/EBADF for bad arguments, else ENOSYS).
pub fn probe_mount_setattr() -> io::Result<()> {
    // SAFETY: an invalid fd and NULL pointers are rejected by the kernel
    // before anything is read or changed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<MountAttr>(),
            0usize,
        )
    };
    expect_einval(ret)
}

fn expect_einval(ret: libc::c_long) -> io::Result<()> {
    let err = io::Error::last_os_error();
    match (ret, err.raw_os_error()) {
        (-1, Some(libc::EINVAL | libc::EBADF | libc::EFAULT)) => Ok(()),
        (-1, _) => Err(err),
        _ => Ok(()),
    }
}

/// pidfd_open(2): a pidfd for `pid` (always close-on-exec).
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just made this fd for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether pidfds work: pidfd_open on ourselves.
pub fn probe_pidfd() -> io::Result<()> {
    pidfd_open(nix::unistd::getpid()).map(drop)
}

/// The Landlock ABI version this kernel offers.
pub fn landlock_abi() -> io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with the VERSION flag the kernel reads no attributes and
    // returns the ABI number instead of a ruleset fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i64)
}

/// struct sock_fprog (linux/filter.h), pointing into a program we borrow.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const seccompiler::sock_filter,
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, program). Allocates nothing: it
/// runs in the jailed child right before execve.
pub fn seccomp_set_mode_filter(bpf: &[seccompiler::sock_filter], flags: libc::c_ulong) -> io::Result<()> {
    let len = u16::try_from(bpf.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = SockFprog { len, filter: bpf.as_ptr() };
    // SAFETY: the kernel reads `len` sock_filter entries from `filter`
    // (borrowed from `bpf`, alive across the call) and copies them; it
    // writes no user memory. sock_filter is #[repr(C)] with the kernel's
    // layout.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            &fprog as *const SockFprog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the thread of `thread` run only on `cpus` (numbers below
/// [`nix::sched::CpuSet::count`]; others are left out). nix covers only
/// processes (sched_setaffinity by pid), and a std thread's kernel id is
/// not known to its creator until it has run.
pub fn set_thread_affinity<T>(
    thread: &std::thread::JoinHandle<T>,
    cpus: impl Iterator<Item = usize>,
) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus.filter(|&cpu| cpu < nix::sched::CpuSet::count()) {
        // SAFETY: `cpu` is below the number of CPUs a cpu_set_t holds.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the thread is joinable (its JoinHandle is borrowed, so it is
    // neither joined nor detached), so its pthread_t is valid; `set` is a
    // cpu_set_t of the size passed.
    let rc = unsafe {
        libc::pthread_setaffinity_np(
            std::os::unix::thread::JoinHandleExt::as_pthread_t(thread),
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        )
    };
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}
