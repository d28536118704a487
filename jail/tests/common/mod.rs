//! Helpers shared by the root-only integration tests: run the real
//! `ccos-jail` binary and read what it reports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const JAIL: &str = env!("CARGO_BIN_EXE_ccos-jail");
pub const PROBE: &str = env!("CARGO_BIN_EXE_ccos-probe");
/// Where the probe appears inside a jail.
pub const PROBE_IN_JAIL: &str = "/opt/ccos-probe";

/// These tests make real namespaces, mounts and cgroups, so they need root.
/// In CI (CI=true) not being root is a failure; elsewhere the test is
/// skipped with a message.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("this test needs root, and CI=true: run the test suite as root");
    }
    eprintln!("SKIPPED: this test needs root (run `sudo cargo test`); not failing because CI is not set");
    false
}

/// `ccos-jail run ARGS...` with the probe bound in at [`PROBE_IN_JAIL`].
pub fn jail_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(JAIL);
    cmd.arg("run").arg("--bind").arg(format!("{PROBE}:{PROBE_IN_JAIL}"));
    cmd.args(args);
    cmd
}

pub fn run_jail(args: &[&str]) -> Output {
    jail_cmd(args).output().expect("running ccos-jail")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A report file path in `dir`, for `--report-json`.
pub fn report_path(dir: &Path) -> PathBuf {
    dir.join("report.json")
}

/// `ccos-jail run --report-json F ARGS...`: the output and the report.
pub fn run_with_report(args: &[&str]) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = report_path(dir.path());
    let mut all = vec!["--report-json", report.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_jail(&all);
    let r = read_report(&report);
    (out, r)
}

pub fn read_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("report is JSON")
}

/// Pids of host processes whose command line contains `marker`.
pub fn pids_with_marker(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Waits up to `secs` for `cond`.
pub fn wait_for(secs: f64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// A marker unique to this test process and call site, to find processes.
pub fn marker(tag: &str) -> String {
    format!("{}.{}{}", 900 + (std::process::id() % 90), tag.len(), std::process::id())
}
