//! The daemon as a process among others, as root with real jails: socket
//! activation through `systemd-socket-activate`, sd_notify (READY=1,
//! WATCHDOG=1, RELOADING=1, STOPPING=1) to a datagram socket of the test's,
//! the `--policies` folder (start, runs' `profile_hash`, SIGHUP reloads,
//! broken folders refused), and `--on-shutdown keep`.
//!
//! Without root: skipped with a message, or a failure when CI=true.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccos_supervisor::client::Client;
use common::{eventually, lock, processes_marked, root_or_skip, DaemonProcess};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

fn pings(socket: &Path) -> bool {
    Client::new(socket).get("/_ping").is_ok_and(|r| r.status == 200)
}

fn get(socket: &Path, path: &str) -> Value {
    let r = Client::new(socket).get(path).unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn post(socket: &Path, path: &str, body: Value) -> (u16, Value) {
    let r = Client::new(socket).post_json(path, &body).unwrap();
    (r.status, r.json())
}

/// The messages that arrive on `socket` within `within`, until `until`
/// returns true for one of them.
fn notifications_until(socket: &UnixDatagram, within: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until(&message);
                got.push(message);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    got
}

#[test]
fn socket_activation_serves_on_the_socket_systemd_passes() {
    if !root_or_skip("socket_activation_serves_on_the_socket_systemd_passes") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ccos.sock");
    // systemd-socket-activate binds the socket, then execs the daemon with
    // it as fd 3 (LISTEN_FDS=1, LISTEN_PID = the daemon's pid).
    let daemon_command = DaemonProcess::command(dir.path());
    let mut command = Command::new("systemd-socket-activate");
    command.arg("-l").arg(&socket).arg(daemon_command.get_program()).args(daemon_command.get_args());
    command.stdin(Stdio::null());
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("daemon.log")).unwrap();
    command.stdout(log.try_clone().unwrap()).stderr(log);
    let mut d = DaemonProcess::spawn(command, dir.path(), pings);

    let info = get(&socket, "/v1/info");
    assert!(info["profiles"]["default"].as_str().is_some_and(|h| h.starts_with("sha256:")), "{info}");
    let run = post(&socket, "/v1/runs", json!({"session_id": "a", "goal": "g", "agent": {"argv": ["/bin/true"]}}));
    assert_eq!(run.0, 201, "{}", run.1);
    assert!(d.log_text().contains("serving on the socket systemd passed"), "{}", d.log_text());

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log_text());
    // The socket is systemd's (kept for the next activation): not removed.
    assert!(socket.exists(), "the daemon removed the socket systemd owns");
}

