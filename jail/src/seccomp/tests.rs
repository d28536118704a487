//! Loader and compiler tests: real-world profiles, the shipped ones,
//! every fail-fast case, hashing and caching, and filter precedence. What a
//! profile decides is read with the BPF interpreter of bpf_eval.rs; the
//! same decisions are checked for real, in the kernel, by live_tests.rs.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::bpf_eval::{self, decide, decide_arch, errno, ALLOW, KILL_PROCESS, KILL_THREAD, LOG, TRAP};
use super::compile::Role;
use super::model::Action;
use super::{compile, load_bytes, load_file, shipped, CompiledSeccomp, KernelVersion};

/// Real-world profiles nobody on this project wrote (see their README.md);
/// shared/ sits beside the repository.
pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/seccomp");

/// The kernel these tests pretend to run (minKernel decisions).
pub(crate) const KERNEL: KernelVersion = KernelVersion::new(6, 18, 44);

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reading the test fixture {path}: {e} (shared/ must sit beside the repository)"))
}

pub(crate) fn compiled(bytes: &[u8]) -> CompiledSeccomp {
    compile(bytes, "test.json", KERNEL).unwrap_or_else(|e| panic!("{e}"))
}

fn shipped_profile(name: &str) -> CompiledSeccomp {
    compiled(shipped(name).unwrap().as_bytes())
}

/// The error message for a profile text.
fn error_of(text: &str) -> String {
    match compile(text.as_bytes(), "bad.json", KERNEL) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

/// A profile with one rule (JSON object text) besides an ALLOW default.
fn one_rule(rule: &str) -> String {
    format!(r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{rule}]}}"#)
}

// syscall numbers, x86_64
const READ: u32 = 0;
const IOCTL: u32 = 16;
const GETPID: u32 = 39;
const SOCKET: u32 = 41;
const SOCKETPAIR: u32 = 53;
const CLONE: u32 = 56;
const EXECVE: u32 = 59;
const PERSONALITY: u32 = 135;
const PRCTL: u32 = 157;
const MOUNT: u32 = 165;
const PTRACE: u32 = 101;
const OPEN_BY_HANDLE_AT: u32 = 304;
const BPF: u32 = 321;
const EXECVEAT: u32 = 322;
const CLONE3: u32 = 435;

const EPERM: i32 = libc::EPERM;
const ENOSYS: i32 = libc::ENOSYS;

const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;
const FORK_FLAGS: u64 = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;

fn a0(v: u64) -> [u64; 6] {
    [v, 0, 0, 0, 0, 0]
}

fn nr(name: &str) -> u32 {
    match super::names::lookup(name) {
        super::names::Lookup::X86_64(n) => n,
        other => panic!("{name}: {other:?}"),
    }
}

// ---------------------------------------------------------------- fixtures

