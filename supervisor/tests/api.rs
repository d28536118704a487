//! The admin API end to end, as root: the real `ccos-supervisor` binary on a
//! temporary socket and state directory, real jails, plain HTTP/1.1 over the
//! Unix socket (written by hand here, so the test depends on no client).
//!
//! Without root: skipped with a message, or a failure when CI=true.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{eventually, lock, processes_marked, root_or_skip, DaemonProcess};
use serde_json::{json, Value};

/// The daemon, with the HTTP helpers these tests use.
struct Daemon(DaemonProcess);

impl std::ops::Deref for Daemon {
    type Target = DaemonProcess;
    fn deref(&self) -> &DaemonProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut DaemonProcess {
        &mut self.0
    }
}

impl Daemon {
    /// Starts the daemon; ready once `GET /_ping` answers 200.
    fn start(dir: &Path) -> Daemon {
        let ready = |socket: &Path| try_request(socket, "GET", "/_ping", None, &[]).is_ok_and(|r| r.status == 200);
        Daemon(DaemonProcess::start(dir, ready))
    }

    fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = try_request(&self.socket, method, path, bytes.as_deref(), &[])
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log_text()));
        let value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, value)
    }

    fn raw(&self, method: &str, path: &str, body: &[u8], headers: &[&str]) -> Response {
        try_request(&self.socket, method, path, Some(body), headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log_text()))
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.req("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    fn create(&self, body: Value) -> Value {
        let (status, v) = self.req("POST", "/v1/runs", Some(body.clone()));
        assert_eq!(status, 201, "POST /v1/runs {body}: {v}");
        v
    }

    fn transition(&self, run_id: &str, state: &str) -> (u16, Value) {
        self.req("POST", &format!("/v1/runs/{run_id}/transition"), Some(json!({ "state": state })))
    }

    fn wait_terminal(&self, run_id: &str) -> Value {
        let run = self.get(&format!("/v1/runs/{run_id}/wait?timeout_secs=30"));
        assert!(["done", "failed", "cancelled"].contains(&run["state"].as_str().unwrap()), "not terminal: {run}");
        run
    }

    fn logs(&self, run_id: &str) -> String {
        let r = self.raw("GET", &format!("/v1/runs/{run_id}/logs?stream=stdout"), b"", &[]);
        assert_eq!(r.status, 200);
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
/// `body` None sends no body and no Content-Length.
fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[&str],
) -> std::io::Result<Response> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: ccos\r\nConnection: close\r\n");
    let chunked = headers.iter().any(|h| h.eq_ignore_ascii_case("transfer-encoding: chunked"));
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if let (Some(body), false) = (body, chunked) {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // The server may answer (413) and close before it has read everything.
    if let Some(body) = body {
        if chunked {
            for chunk in body.chunks(64 * 1024) {
                if stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
                    || stream.write_all(chunk).is_err()
                    || stream.write_all(b"\r\n").is_err()
                {
                    break;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        } else {
            let _ = stream.write_all(body);
        }
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw).ok_or_else(|| std::io::Error::other(format!("unparseable answer: {:?}", raw)))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body)?;
    }
    Some(Response { status, headers, body })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).ok()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

fn marker(name: &str) -> String {
    format!("ccos-api-test-{name}-{}", std::process::id())
}

/// A shell loop that prints a counter every 50 ms; `$0` is the marker, so
/// it shows in /proc/<pid>/cmdline.
fn counter(marker: &str) -> Value {
    json!(["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done", marker])
}

fn sleeper(marker: &str) -> Value {
    json!(["/bin/sh", "-c", "while :; do sleep 0.1; done", marker])
}