#[test]
fn two_sockets_from_systemd_are_refused() {
    if !root_or_skip("two_sockets_from_systemd_are_refused") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let daemon_command = DaemonProcess::command(dir.path());
    let one = dir.path().join("one.sock");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&one)
        .arg("-l")
        .arg(dir.path().join("two.sock"))
        .arg(daemon_command.get_program())
        .args(daemon_command.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It execs the daemon at the first connection.
    assert!(eventually(Duration::from_secs(10), || std::os::unix::net::UnixStream::connect(&one).is_ok()));
    let mut status = None;
    assert!(eventually(Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{stderr}");
    assert!(stderr.contains("systemd passed 2 sockets"), "{stderr}");
}

#[test]
fn sd_notify_ready_watchdog_reloading_and_stopping() {
    if !root_or_skip("sd_notify_ready_watchdog_reloading_and_stopping") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut d = DaemonProcess::start_with(
        dir.path(),
        |c| {
            c.env("NOTIFY_SOCKET", &notify_path).env("WATCHDOG_USEC", "200000");
        },
        pings,
    );
    let got = notifications_until(&notify, Duration::from_secs(10), |m| m.contains("READY=1"));
    assert!(got.iter().any(|m| m.contains("READY=1")), "no READY=1: {got:?}");
    // Every 100 ms while healthy.
    let got = notifications_until(&notify, Duration::from_secs(5), |_| false);
    let watchdogs = got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!((20..=80).contains(&watchdogs), "{watchdogs} WATCHDOG=1 in 5 s with WATCHDOG_USEC=200000: {got:?}");

    d.signal(Signal::SIGHUP);
    let got = notifications_until(&notify, Duration::from_secs(10), |m| m.contains("READY=1"));
    let reloading = got.iter().position(|m| m.contains("RELOADING=1"));
    let ready = got.iter().position(|m| m.contains("READY=1"));
    assert!(reloading.is_some() && ready > reloading, "SIGHUP: {got:?}");

    d.signal(Signal::SIGTERM);
    let got = notifications_until(&notify, Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "no STOPPING=1: {got:?}");
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log_text());
}

const NET_PROFILE: &str = "hostname = \"ccos-custom\"\n";

#[test]
fn policies_folder_profiles_are_hashed_on_runs_and_reloaded_on_sighup() {
    if !root_or_skip("policies_folder_profiles_are_hashed_on_runs_and_reloaded_on_sighup") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("custom.toml"), NET_PROFILE).unwrap();
    let d = DaemonProcess::start_with(
        dir.path(),
        |c| {
            c.arg("--policies").arg(&policies);
        },
        pings,
    );
    let socket = d.socket.clone();
    let profiles = get(&socket, "/v1/info")["profiles"].clone();
    assert_eq!(profiles.as_object().unwrap().keys().collect::<Vec<_>>(), ["custom", "default", "strict"]);

    // A run under the folder's profile: its hash is the loaded one, and the
    // jail is the profile's (its host name).
    let (status, run) = post(
        &socket,
        "/v1/runs",
        json!({"session_id": "p", "goal": "g", "profile": "custom", "agent": {"argv": ["/bin/hostname"]}}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    let run = get(&socket, &format!("/v1/runs/{id}/wait?timeout_secs=20"));
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["profile_hash"], profiles["custom"], "{run}");
    let logs = Client::new(&socket).get(&format!("/v1/runs/{id}/logs?stream=stdout")).unwrap();
    assert_eq!(String::from_utf8_lossy(&logs.body).trim(), "ccos-custom");
    let start = get(&socket, &format!("/v1/audit?run_id={id}"))["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "run.start")
        .cloned()
        .unwrap();
    assert_eq!(start["detail"]["profile_hash"], profiles["custom"], "{start}");

    // A name that is not loaded: 400 naming the field, no run made.
    let (status, err) = post(
        &socket,
        "/v1/runs",
        json!({"session_id": "p", "goal": "g", "profile": "nosuch", "agent": {"argv": ["/bin/true"]}}),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "profile", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("custom"), "{err}");

    // SIGHUP with a broken file: refused (audited, logged), the old set stays.
    std::fs::write(policies.join("broken.toml"), "hostnam = \"typo\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    let refused = || {
        get(&socket, "/v1/audit?limit=50")["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "policy.load" && e["decision"] == "deny")
    };
    assert!(eventually(Duration::from_secs(10), refused), "no refused policy.load; log:\n{}", d.log_text());
    // The refusal is audited first, then logged.
    assert!(eventually(Duration::from_secs(5), || d.log_text().contains("broken.toml")), "{}", d.log_text());
    assert_eq!(get(&socket, "/v1/info")["profiles"], profiles);

    // Fixed, and a new profile: the next SIGHUP takes both.
    std::fs::remove_file(policies.join("broken.toml")).unwrap();
    std::fs::write(policies.join("second.toml"), "hostname = \"second\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || get(&socket, "/v1/info")["profiles"]["second"].is_string()),
        "SIGHUP did not load second.toml; log:\n{}",
        d.log_text()
    );
    assert_eq!(get(&socket, "/v1/audit/verify")["ok"], true);
}

#[test]
fn a_broken_policies_folder_stops_the_start_naming_file_and_field() {
    if !root_or_skip("a_broken_policies_folder_stops_the_start_naming_file_and_field") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("bad.toml"), "[limits]\nmemory = \"lots\"\n").unwrap();
    let mut command = DaemonProcess::command(dir.path());
    command.arg("--policies").arg(&policies);
    let status = command.status().unwrap();
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("bad.toml") && log.contains("memory"), "{log}");
    assert!(!dir.path().join("ccos.sock").exists(), "a socket was left behind");
    let socket = dir.path().join("ccos.sock").to_string_lossy().into_owned();
    assert!(eventually(Duration::from_secs(10), || processes_marked(&socket).is_empty()), "a spawner was left");
}

#[test]
fn on_shutdown_keep_leaves_jails_running_and_the_next_start_ends_them() {
    if !root_or_skip("on_shutdown_keep_leaves_jails_running_and_the_next_start_ends_them") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("ccos-keep-test-{}", std::process::id());
    let mut d = DaemonProcess::start_with(
        dir.path(),
        |c| {
            c.arg("--on-shutdown").arg("keep");
        },
        pings,
    );
    let socket = d.socket.clone();
    let argv = json!(["/bin/sh", "-c", "while :; do sleep 0.1; done", marker]);
    let (status, run) = post(&socket, "/v1/runs", json!({"session_id": "k", "goal": "g", "agent": {"argv": argv}}));
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || !processes_marked(&marker).is_empty()));

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log_text());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!processes_marked(&marker).is_empty(), "the kept jail ended with the daemon; log:\n{}", d.log_text());

    // The next supervisor cannot govern it: it ends it, then fails the run.
    let d = DaemonProcess::start(dir.path(), pings);
    assert!(processes_marked(&marker).is_empty(), "the kept jail outlived the restart; log:\n{}", d.log_text());
    let run = get(&d.socket, &format!("/v1/runs/{id}"));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["state_reason"], "supervisor_restarted", "{run}");
    let stop = get(&d.socket, "/v1/audit?limit=100")["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "supervisor.stop")
        .cloned()
        .unwrap();
    assert_eq!(stop["detail"]["on_shutdown"], "keep", "{stop}");
    assert_eq!(stop["detail"]["kept"], json!([id]), "{stop}");
}

