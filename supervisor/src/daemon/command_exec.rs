//! The `command` executor: a capability carried out by a program on the
//! host, in a jail of its own (its own profile, limits and time limit),
//! never in the agent's. The call's inputs are its stdin (JSON); its stdout
//! is the output (JSON, size-limited); its stderr is kept, summarized, for
//! the audit. The program sees no secret: none is in its argv, environment
//! or files.

use std::path::PathBuf;
use std::sync::Arc;

use ccos_jail::{EndReason, Report};
use serde_json::Value;
use tokio::sync::oneshot;

use super::Daemon;
use crate::capabilities::CommandSpec;
use crate::spawner::{RunLimits, SpawnRequest};
use crate::store::Step;

/// A command's result: its JSON output, and its stderr (cut) for the audit.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    pub output: Value,
    pub stderr: String,
}

/// How much of a command's stderr is kept.
const STDERR_KEPT: usize = 4096;

impl Daemon {
    /// Runs `job` for the step, with `inputs` on its stdin; waits for its
    /// end. The error is a message for the agent and the audit.
    pub(super) async fn run_command(
        self: &Arc<Self>,
        step: &Step,
        job: &CommandSpec,
        inputs: &Value,
    ) -> Result<CommandResult, (String, String)> {
        let jail_id = format!("{}-cmd", step.step_id);
        let dir = self.run_dir(&step.run.id).join("steps").join(&step.step_id);
        let stdin = dir.join("stdin.json");
        let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
        let input = serde_json::to_vec(inputs).map_err(|e| (format!("encoding the inputs: {e}"), String::new()))?;
        let prepared = tokio::task::spawn_blocking({
            let (dir, stdin) = (dir.clone(), stdin.clone());
            move || -> std::io::Result<()> {
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&stdin)?;
                std::io::Write::write_all(&mut file, &input)
            }
        })
        .await;
        match prepared {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err((format!("preparing {}: {e}", dir.display()), String::new())),
            Err(e) => return Err((e.to_string(), String::new())),
        }

        let mut request = SpawnRequest::new(jail_id.clone(), job.argv.clone());
        request.profile = job.profile.clone();
        request.limits = RunLimits {
            memory_bytes: job.memory_bytes,
            pids: job.pids,
            cpus: None,
            time_limit_secs: Some(job.time_limit.as_secs_f64()),
        };
        request.stdin_path = Some(stdin);
        request.stdout_path = Some(stdout.clone());
        request.stderr_path = Some(stderr.clone());
        let (done, ended) = oneshot::channel();
        self.agents.expect_exit(&jail_id, done);
        if let Err(e) = self.spawner.spawn(request).await {
            self.agents.forget_exit(&jail_id);
            return Err((format!("starting the command: {e}"), String::new()));
        }
        let report = ended.await.map_err(|_| ("the command's jail was lost".to_owned(), String::new()))?;
        let stderr_text = read_cut(stderr, STDERR_KEPT).await;
        let outcome = outcome(&report, job);
        let stdout_text = match outcome {
            Ok(()) => read_limited(stdout, job.max_output_bytes).await,
            Err(e) => Err(e),
        };
        let parsed = stdout_text
            .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|e| format!("its output is not JSON: {e}")));
        match parsed {
            Ok(output) => Ok(CommandResult { output, stderr: stderr_text }),
            Err(message) => Err((message, stderr_text)),
        }
    }
}

/// Whether the command ended well: exit 0 within its limits.
fn outcome(report: &Report, job: &CommandSpec) -> Result<(), String> {
    match (report.reason, report.exit_code) {
        (EndReason::Exited, Some(0)) => Ok(()),
        (EndReason::Exited, Some(code)) => Err(format!("the command exited with {code}")),
        (EndReason::TimeLimit, _) => Err(format!("the command ran past its time limit ({:?})", job.time_limit)),
        (EndReason::Oom, _) => Err("the command ran out of memory".into()),
        (EndReason::PidsLimit, _) => Err("the command hit its process limit".into()),
        (EndReason::SpawnFailed, _) => {
            Err(format!("the command could not start: {}", report.error.as_ref().map_or("-".into(), |e| e.to_string())))
        }
        (reason, _) => Err(format!("the command ended: {reason:?}")),
    }
}

/// The file's text if it is at most `max` bytes.
async fn read_limited(path: PathBuf, max: u64) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > max {
            return Err(format!("its output is {size} bytes, over the limit of {max}"));
        }
        std::fs::read_to_string(&path).map_err(|e| format!("reading its output: {e}"))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

/// The start of the file's text, at most `max` bytes (on a char boundary).
async fn read_cut(path: PathBuf, max: usize) -> String {
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
        text.trim_end().to_owned()
    })
    .await
    .unwrap_or_default()
}