#[test]
fn runs_queue_cancel_transitions_messages_and_audit() {
    if !root_or_skip("runs_queue_cancel_transitions_messages_and_audit") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());

    // Ping and info.
    let ping = d.raw("GET", "/_ping", b"", &[]);
    assert_eq!((ping.status, ping.body.as_slice()), (200, &b"OK"[..]));
    assert_eq!(ping.header("Api-Version"), Some("1"));
    let info = d.get("/v1/info");
    assert!([1, 2].contains(&info["cgroup_version"].as_u64().unwrap()), "{info}");
    assert!(info["version"].is_string(), "{info}");

    // A run that finishes by itself.
    let run = d.create(json!({"session_id": "a", "goal": "say hello",
        "agent": {"argv": ["/bin/sh", "-c", "echo hello; sleep 0.2"]}}));
    assert_eq!(run["state"], "active", "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let ended = d.wait_terminal(&id);
    assert_eq!(ended["state"], "done", "{ended}");
    assert_eq!(ended["exit"]["code"], 0, "{ended}");
    assert_eq!(ended["exit"]["reason"], "exited", "{ended}");
    assert!(d.logs(&id).contains("hello"), "logs: {:?}", d.logs(&id));
    assert_eq!(d.get(&format!("/v1/runs/{id}"))["state"], "done");
    let msgs = d.get("/v1/sessions/a/messages");
    let kickoff = &msgs["messages"][0];
    assert_eq!(kickoff["sender"], "system", "{msgs}");
    assert_eq!(kickoff["text"], format!("Run started ({id}). Goal:\nsay hello"), "{msgs}");
    assert_eq!(kickoff["direction"], "in");

    // Spawn failures end the run with exit reason spawn_failed and say why:
    // a program the jail cannot find, a profile the spawner cannot load.
    let missing = d.create(json!({"session_id": "e", "goal": "g", "agent": {"argv": ["/nonexistent/agent"]}}));
    let ended = d.wait_terminal(missing["id"].as_str().unwrap());
    assert_eq!((ended["state"].as_str(), ended["exit"]["reason"].as_str()), (Some("failed"), Some("spawn_failed")));
    assert!(ended["state_reason"].as_str().unwrap().contains("/nonexistent/agent"), "{ended}");
    // A profile that is not loaded is refused at creation, naming it.
    let (status, err) = d.req(
        "POST",
        "/v1/runs",
        Some(json!({"session_id": "e", "goal": "g", "profile": "no-such-profile",
            "agent": {"argv": ["/bin/sh", "-c", "true"]}})),
    );
    assert_eq!((status, err["error"]["field"].as_str()), (400, Some("profile")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("no-such-profile"), "{err}");
    // A non-zero exit fails the run.
    let failing = d.create(json!({"session_id": "e", "goal": "g", "agent": {"argv": ["/bin/sh", "-c", "exit 3"]}}));
    let ended = d.wait_terminal(failing["id"].as_str().unwrap());
    assert_eq!((ended["state"].as_str(), ended["state_reason"].as_str()), (Some("failed"), Some("agent_exited:3")));
    assert_eq!(ended["exit"]["code"], 3);

    // One active run per session; a queued one starts after the cancel.
    let m1 = marker("b1");
    let first = d.create(json!({"session_id": "b", "goal": "g", "agent": {"argv": sleeper(&m1)}}));
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || !processes_marked(&m1).is_empty()), "the agent never ran");
    let (status, err) = d.req(
        "POST",
        "/v1/runs",
        Some(json!({"session_id": "b", "goal": "g", "agent": {"argv": ["/bin/sh", "-c", "sleep 30"]}})),
    );
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "active_run_exists");
    assert_eq!(err["error"]["run_id"], first_id.as_str());
    let queued = d.create(json!({"session_id": "b", "goal": "g", "queue": true,
        "agent": {"argv": ["/bin/sh", "-c", "echo queued-ran"]}}));
    assert_eq!(queued["state"], "queued", "{queued}");
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    let (status, cancelled) = d.req("POST", &format!("/v1/runs/{first_id}/cancel"), None);
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled, json!({"run_id": first_id, "previous_state": "active", "state": "cancelled"}));
    assert!(
        eventually(Duration::from_secs(10), || processes_marked(&m1).is_empty()),
        "processes of the cancelled run remain: {:?}",
        processes_marked(&m1)
    );
    let (status, again) = d.req("POST", &format!("/v1/runs/{first_id}/cancel"), None);
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "invalid_transition");
    let after = d.wait_terminal(&queued_id);
    assert_eq!(after["state"], "done", "{after}");
    assert!(d.logs(&queued_id).contains("queued-ran"));
    let cancelled_run = d.wait_terminal(&first_id);
    assert_eq!(cancelled_run["state"], "cancelled");
    assert!(
        eventually(Duration::from_secs(10), || !d.get(&format!("/v1/runs/{first_id}"))["exit"].is_null()),
        "the cancelled run's exit was never recorded"
    );

    // Transitions: pause freezes, approve thaws, an inbound message resumes
    // a run waiting for one.
    let m3 = marker("c3");
    let run3 = d.create(json!({"session_id": "c", "goal": "count", "agent": {"argv": counter(&m3)}}));
    let r3 = run3["id"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || !d.logs(&r3).is_empty()), "no output");
    let (status, e) = d.transition(&r3, "sleeping");
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "bad_request");
    let (status, t) = d.transition(&r3, "paused_approval");
    assert_eq!(status, 200, "{t}");
    assert_eq!(t, json!({"run_id": r3, "previous_state": "active", "state": "paused_approval"}));
    std::thread::sleep(Duration::from_millis(300));
    let frozen = d.logs(&r3).len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(d.logs(&r3).len(), frozen, "output grew while paused (not frozen)");
    let (status, e) = d.transition(&r3, "done");
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "invalid_transition");
    let (status, t) = d.transition(&r3, "active");
    assert_eq!(status, 200, "{t}");
    assert!(eventually(Duration::from_secs(5), || d.logs(&r3).len() > frozen), "output did not resume after approve");
    let (status, _) = d.transition(&r3, "paused_external_event");
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let frozen = d.logs(&r3).len();
    let (status, ingested) = d.req("POST", "/v1/sessions/c/messages", Some(json!({"text": "here you go"})));
    assert_eq!(status, 202, "{ingested}");
    assert_eq!(ingested["run_id"], r3.as_str());
    assert!(ingested["message_id"].is_string());
    let resumed = d.get(&format!("/v1/runs/{r3}"));
    assert_eq!(resumed["state"], "active", "{resumed}");
    assert_eq!(resumed["state_reason"], "message_received");
    assert!(eventually(Duration::from_secs(5), || d.logs(&r3).len() > frozen), "output did not resume after message");
    let inbound = d.get("/v1/sessions/c/messages?direction=in");
    assert_eq!(inbound["messages"].as_array().unwrap().len(), 2, "{inbound}");
    assert_eq!(d.get("/v1/sessions/c/messages?direction=out")["messages"], json!([]));

    // Queued -> active is refused while another run is active; the queue
    // moves when that one is done; queued -> cancelled.
    let q4 =
        d.create(json!({"session_id": "c", "goal": "g", "queue": true, "agent": {"argv": sleeper(&marker("c4"))}}));
    let r4 = q4["id"].as_str().unwrap().to_owned();
    let q5 =
        d.create(json!({"session_id": "c", "goal": "g", "queue": true, "agent": {"argv": ["/bin/sh", "-c", "true"]}}));
    let r5 = q5["id"].as_str().unwrap().to_owned();
    let (status, e) = d.transition(&r4, "active");
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("active_run_exists")), "{e}");
    let (status, t) = d.transition(&r3, "done");
    assert_eq!(status, 200, "{t}");
    assert!(
        eventually(Duration::from_secs(10), || processes_marked(&m3).is_empty()),
        "the done run's jail was not killed"
    );
    assert!(
        eventually(Duration::from_secs(5), || d.get(&format!("/v1/runs/{r4}"))["state"] == "active"),
        "the queued run did not start"
    );
    let (status, t) = d.req("POST", &format!("/v1/runs/{r5}/cancel"), None);
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["previous_state"], "queued");

    // Predicates bind the admin: `never` refuses done; active -> failed;
    // nothing leaves a terminal state.
    let (status, t) = d.transition(&r4, "cancelled");
    assert_eq!(status, 200, "{t}");
    let never = d.create(json!({"session_id": "d", "goal": "g", "completion_predicate": "never",
        "agent": {"argv": sleeper(&marker("d1"))}}));
    let rn = never["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let still = d.get(&format!("/v1/runs/{rn}/wait?timeout_secs=1"));
    assert_eq!(still["state"], "active", "wait answers the run as it is at the timeout: {still}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    // Following a live run's log is held open (see logs_follow_streams_until_the_run_ends).
    let mut follow = Streamed::open(&d.socket, &format!("/v1/runs/{rn}/logs?follow=true"));
    follow.until(Duration::from_secs(1), |_| false);
    assert_eq!((follow.status, follow.ended), (Some(200), false));
    drop(follow);
    let (status, e) = d.transition(&rn, "done");
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("predicate_unsatisfied")), "{e}");
    let (status, _) = d.transition(&rn, "failed");
    assert_eq!(status, 200);
    let (status, e) = d.transition(&rn, "active");
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("invalid_transition")), "{e}");

    // Listing.
    let runs = d.get("/v1/runs?session_id=c");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 3, "{runs}");
    assert_eq!(runs["runs"][0]["id"], r5.as_str(), "most recently created first");
    let done = d.get("/v1/runs?state=done&limit=1");
    assert_eq!(done["runs"].as_array().unwrap().len(), 1);

    // Audit: listed latest first, filterable, verifiable; then tampered.
    let events = d.get("/v1/audit?limit=2000")["events"].as_array().unwrap().clone();
    assert!(events.len() > 10, "{}", events.len());
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "not latest first: {seqs:?}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in
        ["supervisor.start", "run.create", "run.start", "run.transition", "run.cancel", "run.exit", "message.ingest"]
    {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let of_run = d.get(&format!("/v1/audit?run_id={r3}"))["events"].as_array().unwrap().clone();
    assert!(of_run.iter().all(|e| e["run_id"] == r3.as_str()) && !of_run.is_empty());
    let after = d.get("/v1/audit?after_seq=3&limit=2000")["events"].as_array().unwrap().clone();
    assert!(after.iter().all(|e| e["seq"].as_u64().unwrap() > 3));
    let verify = d.get("/v1/audit/verify");
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["first_bad_seq"], Value::Null);

    let db = rusqlite::Connection::open(d.state.join("ccos.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let edited = db.execute("UPDATE audit_events SET actor = 'uid:1000' WHERE seq = 4", []).unwrap();
    assert_eq!(edited, 1);
    drop(db);
    let verify = d.get("/v1/audit/verify");
    assert_eq!(verify["ok"], false, "{verify}");
    assert_eq!(verify["first_bad_seq"], 4, "{verify}");
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    if !root_or_skip("bad_requests_are_refused_and_change_nothing") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let run = d.create(json!({"session_id": "s", "goal": "g", "agent": {"argv": ["/bin/sh", "-c", "true"]}}));
    let id = run["id"].as_str().unwrap().to_owned();
    d.wait_terminal(&id);
    let snapshot = || (d.get("/v1/runs"), d.get("/v1/audit?limit=2000"), d.get("/v1/sessions/s/messages"));
    let before = snapshot();

    let post = |path: &str, body: &[u8]| {
        let r = d.raw("POST", path, body, &[]);
        (r.status, serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null))
    };
    let (status, e) = post("/v1/runs", br#"{"session_id": "s", "goal": "#);
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("bad_request")), "{e}");
    let (status, e) = post("/v1/runs", br#"{"session_id": "s", "goal": "g", "priority": 1}"#);
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("priority"), "{e}");
    let (status, e) = post("/v1/runs", br#"{"session_id": "s", "goal": "g", "budget": {"max_steps": "ten"}}"#);
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("budget.max_steps"), "{e}");
    let (status, e) = post("/v1/runs", br#"{"session_id": "a/b", "goal": "g"}"#);
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("session_id")), "{e}");
    let (status, e) = post("/v1/runs", b"");
    assert_eq!(status, 400, "{e}");
    let (status, e) = post(&format!("/v1/runs/{id}/transition"), br#"{"state": "active", "why": "x"}"#);
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("why"), "{e}");
    let (status, e) = post("/v1/sessions/s/messages", br#"{"text": 5}"#);
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("text"), "{e}");
    let (status, e) = post("/v1/sessions/s/messages", br#"{"text": ""}"#);
    assert_eq!(status, 400, "{e}");

    let big = {
        let mut b = br#"{"session_id": "s", "goal": ""#.to_vec();
        b.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
        b.extend_from_slice(br#""}"#);
        b
    };
    let r = d.raw("POST", "/v1/runs", &big, &[]);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let e: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e["error"]["code"], "payload_too_large");
    let r = d.raw("POST", "/v1/runs", &big, &["Transfer-Encoding: chunked"]);
    assert_eq!(r.status, 413, "a chunked body is capped too: {}", String::from_utf8_lossy(&r.body));

    let (status, e) = d.req("GET", "/v1/nothing", None);
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
    let r = d.raw("DELETE", "/v1/runs", b"", &[]);
    assert_eq!(r.status, 405);
    let e: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e["error"]["code"], "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let (status, e) = d.req("GET", "/v1/runs/run_nope", None);
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("run_not_found")), "{e}");
    let (status, e) = d.req("POST", "/v1/runs/run_nope/cancel", None);
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("run_not_found")), "{e}");
    let (status, e) = d.req("GET", "/v1/runs?state=sleepy", None);
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("state")), "{e}");
    let (status, e) = d.req("GET", "/v1/runs?limit=0", None);
    assert_eq!(status, 400, "{e}");
    let (status, e) = d.req("GET", "/v1/audit?after_seq=x", None);
    assert_eq!(status, 400, "{e}");
    let (status, e) = d.req("GET", &format!("/v1/runs/{id}/logs?stream=stdin"), None);
    assert_eq!(status, 400, "{e}");
    // Garbage that is not HTTP at all.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    let _ = s.write_all(b"\x00\x01 not http\r\n\r\n");
    drop(s);

    let ping = d.raw("GET", "/_ping", b"", &[]);
    assert_eq!(ping.status, 200);
    assert_eq!(snapshot(), before, "a refused request changed state");
    let verify = d.get("/v1/audit/verify");
    assert_eq!(verify["ok"], true, "{verify}");
}

