//! Loading the programs into the kernel.
//!
//! Runs in the forked child right before execve, so: no heap allocation, no
//! locks, nothing but the seccomp syscall (std::io::Error from an OS error
//! code does not allocate).

use std::io;

use seccompiler::BpfProgram;

/// Installs every program in order with seccomp(SECCOMP_SET_MODE_FILTER).
/// The caller must have set no_new_privs (or hold CAP_SYS_ADMIN), else the
/// kernel refuses with EACCES.
pub(crate) fn install(programs: &[BpfProgram], flags: libc::c_ulong) -> io::Result<()> {
    for program in programs {
        crate::sys::seccomp_set_mode_filter(program, flags)?;
    }
    Ok(())
}
