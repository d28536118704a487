//! Plan -> BPF programs, with seccompiler.
//!
//! A seccompiler filter has one action for "a rule matched" and one for
//! "nothing matched", while a profile has a default action and rules with
//! any number of actions. We stack filters instead, and let the kernel
//! combine them (all installed filters run on every syscall; the result of
//! highest precedence wins, see the doc of model::Action):
//!
//! 1. one filter per distinct non-ALLOW action of the rules: matched -> that
//!    action; nothing matched -> ALLOW. In the order the actions first
//!    appear in the profile.
//! 2. last, the base: nothing matched -> the default action; matched ->
//!    ALLOW. Its rules are every applied rule whose action is not the
//!    default, and the guard of filter.rs runs first in it. When the default
//!    is ALLOW there is no base, and the guard is a filter of its own, last
//!    (and when moreover no rule refuses or logs anything, nothing at all
//!    is installed).
//!
//! Order matters twice. For ties: of two ERRNO results the kernel keeps the
//! one of the filter installed last; the
//! only ties with different errnos are between action filters (kept in
//! profile order) and between the guard's ENOSYS and the base's default,
//! which the guard settles by answering before the base's own code. And for
//! installing at all: each seccomp() call that installs a filter is itself
//! filtered by the filters already in. The base usually refuses seccomp()
//! (strict.json does), so it goes in last; the action filters before it
//! must let seccomp() through, which plan.rs makes sure of by refusing
//! rules that deny seccomp itself.
//!
//! So a syscall gets the highest-precedence action among the rules that
//! match it, and the default action only if no rule matches it. Some
//! consequences, all deliberate:
//! - a deny rule beats an allow rule for the same call whatever the order
//!   in the file, including a deny whose action equals the default
//!   (default.json allows ioctl but sends TIOCSTI to EPERM);
//! - rules for one syscall are OR-ed, conditions in one rule AND-ed;
//! - two ERRNO rules with different errnos matching the same call: the
//!   errno that appears later in the profile wins (its filter is installed
//!   later, and on a tie the kernel keeps the filter installed last).
//!
//! Arguments are compared on all 64 bits (like libseccomp). For an `int`
//! argument the kernel ignores the upper half, so a deny rule on one should
//! use SCMP_CMP_MASKED_EQ with mask 0xffffffff, or a caller could slip past
//! it by setting upper bits (default.json does this for ioctl requests).

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompCmpArgLen, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};

use super::filter;
use super::model::{Action, Plan, Rule};
use super::SeccompError;

/// The kernel's limit per filter (BPF_MAXINSNS).
pub(super) const MAX_INSNS: usize = 4096;
/// The kernel's limit over all filters of a process (MAX_INSNS_PER_PATH),
/// counting each filter as its length plus 4.
pub(super) const MAX_INSNS_PER_PATH: usize = 32768;

/// What one installed program is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The guard, then unlisted syscalls -> default action.
    Base,
    /// The argument conditions of the few listed syscalls that have them
    /// (unmet -> default action); every other syscall passes.
    Conditions,
    /// Listed syscalls -> this action.
    Action(Action),
    /// The guard as its own filter.
    Guard,
}

#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub role: Role,
    pub bpf: BpfProgram,
}

/// The programs for `plan`, in installation order.
pub(crate) fn compile(plan: &Plan, origin: &str) -> Result<Vec<Program>, SeccompError> {
    compile_with(plan, origin, true)
}

/// With `split_base` false, the base is always one seccompiler filter (the
/// tests prove the split base answers the same).
pub(crate) fn compile_with(plan: &Plan, origin: &str, split_base: bool) -> Result<Vec<Program>, SeccompError> {
    let fail = |reason: String| SeccompError::Compile { origin: origin.to_string(), reason };
    let default = plan.default;
    // ENOSYS past the highest named syscall only makes sense when the
    // default refuses; for ALLOW or LOG a newer syscall is simply allowed.
    let threshold = match default {
        Action::Allow | Action::Log => None,
        _ => plan.highest_nr,
    };
    let mut programs = Vec::new();

    for action in actions_in_order(&plan.rules) {
        let rules = plan.rules.iter().filter(|r| r.action == action);
        let bpf = build(rules, Action::Allow, action).map_err(|e| fail(format!("{action} filter: {e}")))?;
        programs.push(Program { role: Role::Action(action), bpf });
    }

    if default == Action::Allow {
        // Nothing refused, nothing logged: the profile allows everything,
        // and there is no deny rule for x32 to bypass either. Install
        // nothing, so that the process shows no filter (Seccomp: 0).
        if !programs.is_empty() {
            programs.push(Program { role: Role::Guard, bpf: filter::guard_program(threshold) });
        }
    } else {
        let rules: Vec<&Rule> = plan.rules.iter().filter(|r| r.action != default).collect();
        let base = if split_base {
            base_programs(&rules, default, threshold)
        } else {
            alternatives(rules.iter().copied()).and_then(|by_nr| single_base(by_nr, default, threshold))
        };
        programs.extend(base.map_err(|e| fail(format!("base filter: {e}")))?);
    }

    for p in &programs {
        if p.bpf.len() > MAX_INSNS {
            return Err(fail(format!(
                "a filter needs {} BPF instructions, over the kernel's limit of {MAX_INSNS}; \
                 use fewer argument conditions or merge rules",
                p.bpf.len()
            )));
        }
    }
    let total: usize = programs.iter().map(|p| p.bpf.len() + 4).sum();
    if total > MAX_INSNS_PER_PATH {
        return Err(fail(format!(
            "the filters need {total} BPF instructions together, over the kernel's limit of {MAX_INSNS_PER_PATH}"
        )));
    }
    Ok(programs)
}

