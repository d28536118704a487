//! The run manager's agent side: each run's agent socket, its budget
//! watcher, and the capability gate behind `POST /v1/agent/execute`.
//!
//! - The socket: `<state>/runs/<run_id>/agent.sock`, made before the jail
//!   and bound into only that jail at `/run/ccos/agent.sock`; the server
//!   behind it knows its run, so nothing in the jail names the run or
//!   carries a token. Removed (and its server stopped) when the run ends.
//! - The watcher: enforces the budgets that run out with time alone (wall
//!   time in the window, CPU seconds) while the agent makes no call, and
//!   keeps `usage` live.
//! - The gate: [`Daemon::execute`], in API.md's order, then the builtin's
//!   effect and its outcome.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::AbortHandle;

use super::{Daemon, DaemonError};
use crate::audit::{types, NewAuditEvent};
use crate::capabilities::{Builtin, Executor};
use crate::lifecycle::budget::Exhausted;
use crate::lifecycle::RunState;
use crate::model::{Actor, Run, Timestamp};
use crate::spawner::Bind;
use crate::store::{Meters, Refusal, Step};

/// The longest error message an agent gets (and the audit keeps).
const MAX_ERROR_CHARS: usize = 300;
/// The longest part of a command's stderr the audit keeps.
const MAX_STDERR_CHARS: usize = 2000;

/// Where a run's agent socket appears inside its jail.
pub const AGENT_SOCKET_IN_JAIL: &str = "/run/ccos/agent.sock";
/// How often the watcher reads a run's cgroup when it has a CPU budget
/// (API.md: at least every 250 ms).
const CPU_POLL: Duration = Duration::from_millis(250);
/// How often otherwise: the peaks and CPU time shown on the run.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What the daemon holds for a run whose jail is (about to be) alive.
#[derive(Debug)]
pub(super) struct RunAgent {
    socket: PathBuf,
    tasks: Vec<AbortHandle>,
}

/// The runs' agent sides, and the CPU counter of each run at the start of
/// its budget window (a cgroup's counter only grows; a fresh window starts
/// the run's `cpu_secs` from 0).
#[derive(Debug, Default)]
pub(super) struct AgentSides {
    runs: Mutex<HashMap<String, RunAgent>>,
    cpu_bases: Mutex<HashMap<String, (Option<Timestamp>, f64)>>,
    /// Jails of `command` capabilities, by their spawner id: whoever waits
    /// for each one's end (their exits are not runs' exits).
    executor_exits: Mutex<HashMap<String, tokio::sync::oneshot::Sender<ccos_jail::Report>>>,
}

/// A capability call's answer, for the agent API to render.
#[derive(Debug)]
pub enum Executed {
    Done {
        step_id: String,
        output: Value,
    },
    Refused(Refusal),
    /// The capability ran and failed (502 `capability_failed`).
    Failed {
        step_id: String,
        message: String,
    },
}

impl AgentSides {
    pub(super) fn expect_exit(&self, jail_id: &str, done: tokio::sync::oneshot::Sender<ccos_jail::Report>) {
        self.executor_exits.lock().unwrap_or_else(|p| p.into_inner()).insert(jail_id.to_owned(), done);
    }

    pub(super) fn forget_exit(&self, jail_id: &str) {
        self.executor_exits.lock().unwrap_or_else(|p| p.into_inner()).remove(jail_id);
    }

    /// Hands an executor jail's end to whoever waits for it; false if the
    /// jail was a run's.
    pub(super) fn deliver_exit(&self, jail_id: &str, report: &ccos_jail::Report) -> bool {
        match self.executor_exits.lock().unwrap_or_else(|p| p.into_inner()).remove(jail_id) {
            Some(done) => {
                let _ = done.send(report.clone());
                true
            }
            None => false,
        }
    }

