//! Loading the programs into the kernel: the only unsafe code of the module.
//!
//! Runs in the forked child right before execve, so: no heap allocation, no
//! locks, nothing but the seccomp syscall (std::io::Error from an OS error
//! code does not allocate).

use std::io;

use seccompiler::sock_filter;

use super::compile::Program;

/// struct sock_fprog (linux/filter.h), pointing into a program we borrow.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

/// Installs every program in order with seccomp(SECCOMP_SET_MODE_FILTER).
/// The caller must have set no_new_privs (or hold CAP_SYS_ADMIN), else the
/// kernel refuses with EACCES.
pub(crate) fn install(programs: &[Program], flags: libc::c_ulong) -> io::Result<()> {
    for program in programs {
        let len = u16::try_from(program.bpf.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let fprog = SockFprog { len, filter: program.bpf.as_ptr() };
        // SAFETY: seccomp(2) with SECCOMP_SET_MODE_FILTER reads `len`
        // sock_filter entries from `filter` (which `program.bpf` owns and
        // outlives the call) and copies them into the kernel; it writes no
        // user memory. sock_filter is #[repr(C)] with the kernel's layout,
        // and compile.rs checked every program against the kernel's length
        // limit.
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
    }
    Ok(())
}
