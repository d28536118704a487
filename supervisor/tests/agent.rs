//! The agent side end to end, as root: the real daemon, real jails, and
//! agents that speak to their run's agent socket from inside the jail. The
//! agents here are small Python programs (Debian's /usr/bin/python3, which
//! every jail sees under /usr), so each test can make exactly the calls it
//! needs, concurrent ones included; the reference `ccos-agent` has its own
//! end-to-end test.
//!
//! Without root: skipped with a message, or a failure when CI=true.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ccos_supervisor::client::Client;
use common::{eventually, lock, processes_marked, root_or_skip, DaemonProcess};
use serde_json::{json, Value};

/// The agent socket client every test agent starts with: `call(method,
/// path, body)` -> (status, parsed JSON), and `out(...)` printing a line.
const PY_PRELUDE: &str = r#"
import json, os, socket, sys, threading, time
SOCK = "/run/ccos/agent.sock"
def call(method, path, body=None, sock=SOCK):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, (json.loads(rest) if rest.strip() else None)
def execute(cap, inputs):
    return call("POST", "/v1/agent/execute", {"capability_id": cap, "inputs": inputs})
def out(*a):
    print(*a, flush=True)
"#;

fn python_agent(body: &str) -> Value {
    json!(["/usr/bin/python3", "-c", format!("{PY_PRELUDE}\n{body}")])
}

fn pings(socket: &Path) -> bool {
    Client::new(socket).get("/_ping").is_ok_and(|r| r.status == 200)
}

struct Daemon(DaemonProcess);

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Daemon(DaemonProcess::start(dir, pings))
    }

    fn client(&self) -> Client {
        Client::new(&self.0.socket)
    }

    fn get(&self, path: &str) -> Value {
        let r = self.client().get(path).unwrap();
        assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.client().post_json(path, &body).unwrap();
        (r.status, r.json())
    }

    fn create(&self, body: Value) -> String {
        let (status, run) = self.post("/v1/runs", body.clone());
        assert_eq!(status, 201, "POST /v1/runs {body}: {run}");
        run["id"].as_str().unwrap().to_owned()
    }

    fn run(&self, id: &str) -> Value {
        self.get(&format!("/v1/runs/{id}"))
    }

    /// Waits for the run to end. Generous: the wait returns as soon as it
    /// does, and one agent here reads every file of its jail (20 s on a
    /// busy 2-core machine).
    fn wait_terminal(&self, id: &str) -> Value {
        let run = self.get(&format!("/v1/runs/{id}/wait?timeout_secs=120"));
        assert!(
            ["done", "failed", "cancelled"].contains(&run["state"].as_str().unwrap()),
            "not terminal: {run}\nstdout: {}\nstderr: {}",
            self.logs(id, "stdout"),
            self.logs(id, "stderr")
        );
        run
    }

    fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let mut run = Value::Null;
        let reached = eventually(within, || {
            run = self.run(id);
            run["state"] == state
        });
        assert!(
            reached,
            "run never {state}: {run}\nstdout: {}\nstderr: {}",
            self.logs(id, "stdout"),
            self.logs(id, "stderr")
        );
        run
    }

    fn logs(&self, id: &str, stream: &str) -> String {
        let r = self.client().get(&format!("/v1/runs/{id}/logs?stream={stream}")).unwrap();
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// The agent's stdout lines that are JSON.
    fn lines(&self, id: &str) -> Vec<Value> {
        self.logs(id, "stdout").lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn audit_all(&self) -> Vec<Value> {
        self.get("/v1/audit?limit=2000")["events"].as_array().unwrap().clone()
    }

    fn audit(&self, id: &str) -> Vec<Value> {
        let mut events = self.get(&format!("/v1/audit?run_id={id}&limit=2000"))["events"].as_array().unwrap().clone();
        events.reverse();
        events
    }
}

fn run_body(session: &str, agent: Value, budget: Value, policy: &str) -> Value {
    json!({"session_id": session, "goal": "test", "agent": {"argv": agent}, "budget": budget, "budget_policy": policy})
}

fn count(events: &[Value], event_type: &str, decision: Option<&str>) -> usize {
    events.iter().filter(|e| e["type"] == event_type && decision.map_or(true, |d| e["decision"] == d)).count()
}

#[test]
fn steps_one_to_n_pass_and_n_plus_one_is_refused_then_hard_stop_kills() {
    if !root_or_skip("steps_one_to_n_pass_and_n_plus_one_is_refused_then_hard_stop_kills") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let agent = python_agent(
        r#"
for i in range(4):
    status, body = execute("run.note", {"text": f"note {i}"})
    out(json.dumps({"i": i, "status": status, "body": body}))
time.sleep(60)
"#,
    );
    let id = d.create(run_body("steps-h", agent, json!({"max_steps": 3}), "hard_stop"));
    let run = d.wait_terminal(&id);
    assert_eq!((run["state"].as_str(), run["state_reason"].as_str()), (Some("failed"), Some("budget_exceeded:steps")));
    assert_eq!(run["usage"]["steps"], 3, "{run}");
    let lines = d.lines(&id);
    for (i, line) in lines.iter().take(3).enumerate() {
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["body"]["step_id"], format!("{id}-step-{}", i + 1));
    }
    // The refusal is answered before the jail is killed, but the agent may
    // die before it prints it; the audit below has it for certain.
    assert!((3..=4).contains(&lines.len()), "{lines:?}");
    if let Some(refused) = lines.get(3) {
        assert_eq!(refused["status"], 409);
        assert_eq!(refused["body"]["error"]["code"], "budget_exceeded", "{refused}");
    }
    // The jail is gone: the agent was killed in its sleep.
    let mut run = run;
    assert!(eventually(Duration::from_secs(10), || {
        run = d.run(&id);
        !run["exit"].is_null()
    }));
    assert!(run["exit"]["signal"].is_number(), "{run}");

    let events = d.audit(&id);
    assert_eq!(count(&events, "capability.call", Some("allow")), 3);
    assert_eq!(count(&events, "capability.call", Some("deny")), 1);
    let denied = events.iter().find(|e| e["type"] == "capability.call" && e["decision"] == "deny").unwrap();
    assert_eq!(denied["detail"]["reason"], "budget_exceeded", "{denied}");
    assert_eq!(count(&events, "capability.result", None), 3);
    assert_eq!(count(&events, "run.note", None), 3);
    assert_eq!(count(&events, "run.budget_exceeded", None), 1);
    let actions = d.get(&format!("/v1/runs/{id}/actions"))["actions"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 4);
    assert_eq!((actions[0]["decision"].as_str(), actions[0]["success"].as_bool()), (Some("deny"), Some(false)));
    assert!(actions[1..].iter().all(|a| a["decision"] == "allow" && a["success"] == true), "{actions:?}");
    assert_eq!(d.get("/v1/audit/verify")["ok"], true);
    // The socket went with the run.
    assert!(!d.0.state.join("runs").join(&id).join("agent.sock").exists());
}

