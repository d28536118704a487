//! Checks a parsed profile and decides what applies here: a jail on x86_64
//! that holds no capabilities, on a given kernel version.
//!
//! Every rule is checked, including rules that will not apply, so that a
//! mistake is found on any machine, not only where the rule matters.

use super::model::{Action, Cond, Op, PassedName, Plan, Rule, Skipped, Syscall};
use super::names::{self, Lookup};
use super::types::{self, ActionName, OpName};
use super::{arch, caps, errno, KernelVersion, SeccompError};

/// The kernel caps SECCOMP_RET_ERRNO data at MAX_ERRNO.
const MAX_ERRNO: u32 = 4095;

pub(crate) fn plan(profile: &types::Profile, origin: &str, kernel: KernelVersion) -> Result<Plan, SeccompError> {
    let checker = Checker { origin };
    checker.plan(profile, kernel)
}

struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    fn err(&self, path: impl Into<String>, reason: impl Into<String>) -> SeccompError {
        SeccompError::invalid(self.origin, path, reason)
    }

    fn plan(&self, p: &types::Profile, kernel: KernelVersion) -> Result<Plan, SeccompError> {
        let default_errno =
            self.errno_pair(p.default_errno_ret, p.default_errno.as_deref(), "defaultErrnoRet", "defaultErrno")?;
        let default = self.action(p.default_action, default_errno, "defaultAction")?;
        let declared_arches = self.declared_arches(p)?;
        let (flags, flag_names) = self.flags(p.flags.as_deref().unwrap_or_default())?;
        for (value, field) in [(&p.listener_path, "listenerPath"), (&p.listener_metadata, "listenerMetadata")] {
            if value.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(self.err(field, "a seccomp agent is not supported (the jail never uses SCMP_ACT_NOTIFY)"));
            }
        }

        let mut plan = Plan {
            default,
            rules: Vec::new(),
            skipped: Vec::new(),
            passed_names: Vec::new(),
            highest_nr: None,
            flags,
            flag_names,
            declared_arches,
            kernel,
        };
        for (i, rule) in p.syscalls.as_deref().unwrap_or_default().iter().enumerate() {
            self.rule(rule, i, default_errno, &mut plan)?;
        }
        Ok(plan)
    }

    /// Checks `syscalls[i]` and adds it to the plan, as a rule or as skipped.
    fn rule(
        &self,
        rule: &types::Rule,
        i: usize,
        default_errno: Option<u32>,
        plan: &mut Plan,
    ) -> Result<(), SeccompError> {
        let at = format!("syscalls[{i}]");
        let errno =
            self.errno_pair(rule.errno_ret, rule.errno.as_deref(), &format!("{at}.errnoRet"), &format!("{at}.errno"))?;
        if rule.action != ActionName::Errno {
            if rule.errno_ret.is_some() {
                return Err(self.err(format!("{at}.errnoRet"), "errnoRet is only meaningful with SCMP_ACT_ERRNO"));
            }
            if rule.errno.is_some() {
                return Err(self.err(format!("{at}.errno"), "errno is only meaningful with SCMP_ACT_ERRNO"));
            }
        }
        let action = self.action(rule.action, errno.or(default_errno), &format!("{at}.action"))?;

        // Names first: every name must exist somewhere, applied rule or not.
        // (position in `names`, name); the JSON path of a name is only
        // formatted when it is needed (an error, a name passed over): a
        // profile has hundreds of names and this runs on every load.
        let named: Vec<(usize, &String)> = match (&rule.names, &rule.name) {
            (Some(_), Some(_)) => return Err(self.err(format!("{at}.name"), "give `names` or `name`, not both")),
            (None, None) => return Err(self.err(&at, "the rule names no syscall: give `names`")),
            (Some(list), None) if list.is_empty() => return Err(self.err(format!("{at}.names"), "empty list")),
            (Some(list), None) => list.iter().enumerate().collect(),
            (None, Some(n)) => vec![(0, n)],
        };
        let path_of = |j: usize| if rule.names.is_some() { format!("{at}.names[{j}]") } else { format!("{at}.name") };
        let mut syscalls: Vec<Syscall> = Vec::new();
        let mut syscall_positions: Vec<usize> = Vec::new();
        let mut passed: Vec<PassedName> = Vec::new();
        for (j, name) in named {
            match names::lookup(name) {
                Lookup::X86_64(nr) => {
                    plan.highest_nr = plan.highest_nr.max(Some(nr));
                    syscalls.push(Syscall { name: name.clone(), nr });
                    syscall_positions.push(j);
                }
                Lookup::OtherArch(arches) => {
                    passed.push(PassedName { path: path_of(j), name: name.clone(), arch: Some(arches) })
                }
                Lookup::Unknown if rule.optional => {
                    passed.push(PassedName { path: path_of(j), name: name.clone(), arch: None })
                }
                Lookup::Unknown => {
                    return Err(self.err(
                        path_of(j),
                        format!(
                            "unknown syscall `{name}`: no architecture we know has it \
                             (set \"optional\": true on the rule to skip names this host does not know)"
                        ),
                    ))
                }
            }
        }

        let conds = rule
            .args
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, a)| self.cond(a, &format!("{at}.args[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;

        let skip = self.skip_reason(rule, &at, plan.kernel)?;
        if skip.is_none() && action.refuses() {
            if let Some(j) = syscalls.iter().position(|s| s.name == "seccomp") {
                return Err(self.err(
                    syscall_positions.get(j).map(|&j| path_of(j)).unwrap_or_else(|| at.clone()),
                    "a rule that refuses seccomp itself is not supported: the jail installs its filters \
                     one after the other, and such a rule would block the next one; leave seccomp out of \
                     the allowed syscalls instead (the default action then applies to it)",
                ));
            }
        }
        plan.passed_names.extend(passed);
        match skip {
            Some(reason) => {
                let names = rule.names.clone().or_else(|| rule.name.clone().map(|n| vec![n])).unwrap_or_default();
                let comment = rule.comment.clone().filter(|c| !c.is_empty());
                plan.skipped.push(Skipped { index: i, names, reason, comment });
            }
            None => plan.rules.push(Rule { action, syscalls, conds }),
        }
        Ok(())
    }

    /// Why a rule does not apply to a jail with no capabilities on x86_64
    /// running `kernel`, or None if it applies. The same logic as Docker's
    /// (moby/profiles seccomp_linux.go): `includes` lists what must all be
    /// true, `excludes` what must all be false.
    fn skip_reason(&self, rule: &types::Rule, at: &str, kernel: KernelVersion) -> Result<Option<String>, SeccompError> {
        let default = types::Filter::default();
        let inc = rule.includes.as_ref().unwrap_or(&default);
        let exc = rule.excludes.as_ref().unwrap_or(&default);
        let inc_arches = self.arch_list(inc.arches.as_deref(), &format!("{at}.includes.arches"))?;
        let exc_arches = self.arch_list(exc.arches.as_deref(), &format!("{at}.excludes.arches"))?;
        let inc_caps = self.cap_list(inc.caps.as_deref(), &format!("{at}.includes.caps"))?;
        self.cap_list(exc.caps.as_deref(), &format!("{at}.excludes.caps"))?;
        let inc_kernel = self.min_kernel(inc.min_kernel.as_deref(), &format!("{at}.includes.minKernel"))?;
        let exc_kernel = self.min_kernel(exc.min_kernel.as_deref(), &format!("{at}.excludes.minKernel"))?;

        if !inc_arches.is_empty() && !inc_arches.contains(&arch::TARGET) {
            return Ok(Some(format!("includes.arches is [{}], not x86_64", inc_arches.join(", "))));
        }
        if exc_arches.contains(&arch::TARGET) {
            return Ok(Some("excludes.arches names x86_64".to_string()));
        }
        // The jail holds no capability: any required one is missing, and
        // excludes.caps (a capability that would make the rule unneeded)
        // never excludes.
        if !inc_caps.is_empty() {
            return Ok(Some(format!("includes.caps needs {}; the jail holds no capabilities", inc_caps.join(", "))));
        }
        if let Some(min) = inc_kernel {
            if kernel < min {
                return Ok(Some(format!("includes.minKernel is {min}, the kernel is {kernel}")));
            }
        }
        if let Some(min) = exc_kernel {
            if kernel >= min {
                return Ok(Some(format!("excludes.minKernel is {min}, the kernel is {kernel}")));
            }
        }
        Ok(None)
    }

    fn action(&self, name: ActionName, errno: Option<u32>, path: &str) -> Result<Action, SeccompError> {
        Ok(match name {
            ActionName::Allow => Action::Allow,
            ActionName::Log => Action::Log,
            ActionName::Errno => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
            ActionName::Trap => Action::Trap,
            ActionName::Kill | ActionName::KillThread => Action::KillThread,
            ActionName::KillProcess => Action::KillProcess,
            ActionName::Trace => {
                return Err(self.err(
                    path,
                    "SCMP_ACT_TRACE is not supported: no tracer is ever attached to a jailed program, \
                     so the kernel would only answer ENOSYS; write SCMP_ACT_ERRNO with \"errnoRet\": 38 for that",
                ))
            }
            ActionName::Notify => {
                return Err(self.err(path, "SCMP_ACT_NOTIFY is not supported: the jail has no seccomp agent"))
            }
        })
    }

    /// A numeric errno and/or its name (Podman writes both); they must agree.
    fn errno_pair(
        &self,
        number: Option<u32>,
        name: Option<&str>,
        number_path: &str,
        name_path: &str,
    ) -> Result<Option<u32>, SeccompError> {
        let from_name = match name {
            None => None,
            Some(n) => Some(errno::number(n).ok_or_else(|| self.err(name_path, format!("unknown errno name `{n}`")))?),
        };
        match (number, from_name) {
            (Some(v), Some(w)) if v != w => {
                Err(self.err(name_path, format!("`{}` is {w} but the number given is {v}", name.unwrap_or_default())))
            }
            (Some(v), _) if v > MAX_ERRNO => {
                Err(self.err(number_path, format!("errno {v} is out of range (1 to {MAX_ERRNO})")))
            }
            (v, w) => Ok(v.or(w)),
        }
    }

    fn cond(&self, a: &types::Arg, at: &str) -> Result<Cond, SeccompError> {
        // seccomp_data has six arguments; seccompiler checks the same limit.
        let index = u8::try_from(a.index).ok().filter(|i| *i <= 5).ok_or_else(|| {
            self.err(format!("{at}.index"), format!("argument index {} is out of range 0 to 5", a.index))
        })?;
        let two = a.value_two.unwrap_or(0);
        let (op, value) = match a.op {
            OpName::MaskedEq => {
                // libseccomp: value is the mask, valueTwo the expected result.
                if two & !a.value != 0 {
                    return Err(self.err(
                        format!("{at}.valueTwo"),
                        format!("{two:#x} has bits outside the mask {:#x}: the comparison could never match", a.value),
                    ));
                }
                (Op::MaskedEq { mask: a.value }, two)
            }
            other => {
                if two != 0 {
                    return Err(self.err(format!("{at}.valueTwo"), "valueTwo is only used by SCMP_CMP_MASKED_EQ"));
                }
                let op = match other {
                    OpName::Ne => Op::Ne,
                    OpName::Lt => Op::Lt,
                    OpName::Le => Op::Le,
                    OpName::Eq => Op::Eq,
                    OpName::Ge => Op::Ge,
                    OpName::Gt => Op::Gt,
                    OpName::MaskedEq => unreachable!("handled above"),
                };
                (op, a.value)
            }
        };
        Ok(Cond { index, op, value })
    }

    fn declared_arches(&self, p: &types::Profile) -> Result<Vec<&'static str>, SeccompError> {
        let mut found = self.arch_list(p.architectures.as_deref(), "architectures")?;
        for (i, m) in p.arch_map.as_deref().unwrap_or_default().iter().enumerate() {
            let main = arch::canonical(&m.architecture).ok_or_else(|| {
                self.err(format!("archMap[{i}].architecture"), format!("unknown architecture `{}`", m.architecture))
            })?;
            found.push(main);
            found.extend(self.arch_list(m.sub_architectures.as_deref(), &format!("archMap[{i}].subArchitectures"))?);
        }
        let mut unique: Vec<&'static str> = Vec::new();
        for a in found {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        Ok(unique)
    }

    fn arch_list(&self, list: Option<&[String]>, at: &str) -> Result<Vec<&'static str>, SeccompError> {
        let list = list.unwrap_or_default();
        list.iter()
            .enumerate()
            .map(|(k, s)| {
                arch::canonical(s).ok_or_else(|| self.err(format!("{at}[{k}]"), format!("unknown architecture `{s}`")))
            })
            .collect()
    }

    fn cap_list<'p>(&self, list: Option<&'p [String]>, at: &str) -> Result<Vec<&'p str>, SeccompError> {
        let list = list.unwrap_or_default();
        for (k, c) in list.iter().enumerate() {
            if !caps::is_known(c) {
                return Err(self.err(format!("{at}[{k}]"), format!("unknown capability `{c}`")));
            }
        }
        Ok(list.iter().map(String::as_str).collect())
    }

    fn min_kernel(&self, text: Option<&str>, at: &str) -> Result<Option<KernelVersion>, SeccompError> {
        text.map(|t| {
            KernelVersion::parse_min_kernel(t)
                .ok_or_else(|| self.err(at, format!("`{t}` is not a kernel version like \"5.10\"")))
        })
        .transpose()
    }

    fn flags(&self, names: &[String]) -> Result<(libc::c_ulong, Vec<String>), SeccompError> {
        let mut flags: libc::c_ulong = 0;
        for (i, name) in names.iter().enumerate() {
            flags |= match name.as_str() {
                // Filters go in while the jailed process has one thread:
                // there is nothing to synchronise, so the flag is dropped.
                "SECCOMP_FILTER_FLAG_TSYNC" => 0,
                "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => {
                    return Err(self.err(
                        format!("flags[{i}]"),
                        "only meaningful with a seccomp agent (SCMP_ACT_NOTIFY), which is not supported",
                    ))
                }
                _ => return Err(self.err(format!("flags[{i}]"), format!("unknown flag `{name}`"))),
            };
        }
        Ok((flags, names.to_vec()))
    }
}
