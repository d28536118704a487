//! The SDK proper: typed calls on the run's agent socket (API.md "Agent API").
//! The supervisor knows the run from the socket the connection came in on, so
//! there is no token to pass: the socket path is all a client needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ErrorDetail, ExecuteError, ProtocolError, RequestError, TransitionError};
use crate::transport::{Response, Transport};
use crate::types::{ExecuteOk, InboxMessage, RunState, RunView, TransitionOk};

/// Where the supervisor bind-mounts the run's agent socket inside the jail.
pub const DEFAULT_SOCKET: &str = "/run/ccos/agent.sock";
/// The environment variable that overrides [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "CCOS_AGENT_SOCKET";

/// What the agent does with its run. [`AgentClient`] is the real one; the
/// runner is written against this trait so its decisions can be tested
/// without a supervisor.
pub trait AgentApi {
    /// `GET /v1/agent/run`.
    fn run(&self) -> Result<RunView, RequestError>;
    /// `GET /v1/agent/inbox?wait_secs=`: new messages, each delivered once;
    /// waits up to `wait_secs` for one when there are none.
    fn inbox(&self, wait_secs: u64) -> Result<Vec<InboxMessage>, RequestError>;
    /// `POST /v1/agent/execute`: one capability call, one step.
    fn execute(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, ExecuteError>;
    /// `POST /v1/agent/transition`.
    fn transition(&self, state: RunState, reason: Option<&str>) -> Result<TransitionOk, TransitionError>;
}

/// A blocking client for one run's agent socket.
///
/// ```no_run
/// use ccos_agent::{AgentClient, ExecuteError};
/// let agent = AgentClient::from_env();
/// let run = agent.run()?;
/// match agent.execute("run.note", serde_json::json!({"text": run.goal})) {
///     Ok(ok) => eprintln!("step {} gave {}", ok.step_id, ok.output),
///     Err(ExecuteError::MissingInput { missing, .. }) => eprintln!("someone must supply {missing:?}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AgentClient {
    transport: Transport,
    call_timeout: Duration,
    execute_timeout: Duration,
}

impl AgentClient {
    /// A client for the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> AgentClient {
        AgentClient {
            transport: Transport::new(socket),
            // The supervisor answers run and transition calls from its store.
            call_timeout: Duration::from_secs(30),
            // A capability may call a slow HTTP endpoint (a model) or run a
            // command; the supervisor bounds those itself.
            execute_timeout: Duration::from_secs(600),
        }
    }

    /// A client for `$CCOS_AGENT_SOCKET`, else [`DEFAULT_SOCKET`].
    pub fn from_env() -> AgentClient {
        AgentClient::new(std::env::var_os(SOCKET_ENV).map(PathBuf::from).unwrap_or_else(|| DEFAULT_SOCKET.into()))
    }

    /// How long `run` and `transition` wait for an answer (default 30 s).
    pub fn with_call_timeout(mut self, timeout: Duration) -> AgentClient {
        self.call_timeout = timeout;
        self
    }

    /// How long `execute` waits for an answer (default 600 s).
    pub fn with_execute_timeout(mut self, timeout: Duration) -> AgentClient {
        self.execute_timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        self.transport.socket()
    }

    /// The run: goal, budget, usage, remaining budget, predicate, policy, state.
    pub fn run(&self) -> Result<RunView, RequestError> {
        let response = self.transport.request("GET", "/v1/agent/run", None, self.call_timeout)?;
        ok_json("GET /v1/agent/run", &response)
    }

    /// New inbound messages, oldest first. Long-polls: waits up to `wait_secs`
    /// for one when there are none (0 only looks).
    pub fn inbox(&self, wait_secs: u64) -> Result<Vec<InboxMessage>, RequestError> {
        #[derive(Deserialize)]
        struct Inbox {
            messages: Vec<InboxMessage>,
        }
        let target = format!("/v1/agent/inbox?wait_secs={wait_secs}");
        // The read timeout must outlast the server's wait, with room for a
        // busy supervisor.
        let timeout = Duration::from_secs(wait_secs) + self.call_timeout;
        let response = self.transport.request("GET", &target, None, timeout)?;
        Ok(ok_json::<Inbox>(&format!("GET {target}"), &response)?.messages)
    }

    /// Runs one capability. `Ok` only when the supervisor allowed the call and
    /// the capability succeeded; every refusal and failure is a typed error.
    pub fn execute(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, ExecuteError> {
        const REQUEST: &str = "POST /v1/agent/execute";
        let body = json!({"capability_id": capability_id, "inputs": inputs}).to_string();
        let response =
            self.transport.request("POST", "/v1/agent/execute", Some(body.as_bytes()), self.execute_timeout)?;
        parse_execute(capability_id, &response).map_err(|e| match e {
            Parsed::Refused(e) => e,
            Parsed::Unreadable(what) => ProtocolError::new(REQUEST, response.status, what, &response.body).into(),
        })
    }

    /// Moves the run to `state` (`done`, `failed`, `paused_approval` or
    /// `paused_external_event`), saying why.
    pub fn transition(&self, state: RunState, reason: Option<&str>) -> Result<TransitionOk, TransitionError> {
        const REQUEST: &str = "POST /v1/agent/transition";
        let mut body = json!({"state": state.as_str()});
        if let Some(reason) = reason {
            body["reason"] = reason.into();
        }
        let response = self.transport.request(
            "POST",
            "/v1/agent/transition",
            Some(body.to_string().as_bytes()),
            self.call_timeout,
        )?;
        if !response.is_success() {
            return match ErrorDetail::from_body(&response.body) {
                Some(detail) => Err(TransitionError::from_detail(response.status, detail)),
                None => Err(ProtocolError::new(
                    REQUEST,
                    response.status,
                    "an error without an error object",
                    &response.body,
                )
                .into()),
            };
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            ProtocolError::new(REQUEST, response.status, format!("not a transition answer: {e}"), &response.body).into()
        })
    }
}