#[test]
fn pause_approval_freezes_and_approval_opens_a_fresh_window() {
    if !root_or_skip("pause_approval_freezes_and_approval_opens_a_fresh_window") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    // Calls until refused, then counts (printing) forever: frozen, it stops.
    let agent = python_agent(
        r#"
i = 0
while True:
    status, body = execute("run.note", {"text": f"note {i}"})
    out(json.dumps({"i": i, "status": status, "code": (body.get("error") or {}).get("code")}))
    i += 1
    if status != 200:
        break
n = 0
while True:
    n += 1
    out(json.dumps({"tick": n}))
    time.sleep(0.05)
    if n % 10 == 0:
        status, body = execute("run.note", {"text": "after"})
        if status == 200:
            out(json.dumps({"resumed_step": body["step_id"]}))
            time.sleep(60)
"#,
    );
    let id = d.create(run_body("steps-p", agent, json!({"max_steps": 2}), "pause_approval"));
    let run = d.wait_state(&id, "paused_approval", Duration::from_secs(20));
    assert_eq!(run["state_reason"], "budget_exceeded:steps", "{run}");
    // Frozen: no tick is printed while it is paused.
    std::thread::sleep(Duration::from_millis(300));
    let before = d.logs(&id, "stdout").lines().count();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(d.logs(&id, "stdout").lines().count(), before, "the paused run made progress");

    let (status, v) = d.post(&format!("/v1/runs/{id}/transition"), json!({"state": "active"}));
    assert_eq!(status, 200, "{v}");
    let run = d.run(&id);
    assert_eq!(run["usage"]["steps"], 0, "a fresh window: {run}");
    // It runs again, and its next call is allowed (step 3 of the run).
    assert!(
        eventually(Duration::from_secs(10), || d.lines(&id).iter().any(|l| l["resumed_step"].is_string())),
        "no step after approval: {}",
        d.logs(&id, "stdout")
    );
    let step = d.lines(&id).iter().find_map(|l| l["resumed_step"].as_str().map(str::to_owned)).unwrap();
    assert_eq!(step, format!("{id}-step-1"), "steps count within the window");
    assert_eq!(d.post(&format!("/v1/runs/{id}/cancel"), json!({})).0, 200);
    d.wait_terminal(&id);
}

#[test]
fn wall_time_and_cpu_budgets_end_runs_that_make_no_calls() {
    if !root_or_skip("wall_time_and_cpu_budgets_end_runs_that_make_no_calls") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let idle = d.create(run_body("wall", json!(["/bin/sleep", "60"]), json!({"max_duration_secs": 1}), "hard_stop"));
    let spin = d.create(run_body(
        "cpu",
        json!(["/bin/sh", "-c", "while :; do :; done"]),
        json!({"max_cpu_secs": 1, "max_duration_secs": 60}),
        "hard_stop",
    ));
    let began = Instant::now();
    let run = d.wait_terminal(&idle);
    assert_eq!(
        (run["state"].as_str(), run["state_reason"].as_str()),
        (Some("failed"), Some("budget_exceeded:duration"))
    );
    assert!(began.elapsed() < Duration::from_secs(5), "took {:?}", began.elapsed());
    let run = d.wait_terminal(&spin);
    assert_eq!((run["state"].as_str(), run["state_reason"].as_str()), (Some("failed"), Some("budget_exceeded:cpu")));
    assert!(run["usage"]["cpu_secs"].as_f64().unwrap() >= 1.0, "{run}");

    // pause_approval on time: frozen, not killed.
    let idle =
        d.create(run_body("wall-p", json!(["/bin/sleep", "60"]), json!({"max_duration_secs": 1}), "pause_approval"));
    let run = d.wait_state(&idle, "paused_approval", Duration::from_secs(10));
    assert_eq!(run["state_reason"], "budget_exceeded:duration");
    assert!(run["exit"].is_null(), "{run}");
    assert_eq!(d.post(&format!("/v1/runs/{idle}/cancel"), json!({})).0, 200);
    d.wait_terminal(&idle);
}

