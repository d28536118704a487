//! Folding the stack of filters compile.rs makes into one program that
//! answers every syscall exactly as the kernel would with the whole stack
//! installed.
//!
//! Why: each installed filter costs about 30 us at spawn whatever its size
//! (the kernel checks it, JIT-compiles it and makes its pages executable),
//! and every filter runs on each syscall the kernel's action cache does not
//! answer. The default profile is a stack of four; folded, it is one.
//!
//! How: the kernel runs the stacked filters newest first and keeps a
//! result only if its action is strictly stronger (model::Action). Our
//! programs look at the architecture and the syscall number first, and
//! compare the number only with constants (`jeq`, `jgt`, `jge`), so:
//!
//! 1. Architectures: every stack compile.rs makes has a program that
//!    returns KILL_PROCESS for any architecture but x86_64, and nothing
//!    outranks KILL_PROCESS; the folded program does that first.
//! 2. Numbers: every number between two consecutive constants of those
//!    comparisons (a constant K cuts before K and before K + 1) takes the
//!    same paths through every program. For one number of each interval,
//!    the programs are run at compile time, newest first, with the number
//!    and the architecture known and the arguments unknown. Whatever only
//!    depends on the known values is decided then; what depends on an
//!    argument is kept as code, and each of its returns goes on into the
//!    next (older) program with the result so far, so the result is again
//!    a known value wherever code has run out. An interval whose programs
//!    never look at an argument becomes a single `ret`.
//! 3. A binary search over the intervals (adjacent ones with the same code
//!    merged) leads to that code.
//!
//! The kernel's action cache: at install the kernel runs each filter for
//! each syscall number with only the number and the architecture
//! (seccomp_is_const_allow) and skips the filters for numbers they always
//! allow. In the folded program such a number reaches `ret ALLOW` through
//! jumps on the number alone, so the cache is what it was with the stack
//! (tests.rs checks this with an emulation of the kernel's).
//!
//! Anything the programs do that this does not model (another opcode, a
//! test of bits of the number, a program that does not start with the
//! architecture check...) makes [`fold`] give up, and the stack is
//! installed as it is.

use std::collections::{BTreeSet, HashMap};

use seccompiler::{sock_filter, BpfProgram};

use super::compile::MAX_INSNS;
use super::filter::{
    jump, jump_taken, stmt, ARCH_OFFSET, AUDIT_ARCH_X86_64, BPF_ALU_AND_K, BPF_JMP_JA, BPF_JMP_JEQ_K, BPF_JMP_JGE_K,
    BPF_JMP_JGT_K, BPF_JMP_JSET_K, BPF_LD_W_ABS, BPF_RET_K, NR_OFFSET,
};

/// One program answering as `stack` does (installed in that order), or
/// None if the stack uses something this module does not model, or the
/// result would be over the kernel's size limit.
pub(crate) fn fold(stack: &[BpfProgram]) -> Option<BpfProgram> {
    if !stack.iter().any(|p| kills_other_architectures(p)) {
        return None;
    }
    let mut graph = Graph::default();
    let mut intervals: Vec<(u32, Id)> = Vec::new();
    for low in cuts(stack) {
        let code = Folder { stack, nr: low, memo: HashMap::new() }.run(&mut graph)?;
        if intervals.last().map(|(_, last)| *last) != Some(code) {
            intervals.push((low, code));
        }
    }
    let by_number = search(&mut graph, &intervals);
    let load_nr = graph.intern(Node::Load { offset: NR_OFFSET, next: by_number });
    let kill = graph.intern(Node::Ret(libc::SECCOMP_RET_KILL_PROCESS));
    let check_arch = graph.intern(Node::Jump { code: BPF_JMP_JEQ_K, k: AUDIT_ARCH_X86_64, jt: load_nr, jf: kill });
    let root = graph.intern(Node::Load { offset: ARCH_OFFSET, next: check_arch });
    let program = graph.emit(root);
    (program.len() <= MAX_INSNS).then_some(program)
}

