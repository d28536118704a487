//! Thin wrappers over the system calls that nix does not cover. Every raw
//! call lives here so the checks themselves stay free of `unsafe`.
//!
//! Argument choices that keep a call harmless when it is *allowed* are made
//! by the callers (see escape/*.rs); these wrappers only marshal.

use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_fd(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = check(ret)?;
    let fd = libc::c_int::try_from(fd).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `_exit(2)`: leave at once, without running atexit handlers or flushing
/// stdio buffers inherited from the parent across fork.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// `kill(2)` with any signal number (nix's `Signal` lacks real-time ones).
pub fn kill_raw(pid: Pid, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill takes plain integers.
    check(libc::c_long::from(unsafe { libc::kill(pid.as_raw(), sig) })).map(drop)
}

/// Restore the default action of `sig` and unblock it.
pub fn default_and_unblock(sig: i32) -> Result<(), Errno> {
    // SAFETY: SIG_DFL is a valid disposition for any signal number; an
    // invalid number is reported as EINVAL.
    if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(Errno::last());
    }
    // SAFETY: the sigset is initialised by sigemptyset before use and only
    // lives on this stack frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
    }
    Ok(())
}

/// Ignore `sig` in this process.
pub fn ignore_signal(sig: nix::sys::signal::Signal) -> Result<(), Errno> {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: SIG_IGN installs no handler code, so there is nothing that
    // could run in signal context.
    unsafe { signal(sig, SigHandler::SigIgn) }.map(drop)
}

/// A clock read as nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    let secs = u128::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u128::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// `prctl(option, arg2, arg3, 0, 0)` for read-only queries, returning the
/// call's value.
pub fn prctl_query(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<libc::c_int, Errno> {
    let zero: libc::c_ulong = 0;
    // SAFETY: the options used here (PR_GET_SECCOMP, PR_CAPBSET_READ,
    // PR_CAP_AMBIENT_IS_SET) only read process state and take integers.
    let ret = unsafe { libc::prctl(option, arg2, arg3, zero, zero) };
    check(libc::c_long::from(ret)).map(|_| ret)
}

// ---- capabilities ---------------------------------------------------------

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One 32-bit word of each capability set (`struct __user_cap_data_struct`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// `capget(2)` for this thread, v3 (two words per set).
pub fn capget() -> Result<[CapData; 2], Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid for the v3 layout, which needs
    // exactly two CapData elements.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    Ok(data)
}

/// `capset(2)` for this thread, v3.
pub fn capset(data: &[CapData; 2]) -> Result<(), Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: header and data are valid for the v3 layout; the kernel only
    // reads `data`.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) }).map(drop)
}

// ---- process creation -----------------------------------------------------

/// Raw `clone(2)` with fork semantics (no CLONE_VM, no new stack) and the
/// given namespace flags. The child `_exit(0)`s at once; the parent gets its
/// pid and must reap it.
pub fn clone_exit_child(flags: u64) -> Result<Pid, Errno> {
    let flags = libc::c_ulong::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let null: libc::c_ulong = 0;
    // SAFETY: without CLONE_VM and with a null stack pointer the child runs
    // on a copy-on-write copy of our memory, exactly as after fork(2); it
    // only calls _exit. The tid/tls pointers are null and unused.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, null, null, null, null) };
    match check(ret)? {
        0 => exit_now(0),
        pid => Ok(Pid::from_raw(i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?)),
    }
}

/// `struct clone_args` as of CLONE_ARGS_SIZE_VER0 (64 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Raw `clone3(2)`, otherwise like [`clone_exit_child`].
pub fn clone3_exit_child(flags: u64) -> Result<Pid, Errno> {
    let args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..CloneArgs::default() };
    // SAFETY: `args` is a valid VER0 clone_args; with no stack and no
    // CLONE_VM the child gets a copy of our memory, as after fork(2), and it
    // only calls _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match check(ret)? {
        0 => exit_now(0),
        pid => Ok(Pid::from_raw(i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?)),
    }
}

// ---- kernel interfaces ----------------------------------------------------

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// `bpf(BPF_MAP_CREATE)` of a one-element array map (4-byte key and value).
pub fn bpf_array_map() -> Result<OwnedFd, Errno> {
    // The leading fields of `union bpf_attr` for BPF_MAP_CREATE: map_type,
    // key_size, value_size, max_entries; every later field must be zero.
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_ARRAY;
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: `attr` is a readable buffer of the size passed.
    check_fd(unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_ptr(), std::mem::size_of_val(&attr)) })
}