#[test]
fn memory_and_pids_limits_end_or_contain_runs() {
    if !root_or_skip("memory_and_pids_limits_end_or_contain_runs") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let hog = d.create(run_body(
        "mem",
        python_agent("x = bytearray(256 << 20)\nout('survived')"),
        json!({"max_memory_bytes": 32 << 20}),
        "hard_stop",
    ));
    let run = d.wait_terminal(&hog);
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit"]["reason"], "oom", "{run}");
    assert!(!d.logs(&hog, "stdout").contains("survived"));

    // A fork bomb is held at its pids limit: its forks fail (the shell
    // says so), it never holds more than 8 processes, init included.
    let bomb = d.create(run_body(
        "pids",
        python_agent(
            "kids = 0\nfor i in range(50):\n    try:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        kids += 1\n    except OSError as e:\n        out(json.dumps({'refused_at': kids, 'errno': e.errno}))\n        break\ntime.sleep(30)",
        ),
        json!({"max_pids": 8}),
        "hard_stop",
    ));
    assert!(
        eventually(Duration::from_secs(10), || d.lines(&bomb).iter().any(|l| l["refused_at"].is_number())),
        "{}",
        d.logs(&bomb, "stderr")
    );
    let refused = d.lines(&bomb).into_iter().find(|l| l["refused_at"].is_number()).unwrap();
    // init + the agent + its children: 8 in all.
    assert_eq!(refused, json!({"refused_at": 6, "errno": 11}), "EAGAIN at the limit");
    let run = d.get(&format!("/v1/runs/{bomb}/wait?timeout_secs=2"));
    assert!(run["usage"]["pids_peak"].as_u64().unwrap_or(0) <= 8, "{run}");
    assert_eq!(d.post(&format!("/v1/runs/{bomb}/cancel"), json!({})).0, 200);
    d.wait_terminal(&bomb);
}

#[test]
fn every_predicate_binds_the_agent() {
    if !root_or_skip("every_predicate_binds_the_agent") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let agent = python_agent(
        r#"
status, body = call("POST", "/v1/agent/transition", {"state": "done"})
out(json.dumps({"first": status, "code": ((body or {}).get("error") or {}).get("code")}))
if status != 200:
    status, body = execute("chat.send", {"text": "hello, people"})
    out(json.dumps({"chat": status}))
    status, body = call("POST", "/v1/agent/transition", {"state": "done"})
    out(json.dumps({"second": status, "code": ((body or {}).get("error") or {}).get("code")}))
time.sleep(60)
"#,
    );
    let cases: [(&str, u16, Option<u16>); 4] = [
        ("always", 200, None),
        ("manual", 409, Some(409)),
        ("never", 409, Some(409)),
        ("capability_succeeded:chat.send", 409, Some(200)),
    ];
    for (predicate, first, second) in cases {
        let session = format!("pred-{}", predicate.replace([':', '.'], "-"));
        let mut body = run_body(&session, agent.clone(), json!({}), "hard_stop");
        body["completion_predicate"] = json!(predicate);
        let id = d.create(body);
        if predicate == "always" {
            // The agent's `done` ends the run and its jail at once.
            let run = d.wait_terminal(&id);
            assert_eq!((run["state"].as_str(), run["state_reason"].as_str()), (Some("done"), None), "{run}");
            continue;
        }
        assert!(
            eventually(Duration::from_secs(15), || d.lines(&id).iter().any(|l| l["first"].is_number())
                && (second == Some(409)
                    || d.run(&id)["state"] == "done"
                    || d.lines(&id).iter().any(|l| l["second"].is_number()))),
            "{predicate}: {}",
            d.logs(&id, "stderr")
        );
        let lines = d.lines(&id);
        let first_line = lines.iter().find(|l| l["first"].is_number()).unwrap();
        assert_eq!(first_line["first"], first, "{predicate}: {lines:?}");
        if first == 409 {
            assert_eq!(first_line["code"], "predicate_unsatisfied", "{predicate}: {lines:?}");
        }
        if second == Some(409) {
            assert!(
                eventually(Duration::from_secs(10), || d.lines(&id).iter().any(|l| l["second"] == 409)),
                "{predicate}: {:?}",
                d.lines(&id)
            );
        }
        let run = d.run(&id);
        match predicate {
            "always" | "capability_succeeded:chat.send" => assert_eq!(run["state"], "done", "{predicate}: {run}"),
            "manual" => {
                // The admin may finish a manual run.
                let (status, v) = d.post(&format!("/v1/runs/{id}/transition"), json!({"state": "done"}));
                assert_eq!(status, 200, "{v}");
            }
            _ => {
                let (status, v) = d.post(&format!("/v1/runs/{id}/transition"), json!({"state": "done"}));
                assert_eq!((status, v["error"]["code"].as_str()), (409, Some("predicate_unsatisfied")), "{v}");
                assert_eq!(d.post(&format!("/v1/runs/{id}/cancel"), json!({})).0, 200);
            }
        }
        d.wait_terminal(&id);
    }
    // chat.send reached the session's outbound messages.
    let out = d.get("/v1/sessions/pred-capability_succeeded-chat-send/messages?direction=out");
    assert_eq!(out["messages"][0]["text"], "hello, people", "{out}");
}

#[test]
fn missing_input_pauses_and_a_message_resumes() {
    if !root_or_skip("missing_input_pauses_and_a_message_resumes") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let agent = python_agent(
        r#"
status, body = call("GET", "/v1/agent/inbox")
out(json.dumps({"kickoff": [m["text"] for m in body["messages"]]}))
status, body = call("GET", "/v1/agent/inbox")
out(json.dumps({"again": len(body["messages"])}))
status, body = execute("chat.send", {})
out(json.dumps({"status": status, "error": body["error"]}))
status, body = call("POST", "/v1/agent/transition", {"state": "paused_external_event", "reason": "awaiting_user_input"})
out(json.dumps({"paused": status}))
status, body = call("GET", "/v1/agent/inbox?wait_secs=30")
answer = body["messages"][0]["text"]
status, body = execute("chat.send", {"text": answer})
out(json.dumps({"answered": status}))
status, body = call("POST", "/v1/agent/transition", {"state": "done"})
"#,
    );
    let id = d.create(run_body("ask", agent, json!({}), "hard_stop"));
    let run = d.wait_state(&id, "paused_external_event", Duration::from_secs(15));
    assert_eq!(run["state_reason"], "awaiting_user_input");
    let lines = d.lines(&id);
    assert_eq!(lines[0]["kickoff"], json!([format!("Run started ({id}). Goal:\ntest")]), "{lines:?}");
    assert_eq!(lines[1]["again"], 0, "delivered once: {lines:?}");
    assert_eq!(lines[2]["status"], 422);
    assert_eq!(lines[2]["error"]["code"], "missing_input");
    assert_eq!(lines[2]["error"]["missing"], json!(["text"]));

    let (status, v) = d.post("/v1/sessions/ask/messages", json!({"text": "forty-two", "sender": "user"}));
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["run_id"], id.as_str());
    let run = d.wait_terminal(&id);
    assert_eq!(run["state"], "done", "{run}");
    let out = d.get("/v1/sessions/ask/messages?direction=out");
    assert_eq!(out["messages"][0]["text"], "forty-two", "{out}");
}