#[test]
fn log_level_comes_from_ccos_log() {
    if !root_or_skip("log_level_comes_from_ccos_log") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = DaemonProcess::start_with(
        dir.path(),
        |c| {
            c.env("CCOS_LOG", "debug");
        },
        pings,
    );
    assert!(d.log_text().contains("DEBUG"), "{}", d.log_text());
    let dir = tempfile::tempdir().unwrap();
    let d = DaemonProcess::start_with(
        dir.path(),
        |c| {
            c.env("CCOS_LOG", "warn");
        },
        pings,
    );
    assert!(!d.log_text().contains("INFO"), "{}", d.log_text());
}

#[test]
fn once_runs_one_agent_reports_and_leaves_nothing() {
    if !root_or_skip("once_runs_one_agent_reports_and_leaves_nothing") {
        return;
    }
    let _serial = lock();
    let daemon = env!("CARGO_BIN_EXE_ccos-supervisor");
    let run = |argv: &[&str]| {
        let out = Command::new(daemon)
            .args(["--once", "say hi", "--"])
            .args(argv)
            .env_remove("CCOS_SOCKET")
            .env_remove("CCOS_STATE_DIR")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let before: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ccos-once-"))
        .map(|e| e.file_name())
        .collect();
    let (code, stdout, stderr) = run(&["/bin/sh", "-c", "echo jailed as $(id -u)"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("state: done"), "{stdout}");
    assert!(stdout.contains("jailed as 1000"), "{stdout}");
    assert!(stdout.contains("audit chain:") && stdout.contains("ok: true"), "{stdout}");
    let (code, stdout, _) = run(&["/bin/false"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("state: failed (agent_exited:1)"), "{stdout}");
    let after: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ccos-once-"))
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "a --once scratch folder was left behind");
}

/// A tmpfs mounted for one test, detached when the test ends.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .expect("mounting a tmpfs");
        SmallDisk(at.to_path_buf())
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_create_that_cannot_commit_leaves_no_jail_behind() {
    if !root_or_skip("a_create_that_cannot_commit_leaves_no_jail_behind") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    // The state directory on a disk of its own that fills up: the run's
    // folder, socket and log files still fit (they take inodes, not
    // blocks), the create transaction's commit does not.
    let disk = SmallDisk::mount(&dir.path().join("state"), "4M");
    let d = DaemonProcess::start(dir.path(), pings);
    let filler = disk.fill();

    // The jail is spawned while the create commits, so it exists when the
    // commit fails: it must be ended, and nothing of the run stay.
    let marker = format!("ccos-nocommit-test-{}", std::process::id());
    let argv = json!(["/bin/sh", "-c", "while :; do sleep 0.1; done", marker]);
    let body = json!({"session_id": "full", "goal": "g", "agent": {"argv": argv}});
    let (status, answer) = post(&d.socket, "/v1/runs", body.clone());
    assert!((500..600).contains(&status), "{status} {answer}");
    assert!(d.log_text().contains("ending the jail spawned for it"), "no jail was spawned; log:\n{}", d.log_text());
    assert!(answer.to_string().contains("full"), "the error should say the disk is full: {answer}");
    assert!(
        eventually(Duration::from_secs(10), || processes_marked(&marker).is_empty()),
        "the jail of the run that was never committed is still running; log:\n{}",
        d.log_text()
    );
    assert_eq!(get(&d.socket, "/v1/runs")["runs"], json!([]));
    let runs_dir = d.state.join("runs");
    let left: Vec<_> =
        std::fs::read_dir(&runs_dir).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", runs_dir.display());

    // With room again, the same request makes a run.
    std::fs::remove_file(filler).unwrap();
    let (status, run) = post(&d.socket, "/v1/runs", body);
    assert_eq!(status, 201, "{run}");
    assert!(eventually(Duration::from_secs(5), || !processes_marked(&marker).is_empty()));
    // The end of the first jail was no run's exit, and no error.
    assert!(!d.log_text().contains("recording its exit"), "log:\n{}", d.log_text());
    drop(d);
    assert!(processes_marked(&marker).is_empty());
}
