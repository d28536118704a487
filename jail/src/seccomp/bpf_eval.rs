//! Tests only: a classic-BPF interpreter for the instructions our programs
//! use, and the kernel's rule for combining stacked filters, so that tests
//! can ask "what does this profile answer to socket(AF_NETLINK)" without
//! installing anything.

use super::filter::jump_taken;
use super::CompiledSeccomp;

/// AUDIT_ARCH_I386 (linux/audit.h).
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// struct seccomp_data, laid out as the kernel does: nr, arch, ip, args.
pub(crate) fn seccomp_data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// Runs one program; panics on an instruction our compilers never emit.
pub(crate) fn run(program: &[seccompiler::sock_filter], data: &[u8; 64]) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = &program[pc];
        pc += 1;
        let k = insn.k;
        match insn.code {
            // ld [k]
            0x20 => {
                let o = k as usize;
                acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
            }
            // and #k
            0x54 => acc &= k,
            // ja +k
            0x05 => pc += k as usize,
            // jeq, jgt, jge, jset #k
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = jump_taken(insn.code, acc, k).unwrap_or_default();
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            // ret #k
            0x06 => return k,
            code => panic!("unexpected BPF opcode {code:#x} at {}", pc - 1),
        }
    }
}

/// Whether the kernel's action cache lets x86_64 syscall `nr` skip
/// `program`: the kernel's seccomp_is_const_allow (kernel/seccomp.c), which
/// runs the program with only the number and the architecture known and
/// says yes if it reaches `ret ALLOW` without looking at anything else.
pub(crate) fn const_allow(program: &[seccompiler::sock_filter], nr: u32) -> bool {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while let Some(insn) = program.get(pc) {
        pc += 1;
        let k = insn.k;
        match insn.code {
            0x20 => match k {
                0 => acc = nr,
                4 => acc = super::filter::AUDIT_ARCH_X86_64,
                _ => return false,
            },
            0x06 => return k == libc::SECCOMP_RET_ALLOW,
            0x05 => pc += k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = jump_taken(insn.code, acc, k).unwrap_or_default();
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            0x54 => acc &= k,
            _ => return false,
        }
    }
    false
}

/// What the kernel returns with all of `programs` installed, in order:
/// it runs every filter, newest first, and keeps a result only if its
/// action is strictly stronger (kernel/seccomp.c, seccomp_run_filters).
pub(crate) fn combine<'a>(
    programs: impl DoubleEndedIterator<Item = &'a [seccompiler::sock_filter]>,
    data: &[u8; 64],
) -> u32 {
    let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for p in programs.rev() {
        let cur = run(p, data);
        if action(cur) < action(ret) {
            ret = cur;
        }
    }
    ret
}

/// The kernel's answer for an x86_64 syscall.
pub(crate) fn decide(c: &CompiledSeccomp, nr: u32, args: [u64; 6]) -> u32 {
    combine(c.programs(), &seccomp_data(super::filter::AUDIT_ARCH_X86_64, nr, args))
}

/// The kernel's answer for a syscall of another architecture.
pub(crate) fn decide_arch(c: &CompiledSeccomp, arch: u32, nr: u32) -> u32 {
    combine(c.programs(), &seccomp_data(arch, nr, [0; 6]))
}

/// Return values, for readable assertions.
pub(crate) const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
pub(crate) const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
pub(crate) const KILL_THREAD: u32 = libc::SECCOMP_RET_KILL_THREAD;
pub(crate) const TRAP: u32 = libc::SECCOMP_RET_TRAP;
pub(crate) const LOG: u32 = libc::SECCOMP_RET_LOG;

pub(crate) const fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}
