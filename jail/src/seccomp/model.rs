//! A checked profile, ready to compile: actions, conditions and syscall
//! numbers with no JSON left in them.

use std::fmt;

use seccompiler::{SeccompAction, SeccompCmpOp};

use super::errno;

/// A seccomp action the jail supports. (SCMP_ACT_TRACE and SCMP_ACT_NOTIFY
/// are refused when the profile is checked, see plan.rs.)
///
/// With several filters installed the kernel runs them all on every
/// syscall and keeps the result of highest precedence:
///
///   KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW
///
/// (kernel/seccomp.c, seccomp_run_filters: it compares the action bits as
/// a signed number, KILL_PROCESS being 0x80000000, newest filter first,
/// and only a strictly smaller value replaces the result; so on a tie the
/// filter installed last wins.) In particular an ERRNO from one filter
/// overrides ALLOW and LOG from another, never TRAP or KILL; compile.rs and
/// filter.rs are built on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Allow,
    Log,
    Errno(u32),
    Trap,
    KillThread,
    KillProcess,
}

impl Action {
    /// The filter return value (SECCOMP_RET_*), as the kernel sees it.
    #[cfg(test)]
    pub fn ret(self) -> u32 {
        u32::from(self.to_seccompiler())
    }

    pub fn to_seccompiler(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Log => SeccompAction::Log,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::Trap => SeccompAction::Trap,
            Action::KillThread => SeccompAction::KillThread,
            Action::KillProcess => SeccompAction::KillProcess,
        }
    }

    /// Whether the call is refused (as opposed to ALLOW and LOG).
    pub fn refuses(self) -> bool {
        !matches!(self, Action::Allow | Action::Log)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Allow => f.write_str("ALLOW"),
            Action::Log => f.write_str("LOG"),
            Action::Errno(e) => match errno::name(*e) {
                Some(name) => write!(f, "ERRNO({e} {name})"),
                None => write!(f, "ERRNO({e})"),
            },
            Action::Trap => f.write_str("TRAP"),
            Action::KillThread => f.write_str("KILL_THREAD"),
            Action::KillProcess => f.write_str("KILL_PROCESS"),
        }
    }
}

/// A comparison of one syscall argument (all 64 bits, like libseccomp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cond {
    /// 0..=5.
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

impl Cond {
    pub fn to_seccompiler_op(self) -> SeccompCmpOp {
        match self.op {
            Op::Ne => SeccompCmpOp::Ne,
            Op::Lt => SeccompCmpOp::Lt,
            Op::Le => SeccompCmpOp::Le,
            Op::Eq => SeccompCmpOp::Eq,
            Op::Ge => SeccompCmpOp::Ge,
            Op::Gt => SeccompCmpOp::Gt,
            Op::MaskedEq { mask } => SeccompCmpOp::MaskedEq(mask),
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.index;
        let v = Num(self.value);
        match self.op {
            Op::Ne => write!(f, "arg{i} != {v}"),
            Op::Lt => write!(f, "arg{i} < {v}"),
            Op::Le => write!(f, "arg{i} <= {v}"),
            Op::Eq => write!(f, "arg{i} == {v}"),
            Op::Ge => write!(f, "arg{i} >= {v}"),
            Op::Gt => write!(f, "arg{i} > {v}"),
            Op::MaskedEq { mask } => write!(f, "arg{i} & {:#x} == {v}", mask),
        }
    }
}

/// Small numbers in decimal, flag-like ones in hex.
struct Num(u64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 4096 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// An x86_64 syscall a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Syscall {
    pub name: String,
    pub nr: u32,
}

/// A rule that applies on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub action: Action,
    /// Only x86_64 syscalls; may be empty if every name was of another
    /// architecture.
    pub syscalls: Vec<Syscall>,
    /// AND-ed; empty = whatever the arguments.
    pub conds: Vec<Cond>,
}

/// A rule that does not apply here, and why.
#[derive(Debug, Clone)]
pub(crate) struct Skipped {
    pub index: usize,
    pub names: Vec<String>,
    pub reason: String,
    /// The rule's `comment`, if any.
    pub comment: Option<String>,
}

/// A name passed over: of another architecture, or unknown in an
/// `optional` rule.
#[derive(Debug, Clone)]
pub(crate) struct PassedName {
    /// `syscalls[3].names[7]`.
    pub path: String,
    pub name: String,
    /// Where it exists (`i386`, `arm, ppc`), or None if nowhere we know.
    pub arch: Option<&'static str>,
}

/// A checked profile for x86_64 on one kernel version.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub default: Action,
    pub rules: Vec<Rule>,
    pub skipped: Vec<Skipped>,
    pub passed_names: Vec<PassedName>,
    /// The highest x86_64 syscall number any rule names (applied or not).
    pub highest_nr: Option<u32>,
    /// Flags for every seccomp(SECCOMP_SET_MODE_FILTER) call.
    pub flags: libc::c_ulong,
    /// Their names as written, for the summary.
    pub flag_names: Vec<String>,
    /// `architectures` and `archMap` entries, canonical names, for the summary.
    pub declared_arches: Vec<&'static str>,
    pub kernel: super::KernelVersion,
}
