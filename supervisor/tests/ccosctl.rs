//! `ccosctl` end to end, as root: the real `ccos-supervisor` binary on a
//! temporary socket and state directory, driven by the real `ccosctl` binary
//! as a subprocess (its exit codes, its stdout and its stderr).
//!
//! Without root: skipped with a message, or a failure when CI=true (the
//! unreachable-socket test needs no daemon and always runs).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, lock, processes_marked, root_or_skip, DaemonProcess};
use serde_json::Value;

mod common;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn ctl_command(socket: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccosctl"));
    cmd.env_remove("CCOS_SOCKET");
    if let Some(socket) = socket {
        cmd.arg("--socket").arg(socket);
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn run_ctl(mut cmd: Command) -> Out {
    let out = cmd.output().expect("running ccosctl");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The daemon, driven through the ccosctl binary.
struct Daemon(DaemonProcess);

impl std::ops::Deref for Daemon {
    type Target = DaemonProcess;
    fn deref(&self) -> &DaemonProcess {
        &self.0
    }
}

impl Daemon {
    /// Starts the daemon; ready once `ccosctl ping` succeeds.
    fn start(dir: &Path) -> Daemon {
        let ready = |socket: &Path| run_ctl(ctl_command(Some(socket), &["ping"])).code == Some(0);
        Daemon(DaemonProcess::start(dir, ready))
    }

    fn ctl(&self, args: &[&str]) -> Out {
        run_ctl(ctl_command(Some(&self.socket), args))
    }

    /// `ccosctl args` that must exit 0.
    fn ok(&self, args: &[&str]) -> Out {
        let out = self.ctl(args);
        assert_eq!(out.code, Some(0), "ccosctl {args:?}:\n{out}\ndaemon log:\n{}", self.log_text());
        out
    }

    /// `ccosctl --json args` that must exit 0, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ccosctl {all:?}: not JSON ({e}):\n{out}"))
    }
}

/// The value of `key:` in `get`'s key-value lines.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(str::trim))
}

#[test]
fn ccosctl_drives_the_daemon() {
    if !root_or_skip("ccosctl_drives_the_daemon") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());

    // ping, by --socket and by CCOS_SOCKET.
    let ping = d.ok(&["ping"]);
    assert!(ping.stdout.starts_with("OK"), "{ping}");
    let mut by_env = ctl_command(None, &["ping"]);
    by_env.env("CCOS_SOCKET", &d.socket);
    let ping = run_ctl(by_env);
    assert_eq!(ping.code, Some(0), "{ping}");
    assert!(d.json(&["info"])["version"].is_string());

    // run, wait, get, ls, logs.
    let run =
        d.ok(&["run", "--session", "a", "--goal", "say hi", "--budget-steps", "5", "--", "/bin/sh", "-c", "echo hi"]);
    let id = run.stdout.trim().to_owned();
    assert!(id.starts_with("run_") && !id.contains(char::is_whitespace), "{run}");
    let waited = d.ok(&["wait", &id, "--timeout", "30"]);
    let row = waited.stdout.lines().nth(1).unwrap_or_else(|| panic!("{waited}"));
    assert!(row.starts_with(&id) && row.split_whitespace().nth(2) == Some("done"), "{waited}");
    let got = d.ok(&["get", &id]);
    assert_eq!(field(&got.stdout, "state"), Some("done"), "{got}");
    assert_eq!(field(&got.stdout, "id"), Some(id.as_str()), "{got}");
    assert_eq!(field(&got.stdout, "goal"), Some("say hi"), "{got}");
    assert_eq!(field(&got.stdout, "budget.max_steps"), Some("5"), "{got}");
    assert_eq!(field(&got.stdout, "exit.code"), Some("0"), "{got}");
    let ls = d.ok(&["ls"]);
    let header: Vec<&str> = ls.stdout.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["ID", "SESSION", "STATE", "REASON", "CREATED"], "{ls}");
    let line = ls.stdout.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not listed:\n{ls}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["a", "done"], "{ls}");
    // Columns are aligned: STATE starts at the same offset on every line.
    let state_col = ls.stdout.lines().next().unwrap().find("STATE").unwrap();
    assert_eq!(&line[state_col..state_col + 4], "done", "{ls}");
    let logs = d.ok(&["logs", &id]);
    assert_eq!(logs.stdout, "hi\n", "{logs}");
    // Following: streams where the daemon can; else says so and fails.
    let follow = d.ctl(&["logs", "-f", &id]);
    match follow.code {
        Some(0) => assert_eq!(follow.stdout, "hi\n", "{follow}"),
        _ => {
            assert_eq!(follow.code, Some(1), "{follow}");
            assert!(follow.stderr.contains("not_implemented") && follow.stderr.contains("follow"), "{follow}");
        }
    }

    // --json prints the daemon's JSON.
    let run_json = d.json(&["get", &id]);
    assert_eq!(run_json["id"], id.as_str());
    assert_eq!(run_json["state"], "done");
    let listed = d.json(&["ls", "--session", "a", "--state", "done", "--limit", "10"]);
    assert!(listed["runs"].as_array().unwrap().iter().any(|r| r["id"] == id.as_str()), "{listed}");

    // One active run per session: the second is refused with the daemon's code.
    let marker = format!("ccosctl-test-sleeper-{}", std::process::id());
    let first = d.json(&["run", "--session", "b", "--goal", "g", "--", "/bin/sh", "-c", "sleep 30", &marker]);
    assert_eq!(first["state"], "active", "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second = d.ctl(&["run", "--session", "b", "--goal", "g", "--", "/bin/sh", "-c", "sleep 30"]);
    assert_eq!(second.code, Some(1), "{second}");
    assert!(second.stderr.starts_with("ccosctl: active_run_exists: "), "{second}");
    assert!(second.stdout.is_empty(), "{second}");
    let cancelled = d.ok(&["cancel", &first_id]);
    assert_eq!(cancelled.stdout.trim(), format!("{first_id}: active -> cancelled"), "{cancelled}");
    let again = d.ctl(&["cancel", &first_id]);
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr.starts_with("ccosctl: invalid_transition: "), "{again}");
    assert_eq!(d.json(&["wait", &first_id, "--timeout", "30"])["state"], "cancelled");
    assert!(
        eventually(Duration::from_secs(10), || processes_marked(&marker).is_empty()),
        "the cancelled run's processes remain"
    );
    let missing = d.ctl(&["get", "run_nope"]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(missing.stderr.starts_with("ccosctl: run_not_found: "), "{missing}");

    // The audit chain.
    let verify = d.ok(&["audit", "--verify"]);
    assert!(verify.stdout.starts_with("ok"), "{verify}");
    assert_eq!(d.json(&["audit", "--verify"])["ok"], true);
    let audit = d.ok(&["audit", "--run", &first_id]);
    assert!(audit.stdout.lines().next().unwrap_or("").starts_with("SEQ"), "{audit}");
    assert!(audit.stdout.contains("run.create") && audit.stdout.contains("run.cancel"), "{audit}");
    let events = d.json(&["audit", "--session", "b", "--limit", "2"]);
    assert_eq!(events["events"].as_array().unwrap().len(), 2, "{events}");

    // Messages.
    d.ok(&["send", "a", "hello from ccosctl", "--sender", "tester"]);
    let messages = d.ok(&["messages", "a"]);
    let line = messages
        .stdout
        .lines()
        .find(|l| l.contains("hello from ccosctl"))
        .unwrap_or_else(|| panic!("the message is not listed:\n{messages}"));
    assert!(line.contains("tester") && line.contains(" in "), "{messages}");
    let inbound = d.json(&["messages", "a", "--direction", "in"]);
    assert!(inbound["messages"].as_array().unwrap().iter().any(|m| m["text"] == "hello from ccosctl"), "{inbound}");

    // events: streams where the daemon serves it, else says it does not.
    let mut child = ctl_command(Some(&d.socket), &["events", "--since", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = eventually(Duration::from_secs(2), || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    if exited {
        assert_eq!(status.code(), Some(1), "events: {stdout}{stderr}");
        assert!(stderr.contains("/v1/events"), "events: {stderr}");
    } else {
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("events: not NDJSON ({e}): {line:?}"));
        }
    }
}

#[test]
fn unreachable_socket_exits_2_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-daemon-here.sock");
    let out = run_ctl(ctl_command(Some(&socket), &["ls"]));
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains(&*socket.to_string_lossy()), "{out}");
    assert!(out.stderr.contains("running"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");

    // A socket path with nothing listening: refused, the same way.
    let bound = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&bound).unwrap());
    let out = run_ctl(ctl_command(Some(&bound), &["ping"]));
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains(&*bound.to_string_lossy()), "{out}");

    // CCOS_SOCKET is honoured.
    let mut cmd = ctl_command(None, &["info"]);
    cmd.env("CCOS_SOCKET", &socket);
    let out = run_ctl(cmd);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains(&*socket.to_string_lossy()), "{out}");
}

#[test]
fn secrets_are_set_from_stdin_listed_by_name_and_deleted() {
    if !root_or_skip("secrets_are_set_from_stdin_listed_by_name_and_deleted") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let value = "s3cr3t-value-5f1c0e7a9d2b4c68";
    let mut cmd = ctl_command(Some(&d.socket), &["secret", "set", "api_key"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{value}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.ok(&["secret", "ls"]).stdout, "api_key\n");
    // Stored 0600, the value whole (the newline dropped), and nowhere else.
    let file = d.state.join("secrets.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&file).unwrap().contains(&format!("\"{value}\"")));
    let audit = d.ok(&["--json", "audit", "--limit", "50"]).stdout;
    assert!(audit.contains("secret.set") && !audit.contains(value), "{audit}");
    assert!(!d.log_text().contains(value));
    d.ok(&["secret", "rm", "api_key"]);
    assert_eq!(d.ok(&["secret", "ls"]).stdout, "");
    let gone = d.ctl(&["secret", "rm", "api_key"]);
    assert_eq!(gone.code, Some(1), "{gone}");
}