impl AgentApi for AgentClient {
    fn run(&self) -> Result<RunView, RequestError> {
        AgentClient::run(self)
    }

    fn inbox(&self, wait_secs: u64) -> Result<Vec<InboxMessage>, RequestError> {
        AgentClient::inbox(self, wait_secs)
    }

    fn execute(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, ExecuteError> {
        AgentClient::execute(self, capability_id, inputs)
    }

    fn transition(&self, state: RunState, reason: Option<&str>) -> Result<TransitionOk, TransitionError> {
        AgentClient::transition(self, state, reason)
    }
}

/// A 2xx answer's JSON body as `T`, or the typed reason why not.
fn ok_json<T: DeserializeOwned>(request: &str, response: &Response) -> Result<T, RequestError> {
    if !response.is_success() {
        return Err(match ErrorDetail::from_body(&response.body) {
            Some(d) => RequestError::Api {
                request: request.to_owned(),
                status: response.status,
                code: d.code,
                message: d.message,
            },
            None => {
                ProtocolError::new(request, response.status, "an error without an error object", &response.body).into()
            }
        });
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        ProtocolError::new(request, response.status, format!("unexpected JSON: {e}"), &response.body).into()
    })
}

enum Parsed {
    Refused(ExecuteError),
    Unreadable(String),
}

