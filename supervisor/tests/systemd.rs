//! The systemd units: `systemd-analyze verify` accepts them (with ExecStart
//! pointed at the binary this build made), and `systemd-analyze security`
//! scores the service's exposure at or below the figure the README states.

use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd");
const DAEMON: &str = env!("CARGO_BIN_EXE_ccos-supervisor");
/// The exposure `systemd-analyze security --offline` gives the service
/// (README); a change to the unit that raises it fails here.
const MAX_EXPOSURE: f64 = 4.7;

fn analyze_available() -> bool {
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("systemd-analyze is missing (Debian package systemd); .ci/run installs it");
    }
    eprintln!("SKIPPED: systemd-analyze is not installed");
    false
}

/// The units in a temporary folder, ExecStart pointing at this build's daemon.
fn units_with_this_daemon(dir: &Path) {
    for name in ["ccos-supervisor.service", "ccos-supervisor.socket"] {
        let text = std::fs::read_to_string(format!("{UNITS}/{name}")).unwrap();
        std::fs::write(dir.join(name), text.replace("/usr/bin/ccos-supervisor", DAEMON)).unwrap();
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    if !analyze_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    units_with_this_daemon(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "./ccos-supervisor.service", "./ccos-supervisor.socket"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify: {text}");
}

#[test]
fn the_service_exposure_stays_low() {
    if !analyze_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    units_with_this_daemon(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "./ccos-supervisor.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ccos-supervisor.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in: {text}"));
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure} > {MAX_EXPOSURE}:\n{text}");
}