#[test]
fn restart_fails_live_runs_and_keeps_the_rest() {
    if !root_or_skip("restart_fails_live_runs_and_keeps_the_rest") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let finished = d.create(json!({"session_id": "r", "goal": "g", "agent": {"argv": ["/bin/sh", "-c", "true"]}}));
    let finished_id = finished["id"].as_str().unwrap().to_owned();
    d.wait_terminal(&finished_id);
    let m = marker("restart");
    let live = d.create(json!({"session_id": "r", "goal": "g", "agent": {"argv": sleeper(&m)}}));
    let live_id = live["id"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || !processes_marked(&m).is_empty()));
    let events_before = d.get("/v1/audit?limit=2000")["events"].as_array().unwrap().len();

    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(10), || processes_marked(&m).is_empty()),
        "the jail outlived the SIGKILLed daemon"
    );
    let socket = d.socket.to_string_lossy().into_owned();
    assert!(
        eventually(Duration::from_secs(10), || processes_marked(&socket).is_empty()),
        "the spawner outlived the SIGKILLed daemon: {:?}",
        processes_marked(&socket)
    );

    let mut d = Daemon::start(dir.path());
    let run = d.get(&format!("/v1/runs/{live_id}"));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["state_reason"], "supervisor_restarted", "{run}");
    assert!(!run["exit"].is_null(), "{run}");
    assert!(!d.state.join("runs").join(&live_id).join("agent.sock").exists(), "a stale agent socket");
    assert_eq!(d.get(&format!("/v1/runs/{finished_id}"))["state"], "done");
    let events = d.get("/v1/audit?limit=2000")["events"].as_array().unwrap().len();
    assert!(events > events_before, "{events} <= {events_before}");
    let verify = d.get("/v1/audit/verify");
    assert_eq!(verify["ok"], true, "{verify}");

    // SIGTERM: exit 0, live runs cancelled.
    let m2 = marker("shutdown");
    let live2 = d.create(json!({"session_id": "r", "goal": "g", "agent": {"argv": sleeper(&m2)}}));
    let live2_id = live2["id"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || !processes_marked(&m2).is_empty()));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "log:\n{}", d.log_text());
    assert!(eventually(Duration::from_secs(10), || processes_marked(&m2).is_empty()));
    let db = rusqlite::Connection::open(d.state.join("ccos.db")).unwrap();
    let (state, reason, exit): (String, Option<String>, Option<String>) = db
        .query_row("SELECT state, state_reason, exit FROM runs WHERE id = ?1", [&live2_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), reason.as_deref()), ("cancelled", Some("supervisor_shutdown")));
    assert!(exit.is_some());
    assert!(!d.socket.exists(), "the socket file is left behind");
}

