//! The hand-built guard: a few BPF instructions that seccompiler cannot
//! express (it compares syscall numbers for equality only).
//!
//! What the guard decides, on the seccomp_data of each syscall:
//!
//! 1. Architecture other than AUDIT_ARCH_X86_64 (an i386 syscall through
//!    `int 0x80`): KILL_PROCESS. Its numbers mean other syscalls, and the
//!    profile was compiled for x86_64 numbers only. seccompiler's filters
//!    decide the same; the guard repeats it so that it is right on its own.
//! 2. x32 ABI (same arch value, number with bit 0x40000000 set, and any
//!    larger number): ERRNO(ENOSYS). No rule can match these numbers, so
//!    without this an x32 call would get the default action, which for an
//!    allow-by-default profile would bypass every deny rule. ENOSYS is what
//!    a kernel built or booted without x32 answers, and x32 programs are
//!    essentially extinct.
//! 3. Numbers above the highest syscall the profile names (only for
//!    profiles that deny by default): ERRNO(ENOSYS), like runc. A syscall
//!    newer than the profile then looks missing rather than forbidden, and
//!    libc falls back to the older call (clone3 -> clone, faccessat2 ->
//!    faccessat ...), instead of failing on EPERM.
//! 4. Anything else falls through: to RET ALLOW when the guard is its own
//!    filter, or into the filter it is prepended to.
//!
//! Where the guard goes (see compile.rs): at the head of the base filter,
//! which is installed last; as a filter of its own, also last, when the
//! default action is ALLOW (no base then; only x32 needs closing). Not as a
//! separate filter after the base, as runc's stub is placed in its single
//! filter, for two reasons: with a TRAP or KILL default the base's verdict
//! would outrank the guard's ERRNO whatever the order; and a base that
//! refuses seccomp() (any strict allowlist) would refuse the very call that
//! installs a filter after it.

use seccompiler::{sock_filter, BpfProgram};

// Classic BPF opcodes (linux/bpf_common.h: BPF_LD 0x00, BPF_W 0x00,
// BPF_ABS 0x20, BPF_JMP 0x05, BPF_JA 0x00, BPF_JEQ 0x10, BPF_JGT 0x20,
// BPF_JGE 0x30, BPF_K 0x00, BPF_RET 0x06).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

// Offsets in struct seccomp_data.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// AUDIT_ARCH_X86_64 (linux/audit.h: EM_X86_64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE); libc does not export it.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// __X32_SYSCALL_BIT.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The guard instructions; control leaves them at their end when the
/// syscall is x86_64 and at most `threshold` (any number if None).
pub(crate) fn guard(threshold: Option<u32>) -> BpfProgram {
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA);
    // Jumps are relative to the next instruction. Layout:
    //   0 ld arch
    //   1 jeq X86_64 ? 3 : 2
    //   2 ret KILL_PROCESS
    //   3 ld nr
    //   4 jge X32_BIT ? enosys : 5
    //  [5 jgt threshold ? enosys : 6]
    //   n ja end
    //   n+1 ret ERRNO(ENOSYS)
    //   end
    let mut p = vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
    ];
    let to_enosys_from_x32_check: u8 = if threshold.is_some() { 2 } else { 1 };
    p.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, to_enosys_from_x32_check, 0));
    if let Some(t) = threshold {
        p.push(jump(BPF_JMP_JGT_K, t, 1, 0));
    }
    p.push(stmt(BPF_JMP_JA, 1));
    p.push(stmt(BPF_RET_K, enosys));
    p
}

/// The guard as a filter of its own.
pub(crate) fn guard_program(threshold: Option<u32>) -> BpfProgram {
    let mut p = guard(threshold);
    p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    p
}

/// `program` with the guard in front; seccompiler's programs start by
/// loading what they need, and BPF jumps are relative, so nothing inside
/// `program` needs to change.
pub(crate) fn guarded(program: BpfProgram, threshold: Option<u32>) -> BpfProgram {
    let mut p = guard(threshold);
    p.extend(program);
    p
}
