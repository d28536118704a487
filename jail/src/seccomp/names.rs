//! Syscall name -> x86_64 number, telling names of other architectures
//! (which profiles list on purpose, see below) from names nobody knows.
//!
//! Docker-style profiles are written for every architecture at once: they
//! name `chown32`, `_llseek`, `socketcall`, `arm_fadvise64_64`, `s390_*` ...
//! and rely on libseccomp to ignore a name that the target architecture does
//! not have. We do the same, but only for names that really exist somewhere,
//! so that a typo (`mmount`) is still an error.

use super::syscalls;

/// x86_64 syscalls newer than the generated table (linux-libc-dev 6.1).
/// Each number was checked against two sources: the kernel's
/// arch/x86/entry/syscalls/syscall_64.tbl (torvalds/linux up to `mseal`,
/// and the tables quoted by later kernel patches) and libseccomp's
/// src/syscalls.csv (v7.1.0-rc4, column x86_64). 451-469 also answer
/// something other than ENOSYS on the 6.18 kernel this was written on
/// (map_shadow_stack aside: it needs CONFIG_X86_USER_SHADOW_STACK); 470 and
/// 471 are newer than that kernel. uretprobe and uprobe (335, 336) exist on
/// x86_64 only. Keep sorted by name.
const X86_64_NEWER: &[(&str, u32)] = &[
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("file_getattr", 468),
    ("file_setattr", 469),
    ("futex_requeue", 456),
    ("futex_wait", 455),
    ("futex_wake", 454),
    ("getxattrat", 464),
    ("listmount", 458),
    ("listns", 470),
    ("listxattrat", 465),
    ("lsm_get_self_attr", 459),
    ("lsm_list_modules", 461),
    ("lsm_set_self_attr", 460),
    ("map_shadow_stack", 453),
    ("mseal", 462),
    ("open_tree_attr", 467),
    ("removexattrat", 466),
    ("rseq_slice_yield", 471),
    ("setxattrat", 463),
    ("statmount", 457),
    ("uprobe", 336),
    ("uretprobe", 335),
];

/// Names that exist on some architecture other than x86 (i386, x86_64, x32
/// come from the headers): the names libseccomp's syscalls.csv gives a
/// number on no x86 ABI, with the architectures that have them. The Docker
/// and Podman profiles use arm_*, breakpoint, cacheflush, set_tls,
/// pciconfig_*, recv, send, riscv_*, s390_*, swapcontext, sync_file_range2
/// and syscall; the rest are here so that other such profiles load too.
/// Keep sorted by name.
const OTHER_ARCH_ONLY: &[(&str, &str)] = &[
    ("arm_fadvise64_64", "arm"),
    ("arm_sync_file_range", "arm"),
    ("atomic_barrier", "m68k"),
    ("atomic_cmpxchg_32", "m68k"),
    ("breakpoint", "arm"),
    ("cachectl", "mips"),
    ("cacheflush", "arm, m68k, mips, parisc, sh"),
    ("get_tls", "arm"),
    ("getpagesize", "m68k"),
    ("multiplexer", "ppc"),
    ("pciconfig_iobase", "arm, ppc"),
    ("pciconfig_read", "arm, ppc"),
    ("pciconfig_write", "arm, ppc"),
    ("recv", "arm, mips, parisc, ppc, sh"),
    ("riscv_flush_icache", "riscv64"),
    ("riscv_hwprobe", "riscv64"),
    ("rtas", "ppc"),
    ("s390_guarded_storage", "s390"),
    ("s390_pci_mmio_read", "s390"),
    ("s390_pci_mmio_write", "s390"),
    ("s390_runtime_instr", "s390"),
    ("s390_sthyi", "s390"),
    ("send", "arm, mips, parisc, ppc, sh"),
    ("set_tls", "arm"),
    ("spu_create", "ppc"),
    ("spu_run", "ppc"),
    ("subpage_prot", "ppc"),
    ("swapcontext", "ppc"),
    ("switch_endian", "ppc"),
    ("sync_file_range2", "arm, ppc, sh"),
    ("sys_debug_setcontext", "ppc"),
    ("syscall", "mips"),
    ("sysmips", "mips"),
    ("timerfd", "mips, s390"),
    ("usr26", "arm"),
    ("usr32", "arm"),
];

/// What a syscall name means on x86_64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// An x86_64 syscall with its number.
    X86_64(u32),
    /// A syscall of other architectures only (named here).
    OtherArch(&'static str),
    /// No architecture has it.
    Unknown,
}

pub(crate) fn lookup(name: &str) -> Lookup {
    if let Some(nr) = find_numbered(syscalls::X86_64, name).or_else(|| find_numbered(X86_64_NEWER, name)) {
        return Lookup::X86_64(nr);
    }
    if syscalls::I386.binary_search(&name).is_ok() {
        return Lookup::OtherArch("i386");
    }
    if syscalls::X32.binary_search(&name).is_ok() {
        return Lookup::OtherArch("x32");
    }
    match OTHER_ARCH_ONLY.binary_search_by(|(n, _)| (*n).cmp(name)) {
        Ok(i) => Lookup::OtherArch(OTHER_ARCH_ONLY[i].1),
        Err(_) => Lookup::Unknown,
    }
}

/// The name of an x86_64 syscall number (for summaries).
pub(crate) fn name_of(nr: u32) -> Option<&'static str> {
    syscalls::X86_64.iter().chain(X86_64_NEWER).find(|(_, n)| *n == nr).map(|(name, _)| *name)
}

fn find_numbered(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| table[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> bool {
        let v: Vec<T> = items.collect();
        v.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(sorted(syscalls::X86_64.iter().map(|e| e.0)));
        assert!(sorted(X86_64_NEWER.iter().map(|e| e.0)));
        assert!(sorted(syscalls::I386.iter()));
        assert!(sorted(syscalls::X32.iter()));
        assert!(sorted(OTHER_ARCH_ONLY.iter().map(|e| e.0)));
    }

    #[test]
    fn hand_added_names_and_numbers_are_new() {
        let names: HashSet<&str> = syscalls::X86_64.iter().map(|e| e.0).collect();
        let mut numbers: HashSet<u32> = syscalls::X86_64.iter().map(|e| e.1).collect();
        for (name, nr) in X86_64_NEWER {
            assert!(!names.contains(name), "{name} is already generated");
            assert!(numbers.insert(*nr), "{name}: number {nr} taken twice");
        }
        for (name, _) in OTHER_ARCH_ONLY {
            assert_eq!(find_numbered(syscalls::X86_64, name), None, "{name}");
            assert!(syscalls::I386.binary_search(name).is_err(), "{name} is i386");
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(lookup("read"), Lookup::X86_64(0));
        assert_eq!(lookup("mount"), Lookup::X86_64(165));
        assert_eq!(lookup("clone3"), Lookup::X86_64(435));
        assert_eq!(lookup("set_mempolicy_home_node"), Lookup::X86_64(450));
        assert_eq!(lookup("mseal"), Lookup::X86_64(462));
        assert_eq!(lookup("chown32"), Lookup::OtherArch("i386"));
        assert_eq!(lookup("socketcall"), Lookup::OtherArch("i386"));
        assert_eq!(lookup("s390_runtime_instr"), Lookup::OtherArch("s390"));
        assert_eq!(lookup("mmount"), Lookup::Unknown);
        assert_eq!(name_of(435), Some("clone3"));
        assert_eq!(name_of(471), Some("rseq_slice_yield"));
    }
}