/// Whether `p` starts `ld arch; jeq X86_64` with KILL_PROCESS on mismatch,
/// as seccompiler's programs and filter.rs's guard do.
fn kills_other_architectures(p: &[sock_filter]) -> bool {
    match p {
        [ld, jeq, ..] => {
            ld.code == BPF_LD_W_ABS
                && ld.k == ARCH_OFFSET
                && jeq.code == BPF_JMP_JEQ_K
                && jeq.k == AUDIT_ARCH_X86_64
                && p.get(2 + usize::from(jeq.jf))
                    .is_some_and(|r| r.code == BPF_RET_K && r.k == libc::SECCOMP_RET_KILL_PROCESS)
        }
        _ => false,
    }
}

/// The lowest number of each interval of syscall numbers that every
/// comparison with a constant answers alike, ascending, from 0. (Also cut
/// at the constants compared with arguments: harmless, the intervals on
/// either side then get the same code and are merged.)
fn cuts(stack: &[BpfProgram]) -> BTreeSet<u32> {
    let mut cuts = BTreeSet::from([0]);
    for insn in stack.iter().flatten() {
        if matches!(insn.code, BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K) {
            cuts.insert(insn.k);
            if let Some(next) = insn.k.checked_add(1) {
                cuts.insert(next);
            }
        }
    }
    cuts
}

/// A binary search on the syscall number (in the accumulator) over
/// `intervals` (lowest number, code), ascending and covering 0 upwards.
fn search(graph: &mut Graph, intervals: &[(u32, Id)]) -> Id {
    if let [(_, only)] = intervals {
        return *only;
    }
    let mid = intervals.len() / 2;
    let below = search(graph, &intervals[..mid]);
    let from = search(graph, &intervals[mid..]);
    graph.intern(Node::Jump { code: BPF_JMP_JGE_K, k: intervals[mid].0, jt: from, jf: below })
}

type Id = usize;

/// The folded program as a graph: a node's meaning depends only on the
/// accumulator and the seccomp_data, so equal nodes are one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Ret(u32),
    /// `ld [offset]`, then `next`.
    Load {
        offset: u32,
        next: Id,
    },
    /// `and #k`, then `next`.
    And {
        k: u32,
        next: Id,
    },
    /// A conditional jump on the accumulator.
    Jump {
        code: u16,
        k: u32,
        jt: Id,
        jf: Id,
    },
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    ids: HashMap<Node, Id>,
}

