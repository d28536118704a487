//! `spawn` making the jail's cgroup itself (`CgroupSource::Make`): on v1 the
//! parent makes the group while the child builds its root and the child
//! joins it before forking the program; on v2 (and the v2 core of a hybrid
//! host) the group is made before clone. As root.
//!
//! No libtest harness: spawning a jail needs a single-threaded process, so
//! the cases run one after the other in `main`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use ccos_jail::cgroup::{detect, CgroupConfig, CgroupError, CgroupLimits, Cgroups, Mode};
use ccos_jail::spawn::CgroupSource;
use ccos_jail::{EndReason, Error, JailSpec, Profile};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag};

fn main() {
    if !common::require_root() {
        return;
    }
    let detection = detect(&CgroupConfig::default()).expect("detect");
    let mut backends = vec![("detected", Cgroups::open(&detection).expect("open the detected root"))];
    if detection.mode == Mode::V1 {
        if let Ok(d) = detect(&CgroupConfig { mode: Some(Mode::V2), ..Default::default() }) {
            backends.push(("v2-core", Cgroups::open(&d).expect("open the cgroup2 root of a hybrid host")));
        }
    }
    for (label, cgroups) in &backends {
        the_group_holds_init_and_program_and_goes_with_the_jail(label, cgroups);
        without_accounting_the_report_has_no_usage_and_the_group_still_goes(label, cgroups);
        a_request_the_kernel_would_refuse_fails_before_clone(label, cgroups);
        a_taken_name_fails_kills_the_child_and_keeps_the_group(label, cgroups);
        eprintln!("spawn_cgroup: {label} ({}): ok", cgroups.mode());
    }
}

fn name(case: &str, label: &str) -> String {
    format!("t{}-{case}-{label}", std::process::id())
}

fn spec(script: &str) -> JailSpec {
    let profile = Arc::new(Profile::shipped("default").expect("the shipped default profile"));
    JailSpec::new(profile, vec!["/bin/sh".into(), "-c".into(), script.into()])
}

/// The group's directory on every hierarchy (one on v2).
fn group_dirs(cgroups: &Cgroups, name: &str) -> Vec<PathBuf> {
    cgroups.root_paths().iter().map(|root| root.join(name)).collect()
}

/// No child of this process is left, alive or unreaped.
fn assert_no_children(case: &str) {
    assert_eq!(waitpid(None, Some(WaitPidFlag::WNOHANG)), Err(Errno::ECHILD), "{case}: a child is left");
}

fn the_group_holds_init_and_program_and_goes_with_the_jail(label: &str, cgroups: &Cgroups) {
    let case = "holds";
    let name = name(case, label);
    let limits = CgroupLimits::default();
    let jail = ccos_jail::spawn(&spec("exit 3"), CgroupSource::Make { cgroups, name: &name, limits }).unwrap();
    assert!(jail.setup_failure().is_none(), "{label}: {:?}", jail.setup_failure());
    let group = jail.cgroup().expect("the jail has its group");
    assert_eq!(group.name(), name);
    assert!(group_dirs(cgroups, &name).iter().all(|d| d.is_dir()), "{label}: the group is there while it runs");
    let report = jail.wait(None).unwrap();
    assert_eq!((report.reason, report.exit_code), (EndReason::Exited, Some(3)), "{label}: {report:?}");
    // Where there is a pids controller, its peak proves where the processes
    // ran: the init and the program (sh), both counted in the group.
    if let Some(peak) = report.pids_peak {
        assert_eq!(peak, 2, "{label}: {report:?}");
    }
    if cgroups.mode() == Mode::V1 {
        assert!(report.memory_peak_bytes.is_some_and(|b| b > 0), "{label}: {report:?}");
    }
    for dir in group_dirs(cgroups, &name) {
        assert!(!dir.exists(), "{label}: {} is left", dir.display());
    }
    assert_no_children(case);
}

fn without_accounting_the_report_has_no_usage_and_the_group_still_goes(label: &str, cgroups: &Cgroups) {
    let case = "noacct";
    let name = name(case, label);
    let limits = CgroupLimits::default();
    let mut jail = ccos_jail::spawn(&spec("exit 4"), CgroupSource::Make { cgroups, name: &name, limits }).unwrap();
    assert!(jail.setup_failure().is_none(), "{label}: {:?}", jail.setup_failure());
    jail.skip_accounting();
    let report = jail.wait(None).unwrap();
    assert_eq!((report.reason, report.exit_code), (EndReason::Exited, Some(4)), "{label}: {report:?}");
    assert_eq!((report.memory_peak_bytes, report.pids_peak), (None, None), "{label}: usage was read: {report:?}");
    assert!(report.cpu_secs >= 0.0, "{label}: {report:?}");
    for dir in group_dirs(cgroups, &name) {
        assert!(!dir.exists(), "{label}: {} is left", dir.display());
    }
    assert_no_children(case);
}

fn a_request_the_kernel_would_refuse_fails_before_clone(label: &str, cgroups: &Cgroups) {
    let case = "refused";
    let name = name(case, label);
    let limits = CgroupLimits { cpus: Some(0.001), ..Default::default() };
    let err = ccos_jail::spawn(&spec("exit 0"), CgroupSource::Make { cgroups, name: &name, limits }).unwrap_err();
    assert!(matches!(err, Error::Cgroup(CgroupError::InvalidLimit { .. })), "{label}: {err}");
    assert!(err.to_string().contains("cpus"), "{label}: {err}");
    assert!(group_dirs(cgroups, &name).iter().all(|d| !d.exists()), "{label}: a group was made");
    assert_no_children(case);
}

fn a_taken_name_fails_kills_the_child_and_keeps_the_group(label: &str, cgroups: &Cgroups) {
    let case = "taken";
    let name = name(case, label);
    let existing = cgroups.create(&name, &CgroupLimits::default()).unwrap();
    let limits = CgroupLimits::default();
    let err = ccos_jail::spawn(&spec("exit 0"), CgroupSource::Make { cgroups, name: &name, limits }).unwrap_err();
    assert!(matches!(err, Error::Cgroup(_)), "{label}: {err}");
    assert!(err.to_string().contains(&name), "{label}: the error names the group: {err}");
    // On v1 the child was cloned before the group was made: it is killed
    // and reaped. The group that was there is not touched.
    assert_no_children(case);
    assert!(group_dirs(cgroups, &name).iter().all(|d| d.is_dir()), "{label}: the existing group was removed");
    existing.remove().unwrap();
}
