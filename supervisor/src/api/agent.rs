//! The agent API (API.md, "Agent API"): served on each run's own agent
//! socket, so the run is the listener's, never something the request says.
//! Four routes: the run, its inbox (long poll), execute (the capability
//! gate) and transition (the agent's few moves).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::UnixListener;

use super::body::{json_response, number_param, parse_json, query_params, read_body, Response};
use super::error::ApiError;
use super::to_the_end;
use crate::daemon::{refusal_answer, Daemon, Executed};
use crate::lifecycle::budget;
use crate::lifecycle::RunState;
use crate::model::Actor;

/// The longest inbox long poll.
pub const MAX_INBOX_WAIT_SECS: u64 = 60;

/// The states an agent may move its own run to.
const AGENT_TARGETS: [RunState; 4] =
    [RunState::Done, RunState::Failed, RunState::PausedApproval, RunState::PausedExternalEvent];

/// Serves the run's agent socket until the task is aborted (the run ended).
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>, run_id: String) {
    let run_id: Arc<str> = run_id.into();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(run_id = %run_id, "agent socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (daemon, run_id) = (daemon.clone(), run_id.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (daemon, run_id) = (daemon.clone(), run_id.clone());
                async move {
                    let response = match route(&daemon, &run_id, request).await {
                        Ok(response) => response,
                        Err(e) => e.into_response(),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            super::serve_connection(stream, service).await;
        });
    }
}

async fn route(daemon: &Arc<Daemon>, run_id: &str, request: Request<Incoming>) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let allowed = match path.as_str() {
        "/v1/agent/run" | "/v1/agent/inbox" => "GET",
        "/v1/agent/execute" | "/v1/agent/transition" => "POST",
        _ => return Err(ApiError::not_found(format!("no such path: {path}")).with("path", path.as_str())),
    };
    if request.method().as_str() != allowed {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this path accepts {allowed}"),
        ));
    }
    match (request.method(), path.as_str()) {
        (&Method::GET, "/v1/agent/run") => {
            query_params(query.as_deref(), &[])?;
            run(daemon, run_id).await
        }
        (&Method::GET, _) => inbox(daemon, run_id, query.as_deref()).await,
        (_, "/v1/agent/execute") => execute(daemon, run_id, request).await,
        _ => transition(daemon, run_id, request).await,
    }
}

/// `GET /v1/agent/run`: what the agent needs to plan, with its usage live
/// (wall time counted to now) and what is left of each budget.
async fn run(daemon: &Arc<Daemon>, run_id: &str) -> Result<Response, ApiError> {
    let id = run_id.to_owned();
    let run = daemon.db(move |store| store.get_run(&id)).await?.with_live_usage();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": run.id,
            "session_id": run.session_id,
            "goal": run.goal,
            "state": run.state,
            "state_reason": run.state_reason,
            "budget": run.budget,
            "usage": run.usage,
            "remaining": budget::remaining(&run.budget, &run.usage),
            "budget_policy": run.budget_policy,
            "completion_predicate": run.completion_predicate,
            "current_step_id": run.current_step_id,
        }),
    ))
}

/// `GET /v1/agent/inbox?wait_secs=`: the messages not yet delivered, each
/// once; with `wait_secs`, waits for one to arrive (or the run to end).
async fn inbox(daemon: &Arc<Daemon>, run_id: &str, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["wait_secs"])?;
    let wait = number_param::<u64>(&params, "wait_secs")?.unwrap_or(0);
    if wait > MAX_INBOX_WAIT_SECS {
        return Err(ApiError::bad_field("wait_secs", format!("at most {MAX_INBOX_WAIT_SECS}")));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut changes = daemon.subscribe();
    loop {
        changes.borrow_and_update();
        let id = run_id.to_owned();
        let (messages, state) = daemon
            .db(move |store| {
                let messages = store.take_inbox(&id)?;
                Ok((messages, store.get_run(&id)?.state))
            })
            .await?;
        if !messages.is_empty() || state.is_terminal() || tokio::time::Instant::now() >= deadline {
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|m| json!({"id": m.id, "sender": m.sender, "text": m.text, "at": m.at}))
                .collect();
            return Ok(json_response(StatusCode::OK, &json!({ "messages": messages })));
        }
        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteRequest {
    capability_id: String,
    #[serde(default = "empty_object")]
    inputs: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// `POST /v1/agent/execute`: the gate, the step, the capability.
async fn execute(daemon: &Arc<Daemon>, run_id: &str, request: Request<Incoming>) -> Result<Response, ApiError> {
    let body: ExecuteRequest = parse_json(&read_body(request).await?)?;
    if body.capability_id.is_empty() {
        return Err(ApiError::bad_field("capability_id", "must not be empty"));
    }
    // Past the gate the call is a step taken: it runs to its result and
    // audit even if the agent hangs up before the answer.
    let (daemon, run) = (daemon.clone(), run_id.to_owned());
    let executed = to_the_end(async move { daemon.execute(&run, &body.capability_id, body.inputs).await }).await?;
    let answer = match executed {
        Executed::Done { step_id, output } => {
            (StatusCode::OK, json!({"success": true, "step_id": step_id, "output": output}))
        }
        Executed::Refused(refusal) => {
            let (status, message, missing) = refusal_answer(&refusal);
            let mut error = json!({"code": refusal.code(), "message": message});
            if let Some(missing) = missing {
                error["missing"] = json!(missing);
            }
            (StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT), json!({"success": false, "error": error}))
        }
        Executed::Failed { step_id, message } => (
            StatusCode::BAD_GATEWAY,
            json!({"success": false, "step_id": step_id,
                   "error": {"code": "capability_failed", "message": message}}),
        ),
    };
    Ok(json_response(answer.0, &answer.1))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentTransition {
    state: String,
    reason: Option<String>,
}

/// `POST /v1/agent/transition`: the same state machine as the admin's,
/// as the agent (whose `done` the predicate may refuse), to four states.
async fn transition(daemon: &Arc<Daemon>, run_id: &str, request: Request<Incoming>) -> Result<Response, ApiError> {
    let body: AgentTransition = parse_json(&read_body(request).await?)?;
    let to = body.state.parse::<RunState>().map_err(|e| ApiError::bad_field("state", e.to_string()))?;
    if !AGENT_TARGETS.contains(&to) {
        return Err(ApiError::bad_field(
            "state",
            format!("an agent may move its run to done, failed, paused_approval or paused_external_event, not {to}"),
        ));
    }
    let actor = Actor::Agent { run_id: run_id.to_owned() };
    let (daemon, run) = (daemon.clone(), run_id.to_owned());
    let moved = to_the_end(async move { daemon.transition(run, to, body.reason, None, actor).await }).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"run_id": moved.run.id, "previous_state": moved.previous_state, "state": moved.run.state}),
    ))
}