#[test]
fn an_agent_reaches_only_its_own_socket() {
    if !root_or_skip("an_agent_reaches_only_its_own_socket") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let other = d.create(run_body("other", json!(["/bin/sleep", "60"]), json!({}), "hard_stop"));
    let other_socket = d.0.state.join("runs").join(&other).join("agent.sock");
    assert!(eventually(Duration::from_secs(5), || other_socket.exists()));
    let script = format!(
        r#"
import errno
found = []
for root, dirs, files in os.walk("/", onerror=None):
    if root.startswith("/proc") or root.startswith("/sys"):
        dirs[:] = []
        continue
    for f in files:
        p = os.path.join(root, f)
        try:
            if os.path.exists(p) and __import__("stat").S_ISSOCK(os.lstat(p).st_mode):
                found.append(p)
        except OSError:
            pass
out(json.dumps({{"sockets": sorted(found)}}))
def try_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return "connected"
    except OSError as e:
        return errno.errorcode[e.errno]
out(json.dumps({{"admin": try_connect({admin:?}), "admin_default": try_connect("/run/ccos/ccos.sock"),
                 "other": try_connect({other:?})}}))
status, body = call("GET", "/v1/agent/run")
out(json.dumps({{"me": body["id"]}}))
"#,
        admin = d.0.socket.display().to_string(),
        other = other_socket.display().to_string(),
    );
    let id = d.create(run_body("me", python_agent(&script), json!({}), "hard_stop"));
    d.wait_terminal(&id);
    let lines = d.lines(&id);
    assert_eq!(lines[0]["sockets"], json!(["/run/ccos/agent.sock"]), "{lines:?}");
    assert_eq!(lines[1], json!({"admin": "ENOENT", "admin_default": "ENOENT", "other": "ENOENT"}), "{lines:?}");
    assert_eq!(lines[2]["me"], id.as_str());
    assert_eq!(d.post(&format!("/v1/runs/{other}/cancel"), json!({})).0, 200);
}

#[test]
fn two_concurrent_calls_never_both_take_the_last_step() {
    if !root_or_skip("two_concurrent_calls_never_both_take_the_last_step") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let agent = python_agent(
        r#"
results = []
barrier = threading.Barrier(2)
def one(i):
    barrier.wait()
    status, body = execute("run.note", {"text": f"racer {i}"})
    results.append(status)
threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
out(json.dumps({"statuses": sorted(results)}))
time.sleep(60)
"#,
    );
    for round in 0..5 {
        let id = d.create(run_body(&format!("race-{round}"), agent.clone(), json!({"max_steps": 1}), "pause_approval"));
        let run = d.wait_state(&id, "paused_approval", Duration::from_secs(15));
        assert_eq!(run["usage"]["steps"], 1, "{run}");
        let events = d.audit(&id);
        assert_eq!(count(&events, "capability.call", Some("allow")), 1, "round {round}: {events:?}");
        assert_eq!(count(&events, "capability.call", Some("deny")), 1, "round {round}");
        assert_eq!(d.post(&format!("/v1/runs/{id}/cancel"), json!({})).0, 200);
        d.wait_terminal(&id);
    }
    let marker = d.0.socket.display().to_string();
    drop(d);
    assert!(processes_marked(&marker).is_empty());
}

/// The reference agent, built by `cargo test --workspace` (or `cargo build
/// -p ccos-agent`) next to the daemon, which binds it into its jails.
fn reference_agent_built(test: &str) -> bool {
    let daemon = Path::new(env!("CARGO_BIN_EXE_ccos-supervisor"));
    if daemon.with_file_name("ccos-agent").is_file() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: ccos-agent is not built next to {}; run `cargo test --workspace`", daemon.display());
    }
    eprintln!("{test}: SKIPPED (build ccos-agent first: cargo build -p ccos-agent)");
    false
}

