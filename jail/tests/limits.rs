//! `ccos-jail run` with cgroup limits, as root, on whichever cgroup mode the
//! host has (v1 here; v2 in tests/vm): the reasons and figures in the
//! report, and no cgroup left behind.

mod common;

use common::*;

/// Under QEMU's emulation programs run 5-12 times slower; bounds widen.
fn slow() -> bool {
    std::env::var("CCOS_TEST_SLOW").is_ok_and(|v| v == "1")
}

#[test]
fn a_memory_hog_ends_with_oom() {
    if !require_root() {
        return;
    }
    let (out, r) = run_with_report(&["--memory", "64M", "--", PROBE_IN_JAIL, "hog-memory", "256"]);
    assert_eq!(r["reason"], "oom", "{r}\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(128 + 9));
    let peak = r["memory_peak_bytes"].as_u64().unwrap();
    assert!(peak <= 64 << 20 && peak > 32 << 20, "peak {peak}");
}

#[test]
fn a_fork_bomb_is_contained() {
    if !require_root() {
        return;
    }
    let (out, r) = run_with_report(&["--pids", "32", "--", PROBE_IN_JAIL, "fork-bomb", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    let forks_ok = result["forks_ok"].as_u64().unwrap();
    // init and the probe count too: at most 30 forks can succeed.
    assert!(forks_ok < 32, "{result}");
    assert!(forks_ok > 0, "{result}");
    assert_eq!(result["first_errno"], "EAGAIN");
    assert!(r["pids_peak"].as_u64().is_some_and(|p| p <= 32), "{r}");
    // The host still answers: a jail right after runs as usual.
    let out = run_jail(&["--", "/bin/true"]);
    assert!(out.status.success());
}

#[test]
fn a_failing_program_at_the_pids_limit_says_so() {
    if !require_root() {
        return;
    }
    // sh cannot fork its pipeline under pids 2 (init + sh): it fails.
    let (_, r) = run_with_report(&["--pids", "2", "--", "/bin/sh", "-c", "/bin/true | /bin/true"]);
    assert_eq!(r["reason"], "pids_limit", "{r}");
}

#[test]
fn the_cpu_limit_holds_a_spinner_near_its_share() {
    if !require_root() {
        return;
    }
    let (out, r) = run_with_report(&["--cpus", "0.2", "--", PROBE_IN_JAIL, "spin", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let share = r["cpu_secs"].as_f64().unwrap() / r["wall_secs"].as_f64().unwrap();
    let (lo, hi) = if slow() { (0.05, 0.40) } else { (0.10, 0.30) };
    assert!(share > lo && share < hi, "cpu share {share:.3} not near 0.2: {r}");
}

/// The groups under every hierarchy's (or the v2 root's) `ccos` folder.
fn jail_groups() -> Vec<String> {
    let mut names = Vec::new();
    for root in ["/sys/fs/cgroup/pids/ccos", "/sys/fs/cgroup/memory/ccos", "/sys/fs/cgroup/ccos"] {
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    names.push(format!("{root}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
    }
    names
}

/// A ccos-jail that is killed (and so, its jail with it) if the test fails
/// before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_ccos_jail_leaves_a_group_the_next_run_removes() {
    if !require_root() {
        return;
    }
    let arg = format!("{}.{:06}", 600, std::process::id());
    let mut child = KillOnDrop(jail_cmd(&["--", "/bin/sleep", &arg]).spawn().unwrap());
    let name = format!("jail-{}", child.0.id());
    assert!(wait_for(5.0, || pids_with_marker(&arg).len() >= 2), "the jail did not start");
    // On v1 the group is made while the jail builds its root.
    assert!(wait_for(5.0, || jail_groups().iter().any(|g| g.ends_with(&name))), "no group {name}: {:?}", jail_groups());
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(wait_for(3.0, || pids_with_marker(&arg).is_empty()));
    // The group outlived its ccos-jail (nobody removed it); the next start
    // removes stale groups of dead ccos-jail processes.
    let out = run_jail(&["--", "/bin/true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!jail_groups().iter().any(|g| g.ends_with(&name)), "stale {name} still there: {:?}", jail_groups());
}

/// On v1, the hierarchies a `ccos-jail run` puts its jail in: those of its
/// limits, cpuacct only when a report wants its CPU time, never the freezer.
#[test]
fn a_run_is_put_only_in_the_v1_hierarchies_it_uses() {
    if !require_root() {
        return;
    }
    let in_hierarchy = |h: &str, name: &str| std::path::Path::new(&format!("/sys/fs/cgroup/{h}/ccos/{name}")).is_dir();
    if !std::path::Path::new("/sys/fs/cgroup/memory/ccos").is_dir() {
        eprintln!("no cgroup v1 memory hierarchy here (v2): nothing to check");
        return;
    }
    let report = std::env::temp_dir().join(format!("ccos-hierarchies-{}.json", std::process::id()));
    for with_report in [false, true] {
        let arg = format!("{}.{:06}", 620 + with_report as u32, std::process::id());
        let mut args = vec!["run"];
        if with_report {
            args.extend(["--report-json", report.to_str().unwrap()]);
        }
        args.extend(["--", "/bin/sleep", &arg]);
        let mut child = KillOnDrop(std::process::Command::new(JAIL).args(&args).spawn().unwrap());
        let name = format!("jail-{}", child.0.id());
        assert!(wait_for(5.0, || pids_with_marker(&arg).len() >= 2), "the jail did not start");
        let present: Vec<&str> =
            ["memory", "pids", "cpu", "cpuacct", "freezer"].into_iter().filter(|h| in_hierarchy(h, &name)).collect();
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        for h in ["memory", "pids"] {
            assert!(present.contains(&h), "report {with_report}: not in {h}: {present:?}");
        }
        assert!(!present.contains(&"freezer"), "report {with_report}: in the freezer: {present:?}");
        // cpu and cpuacct may be one hierarchy (cpu,cpuacct); only when
        // they are apart does cpuacct tell.
        if !std::path::Path::new("/sys/fs/cgroup/cpuacct").is_symlink() {
            assert_eq!(present.contains(&"cpuacct"), with_report, "report {with_report}: {present:?}");
        }
    }
    let _ = std::fs::remove_file(&report);
    // The groups of the killed runs go with the next run.
    assert!(run_jail(&["--", "/bin/true"]).status.success());
}

#[test]
fn no_group_is_left_after_100_runs() {
    if !require_root() {
        return;
    }
    for _ in 0..100 {
        let out = run_jail(&["--memory", "64M", "--pids", "8", "--", "/bin/true"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Groups of other tests' live jails may exist; a group whose owner is
    // gone must not.
    let dead: Vec<String> = jail_groups()
        .into_iter()
        .filter(|g| {
            let pid = g.rsplit("jail-").next().and_then(|p| p.parse::<i32>().ok());
            pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        })
        .collect();
    assert!(wait_for(2.0, || dead.iter().all(|g| !std::path::Path::new(g).exists())), "left behind: {dead:?}");
}

#[test]
fn the_cgroup_root_can_be_chosen() {
    if !require_root() {
        return;
    }
    let root = format!("ccos-test-{}", std::process::id());
    let arg = format!("{}.{:06}", 610, std::process::id());
    let mut child = std::process::Command::new(JAIL)
        .args(["run", "--cgroup-root", &root, "--", "/bin/sleep", &arg])
        .spawn()
        .unwrap();
    let group = format!("jail-{}", child.id());
    let candidates = [format!("/sys/fs/cgroup/pids/{root}/{group}"), format!("/sys/fs/cgroup/{root}/{group}")];
    let found = wait_for(5.0, || candidates.iter().any(|c| std::path::Path::new(c).is_dir()));
    child.kill().unwrap();
    child.wait().unwrap();
    // Leave the host as we found it: the groups, then the chosen roots.
    let _ = std::process::Command::new(JAIL).args(["run", "--cgroup-root", &root, "--", "/bin/true"]).status();
    for hierarchy in ["", "pids/", "memory/", "cpu/", "cpuacct/", "freezer/"] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{hierarchy}{root}"));
    }
    assert!(found, "no group under the chosen root: {candidates:?}");
}

#[test]
fn doctor_passes_here_and_fails_closed() {
    if !require_root() {
        return;
    }
    let out = std::process::Command::new(JAIL).arg("doctor").output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for line in ["user namespaces", "clone3", "seccomp filters", "cgroups", "a real jail"] {
        assert!(text.lines().any(|l| l.starts_with("ok") && l.contains(line)), "{line}: {text}");
    }
    let out = std::process::Command::new(JAIL).args(["doctor", "--cgroup-root", "/nonexistent-ccos"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).lines().any(|l| l.starts_with("FAIL") && l.contains("cgroups")), "{}", stdout(&out));
}