    /// The CPU seconds of the run's current window, from its cgroup's
    /// counter. The first window counts from the jail's start.
    pub(super) fn window_cpu(&self, run_id: &str, window: Option<Timestamp>, total: f64) -> f64 {
        let mut bases = self.cpu_bases.lock().unwrap_or_else(|p| p.into_inner());
        let (base_window, base) = bases.entry(run_id.to_owned()).or_insert((window, 0.0));
        if *base_window != window {
            *base_window = window;
            *base = total;
        }
        (total - *base).max(0.0)
    }
}

impl Daemon {
    /// Makes the run's agent socket and starts serving it; returns the bind
    /// that puts it into the jail.
    pub(super) async fn open_agent_side(self: &Arc<Self>, run: &Run, dir: &Path) -> Result<Bind, String> {
        let path = dir.join("agent.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).map_err(|e| format!("binding {}: {e}", path.display()))?;
        // The jail's user is not root and owns nothing outside: the socket
        // must be writable by "others". Only this jail can reach it: the
        // run's folder is 0700 root on the host, and the file is bound into
        // this jail alone.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        let server = tokio::spawn(crate::api::agent::serve(listener, self.clone(), run.id.clone()));
        let watcher = tokio::spawn(self.clone().watch_budget(run.id.clone()));
        let agent = RunAgent { socket: path.clone(), tasks: vec![server.abort_handle(), watcher.abort_handle()] };
        self.agents.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(run.id.clone(), agent);
        Ok(Bind { src: path, dst: AGENT_SOCKET_IN_JAIL.into(), read_only: true })
    }

    /// Stops the run's agent server and watcher and removes its socket.
    pub(super) fn close_agent_side(&self, run_id: &str) {
        let agent = self.agents.runs.lock().unwrap_or_else(|p| p.into_inner()).remove(run_id);
        self.agents.cpu_bases.lock().unwrap_or_else(|p| p.into_inner()).remove(run_id);
        if let Some(agent) = agent {
            agent.tasks.iter().for_each(AbortHandle::abort);
            let _ = std::fs::remove_file(&agent.socket);
        }
    }

    /// The gate (see [`crate::store::Store::begin_step`]), then the
    /// capability, then its outcome audited.
    pub async fn execute(
        self: &Arc<Self>,
        run_id: &str,
        capability_id: &str,
        inputs: Value,
    ) -> Result<Executed, DaemonError> {
        let capability = self.capabilities().get(capability_id);
        let check = capability.as_ref().map(|c| c.validate(&inputs));
        let cpu = self.window_cpu_now(run_id).await;
        let (id, cap) = (run_id.to_owned(), capability_id.to_owned());
        let gated = self.db(move |store| store.begin_step(&id, &cap, cpu, check)).await?;
        let (step, capability) = match (gated, capability) {
            (Ok(step), Some(capability)) => (step, capability),
            (Ok(step), None) => return Err(DaemonError::Internal(format!("step {} has no capability", step.step_id))),
            (Err(refusal), _) => {
                if let Refusal::BudgetExceeded { moved, .. } = &refusal {
                    // The jail follows the policy (killed or frozen) after
                    // this answer is on its way, so the agent can see why.
                    self.changed();
                    let (daemon, moved) = (self.clone(), moved.clone());
                    tokio::spawn(async move { daemon.follow(&moved).await });
                }
                return Ok(Executed::Refused(refusal));
            }
        };
        self.changed();
        let mut stderr = None;
        let outcome = match &capability.executor {
            Executor::Builtin(builtin) => self.run_builtin(*builtin, &step, &inputs).await,
            Executor::Command(spec) => match self.run_command(&step, spec, &inputs).await {
                Ok(result) => {
                    stderr = Some(result.stderr);
                    Ok(result.output)
                }
                Err((message, err)) => {
                    stderr = Some(err);
                    Err(message)
                }
            },
            Executor::Http(spec) => self.run_http(&step, spec, &inputs).await,
            Executor::Llm(spec) => self.run_llm(&step, spec, &inputs).await,
        };
        // A declared output schema binds the executor: what does not match
        // is a failed call, not something to hand the agent.
        let outcome = outcome.and_then(|output| match capability.validate_output(&output) {
            Ok(()) => Ok(output),
            Err(e) => Err(format!("the capability's {e}")),
        });
        // What goes back to the agent, and into the audit, passes the
        // redactor: a secret an executor echoed (in its answer or its
        // error) never reaches the jail. Errors are summarized, not dumped.
        let redactor = crate::redact::global();
        let outcome = match outcome {
            Ok(output) => Ok(redactor.redact_json(&output)),
            Err(message) => Err(redactor.summarize_error(&message, MAX_ERROR_CHARS)),
        };
        let stderr = stderr.map(|text| redactor.summarize_error(&text, MAX_STDERR_CHARS));
        let (success, error) = match &outcome {
            Ok(_) => (true, None),
            Err(message) => (false, Some(message.clone())),
        };
        let tokens = outcome.as_ref().map(reported_tokens).unwrap_or(0);
        let (done, cap) = (step.clone(), capability_id.to_owned());
        let stderr = stderr.filter(|s| !s.is_empty());
        self.db(move |store| store.finish_step(&done, &cap, success, tokens, error.as_deref(), stderr.as_deref()))
            .await?;
        if tokens > 0 {
            // The token budget may be spent now: the next call would be
            // refused anyway, but a run that makes no further call must
            // not keep running on an exhausted budget.
            self.check_budget_now(&step.run.id, step.run.budget_window_started_at).await;
        }
        Ok(match outcome {
            Ok(output) => Executed::Done { step_id: step.step_id, output },
            Err(message) => Executed::Failed { step_id: step.step_id, message },
        })
    }

    async fn run_builtin(&self, builtin: Builtin, step: &Step, inputs: &Value) -> Result<Value, String> {
        let text = inputs.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
        let run = step.run.clone();
        let actor = Actor::Agent { run_id: run.id.clone() };
        match builtin {
            Builtin::RunNote => {
                let mut event =
                    NewAuditEvent::new(types::RUN_NOTE, &actor).run(&run.session_id, &run.id).with("text", text);
                event.step_id = Some(step.step_id.clone());
                let noted = self.db(move |store| store.append_audit(event)).await.map_err(|e| e.to_string())?;
                Ok(json!({ "noted": true, "seq": noted.seq }))
            }
            Builtin::ChatSend => {
                let sent = self
                    .db(move |store| store.send_message(&run.id, &text, "agent", &actor))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "message_id": sent.id }))
            }
        }
    }

    /// The run's CPU seconds in its window, read from its cgroup now;
    /// `None` if it cannot be read (no jail yet, no cpuacct controller).
    async fn window_cpu_now(&self, run_id: &str) -> Option<f64> {
        let id = run_id.to_owned();
        let window = self.db(move |store| store.get_run(&id)).await.ok()?.budget_window_started_at;
        self.read_meters(run_id, window).await.cpu_secs
    }

    /// What the run's cgroup says now, as the meters of budget window
    /// `window`; a field is `None` where it cannot be read.
    async fn read_meters(&self, run_id: &str, window: Option<Timestamp>) -> Meters {
        let usage = self.spawner.usage(run_id).await.ok();
        Meters {
            cpu_secs: usage.and_then(|u| u.cpu_usec).map(|us| self.agents.window_cpu(run_id, window, us as f64 / 1e6)),
            memory_peak_bytes: usage.and_then(|u| u.memory_peak),
            pids_peak: usage.and_then(|u| u.pids_peak),
        }
    }

    /// The watcher's check, once, now: the meters refreshed, and the
    /// budget policy applied if time alone (or tokens) used a budget up.
    async fn check_budget_now(self: &Arc<Self>, run_id: &str, window: Option<Timestamp>) {
        let meters = self.read_meters(run_id, window).await;
        let id = run_id.to_owned();
        match self.db(move |store| store.enforce_budget(&id, window, meters)).await {
            Ok((_, Some((which, moved)))) => {
                tracing::info!(run_id = %run_id, "budget exceeded: {which}; {}", moved.run.state);
                self.changed();
                self.follow(&moved).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(run_id = %run_id, "checking the budget: {e}"),
        }
    }

    /// Enforces the run's time budgets and keeps its usage live, until the
    /// run ends (or [`Daemon::close_agent_side`] stops it).
    async fn watch_budget(self: Arc<Self>, run_id: String) {
        loop {
            let id = run_id.clone();
            let Ok(run) = self.db(move |store| store.get_run(&id)).await else { return };
            if run.state.is_terminal() {
                return;
            }
            tokio::time::sleep(self.next_check(&run)).await;
            if run.state == RunState::Active {
                self.check_budget_now(&run_id, run.budget_window_started_at).await;
            }
        }
    }

    /// Until the next look at a run: its duration deadline if that is
    /// sooner than the poll interval.
    fn next_check(&self, run: &Run) -> Duration {
        let poll = if run.budget.max_cpu_secs.is_some() { CPU_POLL } else { IDLE_POLL };
        let deadline = match (run.state, run.budget.max_duration_secs, run.budget_window_started_at) {
            (RunState::Active, Some(max), Some(start)) => {
                let elapsed = Timestamp::now().saturating_since(start);
                Some(Duration::from_secs(max).saturating_sub(elapsed))
            }
            _ => None,
        };
        deadline.map_or(poll, |d| d.min(poll))
    }
}