#[test]
fn a_scripted_ccos_agent_run_goes_from_creation_to_done_with_its_audit_trail() {
    let test = "a_scripted_ccos_agent_run_goes_from_creation_to_done_with_its_audit_trail";
    if !root_or_skip(test) || !reference_agent_built(test) {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    // The first step lacks its text: the agent asks, pauses, and carries on
    // with the answer when a message resumes the run.
    let script = json!([
        {"capability_id": "run.note", "inputs": {"text": "planning the greeting"}},
        {"capability_id": "chat.send", "inputs": {}},
    ]);
    let id = d.create(json!({
        "session_id": "ref", "goal": "greet the user",
        "agent": {"argv": ["ccos-agent", "--script", script.to_string()]},
        "completion_predicate": "capability_succeeded:chat.send",
    }));
    let run = d.wait_state(&id, "paused_external_event", Duration::from_secs(20));
    assert_eq!(run["state_reason"], "awaiting_user_input", "{run}");
    let (status, v) = d.post("/v1/sessions/ref/messages", json!({"text": "Hello from the test", "sender": "user"}));
    assert_eq!(status, 202, "{v}");
    let run = d.wait_terminal(&id);
    assert_eq!(run["state"], "done", "{run}\nstderr: {}", d.logs(&id, "stderr"));
    assert_eq!(run["usage"]["steps"], 2, "{run}");
    // Done ends the jail (API.md), whether or not the agent exited first.
    assert!(eventually(Duration::from_secs(10), || !d.run(&id)["exit"].is_null()));

    let out = d.get("/v1/sessions/ref/messages?direction=out");
    assert_eq!(out["messages"][0]["text"], "Hello from the test", "{out}");
    let types: Vec<String> = d.audit(&id).iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    let expected_in_order = [
        "run.create",
        "run.start",
        "capability.call",
        "run.note",
        "capability.result",
        "capability.call", // refused: missing_input
        "run.transition",  // -> paused_external_event
        "message.ingest",
        "capability.call",
        "message.send",
        "capability.result",
        "run.transition", // -> done
        "run.exit",
    ];
    let mut at = 0;
    for want in expected_in_order {
        let found = types[at..].iter().position(|t| t == want);
        assert!(found.is_some(), "no {want} after event {at}: {types:?}");
        at += found.unwrap() + 1;
    }
    assert_eq!(d.get("/v1/audit/verify")["ok"], true);
}

#[test]
fn a_run_allowlist_refuses_other_capabilities_with_403() {
    if !root_or_skip("a_run_allowlist_refuses_other_capabilities_with_403") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let agent = python_agent(
        r#"
s1, b1 = execute("chat.send", {"text": "not allowed"})
s2, b2 = execute("run.note", {"text": "allowed"})
out(json.dumps({"chat": s1, "code": b1["error"]["code"], "note": s2}))
"#,
    );
    let mut body = run_body("allow", agent, json!({}), "hard_stop");
    body["capabilities"] = json!(["run.note"]);
    let id = d.create(body);
    let run = d.wait_terminal(&id);
    assert_eq!(run["capabilities"], json!(["run.note"]), "{run}");
    assert_eq!(d.lines(&id), [json!({"chat": 403, "code": "capability_not_allowed", "note": 200})]);
    let events = d.audit(&id);
    let refused = events.iter().find(|e| e["type"] == "capability.call" && e["decision"] == "deny").unwrap();
    assert_eq!(refused["detail"], json!({"capability_id": "chat.send", "reason": "capability_not_allowed"}));
    assert_eq!(run["usage"]["steps"], 1, "a refused call is not a step: {run}");
    let (status, err) = d.post("/v1/runs", json!({"session_id": "allow2", "goal": "g", "capabilities": ["bad id!"]}));
    assert_eq!((status, err["error"]["field"].as_str()), (400, Some("capabilities[0]")), "{err}");
}

/// In the slow skill's command line, to find its processes.
const SLOW_SKILL_MARKER: &str = "ccos-test-slow-skill";

/// Command skills for the tests: each a program in a jail of its own.
fn write_skills(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let skill = |id: &str, argv: Value, time_limit: u64, output_schema: &str| {
        format!(
            "id = \"{id}\"\n[executor]\ntype = \"command\"\nargv = {argv}\nprofile = \"default\"\ntime_limit_secs = \
             {time_limit}\nmax_output_bytes = 4096\n[operations.run]\ninput_schema = {{ type = \"object\", properties = \
             {{ text = {{ type = \"string\" }} }}, required = [\"text\"], additionalProperties = false }}\n{output_schema}"
        )
    };
    let echo = "import json, os, sys\nd = json.load(sys.stdin)\njson.dump({'echo': d['text'], 'uid': os.getuid(), \
                'env': sorted(os.environ)}, sys.stdout)";
    std::fs::write(dir.join("echo.toml"), skill("echo", json!(["/usr/bin/python3", "-c", echo]), 10, "")).unwrap();
    let fail = json!(["/bin/sh", "-c", "echo 'something broke' >&2; exit 3"]);
    std::fs::write(dir.join("fail.toml"), skill("fail", fail, 10, "")).unwrap();
    let slow = json!(["/bin/sh", "-c", "sleep 30", SLOW_SKILL_MARKER]);
    std::fs::write(dir.join("slow.toml"), skill("slow", slow, 1, "")).unwrap();
    let big = json!(["/usr/bin/python3", "-c", "import json; print(json.dumps({'x': 'a' * 10000}))"]);
    std::fs::write(dir.join("big.toml"), skill("big", big, 10, "")).unwrap();
    let noise = json!(["/bin/sh", "-c", "echo not json"]);
    std::fs::write(dir.join("noise.toml"), skill("noise", noise, 10, "")).unwrap();
    let typed = json!(["/bin/sh", "-c", "echo '{\"n\": \"not a number\"}'"]);
    let schema =
        "output_schema = { type = \"object\", properties = { n = { type = \"integer\" } }, required = [\"n\"] }";
    std::fs::write(dir.join("typed.toml"), skill("typed", typed, 10, schema)).unwrap();
}

/// The daemon with the skills of [`write_skills`] in `dir`/skills.
fn daemon_with_skills(dir: &Path) -> Daemon {
    let skills = dir.join("skills");
    write_skills(&skills);
    Daemon(DaemonProcess::start_with(
        dir,
        |c| {
            c.arg("--capabilities").arg(&skills);
        },
        pings,
    ))
}

#[test]
fn command_skills_run_in_their_own_jails_and_fail_cleanly() {
    if !root_or_skip("command_skills_run_in_their_own_jails_and_fail_cleanly") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_with_skills(dir.path());
    let listed = d.get("/v1/capabilities")["capabilities"].clone();
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    for id in ["chat.send", "run.note", "echo.run", "fail.run", "slow.run", "noise.run", "typed.run"] {
        assert!(ids.contains(&id), "{id} not in {ids:?}");
    }
    assert!(!listed.to_string().contains("/bin/sh"), "argv leaked into the listing: {listed}");

    let agent = python_agent(
        r#"
for cap in ["echo.run", "fail.run", "slow.run", "noise.run", "typed.run", "big.run"]:
    status, body = execute(cap, {"text": "hello jail"})
    out(json.dumps({"cap": cap, "status": status, "body": body}))
"#,
    );
    let id = d.create(run_body("skills", agent, json!({}), "hard_stop"));
    d.wait_terminal(&id);
    let lines = d.lines(&id);
    let by_cap =
        |cap: &str| lines.iter().find(|l| l["cap"] == cap).cloned().unwrap_or_else(|| panic!("{cap}: {lines:?}"));
    let echo = by_cap("echo.run");
    assert_eq!(echo["status"], 200, "{echo}");
    assert_eq!(echo["body"]["output"]["echo"], "hello jail");
    assert_eq!(echo["body"]["output"]["uid"], 1000, "the command runs unprivileged in its jail");
    for (cap, words) in [
        ("fail.run", "exited with 3"),
        ("slow.run", "time limit"),
        ("noise.run", "not JSON"),
        ("typed.run", "does not match its schema"),
        ("big.run", "over the limit of 4096"),
    ] {
        let line = by_cap(cap);
        assert_eq!(line["status"], 502, "{line}");
        assert_eq!(line["body"]["error"]["code"], "capability_failed", "{line}");
        assert!(line["body"]["error"]["message"].as_str().unwrap().contains(words), "{cap}: {line}");
    }
    // stderr is kept for the audit, not handed to the agent.
    let events = d.audit(&id);
    let failed =
        events.iter().find(|e| e["type"] == "capability.result" && e["detail"]["capability_id"] == "fail.run").unwrap();
    assert_eq!(failed["detail"]["stderr"], "something broke", "{failed}");
    assert!(!by_cap("fail.run").to_string().contains("something broke"));
    // The timed-out command's jail is gone, all of it.
    assert!(processes_marked(SLOW_SKILL_MARKER).is_empty(), "{:?}", processes_marked(SLOW_SKILL_MARKER));
}

#[test]
fn a_call_whose_agent_hangs_up_still_ends_and_is_audited() {
    if !root_or_skip("a_call_whose_agent_hangs_up_still_ends_and_is_audited") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_with_skills(dir.path());
    // The agent sends a call to the slow skill (a command limited to 1 s)
    // and hangs up while it runs. The call is a step already taken and
    // audited as begun: it must still end, its result audited, its
    // command's jail gone, and the run able to make its next call.
    let agent = python_agent(
        r#"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(SOCK)
data = json.dumps({"capability_id": "slow.run", "inputs": {"text": "x"}}).encode()
head = f"POST /v1/agent/execute HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
s.sendall(head.encode() + data)
time.sleep(0.3)
s.close()
time.sleep(2)
status, body = execute("run.note", {"text": "after"})
out(json.dumps({"note": status}))
"#,
    );
    let id = d.create(run_body("hangup", agent, json!({}), "hard_stop"));
    d.wait_terminal(&id);
    assert_eq!(d.lines(&id), [json!({"note": 200})], "{}", d.logs(&id, "stderr"));
    let events = d.audit(&id);
    let call = events
        .iter()
        .find(|e| e["type"] == "capability.call" && e["detail"]["capability_id"] == "slow.run")
        .unwrap_or_else(|| panic!("no call: {events:?}"));
    let result = events
        .iter()
        .find(|e| e["type"] == "capability.result" && e["detail"]["capability_id"] == "slow.run")
        .unwrap_or_else(|| panic!("the call hung up on was never finished: {events:?}"));
    assert_eq!(result["step_id"], call["step_id"], "{result}");
    assert!(result["detail"]["error"].as_str().unwrap_or_default().contains("time limit"), "{result}");
    assert!(processes_marked(SLOW_SKILL_MARKER).is_empty(), "{:?}", processes_marked(SLOW_SKILL_MARKER));
}

#[test]
fn a_broken_capabilities_folder_stops_the_start_and_a_sighup_keeps_the_loaded_set() {
    if !root_or_skip("a_broken_capabilities_folder_stops_the_start_and_a_sighup_keeps_the_loaded_set") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    write_skills(&skills);
    let broken =
        "id = \"broken\"\n[executor]\ntype = \"telepathy\"\n[operations.x]\ninput_schema = { type = \"object\" }\n";
    std::fs::write(skills.join("zz-broken.toml"), broken).unwrap();
    let mut command = DaemonProcess::command(dir.path());
    command.arg("--capabilities").arg(&skills);
    assert_eq!(command.status().unwrap().code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(log.contains("zz-broken.toml") && log.contains("executor"), "{log}");

    std::fs::remove_file(skills.join("zz-broken.toml")).unwrap();
    let d = Daemon(DaemonProcess::start_with(
        dir.path(),
        |c| {
            c.arg("--capabilities").arg(&skills);
        },
        pings,
    ));
    std::fs::write(skills.join("zz-broken.toml"), "id = \"broken\"\n").unwrap();
    d.0.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = || {
        d.audit_all()
            .iter()
            .any(|e| e["type"] == "policy.load" && e["detail"]["kind"] == "capabilities" && e["decision"] == "deny")
    };
    assert!(eventually(Duration::from_secs(10), refused), "{}", d.0.log_text());
    let ids = d.get("/v1/capabilities")["capabilities"].to_string();
    assert!(ids.contains("echo.run"), "the loaded set stays: {ids}");
}

/// A local HTTP server for the executors to call (127.0.0.1 only): answers
/// with `answer(path, authorization)` and records what it was sent.
struct StubServer {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl StubServer {
    fn start(answer: fn(&str, &str) -> (u16, String)) -> StubServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0);
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let (mut auth, mut length) = (String::new(), 0usize);
                loop {
                    let mut header = String::new();
                    if std::io::BufRead::read_line(&mut reader, &mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("authorization:") {
                        auth = header[header.len() - v.len()..].trim().to_owned();
                    }
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                record.lock().unwrap().push((path.clone(), auth.clone()));
                let (status, text) = answer(&path, &auth);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        StubServer { port, seen }
    }
}

const HTTP_TOKEN: &str = "tok-7c1e9a44b2d04f1f8e3a0b6d5c2e9f10";

fn items_answer(path: &str, auth: &str) -> (u16, String) {
    if path.starts_with("/v1/big") {
        return (200, json!({"blob": "x".repeat(5000)}).to_string());
    }
    if path.starts_with("/v1/fail") {
        // An upstream that echoes the token in its error.
        return (500, format!("upstream broke; your token {HTTP_TOKEN} was rejected\nmore lines"));
    }
    let authorized = auth == format!("Bearer {HTTP_TOKEN}");
    (200, json!({"path": path, "authorized": authorized, "echo": format!("token={HTTP_TOKEN}")}).to_string())
}

/// Starts the daemon on an empty skills folder, stores `secret`, then adds
/// `skill` and reloads (a skill whose secret is missing would not load).
fn daemon_with_skill(dir: &Path, secret: (&str, &str), skill: (&str, String)) -> Daemon {
    let skills = dir.join("skills");
    std::fs::create_dir_all(&skills).unwrap();
    let d = Daemon(DaemonProcess::start_with(
        dir,
        |c| {
            c.arg("--capabilities").arg(&skills);
        },
        pings,
    ));
    let r = d
        .client()
        .request("PUT", &format!("/v1/secrets/{}", secret.0), Some(json!({"value": secret.1}).to_string().as_bytes()))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    std::fs::write(skills.join(skill.0), skill.1).unwrap();
    d.0.signal(nix::sys::signal::Signal::SIGHUP);
    let id = skill.0.trim_end_matches(".toml").to_owned();
    assert!(
        eventually(Duration::from_secs(10), || d.get("/v1/capabilities").to_string().contains(&format!("\"{id}."))),
        "the skill did not load: {}",
        d.0.log_text()
    );
    d
}

#[test]
fn an_http_skill_sends_its_token_which_the_agent_never_sees() {
    if !root_or_skip("an_http_skill_sends_its_token_which_the_agent_never_sees") {
        return;
    }
    let _serial = lock();
    let stub = StubServer::start(items_answer);
    let dir = tempfile::tempdir().unwrap();
    let skill = format!(
        "id = \"items\"\n[executor]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/v1/items/{{item}}\"\nbearer_secret = \
         \"api_token\"\nmax_response_bytes = 4096\n[operations.get]\ninput_schema = {{ type = \"object\", properties = {{ item = {{ type = \"string\" }} }}, \
         required = [\"item\"] }}\n[operations.fail]\nurl = \"http://127.0.0.1:{port}/v1/fail\"\ninput_schema = {{ type = \
         \"object\" }}\n[operations.big]\nurl = \"http://127.0.0.1:{port}/v1/big\"\ninput_schema = {{ type = \"object\" }}\n",
        port = stub.port
    );
    let d = daemon_with_skill(dir.path(), ("api_token", HTTP_TOKEN), ("items.toml", skill));
    let agent = python_agent(&format!(
        r#"
s1, b1 = execute("items.get", {{"item": "a b/../admin?x=1"}})
s2, b2 = execute("items.fail", {{}})
s3, b3 = execute("items.big", {{}})
out(json.dumps({{"get": s1, "body": b1, "fail": s2, "fail_body": b2, "big": s3, "big_body": b3}}))
# Everything the agent can read: its environment, argv, and every file.
found = []
if "{token}" in json.dumps(dict(os.environ)) + " ".join(sys.argv):
    found.append("env/argv")
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/dev")):
        dirs[:] = []
        continue
    for f in files:
        p = os.path.join(root, f)
        try:
            if os.path.getsize(p) < 4_000_000 and b"{token}" in open(p, "rb").read():
                found.append(p)
        except OSError:
            pass
out(json.dumps({{"found": found}}))
"#,
        token = HTTP_TOKEN
    ));
    let id = d.create(run_body("http", agent, json!({}), "hard_stop"));
    d.wait_terminal(&id);
    let lines = d.lines(&id);
    assert_eq!(lines.len(), 2, "{lines:?}\n{}", d.logs(&id, "stderr"));
    let first = &lines[0];
    assert_eq!(first["get"], 200, "{first}");
    assert_eq!(first["body"]["output"]["authorized"], true, "{first}");
    // The input filled one path segment, percent-encoded: no traversal.
    assert_eq!(first["body"]["output"]["path"], "/v1/items/a%20b%2F..%2Fadmin%3Fx%3D1", "{first}");
    assert_eq!(first["fail"], 502, "{first}");
    assert_eq!(first["fail_body"]["error"]["code"], "capability_failed");
    // An answer over the skill's max_response_bytes (4096 here) is refused.
    assert_eq!(first["big"], 502, "{first}");
    assert!(first["big_body"]["error"]["message"].as_str().unwrap().contains("over its limit of 4096"), "{first}");
    assert_eq!(lines[1]["found"], json!([]), "the token reached the jail");
    let whole = serde_json::to_string(&lines).unwrap();
    assert!(!whole.contains(HTTP_TOKEN), "the agent saw the token: {whole}");
    assert!(whole.contains("***REDACTED***"), "{whole}");

    // The server got the token; the daemon's log and audit never show it.
    let seen = stub.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, auth)| auth == &format!("Bearer {HTTP_TOKEN}")), "{seen:?}");
    let audit = d.get("/v1/audit?limit=2000").to_string();
    assert!(!audit.contains(HTTP_TOKEN), "the audit holds the token");
    assert!(!d.0.log_text().contains(HTTP_TOKEN), "the log holds the token");
    let uses: Vec<Value> =
        d.audit(&id).into_iter().filter(|e| e["type"] == "secret.use").map(|e| e["detail"].clone()).collect();
    assert_eq!(uses, vec![json!({"name": "api_token"}); 3], "one secret.use per call");
    assert_eq!(d.get("/v1/secrets"), json!({"secrets": ["api_token"]}));
}

