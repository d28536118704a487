//! What this kernel and host allow, checked for real, failing closed: each
//! required check is something a jail depends on, and a host that fails one
//! cannot run jails safely.

use crate::cgroup::{CgroupConfig, HostCgroups};
use crate::sys;

/// One finding.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// A jail cannot be made safely without it.
    pub required: bool,
    pub detail: String,
}

/// Runs every check, the last one a real jail of `/bin/true` with the
/// default profile. Must run in a single-threaded process (it spawns).
pub fn run_checks(cgroups: &CgroupConfig) -> Vec<Check> {
    let mut checks = vec![kernel(), user_namespaces(), syscall_present("clone3", sys::probe_clone3(), true)];
    checks.push(syscall_present("pidfd", sys::probe_pidfd(), true));
    checks.push(syscall_present("mount_setattr", sys::probe_mount_setattr(), true));
    checks.push(seccomp_actions());
    checks.push(landlock());
    checks.push(cgroup_check(cgroups));
    checks.push(trial_jail());
    checks
}

fn kernel() -> Check {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    Check { name: "kernel", ok: true, required: false, detail: release }
}

fn user_namespaces() -> Check {
    let max =
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").ok().and_then(|s| s.trim().parse::<u64>().ok());
    match max {
        Some(n) if n > 0 => Check { name: "user namespaces", ok: true, required: true, detail: format!("up to {n}") },
        Some(_) => Check {
            name: "user namespaces",
            ok: false,
            required: true,
            detail: "disabled: user.max_user_namespaces = 0 (set it above 0)".into(),
        },
        None => Check {
            name: "user namespaces",
            ok: false,
            required: true,
            detail: "this kernel has no user namespaces (CONFIG_USER_NS)".into(),
        },
    }
}

fn syscall_present(name: &'static str, result: std::io::Result<()>, required: bool) -> Check {
    match result {
        Ok(()) => Check { name, ok: true, required, detail: "available".into() },
        Err(e) => Check { name, ok: false, required, detail: format!("not usable: {e}") },
    }
}

fn seccomp_actions() -> Check {
    let name = "seccomp filters";
    match std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail") {
        Ok(actions) => {
            let actions = actions.trim().to_string();
            let needed = ["allow", "errno", "kill_process", "log"];
            let missing: Vec<_> = needed.iter().filter(|a| !actions.split_whitespace().any(|x| x == **a)).collect();
            Check {
                name,
                ok: missing.is_empty(),
                required: true,
                detail: if missing.is_empty() {
                    format!("actions: {actions}")
                } else {
                    format!("missing actions {missing:?} (have: {actions})")
                },
            }
        }
        Err(e) => Check { name, ok: false, required: true, detail: format!("no seccomp filter support: {e}") },
    }
}

fn landlock() -> Check {
    let detail = match sys::landlock_abi() {
        Ok(abi) => format!("ABI {abi} (not used yet)"),
        Err(e) => format!("not available: {e} (not used yet)"),
    };
    Check { name: "landlock", ok: true, required: false, detail }
}

fn cgroup_check(config: &CgroupConfig) -> Check {
    let host = HostCgroups::check(config);
    Check { name: "cgroups", ok: host.ok(), required: true, detail: host.to_string().trim_end().to_string() }
}

fn trial_jail() -> Check {
    let name = "a real jail";
    let result = crate::Profile::shipped("default").map_err(crate::Error::from).and_then(|p| {
        let spec = crate::JailSpec::new(std::sync::Arc::new(p), vec!["/bin/true".into()]);
        crate::spawn(&spec, None)?.wait(None)
    });
    match result {
        Ok(r) if r.exit_code == Some(0) => Check {
            name,
            ok: true,
            required: true,
            detail: format!("/bin/true ran in a jail ({:.1} ms)", r.wall_secs * 1e3),
        },
        Ok(r) => Check {
            name,
            ok: false,
            required: true,
            detail: match r.error {
                Some(e) => e.to_string(),
                None => format!("/bin/true ended with {:?} / signal {:?}", r.exit_code, r.signal),
            },
        },
        Err(e) => Check { name, ok: false, required: true, detail: e.to_string() },
    }
}
