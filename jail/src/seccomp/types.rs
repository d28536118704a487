//! The JSON schema of OCI / Docker seccomp profiles, as serde types.
//!
//! Parsing is strict: every struct denies unknown fields, and every field
//! has the narrowest type serde can check. Meaning (is this errno sensible,
//! is this syscall known, does this rule apply here) is checked afterwards
//! in plan.rs, which knows the JSON path of what it looks at.
//!
//! Reference: the OCI runtime spec (config-linux.md, "Seccomp") and
//! moby/profiles' seccomp types, plus:
//! - `defaultErrno` / `errno`: errno *names* that containers/common (Podman)
//!   writes next to the numbers; accepted, and must agree with them;
//! - `optional`: our extension, see [`Rule::optional`].

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Profile {
    pub default_action: ActionName,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub default_errno: Option<String>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    #[serde(default)]
    pub listener_path: Option<String>,
    #[serde(default)]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Rule {
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// The pre-`names` spelling: one syscall per rule.
    #[serde(default)]
    pub name: Option<String>,
    pub action: ActionName,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub errno: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub includes: Option<Filter>,
    #[serde(default)]
    pub excludes: Option<Filter>,
    /// Our extension: names that no architecture knows are skipped (and
    /// listed by `describe`) instead of failing the load. For profiles that
    /// must load on hosts whose tables are older than the profile.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Arg {
    /// u32 rather than u8 so that 6 or 300 reach the range check in
    /// plan.rs, whose message says what the limit is.
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: Option<u64>,
    pub op: OpName,
}

/// `includes` / `excludes`: conditions on the environment a rule applies in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Filter {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum ActionName {
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// libseccomp's SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD.
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum OpName {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// serde's derived structs also accept a JSON array, taking fields by
/// position: `["SCMP_ACT_ALLOW"]` would load as a profile that allows
/// everything. Nobody writes profiles so, and a strict loader refuses it:
/// this returns the path of the first array found where an object belongs.
pub(crate) fn array_instead_of_object(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let is_array = |v: Option<&Value>| matches!(v, Some(Value::Array(_)));
    let elements = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    if v.is_array() {
        return Some(String::new());
    }
    for (i, m) in elements(v, "archMap").iter().enumerate() {
        if m.is_array() {
            return Some(format!("archMap[{i}]"));
        }
    }
    for (i, rule) in elements(v, "syscalls").iter().enumerate() {
        if rule.is_array() {
            return Some(format!("syscalls[{i}]"));
        }
        for key in ["includes", "excludes"] {
            if is_array(rule.get(key)) {
                return Some(format!("syscalls[{i}].{key}"));
            }
        }
        for (j, arg) in elements(rule, "args").iter().enumerate() {
            if arg.is_array() {
                return Some(format!("syscalls[{i}].args[{j}]"));
            }
        }
    }
    None
}
