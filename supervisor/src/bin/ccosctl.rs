//! ccosctl: a thin client of the ccos-supervisor admin API, for people.
//!
//! `--socket PATH` or `CCOS_SOCKET` picks the socket (default
//! /run/ccos/ccos.sock); `--json` prints the daemon's JSON as it is.
//!
//! Exit codes: 0 success; 1 the daemon refused (its error is printed as
//! `ccosctl: <code>: <message>`) or the command's check failed (`audit
//! --verify`, `wait` timing out); 2 the daemon could not be reached (and,
//! as clap has it, a command line that does not parse).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ccos_supervisor::client::{encode, with_query, Client, ClientError, Response};
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};

const DEFAULT_SOCKET: &str = "/run/ccos/ccos.sock";

#[derive(Parser, Debug)]
#[command(name = "ccosctl", version, about = "Drive ccos-supervisor over its admin API")]
struct Cli {
    /// The admin socket [env: CCOS_SOCKET] [default: /run/ccos/ccos.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's JSON answers as they are
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and start a run (prints its id)
    Run {
        /// The session the run belongs to
        #[arg(long)]
        session: String,
        /// What the agent is asked to do
        #[arg(long)]
        goal: String,
        /// Most capability calls allowed in the budget window
        #[arg(long, value_name = "N")]
        budget_steps: Option<u64>,
        /// Most wall-clock seconds in the budget window
        #[arg(long, value_name = "SECS")]
        budget_duration: Option<u64>,
        /// The jail profile
        #[arg(long)]
        profile: Option<String>,
        /// Queue the run if the session already has an active one
        #[arg(long)]
        queue: bool,
        /// The agent's command line (default: the daemon's default agent)
        #[arg(last = true, value_name = "ARGV")]
        argv: Vec<String>,
    },
    /// List runs, most recent first
    Ls {
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one run
    Get { id: String },
    /// Print a run's captured output
    Logs {
        /// Keep streaming the output as it arrives
        #[arg(short, long)]
        follow: bool,
        /// The agent's stderr instead of its stdout
        #[arg(long)]
        stderr: bool,
        id: String,
    },
    /// Wait until a run is terminal
    Wait {
        id: String,
        /// Give up after this many seconds (exit 1)
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Cancel a run (kills its jail)
    Cancel { id: String },
    /// Approve a paused run (transition to active, with a fresh budget window)
    Approve { id: String },
    /// Move a run to another state
    Transition {
        id: String,
        state: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send an inbound message to a session
    Send {
        session: String,
        text: String,
        #[arg(long)]
        sender: Option<String>,
    },
    /// List a session's messages, oldest first
    Messages {
        session: String,
        #[arg(long, value_parser = ["in", "out"])]
        direction: Option<String>,
    },
    /// List audit events, latest first, or verify the hash chain
    Audit {
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Re-walk the hash chain; exit 1 if it is broken
        #[arg(long, conflicts_with_all = ["run", "session", "limit"])]
        verify: bool,
    },
    /// Stream lifecycle events (NDJSON) as they happen
    Events {
        /// Only events with a greater sequence number
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
    },
    /// The secret store: set (the value is read from stdin, never from the
    /// command line), list names, delete
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Version, cgroup mode, kernel features, limits
    Info,
    /// Check that the daemon answers
    Ping,
}

#[derive(Debug, clap::Subcommand)]
enum SecretCommand {
    /// Set NAME to the value on stdin (one trailing newline is dropped)
    Set { name: String },
    /// List the secrets' names
    Ls,
    /// Delete NAME
    Rm { name: String },
}

/// How a command ends when it does not succeed.
enum Failure {
    /// Printed as `ccosctl: <message>`, exit 1.
    Refused(String),
    /// The daemon is not reachable: exit 2.
    Unreachable(String),
}

type Outcome = Result<(), Failure>;

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Connect { path, source } => Failure::Unreachable(format!(
                "cannot connect to {}: {source} (is ccos-supervisor running? pick the socket with --socket or CCOS_SOCKET)",
                path.display()
            )),
            other => Failure::Unreachable(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Refused(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli
        .socket
        .clone()
        .or_else(|| std::env::var_os("CCOS_SOCKET").filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let ctl = Ctl { client: Client::new(socket), json: cli.json };
    match ctl.dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(m)) => {
            eprintln!("ccosctl: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!("ccosctl: {m}");
            ExitCode::from(2)
        }
    }
}

struct Ctl {
    client: Client,
    json: bool,
}

/// `<code>: <message>` from the daemon's error body, or the status and body.
fn error_text(status: u16, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
        (Some(code), Some(message)) => {
            let mut text = format!("{code}: {message}");
            if let Some(run_id) = v["error"]["run_id"].as_str().filter(|id| !message.contains(id)) {
                text.push_str(&format!(" (run {run_id})"));
            }
            text
        }
        _ => format!("HTTP {status}: {}", String::from_utf8_lossy(body).trim()),
    }
}

fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}

/// The answer's JSON if it is a success, else the daemon's error.
fn ok_json(r: Response) -> Result<Value, Failure> {
    if !r.is_success() {
        return Err(Failure::Refused(error_text(r.status, &r.body)));
    }
    serde_json::from_slice(&r.body).map_err(|e| {
        Failure::Refused(format!("the daemon's answer is not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines; nested objects as `parent.key`.
fn key_values(v: &Value, preferred: &[&str]) -> String {
    let mut lines = Vec::new();
    if let Value::Object(map) = v {
        let mut keys: Vec<&String> = Vec::new();
        for k in preferred {
            if let Some((key, _)) = map.get_key_value(*k) {
                keys.push(key);
            }
        }
        let mut rest: Vec<&String> = map.keys().filter(|k| !preferred.contains(&k.as_str())).collect();
        rest.sort();
        keys.extend(rest);
        for k in keys {
            flatten(k, &map[k.as_str()], &mut lines);
        }
    } else {
        return format!("{}\n", s(v));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines.iter().map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:"), width = width + 1)).collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                flatten(&format!("{prefix}.{k}"), &map[k.as_str()], out);
            }
        }
        Value::Object(_) => out.push((prefix.to_owned(), "{}".to_owned())),
        Value::Array(items) if items.iter().all(|i| i.is_string()) => {
            out.push((prefix.to_owned(), items.iter().map(s).map(|x| shell_word(&x)).collect::<Vec<_>>().join(" ")))
        }
        other => out.push((prefix.to_owned(), one_line(&s(other)))),
    }
}

/// A word as a shell would read it back.
fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t")
}

const RUN_KEYS: &[&str] = &[
    "id",
    "session_id",
    "goal",
    "state",
    "state_reason",
    "agent",
    "profile",
    "profile_hash",
    "budget",
    "budget_policy",
    "usage",
    "budget_window_started_at",
    "completion_predicate",
    "current_step_id",
    "exit",
    "created_at",
    "updated_at",
    "started_at",
    "ended_at",
    "metadata",
];

fn run_row(run: &Value) -> Vec<String> {
    vec![
        s(&run["id"]),
        s(&run["session_id"]),
        s(&run["state"]),
        one_line(&s(&run["state_reason"])),
        s(&run["created_at"]),
    ]
}

const RUN_HEADER: &[&str] = &["ID", "SESSION", "STATE", "REASON", "CREATED"];

fn is_terminal(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}

impl Ctl {
    fn out(&self, text: &str) -> Outcome {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    fn raw(&self, v: &Value) -> Outcome {
        self.out(&format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()))
    }

    /// `--json`: the JSON; else `human(v)`.
    fn show(&self, v: &Value, human: impl FnOnce(&Value) -> String) -> Outcome {
        if self.json {
            self.raw(v)
        } else {
            self.out(&human(v))
        }
    }

    fn run_path(id: &str, tail: &str) -> String {
        format!("/v1/runs/{}{tail}", encode(id))
    }

    fn dispatch(&self, command: Command) -> Outcome {
        match command {
            Command::Run { session, goal, budget_steps, budget_duration, profile, queue, argv } => {
                let mut body = Map::new();
                body.insert("session_id".into(), json!(session));
                body.insert("goal".into(), json!(goal));
                if !argv.is_empty() {
                    body.insert("agent".into(), json!({ "argv": argv }));
                }
                if let Some(p) = profile {
                    body.insert("profile".into(), json!(p));
                }
                let mut budget = Map::new();
                if let Some(n) = budget_steps {
                    budget.insert("max_steps".into(), json!(n));
                }
                if let Some(n) = budget_duration {
                    budget.insert("max_duration_secs".into(), json!(n));
                }
                if !budget.is_empty() {
                    body.insert("budget".into(), Value::Object(budget));
                }
                if queue {
                    body.insert("queue".into(), json!(true));
                }
                let run = ok_json(self.client.post_json("/v1/runs", &Value::Object(body))?)?;
                self.show(&run, |run| {
                    if run["state"] == "queued" {
                        eprintln!("ccosctl: {} is queued behind the session's active run", s(&run["id"]));
                    }
                    format!("{}\n", s(&run["id"]))
                })
            }
            Command::Ls { session, state, limit } => {
                let path = with_query(
                    "/v1/runs",
                    &[("session_id", session), ("state", state), ("limit", limit.map(|l| l.to_string()))],
                );
                let v = ok_json(self.client.get(&path)?)?;
                self.show(&v, |v| {
                    let rows: Vec<Vec<String>> =
                        v["runs"].as_array().map(|runs| runs.iter().map(run_row).collect()).unwrap_or_default();
                    table(RUN_HEADER, &rows)
                })
            }
            Command::Get { id } => {
                let run = ok_json(self.client.get(&Self::run_path(&id, ""))?)?;
                self.show(&run, |run| key_values(run, RUN_KEYS))
            }
            Command::Logs { follow, stderr, id } => self.logs(&id, follow, stderr),
            Command::Wait { id, timeout } => self.wait(&id, timeout),
            Command::Cancel { id } => {
                let r = self.client.request("POST", &Self::run_path(&id, "/cancel"), None)?;
                self.transitioned(r)
            }
            Command::Approve { id } => {
                let r = self.client.post_json(&Self::run_path(&id, "/transition"), &json!({"state": "active"}))?;
                self.transitioned(r)
            }
            Command::Transition { id, state, reason } => {
                let mut body = json!({ "state": state });
                if let Some(reason) = reason {
                    body["reason"] = json!(reason);
                }
                let r = self.client.post_json(&Self::run_path(&id, "/transition"), &body)?;
                self.transitioned(r)
            }
            Command::Secret(SecretCommand::Set { name }) => {
                let mut value = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                    .map_err(|e| Failure::Refused(format!("reading the value from stdin: {e}")))?;
                let value = value.strip_suffix('\n').unwrap_or(&value);
                let path = format!("/v1/secrets/{}", encode(&name));
                let body = serde_json::to_vec(&json!({ "value": value })).unwrap_or_default();
                let v = ok_json(self.client.request("PUT", &path, Some(&body))?)?;
                self.show(&v, |v| format!("{} set\n", s(&v["name"])))
            }
            Command::Secret(SecretCommand::Ls) => {
                let v = ok_json(self.client.get("/v1/secrets")?)?;
                self.show(&v, |v| {
                    let names = v["secrets"].as_array().cloned().unwrap_or_default();
                    names.iter().map(|n| format!("{}\n", s(n))).collect()
                })
            }
            Command::Secret(SecretCommand::Rm { name }) => {
                let v = ok_json(self.client.request("DELETE", &format!("/v1/secrets/{}", encode(&name)), None)?)?;
                self.show(&v, |v| format!("{} deleted\n", s(&v["name"])))
            }
            Command::Send { session, text, sender } => {
                let mut body = json!({ "text": text });
                if let Some(sender) = sender {
                    body["sender"] = json!(sender);
                }
                let path = format!("/v1/sessions/{}/messages", encode(&session));
                let v = ok_json(self.client.post_json(&path, &body)?)?;
                self.show(&v, |v| match v["run_id"].as_str() {
                    Some(run) => format!("{} -> {run}\n", s(&v["message_id"])),
                    None => format!("{} (no run to deliver it to yet)\n", s(&v["message_id"])),
                })
            }
            Command::Messages { session, direction } => {
                let path =
                    with_query(&format!("/v1/sessions/{}/messages", encode(&session)), &[("direction", direction)]);
                let v = ok_json(self.client.get(&path)?)?;
                self.show(&v, |v| {
                    let rows: Vec<Vec<String>> = v["messages"]
                        .as_array()
                        .map(|ms| {
                            ms.iter()
                                .map(|m| {
                                    vec![
                                        s(&m["at"]),
                                        s(&m["direction"]),
                                        s(&m["sender"]),
                                        s(&m["run_id"]),
                                        one_line(&s(&m["text"])),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(&["AT", "DIR", "SENDER", "RUN", "TEXT"], &rows)
                })
            }
            Command::Audit { run, session, limit, verify } => {
                if verify {
                    return self.verify();
                }
                let path = with_query(
                    "/v1/audit",
                    &[("run_id", run), ("session_id", session), ("limit", limit.map(|l| l.to_string()))],
                );
                let v = ok_json(self.client.get(&path)?)?;
                self.show(&v, |v| {
                    let rows: Vec<Vec<String>> = v["events"]
                        .as_array()
                        .map(|es| {
                            es.iter()
                                .map(|e| {
                                    vec![
                                        s(&e["seq"]),
                                        s(&e["at"]),
                                        s(&e["type"]),
                                        s(&e["actor"]),
                                        s(&e["session_id"]),
                                        s(&e["run_id"]),
                                        s(&e["decision"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(&["SEQ", "AT", "TYPE", "ACTOR", "SESSION", "RUN", "DECISION"], &rows)
                })
            }
            Command::Events { since } => self.events(since),
            Command::Info => {
                let v = ok_json(self.client.get("/v1/info")?)?;
                self.show(&v, |v| key_values(v, &["version", "cgroup_version"]))
            }
            Command::Ping => {
                let r = self.client.get("/_ping")?;
                if !r.is_success() {
                    return Err(Failure::Refused(error_text(r.status, &r.body)));
                }
                let body = String::from_utf8_lossy(&r.body).trim().to_owned();
                let api = r.header("Api-Version").unwrap_or("?").to_owned();
                if self.json {
                    self.raw(&json!({"ok": true, "body": body, "api_version": api}))
                } else {
                    self.out(&format!("{body} (api version {api}, {})\n", self.client.socket().display()))
                }
            }
        }
    }

    /// The answer of cancel / transition: `{run_id, previous_state, state}`.
    fn transitioned(&self, r: Response) -> Outcome {
        let v = ok_json(r)?;
        self.show(&v, |v| format!("{}: {} -> {}\n", s(&v["run_id"]), s(&v["previous_state"]), s(&v["state"])))
    }

    fn verify(&self) -> Outcome {
        let v = ok_json(self.client.get("/v1/audit/verify")?)?;
        let ok = v["ok"].as_bool() == Some(true);
        if self.json {
            self.raw(&v)?;
        } else if ok {
            self.out(&format!("ok ({} events, head {})\n", s(&v["events"]), s(&v["head_hash"])))?;
        } else {
            self.out(&format!("broken at seq {} ({} events)\n", s(&v["first_bad_seq"]), s(&v["events"])))?;
        }
        if ok {
            Ok(())
        } else {
            Err(Failure::Refused(format!("the audit chain does not verify: first bad seq {}", s(&v["first_bad_seq"]))))
        }
    }

    /// Copies the body to stdout as it arrives, flushing after each read.
    fn stream_out(&self, mut body: impl Read) -> Outcome {
        let mut stdout = std::io::stdout().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Unreachable(format!("the stream broke: {e}"))),
            };
            if let Err(e) = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()) {
                // The reader went away (e.g. `| head`): stop quietly.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }

    fn logs(&self, id: &str, follow: bool, stderr: bool) -> Outcome {
        let stream = if stderr { "stderr" } else { "stdout" };
        let path = with_query(
            &Self::run_path(id, "/logs"),
            &[("stream", Some(stream.to_owned())), ("follow", follow.then(|| "true".to_owned()))],
        );
        let r = self.client.send("GET", &path, None)?;
        if !(200..300).contains(&r.status) {
            let r = r.into_response()?;
            if follow && r.status == 400 && error_code(&r.body).as_deref() == Some("not_implemented") {
                return Err(Failure::Refused(format!(
                    "this daemon cannot follow logs yet ({}); run `ccosctl logs {id}` without -f",
                    error_text(r.status, &r.body)
                )));
            }
            return Err(Failure::Refused(error_text(r.status, &r.body)));
        }
        self.stream_out(r)
    }

    fn events(&self, since: Option<u64>) -> Outcome {
        let path = with_query("/v1/events", &[("since_seq", since.map(|s| s.to_string()))]);
        let r = self.client.send("GET", &path, None)?;
        if r.status == 404 {
            let r = r.into_response()?;
            return Err(Failure::Refused(format!(
                "this daemon does not serve /v1/events yet ({})",
                error_text(r.status, &r.body)
            )));
        }
        if !(200..300).contains(&r.status) {
            let r = r.into_response()?;
            return Err(Failure::Refused(error_text(r.status, &r.body)));
        }
        self.stream_out(r)
    }

    /// Asks the daemon to wait in slices of at most a minute, until the run
    /// is terminal or `timeout` has passed.
    fn wait(&self, id: &str, timeout: Option<u64>) -> Outcome {
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).as_secs().min(60),
                None => 60,
            };
            let path = with_query(&Self::run_path(id, "/wait"), &[("timeout_secs", Some(slice.to_string()))]);
            let run = ok_json(self.client.get(&path)?)?;
            let state = run["state"].as_str().unwrap_or("").to_owned();
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if is_terminal(&state) || expired {
                self.show(&run, |run| table(RUN_HEADER, &[run_row(run)]))?;
                if is_terminal(&state) {
                    return Ok(());
                }
                return Err(Failure::Refused(format!("timed out: run {id} is still {state}")));
            }
        }
    }
}