/// `struct perf_event_attr` up to PERF_ATTR_SIZE_VER0 (64 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    bp_addr: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
const PERF_FLAG_DISABLED: u64 = 1 << 0;
const PERF_FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const PERF_FLAG_EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `perf_event_open` of a disabled software cpu-clock counter on this
/// process, user space only (the most an unprivileged caller can ask for).
pub fn perf_cpu_clock_self() -> Result<OwnedFd, Errno> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK,
        flags: PERF_FLAG_DISABLED | PERF_FLAG_EXCLUDE_KERNEL | PERF_FLAG_EXCLUDE_HV,
        ..PerfEventAttr::default()
    };
    let (pid, cpu, group): (libc::pid_t, libc::c_int, libc::c_int) = (0, -1, -1);
    // SAFETY: `attr` is a valid VER0 perf_event_attr that the kernel reads.
    check_fd(unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, pid, cpu, group, PERF_FLAG_FD_CLOEXEC)
    })
}

const KEY_SPEC_PROCESS_KEYRING: i32 = -2;

/// `add_key("user", desc, payload, KEY_SPEC_PROCESS_KEYRING)`; returns the
/// key serial.
pub fn add_user_key_to_process_keyring(desc: &std::ffi::CStr, payload: &[u8]) -> Result<libc::c_long, Errno> {
    // SAFETY: the type and description are NUL-terminated C strings and the
    // payload pointer/length describe a live slice; the kernel only reads.
    check(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_PROCESS_KEYRING,
        )
    })
}

/// `finit_module(fd, "", flags)`.
pub fn finit_module(fd: libc::c_int, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: the params string is a valid empty C string; `fd` is an
    // integer the kernel validates.
    check(unsafe { libc::syscall(libc::SYS_finit_module, fd, c"".as_ptr(), flags) }).map(drop)
}

/// `kexec_load(0, 0, NULL, flags)`.
pub fn kexec_load_no_segments(flags: libc::c_ulong) -> Result<(), Errno> {
    let zero: libc::c_ulong = 0;
    let segments: *const libc::c_void = ptr::null();
    // SAFETY: with zero segments the kernel never dereferences `segments`.
    check(unsafe { libc::syscall(libc::SYS_kexec_load, zero, zero, segments, flags) }).map(drop)
}

/// `struct file_handle` with an 8-byte `f_handle`.
#[repr(C)]
struct FileHandle8 {
    handle_bytes: u32,
    handle_type: libc::c_int,
    f_handle: [u8; 8],
}

/// `open_by_handle_at(AT_FDCWD, handle, flags)` with a made-up handle.
pub fn open_by_bogus_handle(handle_type: libc::c_int, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    let handle = FileHandle8 { handle_bytes: 8, handle_type, f_handle: *b"ccosprob" };
    // SAFETY: `handle` is a valid file_handle whose handle_bytes matches the
    // bytes that follow; the kernel only reads it.
    check_fd(unsafe {
        libc::syscall(libc::SYS_open_by_handle_at, libc::AT_FDCWD, &handle as *const FileHandle8, flags)
    })
}

/// `userfaultfd(flags)`.
pub fn userfaultfd(flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: takes an integer flag word.
    check_fd(unsafe { libc::syscall(libc::SYS_userfaultfd, flags) })
}

/// `io_uring_setup(entries, &params)` with zeroed params (120 bytes).
pub fn io_uring_setup(entries: u32) -> Result<OwnedFd, Errno> {
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable, zeroed io_uring_params-sized buffer.
    check_fd(unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, params.as_mut_ptr()) })
}

/// `ioctl(fd, TIOCSTI, byte)`; `None` passes a NULL pointer, which the
/// kernel only dereferences *after* its permission checks (EFAULT then).
pub fn tiocsti(fd: BorrowedFd<'_>, byte: Option<&u8>) -> Result<(), Errno> {
    let p: *const u8 = byte.map_or(ptr::null(), |b| b as *const u8);
    // SAFETY: `p` is either null (the kernel fails with EFAULT without
    // touching our memory) or points to a live byte that the kernel reads.
    check(libc::c_long::from(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSTI, p) })).map(drop)
}