/// The distinct non-ALLOW actions of the rules, by first appearance.
fn actions_in_order(rules: &[Rule]) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    for r in rules {
        if r.action != Action::Allow && !r.syscalls.is_empty() && !out.contains(&r.action) {
            out.push(r.action);
        }
    }
    out
}

/// The base, as two filters where it can be: a compact membership filter
/// (listed syscalls pass, the rest get the default action; the guard first)
/// installed last, and before it a seccompiler filter that checks the
/// arguments of only the listed syscalls that have conditions, letting every
/// other syscall through. The kernel keeps the stronger of the two answers,
/// which is exactly the single seccompiler base's answer, in a fraction of
/// the instructions (see filter::membership). Falls back to the single
/// filter when the split cannot be made (too many conditional syscalls, or
/// a condition on seccomp() itself, which would then refuse the install of
/// the last filter).
fn base_programs(rules: &[&Rule], default: Action, threshold: Option<u32>) -> Result<Vec<Program>, String> {
    let by_nr = alternatives(rules.iter().copied())?;
    let listed: Vec<u32> = by_nr.keys().map(|nr| *nr as u32).collect();
    let conditional: BTreeMap<i64, Vec<SeccompRule>> =
        by_nr.iter().filter_map(|(nr, alts)| alts.clone().map(|a| (*nr, a))).collect();
    let split_ok = !conditional.contains_key(&libc::SYS_seccomp);
    let mut programs = Vec::new();
    if split_ok && !conditional.is_empty() {
        let nrs: Vec<u32> = conditional.keys().map(|nr| *nr as u32).collect();
        let checks = seccompiler_program(conditional, default, Action::Allow)?;
        match filter::only_for(&nrs, checks) {
            Some(bpf) => programs.push(Program { role: Role::Conditions, bpf }),
            None => return single_base(by_nr, default, threshold),
        }
    } else if !split_ok {
        return single_base(by_nr, default, threshold);
    }
    let membership = filter::membership(&listed, libc::SECCOMP_RET_ALLOW, u32::from(default.to_seccompiler()));
    programs.push(Program { role: Role::Base, bpf: filter::guarded(membership, threshold) });
    Ok(programs)
}

/// The base as one seccompiler filter: listed -> ALLOW (when their
/// conditions hold), anything else -> the default action.
fn single_base(
    by_nr: BTreeMap<i64, Option<Vec<SeccompRule>>>,
    default: Action,
    threshold: Option<u32>,
) -> Result<Vec<Program>, String> {
    let rules = by_nr.into_iter().map(|(nr, alts)| (nr, alts.unwrap_or_default())).collect();
    let bpf = seccompiler_program(rules, default, Action::Allow)?;
    Ok(vec![Program { role: Role::Base, bpf: filter::guarded(bpf, threshold) }])
}

/// One seccompiler filter: `rules` -> `on_match`, anything else -> `on_mismatch`.
fn build<'a>(
    rules: impl Iterator<Item = &'a Rule>,
    on_mismatch: Action,
    on_match: Action,
) -> Result<BpfProgram, String> {
    let rules = alternatives(rules)?.into_iter().map(|(nr, alts)| (nr, alts.unwrap_or_default())).collect();
    seccompiler_program(rules, on_mismatch, on_match)
}

fn seccompiler_program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_mismatch: Action,
    on_match: Action,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, on_mismatch.to_seccompiler(), on_match.to_seccompiler(), TargetArch::x86_64)
        .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// Per syscall number: None = matches whatever the arguments, else the
/// alternatives (OR-ed), each an AND of conditions.
fn alternatives<'a>(rules: impl Iterator<Item = &'a Rule>) -> Result<BTreeMap<i64, Option<Vec<SeccompRule>>>, String> {
    let mut by_nr: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for rule in rules {
        let alternative = if rule.conds.is_empty() {
            None
        } else {
            let conds = rule
                .conds
                .iter()
                .map(|c| SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, c.to_seccompiler_op(), c.value))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            Some(SeccompRule::new(conds).map_err(|e| e.to_string())?)
        };
        for s in &rule.syscalls {
            let entry = by_nr.entry(i64::from(s.nr)).or_insert_with(|| Some(Vec::new()));
            match (&alternative, entry) {
                // An unconditional rule makes the others for this syscall moot.
                (None, entry) => *entry = None,
                (Some(_), None) => {}
                (Some(alt), Some(list)) => {
                    if !list.contains(alt) {
                        list.push(alt.clone());
                    }
                }
            }
        }
    }
    Ok(by_nr)
}
