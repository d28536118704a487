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
// BPF_ABS 0x20, BPF_ALU 0x04, BPF_AND 0x50, BPF_JMP 0x05, BPF_JA 0x00,
// BPF_JEQ 0x10, BPF_JGT 0x20, BPF_JGE 0x30, BPF_JSET 0x40, BPF_K 0x00,
// BPF_RET 0x06); fold.rs reads and writes the same ones.
pub(super) const BPF_LD_W_ABS: u16 = 0x20;
pub(super) const BPF_ALU_AND_K: u16 = 0x54;
pub(super) const BPF_JMP_JA: u16 = 0x05;
pub(super) const BPF_JMP_JEQ_K: u16 = 0x15;
pub(super) const BPF_JMP_JGT_K: u16 = 0x25;
pub(super) const BPF_JMP_JGE_K: u16 = 0x35;
pub(super) const BPF_JMP_JSET_K: u16 = 0x45;
pub(super) const BPF_RET_K: u16 = 0x06;

// Offsets in struct seccomp_data.
pub(super) const NR_OFFSET: u32 = 0;
pub(super) const ARCH_OFFSET: u32 = 4;

/// AUDIT_ARCH_X86_64 (linux/audit.h: EM_X86_64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE); libc does not export it.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// __X32_SYSCALL_BIT.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub(super) fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

pub(super) fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Whether a conditional jump on a constant (jeq, jgt, jge, jset #k) is
/// taken with `acc` in the accumulator; None for any other opcode.
pub(super) fn jump_taken(code: u16, acc: u32, k: u32) -> Option<bool> {
    match code {
        BPF_JMP_JEQ_K => Some(acc == k),
        BPF_JMP_JGT_K => Some(acc > k),
        BPF_JMP_JGE_K => Some(acc >= k),
        BPF_JMP_JSET_K => Some(acc & k != 0),
        _ => None,
    }
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

/// Ranges per block of [`membership`]: each range takes two instructions
/// and a jump to the block's returns must fit in 8 bits.
const RANGES_PER_BLOCK: usize = 100;

/// A filter body that answers `member` for the syscall numbers in `nrs`
/// and `other` for any other number: a scan over the numbers merged into
/// ascending ranges, two instructions a range.
///
/// seccompiler compares numbers one by one (four or so instructions per
/// syscall: 1,500 for the default allowlist), and the kernel checks and
/// JIT-compiles every instruction at install, on every spawn (about 0.6 ms
/// for the default profile). The allowed numbers come in long runs, so
/// ranges need a tenth of that.
pub(crate) fn membership(nrs: &[u32], member: u32, other: u32) -> BpfProgram {
    let mut sorted = nrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for nr in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == nr => *hi = nr,
            _ => ranges.push((nr, nr)),
        }
    }
    let mut p = vec![stmt(BPF_LD_W_ABS, NR_OFFSET)];
    let blocks: Vec<&[(u32, u32)]> = ranges.chunks(RANGES_PER_BLOCK).collect();
    for (b, block) in blocks.iter().enumerate() {
        // Layout of a block of n ranges, jumps relative to the next
        // instruction:
        //   2i   jge lo_i ? 2i+1 : ret other   (ascending: below lo_i is
        //                                      below every later range)
        //   2i+1 jgt hi_i ? next range : ret member
        //   2n   ja next block (or ret other after the last block)
        //   2n+1 ret other
        //   2n+2 ret member
        let n = block.len();
        for (i, (lo, hi)) in block.iter().enumerate() {
            let at = 2 * i;
            let to_other = (2 * n + 1 - (at + 1)) as u8;
            let to_member = (2 * n + 2 - (at + 2)) as u8;
            p.push(jump(BPF_JMP_JGE_K, *lo, 0, to_other));
            p.push(jump(BPF_JMP_JGT_K, *hi, 0, to_member));
        }
        let last = b + 1 == blocks.len();
        p.push(if last { stmt(BPF_RET_K, other) } else { stmt(BPF_JMP_JA, 2) });
        p.push(stmt(BPF_RET_K, other));
        p.push(stmt(BPF_RET_K, member));
    }
    if ranges.is_empty() {
        p.push(stmt(BPF_RET_K, other));
    }
    p
}

/// `program` run only for the syscall numbers in `nrs`; every other number
/// is allowed before it. Lets a filter that checks the arguments of a few
/// syscalls stay out of the way of all the others.
pub(crate) fn only_for(nrs: &[u32], program: BpfProgram) -> Option<BpfProgram> {
    // Each number is one jeq that jumps over the rest of the prefix.
    if nrs.len() > 250 {
        return None;
    }
    let n = nrs.len();
    let mut p = vec![stmt(BPF_LD_W_ABS, NR_OFFSET)];
    for (i, nr) in nrs.iter().enumerate() {
        // The program starts after the n jumps and the `ret allow`.
        p.push(jump(BPF_JMP_JEQ_K, *nr, (n - i) as u8, 0));
    }
    p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    p.extend(program);
    Some(p)
}