/// Reads an execute answer: `{"success": true, "step_id", "output"}` or an
/// error object, which decides (not the status) which error it is.
fn parse_execute(capability_id: &str, response: &Response) -> Result<ExecuteOk, Parsed> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        success: bool,
        #[serde(flatten)]
        ok: Option<ExecuteOk>,
    }
    if let Some(detail) = ErrorDetail::from_body(&response.body) {
        return Err(Parsed::Refused(ExecuteError::from_detail(capability_id, response.status, detail)));
    }
    let answer: Answer =
        serde_json::from_slice(&response.body).map_err(|e| Parsed::Unreadable(format!("not JSON: {e}")))?;
    match answer {
        Answer { success: true, ok: Some(ok) } if response.is_success() => Ok(ok),
        _ => Err(Parsed::Unreadable("neither a success with a step_id nor an error object".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::serve;

    fn answer(status: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
    }

    /// One call against a real socket that answers `response`; gives the
    /// call's result and the request the server read.
    fn call<T>(response: Vec<u8>, f: impl FnOnce(&AgentClient) -> T) -> (T, String) {
        let (_dir, path, server) = serve(vec![response]);
        let result = f(&AgentClient::new(path));
        (result, server.join().unwrap())
    }

    #[test]
    fn run_reads_the_run() {
        let (run, request) =
            call(answer("200 OK", r#"{"id": "run_1", "goal": "g", "state": "active", "x": 1}"#), |c| c.run());
        let run = run.unwrap();
        assert_eq!((run.id.as_str(), run.state), ("run_1", RunState::Active));
        assert!(request.starts_with("GET /v1/agent/run HTTP/1.1\r\n"), "{request}");
    }

    #[test]
    fn inbox_long_polls_and_reads_chunked_messages() {
        let body = r#"{"messages": [{"id": "m1", "sender": "system", "text": "Run started (run_1). Goal:\nhi", "at": "2025-01-01T00:00:00Z"}]}"#;
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            10,
            &body[..10],
            body.len() - 10,
            &body[10..]
        );
        let (messages, request) = call(chunked.into_bytes(), |c| c.inbox(7));
        let messages = messages.unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            (messages[0].sender.as_str(), messages[0].text.as_str()),
            ("system", "Run started (run_1). Goal:\nhi")
        );
        assert!(request.starts_with("GET /v1/agent/inbox?wait_secs=7 HTTP/1.1\r\n"), "{request}");
    }

    #[test]
    fn execute_sends_the_step_and_reads_success() {
        let (ok, request) =
            call(answer("200 OK", r#"{"success": true, "step_id": "st_1", "output": {"n": 1}}"#), |c| {
                c.execute("run.note", json!({"text": "hi"}))
            });
        assert_eq!(ok.unwrap(), ExecuteOk { step_id: "st_1".into(), output: json!({"n": 1}) });
        assert!(request.starts_with("POST /v1/agent/execute HTTP/1.1\r\n"), "{request}");
        let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body, json!({"capability_id": "run.note", "inputs": {"text": "hi"}}));
    }

    #[test]
    fn execute_errors_are_typed_by_code() {
        let cases = [
            ("409 Conflict", "run_not_active", "the run is not active, so `c.x` was refused: m"),
            ("409 Conflict", "budget_exceeded", "the run's budget is used up, so `c.x` was refused: m"),
            (
                "404 Not Found",
                "unknown_capability",
                "unknown capability `c.x`: m (check the id against the supervisor's capability files)",
            ),
            ("403 Forbidden", "capability_not_allowed", "capability `c.x` is not allowed for this run: m"),
            ("422 Unprocessable Entity", "invalid_input", "invalid inputs for `c.x`: m"),
            ("502 Bad Gateway", "capability_failed", "capability `c.x` failed: m"),
        ];
        for (status, code, text) in cases {
            let body = format!(r#"{{"success": false, "error": {{"code": "{code}", "message": "m"}}}}"#);
            let (e, _) = call(answer(status, &body), |c| c.execute("c.x", json!({})));
            let e = e.unwrap_err();
            assert_eq!((e.code(), e.to_string().as_str()), (code, text));
        }
        let body =
            r#"{"success": false, "error": {"code": "missing_input", "message": "m", "missing": ["to", "body"]}}"#;
        let (e, _) = call(answer("422 Unprocessable Entity", body), |c| c.execute("mail.send", json!({})));
        match e.unwrap_err() {
            ExecuteError::MissingInput { missing, .. } => assert_eq!(missing, ["to", "body"]),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn execute_answers_outside_the_contract_are_protocol_errors() {
        let (e, _) = call(answer("502 Bad Gateway", "<html>oops</html>"), |c| c.execute("c.x", json!({})));
        let e = e.unwrap_err();
        assert!(matches!(e, ExecuteError::Protocol(_)), "{e:?}");
        assert!(e.to_string().contains("POST /v1/agent/execute (HTTP 502): not JSON"), "{e}");
        let (e, _) = call(answer("200 OK", r#"{"success": true}"#), |c| c.execute("c.x", json!({})));
        assert!(e.unwrap_err().to_string().contains("neither a success with a step_id"));
    }

    #[test]
    fn transition_sends_state_and_reason_and_reads_refusals() {
        let (ok, request) = call(
            answer("200 OK", r#"{"run_id": "r", "previous_state": "active", "state": "paused_external_event"}"#),
            |c| c.transition(RunState::PausedExternalEvent, Some("awaiting_user_input")),
        );
        assert_eq!(ok.unwrap().previous_state, RunState::Active);
        let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body, json!({"state": "paused_external_event", "reason": "awaiting_user_input"}));

        let (e, request) =
            call(answer("409 Conflict", r#"{"error": {"code": "predicate_unsatisfied", "message": "manual"}}"#), |c| {
                c.transition(RunState::Done, None)
            });
        assert!(matches!(e, Err(TransitionError::PredicateUnsatisfied { .. })));
        assert!(request.ends_with(r#"{"state":"done"}"#), "{request}");
        let (e, _) =
            call(answer("409 Conflict", r#"{"error": {"code": "invalid_transition", "message": "terminal"}}"#), |c| {
                c.transition(RunState::Done, None)
            });
        assert_eq!(e.unwrap_err().to_string(), "the supervisor refused the transition: terminal");
        let (e, _) =
            call(answer("400 Bad Request", r#"{"error": {"code": "unknown_state", "message": "nope"}}"#), |c| {
                c.transition(RunState::Other("nope".into()), None)
            });
        assert!(matches!(e, Err(TransitionError::BadRequest { .. })));
    }

    #[test]
    fn api_errors_on_reads_keep_code_and_message() {
        let (e, _) =
            call(answer("404 Not Found", r#"{"error": {"code": "run_not_found", "message": "gone"}}"#), |c| c.run());
        assert_eq!(e.unwrap_err().to_string(), "GET /v1/agent/run refused (HTTP 404 run_not_found): gone");
    }
}