fn llm_answer(_path: &str, auth: &str) -> (u16, String) {
    if auth != "Bearer key-5d0f2c8e91b34a7c" {
        return (401, "{\"error\": \"bad key\"}".into());
    }
    (200, json!({"choices": [{"message": {"role": "assistant", "content": "hello there"}}], "usage": {"total_tokens": 150}}).to_string())
}

#[test]
fn llm_complete_counts_tokens_and_a_token_budget_stops_the_run() {
    if !root_or_skip("llm_complete_counts_tokens_and_a_token_budget_stops_the_run") {
        return;
    }
    let _serial = lock();
    let stub = StubServer::start(llm_answer);
    let dir = tempfile::tempdir().unwrap();
    let skill = format!(
        "id = \"llm\"\n[executor]\ntype = \"builtin\"\nendpoint = \"http://127.0.0.1:{}/v1/chat/completions\"\nmodel = \
         \"stub\"\napi_key_secret = \"llm_key\"\n[operations.complete]\n",
        stub.port
    );
    let d = daemon_with_skill(dir.path(), ("llm_key", "key-5d0f2c8e91b34a7c"), ("llm.toml", skill));
    let agent = python_agent(
        r#"
for i in range(3):
    status, body = execute("llm.complete", {"messages": [{"role": "user", "content": "hi"}]})
    out(json.dumps({"i": i, "status": status, "body": body}))
    if status != 200:
        break
time.sleep(30)
"#,
    );
    let id = d.create(run_body("llm", agent, json!({"max_tokens": 200}), "hard_stop"));
    let run = d.wait_terminal(&id);
    assert_eq!(
        (run["state"].as_str(), run["state_reason"].as_str()),
        (Some("failed"), Some("budget_exceeded:tokens")),
        "{run}"
    );
    assert_eq!(run["usage"]["tokens"], 300, "{run}");
    let lines = d.lines(&id);
    assert_eq!(lines[0]["body"]["output"], json!({"content": "hello there", "usage": {"total_tokens": 150}}));
    // The first call left 50 tokens, so the second ran (the jail may be
    // killed before the agent prints its answer: the audit has it).
    let results = d.audit(&id).into_iter().filter(|e| e["type"] == "capability.result").count();
    assert_eq!(results, 2, "{lines:?}");
    assert_eq!(stub.seen.lock().unwrap().len(), 2, "a third call never reached the model");
}

