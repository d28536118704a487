//! The escape suite: ccos-probe tries to break out of a jail, and every
//! attempt must be refused with exactly the expected errno. To show each
//! check can fail, the same probe runs unconfined as root on the host (and
//! in a jail with a permissive seccomp profile), where the checks must
//! report the escape.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;

use common::*;
use serde_json::Value;

/// What the default jail must answer to each attempt: the errno, or `None`
/// where the check reads state rather than calling something (and must just
/// report no escape).
const REFUSALS: &[(&str, Option<&str>)] = &[
    ("caps_effective", None),
    ("no_new_privs", None),
    ("seccomp_mode", None),
    ("setuid_root", Some("EPERM")),
    ("capset_raise", Some("EPERM")),
    ("mount", Some("EPERM")),
    ("pivot_root", Some("EPERM")),
    ("chroot", Some("EPERM")),
    ("unshare_user", Some("EPERM")),
    ("unshare_mount", Some("EPERM")),
    ("unshare_net", Some("EPERM")),
    ("clone_newuser", Some("EPERM")),
    // The default profile answers clone3 with ENOSYS so libc falls back to
    // clone, whose flags a filter can read.
    ("clone3_newuser", Some("ENOSYS")),
    // /proc/1 is the jail's init, another uid, hidden by hidepid.
    ("setns_pid1", Some("ENOENT")),
    ("ptrace", Some("EPERM")),
    ("process_vm_readv", Some("EPERM")),
    ("bpf", Some("EPERM")),
    ("perf_event_open", Some("EPERM")),
    ("keyctl", Some("EPERM")),
    ("init_module", Some("EPERM")),
    ("kexec_load", Some("EPERM")),
    ("open_by_handle_at", Some("EPERM")),
    ("userfaultfd", Some("EPERM")),
    ("io_uring_setup", Some("EPERM")),
    ("tiocsti", Some("EPERM")),
    ("tiocsti_stdin", Some("EPERM")),
    ("mknod_device", Some("EPERM")),
    ("write_root", Some("EROFS")),
    ("write_usr", Some("EROFS")),
    ("write_etc", Some("EROFS")),
    // Owned by the host's root, so the permission check refuses it before
    // the read-only mount would.
    ("write_proc_sys", Some("EACCES")),
    ("write_sys", Some("ENOENT")),
    ("read_shadow", Some("ENOENT")),
    ("host_pid_visible", Some("ENOENT")),
    ("proc_pid_count", None),
    ("host_devices", None),
    ("dev_mem", Some("ENOENT")),
    ("udp_route", Some("ENETUNREACH")),
    ("tcp_loopback_host", Some("ECONNREFUSED")),
    ("raw_socket", Some("EPERM")),
    ("packet_socket", Some("EPERM")),
    ("netlink_socket", Some("EPERM")),
];

/// Checks whose escape the host kernel itself may make impossible (built
/// without modules, kexec or /dev/mem; the test's own sandbox denying
/// /proc/1; no terminal on stdin): unconfined, these must then fail with
/// one of the listed errnos, never with the jail's refusal.
const HOST_LIMITS: &[(&str, &[&str])] = &[
    ("init_module", &["ENOSYS"]),
    ("kexec_load", &["ENOSYS"]),
    ("dev_mem", &["ENOENT"]),
    ("setns_pid1", &["EACCES"]),
    ("tiocsti_stdin", &["ENOTTY", "EIO"]),
];

/// Checks that only seccomp refuses in our jail (the kernel would allow them
/// for an unprivileged process): with a permissive seccomp profile they
/// must escape, which shows the filter is what stops them.
const SECCOMP_ONLY: &[&str] =
    &["seccomp_mode", "ptrace", "process_vm_readv", "keyctl", "userfaultfd", "io_uring_setup", "netlink_socket"];

fn parse_checks(text: &str) -> BTreeMap<String, Value> {
    let mut checks = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("probe line {line:?}: {e}"));
        checks.insert(v["check"].as_str().unwrap().to_string(), v);
    }
    checks
}

/// Runs the escape probe; `jail_args` None runs it unconfined on the host.
fn probe(jail_args: Option<&[&str]>, listener_port: u16) -> BTreeMap<String, Value> {
    let host_pid = std::process::id().to_string();
    let port = listener_port.to_string();
    let probe_args = ["escape", "--host-pid", &host_pid, "--host-port", &port];
    let out = match jail_args {
        Some(extra) => {
            let mut args: Vec<&str> = extra.to_vec();
            args.push("--");
            args.push(PROBE_IN_JAIL);
            args.extend(probe_args);
            run_jail(&args)
        }
        None => std::process::Command::new(PROBE).args(probe_args).output().unwrap(),
    };
    assert!(out.status.success(), "probe failed: {}\n{}", stderr(&out), stdout(&out));
    let checks = parse_checks(&stdout(&out));
    let names: Vec<&str> = REFUSALS.iter().map(|(n, _)| *n).collect();
    for name in &names {
        assert!(checks.contains_key(*name), "the probe did not run {name}: {checks:?}");
    }
    checks
}

