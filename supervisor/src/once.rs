//! `ccos-supervisor --once GOAL [-- AGENT ARGV]`: the whole daemon for one
//! run, start to end, then a summary and exit (0 if the run is `done`).
//! The README's first command: it shows a jailed agent acting only through
//! its agent socket, with the embedded defaults, on a machine where nothing
//! is installed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::daemon::Daemon;
use crate::model::{Actor, CreateRunRequest, Direction, Run};

/// How long a run started by `--once` may take before it is cancelled.
pub const ONCE_TIMEOUT: Duration = Duration::from_secs(300);

/// The run to make.
#[derive(Debug, Clone)]
pub struct Once {
    pub goal: String,
    /// The agent's argv; `None` for the default agent.
    pub argv: Option<Vec<String>>,
}

/// Creates the run, waits for its end (and its jail's), prints what
/// happened; true if it is `done`.
pub async fn run_once(daemon: &Arc<Daemon>, once: &Once) -> Result<bool, String> {
    let mut request = json!({"session_id": "once", "goal": once.goal});
    if let Some(argv) = &once.argv {
        request["agent"] = json!({ "argv": argv });
    }
    let request: CreateRunRequest = serde_json::from_value(request).map_err(|e| e.to_string())?;
    let run = daemon.create_run(request, Actor::System).await.map_err(|e| format!("creating the run: {e}"))?;
    println!("run {} ({}): {}", run.id, run.agent.argv.join(" "), run.state);
    let run = match tokio::time::timeout(ONCE_TIMEOUT, ended(daemon, &run.id)).await {
        Ok(run) => run?,
        Err(_) => {
            let _ = daemon.cancel(run.id.clone(), Actor::System).await;
            return Err(format!("run {} did not end within {ONCE_TIMEOUT:?}; cancelled", run.id));
        }
    };
    print_summary(daemon, &run).await;
    Ok(run.state == crate::lifecycle::RunState::Done)
}

/// The run once it is terminal and its jail's exit is recorded.
async fn ended(daemon: &Arc<Daemon>, run_id: &str) -> Result<Run, String> {
    let mut changes = daemon.subscribe();
    loop {
        changes.borrow_and_update();
        let id = run_id.to_owned();
        let run = daemon.db(move |store| store.get_run(&id)).await.map_err(|e| e.to_string())?;
        if run.state.is_terminal() && run.exit.is_some() {
            return Ok(run);
        }
        // Changes wake this; the timeout catches an exit recorded between
        // the read and the wait.
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
    }
}

async fn print_summary(daemon: &Arc<Daemon>, run: &Run) {
    let reason = run.state_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    println!(
        "state: {}{reason}; steps {}; profile {}",
        run.state,
        run.usage.steps,
        run.profile_hash.as_deref().unwrap_or("-")
    );
    for stream in ["stdout", "stderr"] {
        let text = std::fs::read_to_string(daemon.log_path(&run.id, stream)).unwrap_or_default();
        if !text.trim().is_empty() {
            println!("agent {stream}:");
            text.lines().for_each(|l| println!("  {l}"));
        }
    }
    let session = run.session_id.clone();
    if let Ok(messages) = daemon.list_messages(session, Some(Direction::Out)).await {
        for m in messages.iter().filter(|m| m.run_id.as_deref() == Some(run.id.as_str())) {
            println!("message to the session: {}", m.text);
        }
    }
    let id = run.id.clone();
    let events = daemon
        .db(move |store| {
            store.list_audit(&crate::store::AuditFilter { run_id: Some(id), limit: 2000, ..Default::default() })
        })
        .await
        .unwrap_or_default();
    println!("audit:");
    for e in events.iter().rev() {
        let capability = e.detail.get("capability_id").and_then(|c| c.as_str()).unwrap_or_default();
        let decision = e.decision.as_deref().unwrap_or_default();
        println!("  {:>4} {:<20} {decision:<5} {capability}", e.seq, e.event_type);
    }
    match daemon.db(|store| store.verify_audit()).await {
        Ok(v) => println!("audit chain: {} events, ok: {}", v.events, v.ok),
        Err(e) => println!("audit chain: {e}"),
    }
}