#[test]
fn docker_default_compiles_and_decides_like_docker() {
    let c = compiled(&fixture("docker-default.json"));
    assert_eq!(decide(&c, GETPID, [0; 6]), ALLOW);
    assert_eq!(decide(&c, READ, [0; 6]), ALLOW);
    // "clone3 -> ENOSYS" rule (excludes CAP_SYS_ADMIN: applies without caps).
    assert_eq!(decide(&c, CLONE3, [0; 6]), errno(38));
    // mount is only in the CAP_SYS_ADMIN rule: the default, errno 1.
    assert_eq!(decide(&c, MOUNT, [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("umount2"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("unshare"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, BPF, [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, OPEN_BY_HANDLE_AT, [0; 6]), errno(EPERM), "includes.caps rule applied");
    // clone without CLONE_NEW* only.
    assert_eq!(decide(&c, CLONE, a0(THREAD_FLAGS)), ALLOW);
    assert_eq!(decide(&c, CLONE, a0(FORK_FLAGS | libc::CLONE_NEWUSER as u64)), errno(EPERM));
    // socket: everything but AF_VSOCK (40).
    assert_eq!(decide(&c, SOCKET, a0(libc::AF_NETLINK as u64)), ALLOW);
    assert_eq!(decide(&c, SOCKET, a0(39)), ALLOW);
    assert_eq!(decide(&c, SOCKET, a0(40)), errno(EPERM));
    // personality: the five harmless values.
    assert_eq!(decide(&c, PERSONALITY, a0(0xffff_ffff)), ALLOW);
    assert_eq!(decide(&c, PERSONALITY, a0(0x0040000)), errno(EPERM));
    // arch-gated rules: arch_prctl (amd64) in, s390/arm names out.
    assert_eq!(decide(&c, nr("arch_prctl"), [0; 6]), ALLOW);
    assert_eq!(decide(&c, nr("modify_ldt"), [0; 6]), ALLOW);
    // ptrace: includes.minKernel 4.8, we run 6.18.
    assert_eq!(decide(&c, PTRACE, [0; 6]), ALLOW);
    // The highest number docker names is removexattrat (466): above it, ENOSYS.
    assert_eq!(c.plan().highest_nr, Some(466));
    assert_eq!(decide(&c, 466, [0; 6]), ALLOW);
    assert_eq!(decide(&c, 467, [0; 6]), errno(ENOSYS));
    assert_eq!(decide(&c, 0x4000_0000 | GETPID, [0; 6]), errno(ENOSYS), "x32");
    assert_eq!(decide_arch(&c, bpf_eval::AUDIT_ARCH_I386, 20), KILL_PROCESS, "i386");

    // Caps-gated rules are skipped, and say so.
    let skipped: Vec<(usize, &str)> = c.plan().skipped.iter().map(|s| (s.index, s.reason.as_str())).collect();
    for i in [16, 17, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32] {
        let reason = skipped.iter().find(|s| s.0 == i).unwrap_or_else(|| panic!("syscalls[{i}] not skipped")).1;
        assert!(reason.contains("includes.caps needs CAP_"), "{reason}");
    }
    for i in [10, 11, 14, 15, 19] {
        assert!(skipped.iter().any(|s| s.0 == i && s.1.contains("includes.arches")), "syscalls[{i}]");
    }
    assert_eq!(skipped.len(), 19);
    // i386 and arm names are passed over, not errors.
    let passed: Vec<&str> = c.plan().passed_names.iter().map(|p| p.name.as_str()).collect();
    assert!(passed.contains(&"chown32") && passed.contains(&"socketcall") && passed.contains(&"arm_fadvise64_64"));
}

#[test]
fn docker_min_kernel_follows_the_kernel_given() {
    let old = compile(&fixture("docker-default.json"), "docker", KernelVersion::new(4, 4, 0)).unwrap();
    assert_eq!(decide(&old, PTRACE, [0; 6]), errno(EPERM));
    assert!(old.plan().skipped.iter().any(|s| s.index == 1 && s.reason.contains("minKernel is 4.8.0")));
    let new = compile(&fixture("docker-default.json"), "docker", KernelVersion::new(4, 8, 0)).unwrap();
    assert_eq!(decide(&new, PTRACE, [0; 6]), ALLOW);
}

#[test]
fn podman_default_compiles_and_decides_like_podman() {
    let c = compiled(&fixture("podman-default.json"));
    // Default ENOSYS (defaultErrnoRet 38 with "defaultErrno": "ENOSYS").
    assert_eq!(decide(&c, nr("add_key"), [0; 6]), errno(ENOSYS));
    // Podman allows mount and leaves it to the missing CAP_SYS_ADMIN
    // (live_tests checks that the kernel then says EPERM).
    assert_eq!(decide(&c, MOUNT, [0; 6]), ALLOW);
    assert_eq!(decide(&c, CLONE3, [0; 6]), ALLOW);
    // Explicit EPERM rules, and excludes.caps rules that apply.
    assert_eq!(decide(&c, nr("kexec_load"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("userfaultfd"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, OPEN_BY_HANDLE_AT, [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, BPF, [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("setns"), [0; 6]), errno(EPERM));
    // socket(AF_NETLINK, *, NETLINK_AUDIT) -> EINVAL, other netlink fine.
    assert_eq!(decide(&c, SOCKET, [16, 3, 9, 0, 0, 0]), errno(libc::EINVAL));
    assert_eq!(decide(&c, SOCKET, [16, 3, 0, 0, 0, 0]), ALLOW);
    assert_eq!(decide(&c, SOCKET, [2, 1, 9, 0, 0, 0]), ALLOW);
    assert_eq!(decide(&c, GETPID, [0; 6]), ALLOW);
}

#[test]
fn firecracker_seccompiler_filters_compile() {
    let json = fixture("firecracker-x86_64-musl.seccompiler.json");
    let filters = seccompiler::compile_from_json(json.as_slice(), seccompiler::TargetArch::x86_64).unwrap();
    let mut names: Vec<&str> = filters.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["api", "vcpu", "vmm"]);
    for (name, program) in &filters {
        assert!(program.len() > 10 && program.len() < 4096, "{name}: {}", program.len());
        // default_action trap, filter_action allow
        let run = |nr: u32| bpf_eval::combine(std::iter::once(program.as_slice()), &data(nr));
        assert_eq!(run(nr("futex")), ALLOW, "{name}");
        assert_eq!(run(MOUNT), TRAP, "{name}");
    }

    fn data(nr: u32) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_le_bytes());
        d[4..8].copy_from_slice(&super::filter::AUDIT_ARCH_X86_64.to_le_bytes());
        d
    }
}

#[test]
fn every_fixture_name_is_known_somewhere() {
    for f in ["docker-default.json", "podman-default.json"] {
        let v: serde_json::Value = serde_json::from_slice(&fixture(f)).unwrap();
        for rule in v["syscalls"].as_array().unwrap() {
            for name in rule["names"].as_array().unwrap() {
                let name = name.as_str().unwrap();
                assert_ne!(super::names::lookup(name), super::names::Lookup::Unknown, "{f}: {name}");
            }
        }
    }
}

// ---------------------------------------------------------------- shipped

#[test]
fn shipped_default_allows_ordinary_programs_and_denies_the_rest() {
    let c = shipped_profile("default");
    for name in [
        "read",
        "write",
        "openat",
        "statx",
        "mmap",
        "futex",
        "rt_sigaction",
        "clock_gettime",
        "epoll_pwait",
        "pipe2",
        "eventfd2",
        "timerfd_create",
        "prctl",
        "arch_prctl",
        "getrandom",
        "execve",
        "wait4",
        "mknodat",
        "rseq",
        "set_robust_list",
        "getpid",
        "exit_group",
    ] {
        assert_eq!(decide(&c, nr(name), [0; 6]), ALLOW, "{name}");
    }
    for name in [
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "open_by_handle_at",
        "name_to_handle_at",
        "userfaultfd",
        "swapon",
        "swapoff",
        "reboot",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "acct",
        "quotactl",
        "syslog",
        "iopl",
        "ioperm",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert_eq!(decide(&c, nr(name), [0; 6]), errno(EPERM), "{name}");
    }
    assert_eq!(decide(&c, CLONE3, [0; 6]), errno(ENOSYS));
    assert_eq!(decide(&c, CLONE, a0(THREAD_FLAGS)), ALLOW);
    assert_eq!(decide(&c, CLONE, a0(FORK_FLAGS)), ALLOW);
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ] {
        assert_eq!(decide(&c, CLONE, a0(FORK_FLAGS | flag as u64)), errno(EPERM), "{flag:#x}");
    }
    for (family, want) in
        [(1, ALLOW), (2, ALLOW), (10, ALLOW), (16, errno(EPERM)), (17, errno(EPERM)), (40, errno(EPERM))]
    {
        assert_eq!(decide(&c, SOCKET, a0(family)), want, "family {family}");
    }
    assert_eq!(decide(&c, SOCKETPAIR, a0(1)), ALLOW);
    assert_eq!(decide(&c, SOCKETPAIR, a0(2)), errno(EPERM));
    assert_eq!(decide(&c, PERSONALITY, a0(0)), ALLOW);
    assert_eq!(decide(&c, PERSONALITY, a0(0xffff_ffff)), ALLOW);
    assert_eq!(decide(&c, PERSONALITY, a0(0x0040000)), errno(EPERM), "ADDR_NO_RANDOMIZE");
    // ioctl: allowed but TIOCSTI / TIOCLINUX, also with junk in the upper half.
    assert_eq!(decide(&c, IOCTL, [0, libc::TCGETS, 0, 0, 0, 0]), ALLOW);
    assert_eq!(decide(&c, IOCTL, [0, libc::TIOCSTI, 0, 0, 0, 0]), errno(EPERM));
    assert_eq!(decide(&c, IOCTL, [0, libc::TIOCSTI | (1 << 32), 0, 0, 0, 0]), errno(EPERM));
    assert_eq!(decide(&c, IOCTL, [0, 0x541C, 0, 0, 0, 0]), errno(EPERM));
    // Newer than the profile: ENOSYS; named but not allowed: EPERM.
    assert_eq!(c.plan().highest_nr, Some(nr("file_setattr")));
    assert_eq!(decide(&c, nr("file_setattr"), [0; 6]), ALLOW);
    assert_eq!(decide(&c, nr("listns"), [0; 6]), errno(ENOSYS));
    assert_eq!(decide(&c, 500, [0; 6]), errno(ENOSYS));
    assert_eq!(decide(&c, nr("statmount"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, 0x4000_0000, [0; 6]), errno(ENOSYS), "x32 read");
    assert_eq!(decide_arch(&c, bpf_eval::AUDIT_ARCH_I386, 20), KILL_PROCESS);
    // ERRNO(38), ERRNO(1), the argument conditions, then the base.
    let roles = c.roles();
    assert_eq!(
        roles,
        [Role::Action(Action::Errno(38)), Role::Action(Action::Errno(1)), Role::Conditions, Role::Base],
        "{roles:?}"
    );
}

#[test]
fn shipped_strict_allows_threads_but_no_children() {
    let c = shipped_profile("strict");
    assert_eq!(decide(&c, CLONE, a0(THREAD_FLAGS)), ALLOW);
    assert_eq!(decide(&c, CLONE, a0(FORK_FLAGS)), errno(EPERM));
    assert_eq!(decide(&c, CLONE, a0((libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64)), errno(EPERM));
    assert_eq!(decide(&c, CLONE, a0(THREAD_FLAGS | libc::CLONE_NEWUSER as u64)), errno(EPERM));
    assert_eq!(decide(&c, nr("fork"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("vfork"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, CLONE3, [0; 6]), errno(ENOSYS));
    assert_eq!(decide(&c, EXECVE, [0; 6]), ALLOW);
    assert_eq!(decide(&c, EXECVEAT, [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, SOCKET, a0(1)), ALLOW);
    assert_eq!(decide(&c, SOCKET, a0(2)), errno(EPERM));
    assert_eq!(decide(&c, nr("bind"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, IOCTL, [1, libc::TCGETS, 0, 0, 0, 0]), ALLOW);
    assert_eq!(decide(&c, IOCTL, [1, libc::TIOCGWINSZ, 0, 0, 0, 0]), ALLOW);
    assert_eq!(decide(&c, IOCTL, [1, libc::TIOCSTI, 0, 0, 0, 0]), errno(EPERM));
    assert_eq!(decide(&c, PRCTL, a0(libc::PR_SET_NAME as u64)), ALLOW);
    assert_eq!(decide(&c, PRCTL, a0(libc::PR_SET_SECCOMP as u64)), errno(EPERM));
    assert_eq!(decide(&c, nr("chown"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("mount"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("io_uring_setup"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, 500, [0; 6]), errno(ENOSYS));
}

#[test]
fn shipped_names() {
    assert!(shipped("default").is_some() && shipped("strict").is_some());
    assert!(shipped("docker").is_none() && shipped("").is_none());
}

#[test]
fn describe_says_what_the_filter_does() {
    let d = compiled(&fixture("docker-default.json")).describe();
    for needle in [
        "sha256:",
        "default action: ERRNO(1 EPERM)",
        "ERRNO(38 ENOSYS) (1 syscall):\n    clone3",
        "clone [arg0 & 0x7e020000 == 0]",
        "socket [arg0 < 38 | arg0 == 39 | arg0 > 40]",
        "syscalls[17] bpf, clone, clone3, fanotify_init, fsconfig, fsmount, ... (26 names): includes.caps needs CAP_SYS_ADMIN",
        "syscalls[19] clone: includes.arches is [s390, s390x], not x86_64",
        "(s390 parameter ordering for clone is different)",
        "  i386:\n    _llseek, _newselect, chown32,",
        "syscalls above 466 (removexattrat, the highest the profile names) -> ERRNO(38 ENOSYS)",
        "x32 ABI syscalls",
        "  1. rules -> ERRNO(38 ENOSYS), anything else passes: ",
        "  2. argument conditions of the listed syscalls that have them -> ERRNO(1 EPERM)",
        "  3. guard, then base: unlisted syscalls -> ERRNO(1 EPERM), listed ones pass on",
    ] {
        assert!(d.contains(needle), "missing {needle:?} in:\n{d}");
    }
    let d = shipped_profile("default").describe();
    assert!(d.contains("ioctl [arg1 & 0xffffffff == 0x5412 | arg1 & 0xffffffff == 0x541c]"), "{d}");
}

// ---------------------------------------------------------------- errors

#[test]
fn every_mistake_is_named_by_its_path() {
    let cases: Vec<(String, &[&str])> = vec![
        (r#"{"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}"#.into(), &["`bogus`", "unknown field `bogus`"]),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "commnet": ""}"#), &["`syscalls[0].commnet`"]),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "vlue": 2}]}"#),
            &["`syscalls[0].args[0].vlue`", "unknown field"],
        ),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"capabilities": []}}"#),
            &["`syscalls[0].includes.capabilities`"],
        ),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALOW"}"#), &["`syscalls[0].action`", "unknown variant `SCMP_ACT_ALOW`"]),
        (r#"{"defaultAction": "ALLOW"}"#.into(), &["`defaultAction`", "unknown variant"]),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}]}"#),
            &["`syscalls[0].args[0].op`", "unknown variant `SCMP_CMP_EQUAL`"],
        ),
        (one_rule(r#"{"names": ["read", "mmount"], "action": "SCMP_ACT_ALLOW"}"#), &["bad.json", "`syscalls[0].names[1]`", "unknown syscall `mmount`"]),
        (one_rule(r#"{"name": "mmount", "action": "SCMP_ACT_ALLOW"}"#), &["`syscalls[0].name`", "`mmount`"]),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}"#),
            &["`syscalls[0].args[0].index`", "argument index 6 is out of range 0 to 5"],
        ),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd65"]}}"#),
            &["`syscalls[0].includes.arches[0]`", "unknown architecture `amd65`"],
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X68"]}"#.into(),
            &["`architectures[1]`", "`SCMP_ARCH_X68`"],
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "x33"]}]}"#.into(),
            &["`archMap[0].subArchitectures[1]`", "`x33`"],
        ),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMN"]}}"#),
            &["`syscalls[0].excludes.caps[0]`", "unknown capability"],
        ),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.x"}}"#),
            &["`syscalls[0].includes.minKernel`", "not a kernel version"],
        ),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}"#), &["`syscalls[0].action`", "SCMP_ACT_NOTIFY is not supported"]),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_TRACE"}"#), &["`syscalls[0].action`", "SCMP_ACT_TRACE is not supported"]),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}"#), &["`syscalls[0].errnoRet`", "only meaningful"]),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}"#), &["`syscalls[0].errnoRet`", "out of range"]),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "ENOSYS"}"#),
            &["`syscalls[0].errno`", "`ENOSYS` is 38 but the number given is 1"],
        ),
        (one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "EPRM"}"#), &["`syscalls[0].errno`", "unknown errno name"]),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}"#),
            &["`syscalls[0].args[0].valueTwo`", "only used by SCMP_CMP_MASKED_EQ"],
        ),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}"#),
            &["`syscalls[0].args[0].valueTwo`", "could never match"],
        ),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}"#),
            &["`syscalls[0].args[0].value`", "invalid value: integer `-1`"],
        ),
        (one_rule(r#"{"names": ["read"]}"#), &["`syscalls[0]`", "missing field `action`"]),
        (one_rule(r#"{"names": ["read"], "name": "read", "action": "SCMP_ACT_ALLOW"}"#), &["`syscalls[0].name`", "not both"]),
        (one_rule(r#"{"action": "SCMP_ACT_ALLOW"}"#), &["`syscalls[0]`", "names no syscall"]),
        (one_rule(r#"{"names": [], "action": "SCMP_ACT_ALLOW"}"#), &["`syscalls[0].names`", "empty"]),
        (r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}"#.into(), &["`flags[0]`", "unknown flag"]),
        (r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#.into(), &["`listenerPath`", "not supported"]),
        (r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOPE"}"#.into(), &["`defaultErrno`", "unknown errno name"]),
        ("\"SCMP_ACT_ALLOW\"".into(), &["`(top level)`", "invalid type: string"]),
        (r#"["SCMP_ACT_ALLOW"]"#.into(), &["`(top level)`", "expected a JSON object, found an array"]),
        (r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [[["read"], null, "SCMP_ACT_ALLOW"]]}"#.into(), &["`syscalls[0]`", "found an array"]),
        (
            one_rule(r#"{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [[0, 1, 0, "SCMP_CMP_EQ"]]}"#),
            &["`syscalls[0].args[0]`", "found an array"],
        ),
        (
            one_rule(r#"{"names": ["seccomp"], "action": "SCMP_ACT_ERRNO"}"#),
            &["`syscalls[0].names[0]`", "refuses seccomp itself is not supported"],
        ),
    ];
    for (text, needles) in cases {
        let e = error_of(&text);
        assert!(e.starts_with("bad.json: "), "{e}");
        for needle in needles {
            assert!(e.contains(needle), "{needle:?} not in {e:?}\n(profile {text})");
        }
    }
}

#[test]
fn json_syntax_errors_give_line_and_column() {
    let e = error_of("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [,]\n}");
    assert!(e.starts_with("bad.json: line 3, column 16: invalid JSON: "), "{e}");
    let e = error_of("{\"defaultAction\": \"SCMP_ACT_ALLOW\"");
    assert!(e.contains("line 1, column 34") && e.contains("EOF"), "{e}");
    let e = error_of("");
    assert!(e.contains("line 1, column 0"), "{e}");
}

#[test]
fn optional_rules_skip_unknown_names() {
    let c = compiled(
        one_rule(r#"{"names": ["read", "future_call"], "action": "SCMP_ACT_ALLOW", "optional": true}"#).as_bytes(),
    );
    assert_eq!(decide(&c, READ, [0; 6]), ALLOW);
    assert!(c.describe().contains("future_call (syscalls[0].names[1])"), "{}", c.describe());
}

#[test]
fn unknown_field_in_a_skipped_rule_is_still_an_error() {
    let e = error_of(&one_rule(
        r#"{"names": ["mmount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}"#,
    ));
    assert!(e.contains("`syscalls[0].names[0]`"), "{e}");
}

#[test]
fn too_large_a_filter_is_an_error_not_a_broken_filter() {
    let rules: Vec<String> = (0..1500)
        .map(|i| format!(r#"{{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{{"index": 1, "value": {i}, "op": "SCMP_CMP_EQ"}}]}}"#))
        .collect();
    let text = format!(r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{}]}}"#, rules.join(","));
    let e = error_of(&text);
    assert!(e.starts_with("bad.json: cannot compile: "), "{e}");
    assert!(e.contains("BPF instructions"), "{e}");
}

#[test]
fn missing_file_is_named() {
    let e = load_file(std::path::Path::new("/nonexistent/x.json")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/x.json: cannot read"), "{e}");
}

// ---------------------------------------------------------------- hash, cache

#[test]
fn hash_is_stable_and_follows_the_bpf() {
    let text = shipped("default").unwrap();
    let a = compiled(text.as_bytes());
    let b = compiled(text.as_bytes());
    assert_eq!(a.hash(), b.hash());
    assert!(a.hash().starts_with("sha256:") && a.hash().len() == 7 + 64, "{}", a.hash());
    assert!(a.hash()[7..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    // Same rules written differently: same BPF, same hash.
    let reformatted = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap();
    assert_eq!(compiled(reformatted.as_bytes()).hash(), a.hash());
    // One more allowed syscall: another hash.
    let changed = text.replacen("\"read\",", "\"read\", \"kcmp\",", 1);
    assert_ne!(changed, text);
    assert_ne!(compiled(changed.as_bytes()).hash(), a.hash());
    // A flag changes what the kernel does, so it changes the hash too.
    let flagged = text.replacen(
        "\"defaultErrnoRet\": 1,",
        "\"defaultErrnoRet\": 1, \"flags\": [\"SECCOMP_FILTER_FLAG_LOG\"],",
        1,
    );
    assert_ne!(compiled(flagged.as_bytes()).hash(), a.hash());
    // Hashing the programs ourselves gives the same.
    let mut h = Sha256::new();
    for p in a.programs() {
        for i in p {
            h.update(i.code.to_le_bytes());
            h.update([i.jt, i.jf]);
            h.update(i.k.to_le_bytes());
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(a.hash(), format!("sha256:{hex}"));
}

#[test]
fn load_bytes_compiles_once_per_content() {
    let text = one_rule(r#"{"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "comment": "cache test"}"#);
    let a = load_bytes(text.as_bytes(), "one").unwrap();
    let b = load_bytes(text.as_bytes(), "two").unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let c = load_bytes(format!("{text} ").as_bytes(), "three").unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(a.hash(), c.hash());
    // Errors are not cached, and name the origin given.
    let e = load_bytes(b"{", "broken.json").unwrap_err().to_string();
    assert!(e.starts_with("broken.json: line 1"), "{e}");
}

// ---------------------------------------------------------------- precedence

/// Rules with several actions on overlapping calls, for a default-ALLOW
/// profile (fold.rs's tests add more to them).
pub(crate) const PRECEDENCE_RULES: &str = r#"
    {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    {"names": ["getpgid"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 4242, "op": "SCMP_CMP_EQ"}]},
    {"names": ["getsid"], "action": "SCMP_ACT_LOG"},
    {"names": ["getsid"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]},
    {"names": ["getppid"], "action": "SCMP_ACT_KILL"}"#;

#[test]
fn stacked_filters_follow_kernel_precedence() {
    // Default ALLOW; several actions on overlapping calls.
    let c = compiled(format!(r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{PRECEDENCE_RULES}]}}"#).as_bytes());
    let getpgid = nr("getpgid");
    let getsid = nr("getsid");
    // Two ERRNOs: the one that appears later in the profile wins.
    assert_eq!(decide(&c, getpgid, [0; 6]), errno(EPERM));
    // KILL beats ERRNO whatever the order.
    assert_eq!(decide(&c, getpgid, a0(4242)), KILL_PROCESS);
    assert_eq!(decide(&c, getsid, [0; 6]), LOG);
    assert_eq!(decide(&c, getsid, a0(7)), TRAP);
    assert_eq!(decide(&c, nr("getppid"), [0; 6]), KILL_THREAD);
    assert_eq!(decide(&c, GETPID, [0; 6]), ALLOW);
    // Default ALLOW: no ENOSYS threshold, but x32 is still closed.
    assert_eq!(decide(&c, 500, [0; 6]), ALLOW);
    assert_eq!(decide(&c, 0x4000_0000 | getpgid, [0; 6]), errno(ENOSYS));
    let roles = c.roles();
    assert!(!roles.contains(&Role::Base), "{roles:?}");
    assert_eq!(roles.last(), Some(&Role::Guard));
}

#[test]
fn deny_rules_win_over_allow_rules_even_with_the_default_action() {
    // The deny rule has the default's action, and an unconditional ALLOW
    // rule for the same syscall comes later.
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"}
        ]}"#,
    );
    assert_eq!(decide(&c, IOCTL, [0, 21522, 0, 0, 0, 0]), errno(EPERM));
    assert_eq!(decide(&c, IOCTL, [0, 21523, 0, 0, 0, 0]), ALLOW);
}

#[test]
fn kill_default_puts_the_guard_into_the_base_filter() {
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
            {"names": ["read", "write", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}
        ]}"#,
    );
    // The base (guard inside) is last; no separate guard.
    assert_eq!(c.roles().last(), Some(&Role::Base));
    assert!(!c.roles().contains(&Role::Guard));
    assert_eq!(decide(&c, GETPID, [0; 6]), ALLOW);
    assert_eq!(decide(&c, nr("getppid"), [0; 6]), errno(EPERM));
    assert_eq!(decide(&c, nr("gettid"), [0; 6]), KILL_PROCESS);
    assert_eq!(decide(&c, 231, [0; 6]), ALLOW, "exit_group, the highest named");
    assert_eq!(decide(&c, 232, [0; 6]), errno(ENOSYS));
    assert_eq!(decide(&c, 0x4000_0000, [0; 6]), errno(ENOSYS));
    assert_eq!(decide_arch(&c, bpf_eval::AUDIT_ARCH_I386, 1), KILL_PROCESS);
}

#[test]
fn an_allow_all_profile_installs_nothing() {
    for text in [
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}"#,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
    ] {
        let c = compiled(text.as_bytes());
        assert_eq!(c.programs().len(), 0, "{text}");
        assert_eq!(c.hash(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(c.describe().contains("nothing is installed"), "{}", c.describe());
        assert!(c.install().is_ok());
    }
    // One LOG rule is enough to need filters, and then x32 is closed.
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_LOG"}]}"#,
    );
    assert_eq!(c.stack().len(), 2);
    assert_eq!(c.programs().len(), 1, "the stack folded into one program");
    assert_eq!(decide(&c, MOUNT, [0; 6]), LOG);
    assert_eq!(decide(&c, 0x4000_0000 | MOUNT, [0; 6]), errno(ENOSYS));
}

#[test]
fn errno_names_and_defaults() {
    // errnoRet defaults to defaultErrnoRet, which defaults to EPERM.
    let c = compiled(br#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 13, "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]}"#);
    assert_eq!(decide(&c, nr("getppid"), [0; 6]), errno(libc::EACCES));
    let c = compiled(
        br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    assert_eq!(decide(&c, nr("getppid"), [0; 6]), errno(EPERM));
    let c = compiled(br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errno": "EIO"}]}"#);
    assert_eq!(decide(&c, nr("getppid"), [0; 6]), errno(libc::EIO));
    let c = compiled(br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS"}"#);
    assert_eq!(decide(&c, GETPID, [0; 6]), errno(ENOSYS));
    assert_eq!(super::model::Action::Errno(38).ret(), errno(ENOSYS));
}

/// The split base (a compact membership filter plus a filter for argument
/// conditions) must answer every syscall exactly as one seccompiler base
/// filter would, and be much smaller.
#[test]
fn the_split_base_answers_like_a_single_base_filter() {
    let values: [u64; 16] = [
        0,
        1,
        2,
        10,
        16,
        17,
        40,
        8,
        0x5412,
        0x541c,
        0x1000_0000,
        0x7e02_0000,
        0x0001_0f00,
        0x0002_0008,
        0xffff_ffff,
        u64::MAX,
    ];
    let profiles: Vec<(String, Vec<u8>)> = vec![
        ("default".into(), shipped("default").unwrap().as_bytes().to_vec()),
        ("strict".into(), shipped("strict").unwrap().as_bytes().to_vec()),
        ("docker".into(), fixture("docker-default.json")),
        ("podman".into(), fixture("podman-default.json")),
    ];
    for (name, bytes) in profiles {
        let split = compiled(&bytes);
        let single = super::compile::compile_with(split.plan(), "t", false).unwrap();
        let single_slices = || single.iter().map(|p| p.bpf.as_slice());
        let mut checked = 0;
        for nr in (0..=520u32).chain([0x4000_0000, 0x4000_0001, 0x4000_0200]) {
            for a0 in values {
                for a1 in values {
                    let data = bpf_eval::seccomp_data(super::filter::AUDIT_ARCH_X86_64, nr, [a0, a1, 0, 0, 0, 0]);
                    let want = bpf_eval::combine(single_slices(), &data);
                    let got = bpf_eval::combine(split.programs(), &data);
                    assert_eq!(got, want, "{name}: nr {nr} args {a0:#x} {a1:#x}");
                    checked += 1;
                }
            }
        }
        for nr in [0u32, 1, 11, 120, 400] {
            let data = bpf_eval::seccomp_data(0x4000_0003, nr, [0; 6]);
            assert_eq!(
                bpf_eval::combine(split.programs(), &data),
                bpf_eval::combine(single_slices(), &data),
                "{name} i386"
            );
        }
        let size = |it: &mut dyn Iterator<Item = usize>| it.sum::<usize>();
        let split_len = size(&mut split.programs().map(|p| p.len()));
        let single_len = size(&mut single.iter().map(|p| p.bpf.len()));
        assert!(checked > 100_000);
        assert!(split_len * 3 < single_len, "{name}: split {split_len} vs single {single_len} instructions");
    }
}