#[test]
fn every_escape_attempt_is_refused_with_the_expected_errno() {
    if !require_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let checks = probe(Some(&[]), listener.local_addr().unwrap().port());
    let mut wrong = Vec::new();
    for (name, errno) in REFUSALS {
        let c = &checks[*name];
        let expected_errno = errno.map(Value::from).unwrap_or(Value::Null);
        if c["escaped"] != false || c["errno"] != expected_errno {
            wrong.push(format!("{name}: expected refusal {errno:?}, got {c}"));
        }
    }
    assert!(wrong.is_empty(), "the jail let these through or refused them differently:\n{}", wrong.join("\n"));
}

/// `lo` is up in a default jail (the parent brings it up from outside while
/// the child builds its root) and down with `--net none`: a connect to
/// 127.0.0.1 finds no listener in the first, no route in the second.
#[test]
fn lo_is_up_unless_the_network_is_none() {
    if !require_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for (args, errno) in [(&[][..], "ECONNREFUSED"), (&["--net", "none"][..], "ENETUNREACH")] {
        let c = &probe(Some(args), port)["tcp_loopback_host"];
        assert!(c["escaped"] == false && c["errno"] == errno, "{args:?}: expected {errno}, got {c}");
    }
}

#[test]
fn unconfined_the_same_checks_report_escapes() {
    if !require_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let checks = probe(None, listener.local_addr().unwrap().port());
    let mut blind = Vec::new();
    for (name, _) in REFUSALS {
        let c = &checks[*name];
        if c["escaped"] == true {
            continue;
        }
        let host_errnos = HOST_LIMITS.iter().find(|(n, _)| n == name).map(|(_, e)| *e).unwrap_or(&[]);
        if !c["errno"].as_str().is_some_and(|e| host_errnos.contains(&e)) {
            blind.push(format!("{name}: {c}"));
        }
    }
    assert!(blind.is_empty(), "these checks cannot see an escape even unconfined:\n{}", blind.join("\n"));
}

#[test]
fn without_seccomp_the_filtered_calls_get_through() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seccomp = dir.path().join("allow-all.json");
    std::fs::write(&seccomp, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}"#).unwrap();
    let profile = dir.path().join("weak.toml");
    std::fs::write(&profile, "seccomp = \"allow-all.json\"\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let checks = probe(Some(&["--profile", profile.to_str().unwrap()]), listener.local_addr().unwrap().port());
    let mut blind = Vec::new();
    for name in SECCOMP_ONLY {
        if checks[*name]["escaped"] != true {
            blind.push(format!("{name}: {}", checks[*name]));
        }
    }
    assert!(blind.is_empty(), "with an allow-all filter these should escape:\n{}", blind.join("\n"));
    // The namespaces, ids and mounts still hold without seccomp.
    for name in ["caps_effective", "mount", "write_root", "read_shadow", "host_pid_visible", "udp_route"] {
        assert_eq!(checks[name]["escaped"], false, "{name}: {}", checks[name]);
    }
    // And no user namespace can be made below the jail's, filter or not.
    for name in ["unshare_user", "clone_newuser", "clone3_newuser"] {
        assert_eq!(checks[name]["escaped"], false, "{name}: {}", checks[name]);
        assert_eq!(checks[name]["errno"], "ENOSPC", "{name}: {}", checks[name]);
    }
}

/// A jail profile using one of the real-world seccomp profiles in
/// ../shared/fixtures/seccomp.
fn fixture_profile(dir: &std::path::Path, fixture: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/seccomp").join(fixture);
    assert!(path.exists(), "fixture {} is missing (shared/ must sit beside the repository)", path.display());
    let profile = dir.join(format!("{fixture}.toml"));
    std::fs::write(&profile, format!("seccomp = {:?}\n", path.display().to_string())).unwrap();
    profile
}

#[test]
fn docker_and_podman_profiles_are_enforced() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for fixture in ["docker-default.json", "podman-default.json"] {
        let profile = fixture_profile(dir.path(), fixture);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let checks = probe(Some(&["--profile", profile.to_str().unwrap()]), listener.local_addr().unwrap().port());
        assert_eq!(checks["seccomp_mode"]["escaped"], false, "{fixture}: no filter installed");
        assert_eq!(checks["mount"]["errno"], "EPERM", "{fixture}: {}", checks["mount"]);
        // Docker's profile answers clone3 with ENOSYS. Podman's allows it,
        // and then the jail's own limit of no nested user namespaces does.
        let clone3_errno = if fixture == "docker-default.json" { "ENOSYS" } else { "ENOSPC" };
        assert_eq!(checks["clone3_newuser"]["errno"], clone3_errno, "{fixture}: {}", checks["clone3_newuser"]);
        assert_eq!(checks["clone3_newuser"]["escaped"], false, "{fixture}: {}", checks["clone3_newuser"]);
        // A permitted call works: the probe itself ran and printed JSON,
        // and a shell pipeline runs too.
        let out = run_jail(&["--profile", profile.to_str().unwrap(), "--", "/bin/sh", "-c", "echo ok | cat"]);
        assert_eq!(stdout(&out), "ok\n", "{fixture}: {}", stderr(&out));
    }
}
