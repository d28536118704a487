//! `/v1/runs` and `/v1/runs/{id}/...`: create, list, get, cancel,
//! transition, logs (whole or followed), wait, actions.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::body::{
    json_response, number_param, param, parse_json, query_params, read_body, streaming_response, text_response,
    Response,
};
use super::error::ApiError;
use super::to_the_end;
use crate::daemon::Daemon;
use crate::lifecycle::RunState;
use crate::model::{Actor, BudgetPatch, CreateRunRequest};
use crate::store::{RunFilter, Transitioned, DEFAULT_LIMIT};

/// `wait` answers at the latest after this long, whatever it is asked.
pub const MAX_WAIT_SECS: u64 = 3600;
/// `wait` without `timeout_secs`.
pub const DEFAULT_WAIT_SECS: u64 = 30;

pub async fn create(daemon: &Arc<Daemon>, request: Request<Incoming>, actor: Actor) -> Result<Response, ApiError> {
    let body: CreateRunRequest = parse_json(&read_body(request).await?)?;
    let daemon = daemon.clone();
    let run = to_the_end(async move { daemon.create_run(body, actor).await }).await?;
    Ok(json_response(StatusCode::CREATED, &run))
}

pub async fn list(daemon: &Arc<Daemon>, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["session_id", "state", "limit"])?;
    let state = param(&params, "state")
        .map(|s| s.parse::<RunState>().map_err(|e| ApiError::bad_field("state", e.to_string())))
        .transpose()?;
    let filter = RunFilter {
        session_id: param(&params, "session_id").map(str::to_owned),
        state,
        limit: number_param(&params, "limit")?.unwrap_or(DEFAULT_LIMIT),
    };
    let runs = daemon.db(move |store| store.list_runs(&filter)).await?;
    let runs: Vec<_> = runs.into_iter().map(crate::model::Run::with_live_usage).collect();
    Ok(json_response(StatusCode::OK, &json!({ "runs": runs })))
}

pub async fn get(daemon: &Arc<Daemon>, run_id: &str, query: Option<&str>) -> Result<Response, ApiError> {
    query_params(query, &[])?;
    let id = run_id.to_owned();
    let run = daemon.db(move |store| store.get_run(&id)).await?.with_live_usage();
    Ok(json_response(StatusCode::OK, &run))
}

fn transitioned(moved: &Transitioned) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"run_id": moved.run.id, "previous_state": moved.previous_state, "state": moved.run.state}),
    )
}

/// No body needed; one that is sent is read (and capped) but ignored.
pub async fn cancel(
    daemon: &Arc<Daemon>,
    run_id: &str,
    request: Request<Incoming>,
    actor: Actor,
) -> Result<Response, ApiError> {
    read_body(request).await?;
    let (daemon, run_id) = (daemon.clone(), run_id.to_owned());
    let moved = to_the_end(async move { daemon.cancel(run_id, actor).await }).await?;
    Ok(transitioned(&moved))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionRequest {
    state: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    budget: Option<BudgetPatch>,
}

pub async fn transition(
    daemon: &Arc<Daemon>,
    run_id: &str,
    request: Request<Incoming>,
    actor: Actor,
) -> Result<Response, ApiError> {
    let body: TransitionRequest = parse_json(&read_body(request).await?)?;
    let to = body.state.parse::<RunState>().map_err(|e| ApiError::bad_field("state", e.to_string()))?;
    let (daemon, run_id) = (daemon.clone(), run_id.to_owned());
    let moved = to_the_end(async move { daemon.transition(run_id, to, body.reason, body.budget, actor).await }).await?;
    Ok(transitioned(&moved))
}

pub async fn logs(daemon: &Arc<Daemon>, run_id: &str, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["stream", "follow"])?;
    let stream = match param(&params, "stream").unwrap_or("stdout") {
        s @ ("stdout" | "stderr") => s,
        other => {
            return Err(ApiError::bad_field("stream", format!("`stream` must be stdout or stderr, got {other:?}")))
        }
    };
    let follow = match param(&params, "follow").unwrap_or("false") {
        "false" | "0" => false,
        "true" | "1" => true,
        other => return Err(ApiError::bad_field("follow", format!("`follow` must be true or false, got {other:?}"))),
    };
    let id = run_id.to_owned();
    daemon.db(move |store| store.get_run(&id)).await?;
    let path = daemon.log_path(run_id, stream);
    if follow {
        let (response, tx) = streaming_response("text/plain; charset=utf-8");
        let (daemon, run_id) = (daemon.clone(), run_id.to_owned());
        tokio::spawn(async move { follow_log(&daemon, &run_id, &path, &tx).await });
        return Ok(response);
    }
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("reading {}: {e}", path.display()),
            ))
        }
    };
    Ok(text_response(StatusCode::OK, bytes))
}

/// How often a followed log is polled for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// A terminal run whose exit is not recorded (never spawned, or the jail
/// is slow to go) is followed at most this much longer.
const FOLLOW_GRACE: Duration = Duration::from_secs(3);

/// Sends what is in `path`, then what is appended to it, until the run is
/// terminal (and its jail gone) and the file is drained, or the client goes.
async fn follow_log(
    daemon: &Arc<Daemon>,
    run_id: &str,
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<bytes::Bytes>,
) {
    use tokio::io::AsyncReadExt;
    let mut file: Option<tokio::fs::File> = None;
    let mut terminal_since: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Decided before reading, so the bytes written before the end are read.
        let ended = match terminal_since {
            Some(at) => at.elapsed() >= FOLLOW_GRACE,
            None => false,
        };
        let id = run_id.to_owned();
        let finished = match daemon.db(move |store| store.get_run(&id)).await {
            Ok(run) if run.state.is_terminal() => {
                terminal_since.get_or_insert_with(tokio::time::Instant::now);
                run.exit.is_some() || ended
            }
            Ok(_) => false,
            Err(_) => true,
        };
        if file.is_none() {
            file = tokio::fs::File::open(path).await.ok();
        }
        if let Some(f) = file.as_mut() {
            loop {
                match f.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(bytes::Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if finished {
            return;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

/// `actions`: 200 by default, at most 2000.
pub async fn actions(daemon: &Arc<Daemon>, run_id: &str, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["limit"])?;
    let limit = number_param::<u32>(&params, "limit")?.unwrap_or(DEFAULT_LIMIT);
    let id = run_id.to_owned();
    let events = daemon
        .db(move |store| {
            store.get_run(&id)?;
            store.capability_calls(&id, limit)
        })
        .await?;
    let actions: Vec<_> = events
        .iter()
        .map(|(e, success)| {
            json!({
                "seq": e.seq,
                "step_id": e.step_id,
                "capability_id": e.detail.get("capability_id"),
                "decision": e.decision,
                "success": success,
                "at": e.at,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "run_id": run_id, "actions": actions })))
}

/// Answers the run once it is terminal, or as it is at the timeout.
pub async fn wait(daemon: &Arc<Daemon>, run_id: &str, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["timeout_secs"])?;
    let secs = number_param::<u64>(&params, "timeout_secs")?.unwrap_or(DEFAULT_WAIT_SECS).min(MAX_WAIT_SECS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut changes = daemon.subscribe();
    loop {
        changes.borrow_and_update();
        let id = run_id.to_owned();
        let run = daemon.db(move |store| store.get_run(&id)).await?;
        if run.state.is_terminal() {
            return Ok(json_response(StatusCode::OK, &run));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return Ok(json_response(StatusCode::OK, &run)),
        }
    }
}