impl Graph {
    /// The id of `node`, added if new. A node's successors are always
    /// interned before it, so every edge goes from a higher id to a lower.
    fn intern(&mut self, node: Node) -> Id {
        if let Node::Jump { jt, jf, .. } = node {
            if jt == jf {
                return jt;
            }
        }
        if let Some(id) = self.ids.get(&node) {
            return *id;
        }
        self.nodes.push(node);
        self.ids.insert(node, self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    fn successors(&self, id: Id) -> impl Iterator<Item = Id> {
        let (a, b) = match self.nodes[id] {
            Node::Ret(_) => (None, None),
            Node::Load { next, .. } | Node::And { next, .. } => (Some(next), None),
            Node::Jump { jt, jf, .. } => (Some(jt), Some(jf)),
        };
        a.into_iter().chain(b)
    }

    /// The instructions from `root`. Nodes are laid out by descending id
    /// (so every jump goes forward); a conditional jump too far for its
    /// 8-bit offset goes through a `ja` placed right after it, and a node
    /// whose successor is not the next one laid out is followed by a `ja`.
    fn emit(&self, root: Id) -> BpfProgram {
        let mut reachable = vec![false; self.nodes.len()];
        let mut todo = vec![root];
        while let Some(id) = todo.pop() {
            if !std::mem::replace(&mut reachable[id], true) {
                todo.extend(self.successors(id));
            }
        }
        let order: Vec<Id> = (0..self.nodes.len()).rev().filter(|id| reachable[*id]).collect();
        let following: HashMap<Id, Id> = order.windows(2).map(|w| (w[0], w[1])).collect();
        let falls_into = |id: Id, next: Id| following.get(&id) == Some(&next);

        // Which jumps need a trampoline, found by growing: a trampoline
        // moves what follows, which may push other jumps out of reach.
        let mut far: HashMap<Id, (bool, bool)> = HashMap::new();
        let (at, len) = loop {
            let mut at: HashMap<Id, usize> = HashMap::new();
            let mut len = 0;
            for &id in &order {
                at.insert(id, len);
                len += 1 + match self.nodes[id] {
                    Node::Ret(_) => 0,
                    Node::Load { next, .. } | Node::And { next, .. } => usize::from(!falls_into(id, next)),
                    Node::Jump { .. } => {
                        let (t, f) = far.get(&id).copied().unwrap_or_default();
                        usize::from(t) + usize::from(f)
                    }
                };
            }
            let mut grew = false;
            for &id in &order {
                if let Node::Jump { jt, jf, .. } = self.nodes[id] {
                    let too_far = |to: Id| at[&to] - (at[&id] + 1) > usize::from(u8::MAX);
                    let was = far.get(&id).copied().unwrap_or_default();
                    let now = (was.0 || too_far(jt), was.1 || too_far(jf));
                    if now != was {
                        far.insert(id, now);
                        grew = true;
                    }
                }
            }
            if !grew {
                break (at, len);
            }
        };

        let mut out = Vec::with_capacity(len);
        let ja = |from: usize, to: Id| stmt(BPF_JMP_JA, (at[&to] - (from + 1)) as u32);
        for &id in &order {
            let here = out.len();
            match self.nodes[id] {
                Node::Ret(k) => out.push(stmt(BPF_RET_K, k)),
                Node::Load { offset: k, next } | Node::And { k, next } => {
                    let code = if matches!(self.nodes[id], Node::Load { .. }) { BPF_LD_W_ABS } else { BPF_ALU_AND_K };
                    out.push(stmt(code, k));
                    if !falls_into(id, next) {
                        out.push(ja(here + 1, next));
                    }
                }
                Node::Jump { code, k, jt, jf } => {
                    let (t_far, f_far) = far.get(&id).copied().unwrap_or_default();
                    let offset = |to: Id| (at[&to] - (here + 1)) as u8;
                    match (t_far, f_far) {
                        (false, false) => out.push(jump(code, k, offset(jt), offset(jf))),
                        (true, false) => {
                            out.push(jump(code, k, 0, offset(jf)));
                            out.push(ja(here + 1, jt));
                        }
                        (false, true) => {
                            out.push(jump(code, k, offset(jt), 0));
                            out.push(ja(here + 1, jf));
                        }
                        (true, true) => {
                            out.push(jump(code, k, 0, 1));
                            out.push(ja(here + 1, jt));
                            out.push(ja(here + 2, jf));
                        }
                    }
                }
            }
            debug_assert_eq!(here, at[&id]);
        }
        out
    }
}

/// The accumulator at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Acc {
    Known(u32),
    /// Loaded from an argument (or the instruction pointer): the code
    /// that reads it is kept.
    Unknown,
}

/// Runs the stack for one x86_64 syscall number with unknown arguments.
struct Folder<'a> {
    stack: &'a [BpfProgram],
    nr: u32,
    /// (program, pc, accumulator, result so far) -> code, so that paths
    /// that meet again in a program are folded once.
    memo: HashMap<(usize, usize, Acc, u32), Id>,
}