/// The tokens a capability's output reports (`usage.total_tokens`, as
/// OpenAI-compatible APIs answer), which count against the token budget.
pub fn reported_tokens(output: &Value) -> u64 {
    output.pointer("/usage/total_tokens").and_then(Value::as_u64).unwrap_or(0)
}

/// The refusal's HTTP status, code and message, as the agent API answers.
pub fn refusal_answer(refusal: &Refusal) -> (u16, String, Option<Vec<String>>) {
    use crate::capabilities::InputError;
    match refusal {
        Refusal::RunNotActive { state } => (409, format!("the run is {state}, not active"), None),
        Refusal::BudgetExceeded { which, moved } => {
            let what = budget_words(*which);
            (409, format!("the run's {what} budget is used up; the run is now {}", moved.run.state), None)
        }
        Refusal::UnknownCapability => (404, "no such capability".to_owned(), None),
        Refusal::NotAllowed => {
            (403, "this run may not call that capability (it is not on the run's allowlist)".to_owned(), None)
        }
        Refusal::Input(InputError::Missing(fields)) => {
            (422, format!("missing required input: {}", fields.join(", ")), Some(fields.clone()))
        }
        Refusal::Input(InputError::Invalid { at, message }) => (422, format!("invalid input at {at}: {message}"), None),
    }
}

