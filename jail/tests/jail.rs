//! `ccos-jail run` end to end, as root: exit codes, signals, stdio, the
//! environment, the root it builds, id ranges, errors before exec,
//! die-with-parent, and that nothing is left behind.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// A sleep whose argument is unique to one test, so its processes can be
/// found on the host.
fn unique_sleep(tag: u32) -> String {
    format!("{}.{:06}", 400 + tag, std::process::id())
}

#[test]
fn exit_code_passes_through() {
    if !require_root() {
        return;
    }
    let out = run_jail(&["--", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = run_jail(&["--", PROBE_IN_JAIL, "exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_signal_gives_128_plus_the_signal_and_a_report() {
    if !require_root() {
        return;
    }
    let (out, r) = run_with_report(&["--", PROBE_IN_JAIL, "signal", "15"]);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
    assert_eq!(r["signal"], 15);
    assert_eq!(r["exit_code"], serde_json::Value::Null);
    assert_eq!(r["reason"], "signalled");
    assert!(r["profile_hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(r["wall_secs"].as_f64().unwrap() > 0.0);
    assert!(r["cpu_secs"].as_f64().is_some());
    assert_eq!(r["error"], serde_json::Value::Null);
}

#[test]
fn stdio_passes_through() {
    if !require_root() {
        return;
    }
    let mut child = jail_cmd(&["--", "/bin/sh", "-c", "cat; echo to-stderr >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello from the host\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from the host\n");
    assert!(stderr(&out).contains("to-stderr"));
}

#[test]
fn environment_is_clean() {
    if !require_root() {
        return;
    }
    let out = jail_cmd(&["--env", "GIVEN=yes", "--", PROBE_IN_JAIL, "env"])
        .env("CCOS_TEST_SECRET", "must-not-leak")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env: serde_json::Map<String, serde_json::Value> = serde_json::from_str(stdout(&out).trim()).unwrap();
    let mut keys: Vec<&str> = env.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["GIVEN", "HOME", "LANG", "PATH", "TERM"], "{env:?}");
    assert_eq!(env["GIVEN"], "yes");
    assert_eq!(env["LANG"], "C.UTF-8", "LANG is on the default profile's pass list");
}

#[test]
fn the_program_runs_unprivileged_with_its_own_host_name() {
    if !require_root() {
        return;
    }
    let out = run_jail(&["--hostname", "agent-7", "--", PROBE_IN_JAIL, "ids"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(ids["uid"], 1000);
    assert_eq!(ids["gid"], 1000);
    assert_eq!(ids["hostname"], "agent-7");
    // PID 1 is the jail's init; the program is its child.
    assert_eq!(ids["ppid"], 1);
}

/// The program may run on exactly the CPUs its caller may: the parent keeps
/// the jail's init off its own CPU while both set up, and init must give the
/// caller's CPUs back before the program starts.
#[test]
fn the_program_runs_on_the_callers_cpus() {
    if !require_root() {
        return;
    }
    let allowed = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        stdout(&out).lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_owned()).unwrap()
    };
    let ours = allowed(Command::new("grep").args(["Cpus_allowed_list", "/proc/self/status"]));
    let first = ours.split([',', '-']).next().unwrap().to_owned();
    for cpus in [ours.as_str(), first.as_str()] {
        let inside = allowed(Command::new("taskset").args([
            "-c",
            cpus,
            JAIL,
            "run",
            "--",
            "/bin/grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ]));
        assert_eq!(inside, cpus, "the jailed program's CPUs, caller on {cpus}");
    }
}

#[test]
fn the_root_is_minimal() {
    if !require_root() {
        return;
    }
    let out = run_jail(&["--", "/bin/sh", "-c", "ls -A /; echo ---; ls -A /etc; echo ---; ls -A /dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let parts: Vec<Vec<&str>> = text.split("---\n").map(|p| p.lines().collect()).collect();
    let allowed_root = ["bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp", "usr"];
    for entry in &parts[0] {
        assert!(allowed_root.contains(entry), "unexpected /{entry} in the jail's root: {:?}", parts[0]);
    }
    for needed in ["usr", "proc", "dev", "tmp", "etc"] {
        assert!(parts[0].contains(&needed), "/{needed} missing: {:?}", parts[0]);
    }
    for secret in ["shadow", "gshadow", "sudoers", "ssh", "resolv.conf", "machine-id"] {
        assert!(!parts[1].contains(&secret), "/etc/{secret} must not be in the jail: {:?}", parts[1]);
    }
    let mut dev = parts[2].clone();
    dev.sort_unstable();
    assert_eq!(
        dev,
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    );
}

#[test]
fn tmp_is_writable_and_size_limited() {
    if !require_root() {
        return;
    }
    let out = run_jail(&[
        "--",
        "/bin/sh",
        "-c",
        "echo ok > /tmp/f && cat /tmp/f && dd if=/dev/zero of=/tmp/big bs=1M count=100 2>&1; echo dd=$?",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("ok\n"), "{text}");
    assert!(text.contains("No space left on device") && text.contains("dd=1"), "{text}");
}

#[test]
fn binds_are_read_only_unless_asked() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from host").unwrap();
    let ro = format!("{}:/work", dir.path().display());
    let out = run_jail(&["--bind", &ro, "--", "/bin/sh", "-c", "cat /work/in.txt; touch /work/new 2>&1"]);
    assert!(stdout(&out).contains("from host"));
    assert!(stdout(&out).contains("Read-only file system"), "{}", stdout(&out));
    // Writable: the jail's uid (1000 inside) is a private id outside, so the
    // folder must be writable by that id; make it world-writable here.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let rw = format!("{}:/work:rw", dir.path().display());
    let out = run_jail(&["--bind", &rw, "--", "/bin/sh", "-c", "echo written > /work/out.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "written\n");
}

#[test]
fn a_bind_source_behind_a_root_only_folder_is_bound_as_checked() {
    if !require_root() {
        return;
    }
    // The jail's root is an unprivileged id on the host: it could not walk
    // into a 0700 root folder. The parent clones the source for it.
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(private.join("note"), "only through the jail\n").unwrap();
    std::fs::set_permissions(private.join("note"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let bind = format!("{}:/in/note", private.join("note").display());
    let out = run_jail(&["--bind", &bind, "--", "/bin/sh", "-c", "cat /in/note; ls /in; (echo x > /in/note) 2>&1"]);
    let text = stdout(&out);
    assert!(text.starts_with("only through the jail"), "{text}{}", stderr(&out));
    assert!(text.contains("Read-only file system"), "{text}");
    // Nothing else of the folder came along.
    assert_eq!(text.lines().nth(1), Some("note"), "{text}");
}

#[test]
fn errors_before_exec_are_typed_and_named() {
    if !require_root() {
        return;
    }
    let out = run_jail(&["--", "no-such-program-ccos"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("\"no-such-program-ccos\" not found in the jail"), "{}", stderr(&out));

    let out = run_jail(&["--", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr(&out).contains("executing /etc/passwd"), "{}", stderr(&out));

    let out = run_jail(&["--bind", "/nonexistent-ccos:/x", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("bind source /nonexistent-ccos does not exist"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "hostname = \"x\"\nnetwrk = \"none\"\n").unwrap();
    let out = run_jail(&["--profile", bad.to_str().unwrap(), "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.contains(bad.to_str().unwrap()) && err.contains("netwrk"), "{err}");

    let out = run_jail(&["--profile", "no-such-profile", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no shipped profile named \"no-such-profile\""), "{}", stderr(&out));

    let out = run_jail(&["--memory", "lots", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--memory"), "{}", stderr(&out));
}

#[test]
fn a_setup_failure_is_reported_in_json() {
    if !require_root() {
        return;
    }
    let (out, r) = run_with_report(&["--", "no-such-program-ccos"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(r["reason"], "spawn_failed");
    assert_eq!(r["error"]["step"], "find_program");
    assert_eq!(r["error"]["exit_code"], 127);
}

#[test]
fn the_time_limit_kills_the_whole_jail() {
    if !require_root() {
        return;
    }
    let started = std::time::Instant::now();
    let out = run_jail(&["--time-limit", "500ms", "--", PROBE_IN_JAIL, "daemonize", "30"]);
    // The program exits at once and leaves a double-forked grandchild
    // behind; init ends the jail when the program ends, so ccos-jail
    // returns at once rather than waiting out the grandchild.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed().as_secs_f64() < 5.0);

    let (out, r) = run_with_report(&["--time-limit", "300ms", "--", "/bin/sleep", "30"]);
    assert_eq!(out.status.code(), Some(128 + 9));
    assert_eq!(r["reason"], "time_limit");
    assert!(r["wall_secs"].as_f64().unwrap() < 5.0, "{r}");
}

#[test]
fn a_daemonized_grandchild_dies_with_the_program() {
    if !require_root() {
        return;
    }
    let out = run_jail(&["--", PROBE_IN_JAIL, "daemonize", &unique_sleep(1)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The grandchild ran `sleep`-like for a unique time; it must be gone.
    let left = pids_with_marker(&unique_sleep(1));
    assert!(wait_for(2.0, || pids_with_marker(&unique_sleep(1)).is_empty()), "left behind: {left:?}");
}

#[test]
fn the_jail_dies_with_ccos_jail() {
    if !require_root() {
        return;
    }
    let arg = unique_sleep(2);
    let child = jail_cmd(&["--", "/bin/sleep", &arg]).spawn().unwrap();
    assert!(wait_for(5.0, || pids_with_marker(&arg).len() >= 2), "the jail did not start");
    sigkill_and_expect_nothing_left(child, &arg);
}

/// SIGKILLs a running `ccos-jail` (it gets no chance to clean up) and
/// checks that no process of its jail, marked by `marker`, outlives it.
fn sigkill_and_expect_nothing_left(mut child: std::process::Child, marker: &str) {
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wait_for(3.0, || pids_with_marker(marker).is_empty()), "left behind: {:?}", pids_with_marker(marker));
}

/// A line of /proc/PID/status, e.g. "CapBnd".
fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
}

#[test]
fn the_jails_init_keeps_only_cap_kill() {
    if !require_root() {
        return;
    }
    let arg = unique_sleep(5);
    let child = jail_cmd(&["--", "/bin/sleep", &arg]).spawn().unwrap();
    let init = || {
        pids_with_marker(&arg)
            .into_iter()
            .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ccos-init"))
    };
    assert!(wait_for(5.0, || init().is_some()), "no ccos-init among {:?}", pids_with_marker(&arg));
    let pid = init().unwrap();
    // Init locks itself down once the program has started.
    let cap_kill = format!("{:016x}", 1u64 << 5); // CAP_KILL is capability 5
    let locked = || status_field(pid, "CapEff").as_deref() == Some(cap_kill.as_str());
    assert!(wait_for(5.0, locked), "init's CapEff: {:?}", status_field(pid, "CapEff"));
    for (field, want) in [("CapPrm", cap_kill.as_str()), ("CapInh", "0000000000000000"), ("CapAmb", "0000000000000000")]
    {
        assert_eq!(status_field(pid, field).as_deref(), Some(want), "init's {field}");
    }
    // Empty, so nothing it could exec would ever get a capability back.
    assert_eq!(status_field(pid, "CapBnd").as_deref(), Some("0000000000000000"), "init's bounding set");
    assert_eq!(status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
    sigkill_and_expect_nothing_left(child, &arg);
}

#[test]
fn signals_to_ccos_jail_reach_the_program() {
    if !require_root() {
        return;
    }
    let arg = unique_sleep(3);
    let dir = tempfile::tempdir().unwrap();
    let report = report_path(dir.path());
    let child = jail_cmd(&["--report-json", report.to_str().unwrap(), "--", "/bin/sleep", &arg]).spawn().unwrap();
    assert!(wait_for(5.0, || pids_with_marker(&arg).len() >= 2), "the jail did not start");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
    let r = read_report(&report);
    assert_eq!(r["signal"], 15);
    assert_eq!(r["reason"], "killed");
}

#[test]
fn live_jails_never_share_outside_ids() {
    if !require_root() {
        return;
    }
    let args: Vec<String> = (10..13).map(unique_sleep).collect();
    let mut children: Vec<_> = args.iter().map(|a| jail_cmd(&["--", "/bin/sleep", a]).spawn().unwrap()).collect();
    let mut uids = Vec::new();
    for a in &args {
        // ccos-jail, its init (a clone with the same command line) and sleep.
        assert!(wait_for(5.0, || pids_with_marker(a).len() >= 3), "jail for {a} did not start");
        // The program (not ccos-jail, not init) runs as uid 1000 inside.
        for pid in pids_with_marker(a) {
            let uid = host_uid(pid);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                uids.push(uid);
            }
        }
    }
    for c in &mut children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    assert_eq!(uids.len(), 3, "{uids:?}");
    for uid in &uids {
        assert!(*uid >= ccos_jail::idmap::OUTSIDE_BASE, "uid {uid} is not in the jail ranges");
        assert_eq!((uid - ccos_jail::idmap::OUTSIDE_BASE) % ccos_jail::idmap::RANGE_SIZE, 1000);
    }
    let mut distinct = uids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "two live jails share an outside uid: {uids:?}");
}

fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

/// The real uid of `pid` as the host sees it (0 when it cannot be read).
fn host_uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn jail_uid_processes() -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if host_uid(pid) >= ccos_jail::idmap::OUTSIDE_BASE {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn nothing_is_left_behind_after_100_runs() {
    if !require_root() {
        return;
    }
    let mounts_before = mount_count();
    let tmp_before: Vec<_> = std::fs::read_dir("/tmp").unwrap().flatten().map(|e| e.file_name()).collect();
    for i in 0..100 {
        let out = run_jail(&["--", "/bin/true"]);
        assert!(out.status.success(), "run {i}: {}", stderr(&out));
    }
    assert_eq!(mount_count(), mounts_before, "mounts leaked into the host namespace");
    // Other tests kill jails on purpose (die-with-parent); their processes
    // are orphans for a moment before the kernel finishes killing them. A
    // jail process that stays an orphan has outlived its ccos-jail.
    let orphans = || {
        jail_uid_processes()
            .into_iter()
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)) == Some("1")
            })
            .collect::<Vec<_>>()
    };
    assert!(wait_for(3.0, || orphans().is_empty()), "jail processes outlived their ccos-jail: {:?}", orphans());
    let tmp_after: Vec<_> = std::fs::read_dir("/tmp").unwrap().flatten().map(|e| e.file_name()).collect();
    let new: Vec<_> = tmp_after.iter().filter(|n| !tmp_before.contains(n)).collect();
    // Other tests create tempdirs concurrently (named .tmpXXXX); ccos-jail
    // itself must create nothing in /tmp.
    assert!(new.iter().all(|n| n.to_string_lossy().starts_with(".tmp")), "new entries in /tmp: {new:?}");
}

/// The `.bpf` entries of a seccomp cache directory.
fn cache_entries(dir: &std::path::Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = read.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.retain(|n| n.ends_with(".bpf"));
    names.sort();
    names
}

#[test]
fn the_seccomp_cache_is_filled_then_used() {
    // check-profile needs no root: a cold and a warm run print the same.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("seccomp");
    let check = || {
        std::process::Command::new(JAIL)
            .env("CCOS_JAIL_CACHE_DIR", &dir)
            .args(["check-profile", "default"])
            .output()
            .unwrap()
    };
    let cold = check();
    assert!(cold.status.success(), "{}", stderr(&cold));
    assert_eq!(cache_entries(&dir).len(), 1, "no entry written");
    let warm = check();
    assert!(warm.status.success(), "{}", stderr(&warm));
    assert_eq!(stdout(&warm), stdout(&cold));

    if !require_root() {
        return;
    }
    // A run: filled by the first, read by the second, the same filter in
    // the jail and the same hash in the report.
    let dir = tmp.path().join("run");
    let seccomp_status = ["--", "/bin/sh", "-c", "grep ^Seccomp /proc/self/status"];
    let run = |report: &str| {
        let out = jail_cmd(&["--report-json", report])
            .args(seccomp_status)
            .env("CCOS_JAIL_CACHE_DIR", &dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        (stdout(&out), read_report(std::path::Path::new(report))["profile_hash"].clone())
    };
    let report = tmp.path().join("report.json");
    let report = report.to_str().unwrap();
    let cold = run(report);
    assert!(cold.0.contains("Seccomp:\t2"), "{}", cold.0);
    assert_eq!(cache_entries(&dir).len(), 1, "no entry written");
    assert_eq!(run(report), cold);
    assert_eq!(cache_entries(&dir).len(), 1);
}