#[test]
fn peers_that_are_not_root_or_ccos_get_403() {
    if !root_or_skip("peers_that_are_not_root_or_ccos_get_403") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    // Let anyone reach the socket, so the daemon's own check is what refuses.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = d.get("/v1/runs");

    let status = status_as_nobody(&d.socket, b"POST /v1/runs HTTP/1.1\r\nHost: c\r\nConnection: close\r\nContent-Length: 29\r\n\r\n{\"session_id\":\"x\",\"goal\":\"g\"}");
    assert_eq!(status, 403);
    let status = status_as_nobody(&d.socket, b"GET /_ping HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 403);
    assert_eq!(d.get("/v1/runs"), before);
}

/// Forks a child that becomes nobody/nogroup and sends `request`; the HTTP
/// status it read. The child uses only async-signal-safe calls (this
/// process has threads).
fn status_as_nobody(socket: &Path, request: &[u8]) -> u16 {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = socket.as_os_str().as_bytes();
    assert!(path.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut answer = [0u8; 64];
    // SAFETY: the child runs only async-signal-safe system calls on memory
    // prepared before the fork, then _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: async-signal-safe calls on data set up before the fork.
        unsafe {
            let nobody: libc::uid_t = 65534;
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(nobody) != 0 || libc::setuid(nobody) != 0 {
                libc::_exit(2);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                libc::_exit(3);
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                libc::_exit(4);
            }
            libc::write(fd, request.as_ptr().cast(), request.len());
            let n = libc::read(fd, answer.as_mut_ptr().cast(), answer.len());
            if n > 0 {
                libc::write(fds[1], answer.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the pipe's write end, which we own.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: waiting for the child we forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child failed: {status}");
    // SAFETY: reading into our buffer from the pipe's read end, then closing it.
    let n = unsafe {
        let n = libc::read(fds[0], answer.as_mut_ptr().cast(), answer.len());
        libc::close(fds[0]);
        n
    };
    let text = String::from_utf8_lossy(&answer[..n.max(0) as usize]).into_owned();
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// A request whose (chunked) answer is read as it arrives.
struct Streamed {
    stream: UnixStream,
    raw: Vec<u8>,
    status: Option<u16>,
    body: Vec<u8>,
    ended: bool,
}

impl Streamed {
    fn open(socket: &Path, path: &str) -> Streamed {
        let mut stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: ccos\r\nConnection: close\r\n\r\n").unwrap();
        Streamed { stream, raw: Vec::new(), status: None, body: Vec::new(), ended: false }
    }

    /// Reads until `cond(body)` holds, the body ends, or `within` passes.
    fn until(&mut self, within: Duration, cond: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 65536];
        loop {
            self.parse();
            if cond(&self.body) {
                return true;
            }
            if self.ended || Instant::now() >= deadline {
                return false;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the stream: {e}"),
            }
        }
    }

    fn parse(&mut self) {
        if self.status.is_none() {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
            assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
            self.status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
            self.raw.drain(..end + 4);
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else { return };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }
}

fn has_event(body: &[u8], run_id: &str, event_type: &str) -> bool {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|e| e["run_id"] == run_id && e["type"] == event_type)
}

#[test]
fn events_stream_backlog_then_live() {
    if !root_or_skip("events_stream_backlog_then_live") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());

    let mut live = Streamed::open(&d.socket, "/v1/events?since_seq=0");
    // The backlog: at least supervisor.start.
    assert!(live.until(Duration::from_secs(10), |b| b.contains(&b'\n')), "no backlog");
    assert_eq!(live.status, Some(200));
    let run = d.create(json!({"session_id": "ev", "goal": "events",
        "agent": {"argv": ["/bin/sh", "-c", "echo hi; sleep 0.2"]}}));
    let id = run["id"].as_str().unwrap().to_owned();
    let arrived = live.until(Duration::from_secs(30), |b| {
        ["run.create", "run.start", "run.exit"].iter().all(|t| has_event(b, &id, t))
    });
    assert!(arrived, "events did not arrive: {}", String::from_utf8_lossy(&live.body));
    let events = live.lines();
    assert_eq!(events[0]["type"], "supervisor.start", "{events:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gaps or repeats: {seqs:?}");
    for e in &events {
        assert!(e["hash"].is_string() && e["prev_hash"].is_string() && e["at"].is_string(), "{e}");
    }

    // since_seq: strictly greater, backlog first.
    let create_seq = events.iter().find(|e| e["type"] == "run.create").unwrap()["seq"].as_u64().unwrap();
    let mut later = Streamed::open(&d.socket, &format!("/v1/events?since_seq={create_seq}"));
    assert!(later.until(Duration::from_secs(10), |b| has_event(b, &id, "run.exit")));
    let tail = later.lines();
    assert_eq!(tail[0]["seq"].as_u64(), Some(create_seq + 1), "{tail:?}");
    assert!(tail.iter().all(|e| e["seq"].as_u64().unwrap() > create_seq));
    drop(later);
    drop(live);

    let (status, body) = d.req("GET", "/v1/events?since_seq=x", None);
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("since_seq")), "{body}");
    let (status, _) = d.req("POST", "/v1/events", Some(json!({})));
    assert_eq!(status, 405);
    // The daemon is still well, and a stream held open does not keep it from stopping.
    d.get("/v1/info");
    let mut held = Streamed::open(&d.socket, "/v1/events");
    assert!(held.until(Duration::from_secs(10), |b| has_event(b, &id, "run.exit")));
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "log:\n{}", d.log_text());
    held.until(Duration::from_secs(5), |_| false);
    assert!(held.ended, "the stream outlived the daemon");
}

#[test]
fn logs_follow_streams_until_the_run_ends() {
    if !root_or_skip("logs_follow_streams_until_the_run_ends") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; echo err$i >&2; sleep 0.1; done";
    let run = d.create(json!({"session_id": "logs", "goal": "print",
        "agent": {"argv": ["/bin/sh", "-c", script]}}));
    let id = run["id"].as_str().unwrap().to_owned();
    let mut out = Streamed::open(&d.socket, &format!("/v1/runs/{id}/logs?follow=true&stream=stdout"));
    // Something arrives before the run is over.
    assert!(out.until(Duration::from_secs(10), |b| !b.is_empty()));
    assert_eq!(d.get(&format!("/v1/runs/{id}"))["state"], "active", "the first bytes came only at the end");
    out.until(Duration::from_secs(30), |_| false);
    assert!(out.ended, "the follow did not end");
    let expected: String = (1..=10).map(|i| format!("line{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.body), expected);
    assert_eq!(d.wait_terminal(&id)["state"], "done");

    // A terminal run: what is there, then the end; stderr too.
    let err = d.raw("GET", &format!("/v1/runs/{id}/logs?follow=true&stream=stderr"), b"", &[]);
    assert_eq!(err.status, 200);
    let expected: String = (1..=10).map(|i| format!("err{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&err.body), expected);
    let (status, _) = d.req("GET", "/v1/runs/run_nope/logs?follow=true", None);
    assert_eq!(status, 404);
}

fn metrics(d: &Daemon) -> std::collections::HashMap<String, f64> {
    let r = d.raw("GET", "/metrics", b"", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (name.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

#[test]
fn metrics_and_actions() {
    if !root_or_skip("metrics_and_actions") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let before = metrics(&d);
    assert_eq!(before["ccos_spawns_total"], 0.0, "{before:?}");
    assert_eq!(before["ccos_runs{state=\"done\"}"], 0.0);
    let run = d.create(json!({"session_id": "m", "goal": "metrics", "agent": {"argv": ["/bin/sh", "-c", "true"]}}));
    let id = run["id"].as_str().unwrap().to_owned();
    d.wait_terminal(&id);
    let (status, _) = d.req("GET", "/v1/runs/run_nope", None);
    assert_eq!(status, 404);
    let after = metrics(&d);
    assert_eq!(after["ccos_spawns_total"], 1.0, "{after:?}");
    assert_eq!(after["ccos_spawn_seconds_count"], 1.0);
    assert_eq!(after["ccos_spawn_seconds_bucket{le=\"+Inf\"}"], 1.0);
    assert!(after["ccos_spawn_seconds_sum"] > 0.0);
    assert_eq!(after["ccos_runs{state=\"done\"}"] + after["ccos_runs{state=\"failed\"}"], 1.0, "{after:?}");
    assert!(after["ccos_api_requests_total{status=\"200\"}"] > before["ccos_api_requests_total{status=\"200\"}"]);
    assert!(after["ccos_api_requests_total{status=\"404\"}"] >= 1.0);

    // Actions: none yet for a real run; 404 for an unknown one; limit 1..2000.
    let actions = d.get(&format!("/v1/runs/{id}/actions"));
    assert_eq!(actions, json!({"run_id": id, "actions": []}));
    d.get(&format!("/v1/runs/{id}/actions?limit=2000"));
    let (status, body) = d.req("GET", "/v1/runs/run_nope/actions", None);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("run_not_found")), "{body}");
    for limit in ["0", "2001", "x"] {
        let (status, body) = d.req("GET", &format!("/v1/runs/{id}/actions?limit={limit}"), None);
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("limit")), "{limit}: {body}");
    }
    let (status, _) = d.req("POST", &format!("/v1/runs/{id}/actions"), Some(json!({})));
    assert_eq!(status, 405);
}

#[test]
fn openapi_document_lists_every_route_the_router_serves() {
    if !root_or_skip("openapi_document_lists_every_route_the_router_serves") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let doc = d.get("/v1/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for route in ccos_supervisor::api::routes::ROUTES {
        let op = &paths[route.path][route.method.to_ascii_lowercase()];
        assert!(op["responses"].is_object(), "{} {} is not in the document", route.method, route.path);
        // The router serves the path: another method is 405 naming this one.
        let path = route.path.replace("{id}", "x");
        let other = if route.method == "PATCH" { "TRACE" } else { "PATCH" };
        let r = d.raw(other, &path, b"", &[]);
        assert_eq!(r.status, 405, "{other} {path}");
        assert!(r.header("Allow").unwrap().contains(route.method), "{path}: {:?}", r.header("Allow"));
        operations += 1;
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, operations);
    for name in ["Run", "CreateRunRequest", "AuditEvent", "Error"] {
        assert!(doc["components"]["schemas"][name]["properties"].is_object(), "{name}");
    }
    let (status, body) = d.req("GET", "/v1/nothing", None);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}

/// The cgroup v1 `memory` or v2 directory of a process, from the host's view.
fn cgroup_file_of(pid: i32, controller: &str, file: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == controller) {
            return Path::new(&format!("/sys/fs/cgroup/{controller}{path}")).join(file);
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    Path::new(&format!("/sys/fs/cgroup{v2}")).join(file)
}

#[test]
fn a_new_budget_on_resume_changes_the_jails_limits() {
    if !root_or_skip("a_new_budget_on_resume_changes_the_jails_limits") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let m = marker("budget");
    let run = d.create(json!({"session_id": "bl", "goal": "g", "agent": {"argv": sleeper(&m)},
        "budget": {"max_memory_bytes": 64 << 20, "max_pids": 16}}));
    let id = run["id"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || !processes_marked(&m).is_empty()));
    let pid = processes_marked(&m)[0];
    let read = |controller: &str, file: &str| {
        std::fs::read_to_string(cgroup_file_of(pid, controller, file)).unwrap().trim().to_owned()
    };
    let memory_file = if Path::new("/sys/fs/cgroup/memory").is_dir() { "memory.limit_in_bytes" } else { "memory.max" };
    assert_eq!(read("memory", memory_file), (64u64 << 20).to_string());
    assert_eq!(read("pids", "pids.max"), "16");

    assert_eq!(d.transition(&id, "paused_approval").0, 200);
    let (status, v) = d.req(
        "POST",
        &format!("/v1/runs/{id}/transition"),
        Some(json!({"state": "active", "budget": {"max_memory_bytes": 128 << 20, "max_pids": 32}})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(read("memory", memory_file), (128u64 << 20).to_string());
    assert_eq!(read("pids", "pids.max"), "32");
    let run = d.get(&format!("/v1/runs/{id}"));
    assert_eq!(run["budget"]["max_pids"], 32, "{run}");
    assert_eq!(d.req("POST", &format!("/v1/runs/{id}/cancel"), None).0, 200);
    d.wait_terminal(&id);
}

#[test]
fn slow_and_half_closed_clients_block_nobody_and_are_dropped() {
    if !root_or_skip("slow_and_half_closed_clients_block_nobody_and_are_dropped") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    // Headers that never end; a body that never comes; a client that sends
    // half a request and closes its write side.
    let mut slow_headers = UnixStream::connect(&d.socket).unwrap();
    slow_headers.write_all(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut slow_body = UnixStream::connect(&d.socket).unwrap();
    slow_body
        .write_all(
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"se",
        )
        .unwrap();
    let mut half_closed = UnixStream::connect(&d.socket).unwrap();
    half_closed.write_all(b"GET /v1/ru").unwrap();
    half_closed.shutdown(std::net::Shutdown::Write).unwrap();

    // Everyone else is served meanwhile.
    for _ in 0..20 {
        let began = Instant::now();
        let (status, _) = d.req("GET", "/v1/info", None);
        assert_eq!(status, 200);
        assert!(began.elapsed() < Duration::from_secs(2), "a request took {:?}", began.elapsed());
    }
    // The half-closed one is closed without an answer that changes anything.
    half_closed.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = half_closed.read_to_end(&mut rest);
    assert!(rest.is_empty() || rest.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&rest));
    // The stalled headers are cut off at the header timeout (10 s).
    slow_headers.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let began = Instant::now();
    let mut rest = Vec::new();
    let closed = slow_headers.read_to_end(&mut rest);
    assert!(closed.is_ok(), "still open after {:?}: {closed:?}", began.elapsed());
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "{}", String::from_utf8_lossy(&rest));
    drop(slow_body);
    // Nothing was created by any of them.
    assert_eq!(d.get("/v1/runs")["runs"].as_array().unwrap().len(), 0);
}

#[test]
fn a_client_that_goes_away_mid_create_leaves_a_whole_run() {
    if !root_or_skip("a_client_that_goes_away_mid_create_leaves_a_whole_run") {
        return;
    }
    let _serial = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    // The client closes while its create is under way, at a point made
    // certain rather than hoped for: the spawner is held stopped, so the
    // run commits (it shows in the list) but its jail cannot be spawned and
    // no answer can come. Then the spawner goes on. The create must still
    // end whole: run.start recorded and its jail running, not a committed
    // run with neither.
    let spawner = spawner_pid(&d);
    let marker = marker("gone");
    for i in 0..3 {
        let session = format!("gone-{i}");
        let body = json!({"session_id": session, "goal": "g", "agent": {"argv": sleeper(&marker)}}).to_string();
        kill(spawner, Signal::SIGSTOP).unwrap();
        let mut client = UnixStream::connect(&d.socket).unwrap();
        let head = format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).unwrap();
        client.write_all(body.as_bytes()).unwrap();
        let listed = || !d.get(&format!("/v1/runs?session_id={session}"))["runs"].as_array().unwrap().is_empty();
        let shown = eventually(Duration::from_secs(5), listed);
        client.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let unanswered = matches!(client.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        drop(client);
        kill(spawner, Signal::SIGCONT).unwrap();
        assert!(shown, "the run never showed");
        assert!(unanswered, "the create was answered with its spawner stopped");
        let runs = || d.get(&format!("/v1/runs?session_id={session}"))["runs"].as_array().unwrap().clone();
        let id = runs()[0]["id"].as_str().unwrap().to_owned();
        let started = || {
            let audit = d.get(&format!("/v1/audit?run_id={id}&limit=100"));
            audit["events"].as_array().unwrap().iter().any(|e| e["type"] == "run.start")
        };
        assert!(eventually(Duration::from_secs(5), started), "a run left half made (no run.start): {:?}", runs());
        assert!(!processes_marked(&marker).is_empty(), "an active run with no jail: {:?}", runs());
        assert_eq!(d.req("POST", &format!("/v1/runs/{id}/cancel"), None).0, 200);
        d.wait_terminal(&id);
        assert!(eventually(Duration::from_secs(5), || processes_marked(&marker).is_empty()));
    }
}

/// The daemon's spawner, from the record it keeps in its state directory.
fn spawner_pid(d: &Daemon) -> Pid {
    let record = std::fs::read_to_string(d.state.join("spawner.pid")).unwrap();
    Pid::from_raw(record.split_whitespace().next().unwrap().parse().unwrap())
}