const SESSION_TOKEN: &str = "sess-0b6e4f7d2c9a41e38f5d7c6b1a2e9f03";

fn login_answer(path: &str, auth: &str) -> (u16, String) {
    if path.starts_with("/login") {
        return (200, json!({"access_token": SESSION_TOKEN, "expires_in": 3600}).to_string());
    }
    let ok = auth == format!("Bearer {SESSION_TOKEN}");
    (if ok { 200 } else { 401 }, json!({"me": "agent", "authorized": ok}).to_string())
}

#[test]
fn an_opted_in_skill_stores_a_discovered_token_for_later_calls_and_restarts() {
    if !root_or_skip("an_opted_in_skill_stores_a_discovered_token_for_later_calls_and_restarts") {
        return;
    }
    let _serial = lock();
    let stub = StubServer::start(login_answer);
    let dir = tempfile::tempdir().unwrap();
    let skills = dir.path().join("skills");
    std::fs::create_dir_all(&skills).unwrap();
    let schema = "input_schema = { type = \"object\" }";
    std::fs::write(
        skills.join("auth.toml"),
        format!(
            "id = \"auth\"\n[executor]\ntype = \"http\"\nmethod = \"POST\"\nurl = \"http://127.0.0.1:{}/login\"\n\
             store_token = {{ secret = \"session_token\", pointer = \"/access_token\" }}\n[operations.login]\n{schema}\n",
            stub.port
        ),
    )
    .unwrap();
    // Uses the token before any exists: it loads, and its calls fail until then.
    std::fs::write(
        skills.join("profile.toml"),
        format!(
            "id = \"profile\"\n[executor]\ntype = \"http\"\nurl = \"http://127.0.0.1:{}/me\"\nbearer_secret = \
             \"session_token\"\n[operations.me]\n{schema}\n",
            stub.port
        ),
    )
    .unwrap();
    let start = || {
        Daemon(DaemonProcess::start_with(
            dir.path(),
            |c| {
                c.arg("--capabilities").arg(&skills);
            },
            pings,
        ))
    };
    let d = start();
    let agent = python_agent(
        r#"
for cap in ["profile.me", "auth.login", "profile.me"]:
    status, body = execute(cap, {})
    out(json.dumps({"cap": cap, "status": status, "body": body}))
"#,
    );
    let id = d.create(run_body("token", agent.clone(), json!({}), "hard_stop"));
    d.wait_terminal(&id);
    let lines = d.lines(&id);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["status"], 502, "no token yet: {}", lines[0]);
    assert_eq!(lines[1]["status"], 200, "{}", lines[1]);
    assert_eq!(lines[1]["body"]["output"]["access_token"], "***REDACTED***", "the agent sees no token");
    assert_eq!(lines[2]["body"]["output"]["authorized"], true, "{}", lines[2]);
    let stored = d.audit(&id).into_iter().find(|e| e["type"] == "secret.store").unwrap();
    assert_eq!(stored["detail"], json!({"name": "session_token"}));
    assert!(!d.get("/v1/audit?limit=2000").to_string().contains(SESSION_TOKEN));
    drop(d);

    // Across a restart: the token is in the secret store.
    let d = start();
    assert_eq!(d.get("/v1/secrets"), json!({"secrets": ["session_token"]}));
    let again = python_agent("s, b = execute(\"profile.me\", {})\nout(json.dumps({\"status\": s, \"body\": b}))");
    let id = d.create(run_body("token2", again, json!({}), "hard_stop"));
    d.wait_terminal(&id);
    assert_eq!(d.lines(&id)[0]["body"]["output"]["authorized"], true, "{:?}", d.lines(&id));
    assert!(!d.0.log_text().contains(SESSION_TOKEN));
}
