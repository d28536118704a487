//! `ccos-agent`: the reference agent. Parses its options, picks a planner and
//! hands both to the runner; prints any error once, here, and maps the outcome
//! to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use ccos_agent::planner::llm::LlmPlanner;
use ccos_agent::planner::script::{load_script, ScriptPlanner};
use ccos_agent::planner::Planner;
use ccos_agent::runner::{run_to_completion, RunnerOptions};
use ccos_agent::{AgentClient, BudgetPolicy, DEFAULT_SOCKET};

const EXIT_CODES: &str = "\
Exit codes:
  0  the run is done
  1  the run ended failed or cancelled: by this agent (a step failed, its own budget
     ran out under hard_stop, the completion predicate cannot be met) or by the supervisor
  2  bad options or script
  3  the supervisor could not be reached, or answered outside the agent API";

/// Runs this jail's run to completion: reads the goal and the inbox, plans
/// steps, executes each as a capability call on the agent socket, pauses for
/// the user when a step lacks inputs, and finishes as the run's completion
/// predicate allows (under `manual` and `never` it waits for the run to end).
#[derive(Debug, Parser)]
#[command(name = "ccos-agent", version, after_help = EXIT_CODES)]
struct Options {
    /// How steps are chosen [default: script if --script is given, else llm]
    #[arg(long, env = "CCOS_AGENT_PLANNER", value_enum)]
    planner: Option<PlannerKind>,

    /// The script planner's steps: a file, or inline JSON such as
    /// '[{"capability_id": "run.note", "inputs": {"text": "hi"}}]'
    #[arg(long, env = "CCOS_AGENT_SCRIPT", value_name = "FILE_OR_JSON")]
    script: Option<String>,

    /// The agent's own limit on capability calls (the llm planner's included), on top of the run's budget
    #[arg(long, env = "CCOS_AGENT_MAX_STEPS", value_name = "N")]
    max_steps: Option<u64>,

    /// The agent's own limit on working time (paused time excluded), on top of the run's budget
    #[arg(long, env = "CCOS_AGENT_MAX_DURATION_SECS", value_name = "S")]
    max_duration_secs: Option<u64>,

    /// When the agent's own budget runs out: fail the run, or pause it for approval and go on
    /// in a fresh window once approved [default: the run's budget_policy]
    #[arg(long, env = "CCOS_AGENT_BUDGET_POLICY", value_enum)]
    budget_policy: Option<PolicyArg>,

    /// The run's agent socket
    #[arg(long, env = "CCOS_AGENT_SOCKET", value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// How long one inbox long-poll waits for a message
    #[arg(long, env = "CCOS_AGENT_INBOX_WAIT_SECS", value_name = "S", default_value_t = 20)]
    inbox_wait_secs: u64,

    /// The capability the llm planner asks the model through
    #[arg(long, env = "CCOS_AGENT_LLM_CAPABILITY", value_name = "ID", default_value = "llm.complete")]
    llm_capability: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlannerKind {
    /// A fixed list of steps (--script)
    Script,
    /// Ask a model for each step through --llm-capability
    Llm,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
enum PolicyArg {
    HardStop,
    PauseApproval,
}

fn main() -> ExitCode {
    let options = Options::parse();
    let mut planner: Box<dyn Planner> = match planner(&options) {
        Ok(planner) => planner,
        Err(message) => {
            eprintln!("ccos-agent: {message}");
            return ExitCode::from(2);
        }
    };
    let runner_options = RunnerOptions {
        max_steps: options.max_steps,
        max_duration: options.max_duration_secs.map(Duration::from_secs),
        budget_policy: options.budget_policy.map(|p| match p {
            PolicyArg::HardStop => BudgetPolicy::HardStop,
            PolicyArg::PauseApproval => BudgetPolicy::PauseApproval,
        }),
        inbox_wait_secs: options.inbox_wait_secs,
        ..RunnerOptions::default()
    };
    let client = AgentClient::new(&options.socket);
    match run_to_completion(&client, planner.as_mut(), &runner_options) {
        Ok(ended) => ExitCode::from(ended.exit_code()),
        Err(e) => {
            eprintln!("ccos-agent: {e}");
            ExitCode::from(3)
        }
    }
}

/// The planner the options ask for; a script is read (and checked) here,
/// before anything touches the run.
fn planner(options: &Options) -> Result<Box<dyn Planner>, String> {
    let kind = options.planner.unwrap_or(if options.script.is_some() { PlannerKind::Script } else { PlannerKind::Llm });
    match (kind, &options.script) {
        (PlannerKind::Script, Some(script)) => {
            let steps = load_script(script).map_err(|e| e.to_string())?;
            eprintln!("ccos-agent: script planner, {} step(s)", steps.len());
            Ok(Box::new(ScriptPlanner::new(steps)))
        }
        (PlannerKind::Script, None) => {
            Err("--planner script needs --script FILE_OR_JSON (or CCOS_AGENT_SCRIPT)".to_owned())
        }
        (PlannerKind::Llm, script) => {
            if script.is_some() {
                eprintln!("ccos-agent: --planner llm: ignoring --script");
            }
            eprintln!("ccos-agent: llm planner through `{}`", options.llm_capability);
            Ok(Box::new(LlmPlanner::new(&options.llm_capability)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Options::command().debug_assert();
    }

    #[test]
    fn the_planner_defaults_to_script_when_one_is_given() {
        let options = Options::try_parse_from(["ccos-agent", "--script", "[]"]).unwrap();
        assert!(planner(&options).is_ok());
        let options = Options::try_parse_from(["ccos-agent", "--planner", "script"]).unwrap();
        assert_eq!(
            planner(&options).err().unwrap(),
            "--planner script needs --script FILE_OR_JSON (or CCOS_AGENT_SCRIPT)"
        );
        let options = Options::try_parse_from(["ccos-agent", "--script", "[{]"]).unwrap();
        assert!(planner(&options).err().unwrap().starts_with("script (inline) is not valid at line 1, column 3"));
        let options = Options::try_parse_from(["ccos-agent", "--budget-policy", "pause_approval"]).unwrap();
        assert!(matches!(options.budget_policy, Some(PolicyArg::PauseApproval)));
    }
}