fn budget_words(which: Exhausted) -> &'static str {
    match which {
        Exhausted::Steps => "step",
        Exhausted::Duration => "wall-time",
        Exhausted::Cpu => "CPU-time",
        Exhausted::Tokens => "token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_usage_total_tokens_only() {
        assert_eq!(reported_tokens(&json!({"content": "hi", "usage": {"total_tokens": 42}})), 42);
        assert_eq!(reported_tokens(&json!({"usage": {"prompt_tokens": 5}})), 0);
        assert_eq!(reported_tokens(&json!({"usage": {"total_tokens": "42"}})), 0);
        assert_eq!(reported_tokens(&json!("text")), 0);
    }

    #[test]
    fn a_window_counts_cpu_from_its_start() {
        let sides = AgentSides::default();
        let (w1, w2) = (Some(Timestamp::from_unix_micros(1)), Some(Timestamp::from_unix_micros(2)));
        assert_eq!(sides.window_cpu("r", w1, 3.0), 3.0, "the first window counts from the jail's start");
        assert_eq!(sides.window_cpu("r", w1, 5.0), 5.0);
        assert_eq!(sides.window_cpu("r", w2, 6.0), 0.0, "a fresh window starts at 0");
        assert_eq!(sides.window_cpu("r", w2, 7.5), 1.5);
    }
}