impl Folder<'_> {
    fn run(mut self, graph: &mut Graph) -> Option<Id> {
        let newest = self.stack.len().checked_sub(1)?;
        // The kernel starts every filter with the accumulator at 0.
        self.from(graph, newest, 0, Acc::Known(0), libc::SECCOMP_RET_ALLOW)
    }

    /// The code for the rest of program `prog` from `pc`, then the older
    /// programs, given the result of the newer ones so far.
    fn from(&mut self, graph: &mut Graph, prog: usize, pc: usize, acc: Acc, result: u32) -> Option<Id> {
        let key = (prog, pc, acc, result);
        if let Some(id) = self.memo.get(&key) {
            return Some(*id);
        }
        let id = self.step(graph, prog, pc, acc, result)?;
        self.memo.insert(key, id);
        Some(id)
    }

    fn step(&mut self, graph: &mut Graph, prog: usize, mut pc: usize, mut acc: Acc, result: u32) -> Option<Id> {
        let program = &self.stack[prog];
        loop {
            // Running off the end: the kernel would not have taken the program.
            let insn = program.get(pc)?;
            pc += 1;
            let k = insn.k;
            match (insn.code, acc) {
                (BPF_LD_W_ABS, _) => match k {
                    NR_OFFSET => acc = Acc::Known(self.nr),
                    ARCH_OFFSET => acc = Acc::Known(AUDIT_ARCH_X86_64),
                    offset => {
                        let next = self.from(graph, prog, pc, Acc::Unknown, result)?;
                        return Some(graph.intern(Node::Load { offset, next }));
                    }
                },
                (BPF_ALU_AND_K, Acc::Unknown) => {
                    let next = self.from(graph, prog, pc, Acc::Unknown, result)?;
                    return Some(graph.intern(Node::And { k, next }));
                }
                (BPF_JMP_JA, _) => pc = pc.checked_add(k as usize)?,
                (BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K, Acc::Known(v)) => {
                    let taken = jump_taken(insn.code, v, k)?;
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                (BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K | BPF_JMP_JSET_K, Acc::Unknown) => {
                    let jt = self.from(graph, prog, pc + usize::from(insn.jt), Acc::Unknown, result)?;
                    let jf = self.from(graph, prog, pc + usize::from(insn.jf), Acc::Unknown, result)?;
                    return Some(graph.intern(Node::Jump { code: insn.code, k, jt, jf }));
                }
                (BPF_RET_K, _) => {
                    let result = stronger(result, k);
                    if prog == 0 || result == libc::SECCOMP_RET_KILL_PROCESS {
                        return Some(graph.intern(Node::Ret(result)));
                    }
                    return self.from(graph, prog - 1, 0, Acc::Known(0), result);
                }
                // An `and` or a `jset` on a known value (it could split
                // an interval of numbers), or an opcode not modelled.
                _ => return None,
            }
        }
    }
}

