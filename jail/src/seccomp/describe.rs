//! The human summary `ccos-jail check-profile` prints: what the compiled
//! filters do, what was left out and why, and what gets installed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use seccompiler::BpfProgram;

use super::compile::{Program, Role};
use super::filter::X32_SYSCALL_BIT;
use super::model::{Action, Plan};

const WIDTH: usize = 100;

pub(crate) fn describe(plan: &Plan, stack: &[Program], programs: &[BpfProgram], hash: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "seccomp filter {hash}");
    let _ = writeln!(out, "compiled for x86_64, kernel {}, a jail with no capabilities", plan.kernel);
    if !plan.declared_arches.is_empty() {
        let _ = writeln!(
            out,
            "profile architectures: {} (only x86_64 is compiled; i386 syscalls are killed, x32 ones get ENOSYS)",
            plan.declared_arches.join(", ")
        );
    }
    let _ = writeln!(out, "default action: {} for every syscall no rule below matches", plan.default);
    actions(&mut out, plan);
    threshold(&mut out, plan, programs);
    skipped(&mut out, plan);
    passed_names(&mut out, plan);
    if !plan.flag_names.is_empty() {
        let _ = writeln!(out, "flags: {} (TSYNC is dropped: one thread at install)", plan.flag_names.join(", "));
    }
    if programs.is_empty() {
        let _ = writeln!(out, "no BPF program: the profile allows every syscall, so nothing is installed");
        return out;
    }
    let _ = writeln!(out, "BPF programs, as compiled (a stack, in installation order):");
    for (i, Program { role, bpf }) in stack.iter().enumerate() {
        let what = match role {
            Role::Base => format!("guard, then base: unlisted syscalls -> {}, listed ones pass on", plan.default),
            Role::Action(a) => format!("rules -> {a}, anything else passes"),
            Role::Conditions => {
                format!("argument conditions of the listed syscalls that have them -> {}", plan.default)
            }
            Role::Guard => "guard: x32 and unknown-to-the-profile numbers -> ENOSYS".to_string(),
        };
        let _ = writeln!(out, "  {}. {what}: {} instructions", i + 1, bpf.len());
    }
    match programs {
        [one] if stack.len() > 1 => {
            let _ = writeln!(out, "installed: the stack folded into one program of {} instructions", one.len());
        }
        _ => {
            let _ = writeln!(out, "installed: the stack as it is");
        }
    }
    out
}

/// Syscall name -> its alternative conditions (None = any arguments).
type BySyscall<'a> = BTreeMap<&'a str, Option<Vec<String>>>;

/// Per action, the syscalls its rules give it, with their conditions.
fn actions(out: &mut String, plan: &Plan) {
    let mut groups: Vec<(Action, BySyscall)> = Vec::new();
    for rule in &plan.rules {
        let pos = match groups.iter().position(|(a, _)| *a == rule.action) {
            Some(pos) => pos,
            None => {
                groups.push((rule.action, BTreeMap::new()));
                groups.len() - 1
            }
        };
        let conds = (!rule.conds.is_empty())
            .then(|| rule.conds.iter().map(ToString::to_string).collect::<Vec<_>>().join(" && "));
        for s in &rule.syscalls {
            let entry = groups[pos].1.entry(s.name.as_str()).or_insert_with(|| Some(Vec::new()));
            match (&conds, entry) {
                (None, entry) => *entry = None,
                (Some(_), None) => {}
                (Some(c), Some(list)) => {
                    if !list.contains(c) {
                        list.push(c.clone());
                    }
                }
            }
        }
    }
    // ALLOW first, then the rest as they appear.
    groups.sort_by_key(|(a, _)| *a != Action::Allow);
    for (action, syscalls) in groups {
        if syscalls.is_empty() {
            continue;
        }
        let items: Vec<String> = syscalls
            .into_iter()
            .map(|(name, alts)| match alts {
                None => name.to_string(),
                Some(alts) => format!("{name} [{}]", alts.join(" | ")),
            })
            .collect();
        let plural = if items.len() == 1 { "" } else { "s" };
        let _ = writeln!(out, "{action} ({} syscall{plural}):", items.len());
        wrap(out, &items);
    }
}

fn threshold(out: &mut String, plan: &Plan, programs: &[BpfProgram]) {
    if programs.is_empty() {
        return;
    }
    match (plan.default, plan.highest_nr) {
        (Action::Allow | Action::Log, _) => {}
        (_, Some(n)) => {
            let name = super::names::name_of(n).unwrap_or("?");
            let _ = writeln!(out, "syscalls above {n} ({name}, the highest the profile names) -> ERRNO(38 ENOSYS)");
        }
        (_, None) => {}
    }
    let _ = writeln!(
        out,
        "x32 ABI syscalls (number | {X32_SYSCALL_BIT:#x}) -> ERRNO(38 ENOSYS); other architectures -> KILL_PROCESS"
    );
}

fn skipped(out: &mut String, plan: &Plan) {
    if plan.skipped.is_empty() {
        return;
    }
    let _ = writeln!(out, "rules skipped ({}):", plan.skipped.len());
    for s in &plan.skipped {
        let mut names = s.names.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
        if s.names.len() > 6 {
            let _ = write!(names, ", ... ({} names)", s.names.len());
        }
        let _ = writeln!(out, "  syscalls[{}] {names}: {}", s.index, s.reason);
        if let Some(c) = &s.comment {
            let _ = writeln!(out, "    ({c})");
        }
    }
}

fn passed_names(out: &mut String, plan: &Plan) {
    let mut by_arch: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &plan.passed_names {
        let list = by_arch.entry(p.arch.unwrap_or("")).or_default();
        if !list.contains(&p.name.as_str()) {
            list.push(&p.name);
        }
    }
    by_arch.remove("");
    let unknown: Vec<String> =
        plan.passed_names.iter().filter(|p| p.arch.is_none()).map(|p| format!("{} ({})", p.name, p.path)).collect();
    if !unknown.is_empty() {
        let _ = writeln!(out, "unknown names skipped in optional rules ({}):", unknown.len());
        wrap(out, &unknown);
    }
    if !by_arch.is_empty() {
        let _ = writeln!(out, "names ignored as not x86_64 syscalls:");
        for (arch, mut names) in by_arch {
            names.sort_unstable();
            let _ = writeln!(out, "  {arch}:");
            wrap(out, &names);
        }
    }
}

/// Comma-separated items, indented, wrapped at WIDTH columns.
fn wrap<S: AsRef<str>>(out: &mut String, items: &[S]) {
    let mut line = String::from("   ");
    for (i, item) in items.iter().enumerate() {
        let item = item.as_ref();
        let sep = if i + 1 < items.len() { "," } else { "" };
        if line.len() > 3 && line.len() + 1 + item.len() + sep.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(item);
        line.push_str(sep);
    }
    out.push_str(&line);
    out.push('\n');
}