/// The kernel's rule for a result from an older filter: it replaces the
/// result so far only if its action is strictly stronger (action bits
/// compared as a signed number; KILL_PROCESS is the smallest).
fn stronger(so_far: u32, older: u32) -> u32 {
    let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
    if action(older) < action(so_far) {
        older
    } else {
        so_far
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use seccompiler::BpfProgram;

    use super::super::bpf_eval::{self, const_allow, AUDIT_ARCH_I386};
    use super::super::filter::AUDIT_ARCH_X86_64;
    use super::super::shipped;
    use super::super::tests::{compiled, fixture, PRECEDENCE_RULES};
    use super::fold;

    /// Profiles with every action, ties between errnos, argument conditions
    /// on several syscalls, and each kind of default.
    fn profiles() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("default", shipped("default").unwrap().as_bytes().to_vec()),
            ("strict", shipped("strict").unwrap().as_bytes().to_vec()),
            ("docker", fixture("docker-default.json")),
            ("podman", fixture("podman-default.json")),
            (
                "precedence",
                format!(
                    r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{PRECEDENCE_RULES},
                    {{"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                        {{"index": 2, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}},
                        {{"index": 3, "value": 4096, "op": "SCMP_CMP_GE"}}]}},
                    {{"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12, "args": [{{"index": 1, "value": 65536, "op": "SCMP_CMP_GT"}}]}}
                ]}}"#
                )
                .into_bytes(),
            ),
            (
                "kill default",
                br#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
                    {"names": ["read", "write", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["write"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_LE"}]},
                    {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_NE"}]},
                    {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}
                ]}"#
                .to_vec(),
            ),
            (
                "log default",
                br#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [
                    {"names": ["getpid", "gettid"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["kill"], "action": "SCMP_ACT_KILL_THREAD", "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}
                ]}"#
                .to_vec(),
            ),
            (
                "log only",
                br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_LOG"}]}"#
                    .to_vec(),
            ),
        ]
    }

    /// The stack compile.rs made for `bytes`, and its folded program.
    fn stack_and_folded(name: &str, bytes: &[u8]) -> (Vec<BpfProgram>, BpfProgram) {
        let c = compiled(bytes);
        let stack: Vec<BpfProgram> = c.stack().iter().map(|p| p.bpf.clone()).collect();
        assert!(stack.len() > 1, "{name}: a stack of {} (nothing to fold)", stack.len());
        let installed: Vec<&[seccompiler::sock_filter]> = c.programs().collect();
        let folded = fold(&stack).unwrap_or_else(|| panic!("{name}: did not fold"));
        assert_eq!(installed, [folded.as_slice()], "{name}: the folded program is what gets installed");
        (stack, folded)
    }

    /// Argument values around every constant the programs compare with, in
    /// either half of the 64 bits, and a few extremes.
    fn interesting_values(stack: &[BpfProgram]) -> Vec<u64> {
        let mut values: BTreeSet<u64> = BTreeSet::from([0, 1, u64::from(u32::MAX), 1 << 32, u64::MAX, u64::MAX - 1]);
        for insn in stack.iter().flatten().filter(|i| matches!(i.code, 0x15 | 0x25 | 0x35 | 0x45)) {
            let k = u64::from(insn.k);
            for lo in [k.saturating_sub(1), k, k + 1] {
                values.insert(lo);
                values.insert(lo | 0xffff_ffff_0000_0000);
            }
            values.insert(k << 32);
            values.insert((k << 32) | 0xffff_ffff);
        }
        values.into_iter().collect()
    }

    /// The folded program answers every input as the stack does: each
    /// syscall number up to past the kernel's highest, x32 and huge ones;
    /// each argument alone at every interesting value; pairs of the first
    /// two; other architectures.
    #[test]
    fn the_folded_program_answers_like_the_stack() {
        for (name, bytes) in profiles() {
            let (stack, folded) = stack_and_folded(name, &bytes);
            let values = interesting_values(&stack);
            let pair_values: Vec<u64> = values.iter().copied().step_by((values.len() / 12).max(1)).collect();
            let mut inputs: Vec<[u64; 6]> = vec![[0; 6]];
            for index in 0..6 {
                for v in &values {
                    let mut args = [0; 6];
                    args[index] = *v;
                    inputs.push(args);
                }
            }
            for a0 in &pair_values {
                for a1 in &pair_values {
                    inputs.push([*a0, *a1, 0, 0, 0, 0]);
                }
            }
            let numbers =
                (0..=520u32).chain([0x3fff_ffff, 0x4000_0000, 0x4000_0001, 0x4000_0200, 0x8000_0000, u32::MAX]);
            let mut checked = 0u64;
            for nr in numbers {
                for args in &inputs {
                    let data = bpf_eval::seccomp_data(AUDIT_ARCH_X86_64, nr, *args);
                    let want = bpf_eval::combine(stack.iter().map(Vec::as_slice), &data);
                    let got = bpf_eval::run(&folded, &data);
                    assert_eq!(got, want, "{name}: nr {nr} args {args:x?}: folded {got:#x}, stack {want:#x}");
                    checked += 1;
                }
            }
            for arch in [AUDIT_ARCH_I386, 0, 0xc000_00b7, AUDIT_ARCH_X86_64 ^ 1] {
                for nr in [0u32, 1, 11, 59, 120, 400, 0x4000_0000] {
                    let data = bpf_eval::seccomp_data(arch, nr, [0; 6]);
                    let want = bpf_eval::combine(stack.iter().map(Vec::as_slice), &data);
                    assert_eq!(bpf_eval::run(&folded, &data), want, "{name}: arch {arch:#x} nr {nr}");
                }
            }
            assert!(checked > 100_000, "{name}: {checked} inputs");
            let stack_len: usize = stack.iter().map(Vec::len).sum();
            assert!(folded.len() <= stack_len, "{name}: folded {} vs stack {stack_len} instructions", folded.len());
        }
    }

    /// The kernel's action cache answers the same syscalls without running
    /// any filter as it did with the stack (it keeps a number only if every
    /// stacked filter always allows it).
    #[test]
    fn the_folded_program_keeps_the_kernels_action_cache() {
        for (name, bytes) in profiles() {
            let (stack, folded) = stack_and_folded(name, &bytes);
            let mut cached = 0;
            for nr in 0..=520u32 {
                let with_stack = stack.iter().all(|p| const_allow(p, nr));
                assert_eq!(const_allow(&folded, nr), with_stack, "{name}: nr {nr}");
                cached += usize::from(with_stack);
            }
            if name == "default" {
                // read, write, mmap...: what every program does all the time.
                assert!(cached > 250, "{name}: only {cached} syscalls in the cache");
                for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_mmap, libc::SYS_futex] {
                    assert!(const_allow(&folded, nr as u32), "{name}: nr {nr}");
                }
                assert!(!const_allow(&folded, libc::SYS_ioctl as u32), "ioctl has a deny rule on its arguments");
            }
        }
    }

    /// Jumps farther than a conditional jump's 8-bit offset go through a
    /// `ja`: a stack whose conditions make code longer than 255
    /// instructions between a test and its target still folds right.
    #[test]
    fn long_jumps_fold_right() {
        let rules: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": {}, "args": [{{"index": 1, "value": {}, "op": "SCMP_CMP_EQ"}}, {{"index": 2, "value": {}, "op": "SCMP_CMP_GT"}}]}}"#,
                    1 + i % 3,
                    0x5400 + i,
                    i * 1000
                )
            })
            .collect();
        let text = format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{{"names": ["read", "write", "ioctl", "exit_group"], "action": "SCMP_ACT_ALLOW"}}, {}]}}"#,
            rules.join(",")
        );
        let (stack, folded) = stack_and_folded("long", text.as_bytes());
        assert!(folded.len() > 300, "{} instructions: not long enough to need a ja", folded.len());
        assert!(folded.iter().any(|i| i.code == 0x05 && i.k > 0), "no ja in the folded program");
        let ioctl = libc::SYS_ioctl as u32;
        for i in 0..42u64 {
            for a2 in [0, i * 1000, i * 1000 + 1, u64::MAX] {
                let data = bpf_eval::seccomp_data(AUDIT_ARCH_X86_64, ioctl, [0, 0x5400 + i, a2, 0, 0, 0]);
                let want = bpf_eval::combine(stack.iter().map(Vec::as_slice), &data);
                assert_eq!(bpf_eval::run(&folded, &data), want, "ioctl {:#x} {a2}", 0x5400 + i);
            }
        }
    }

    /// What this does not model is left as a stack: a program that does
    /// not kill other architectures first, or one that tests bits of the
    /// syscall number.
    #[test]
    fn what_it_does_not_model_is_not_folded() {
        let stack =
            compiled(shipped("default").unwrap().as_bytes()).stack().iter().map(|p| p.bpf.clone()).collect::<Vec<_>>();
        // Without the architecture check (the first three instructions of
        // every program) nothing says other architectures get KILL_PROCESS.
        let headless: Vec<BpfProgram> = stack.iter().map(|p| p[3..].to_vec()).collect();
        assert!(fold(&headless).is_none());
        let jset = seccompiler::sock_filter { code: 0x45, jt: 0, jf: 0, k: 1 };
        let mut bits = stack.clone();
        bits[0].insert(4, jset);
        assert!(fold(&bits).is_none(), "a jset on the number");
    }
}
