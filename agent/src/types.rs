//! What the agent API answers, as the agent sees it. Deserialized leniently:
//! unknown fields are ignored and most fields have defaults, so an agent built
//! against this SDK keeps working when the supervisor adds to the run object.

use std::fmt;
use std::str::FromStr;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// `GET /v1/agent/run`: the agent's own run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RunView {
    pub id: String,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub goal: String,
    pub state: RunState,
    /// Why the run is where it is, e.g. `budget_exceeded:steps`, `awaiting_user_input`.
    #[serde(default)]
    pub state_reason: Option<String>,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub usage: Usage,
    /// What is left of the budget in the current window. Read leniently (an
    /// answer this SDK does not understand is `None`), since API.md does not
    /// spell out its shape.
    #[serde(default, deserialize_with = "lenient")]
    pub remaining: Option<Remaining>,
    /// `always` when absent; see [`RunView::predicate`].
    #[serde(default)]
    pub completion_predicate: Option<String>,
    /// `hard_stop` or `pause_approval`; see [`RunView::policy`].
    #[serde(default)]
    pub budget_policy: Option<String>,
    /// Every other field of the run object, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl RunView {
    /// The completion predicate, parsed; absent means `always`.
    pub fn predicate(&self) -> CompletionPredicate {
        self.completion_predicate.as_deref().map(CompletionPredicate::parse).unwrap_or(CompletionPredicate::Always)
    }

    /// The run's budget policy, if it is one this SDK knows.
    pub fn policy(&self) -> Option<BudgetPolicy> {
        self.budget_policy.as_deref().and_then(|p| p.parse().ok())
    }
}

/// The run's limits; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(default)]
    pub max_steps: Option<u64>,
    #[serde(default)]
    pub max_duration_secs: Option<u64>,
    #[serde(default)]
    pub max_cpu_secs: Option<u64>,
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    #[serde(default)]
    pub max_pids: Option<u64>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// What the run has used in its current budget window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub steps: u64,
    pub tokens: u64,
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub memory_peak_bytes: u64,
    pub pids_peak: u64,
}

/// What is left of the budget; `None` is unlimited (or not reported).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remaining {
    pub steps: Option<u64>,
    pub duration_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub tokens: Option<u64>,
}

/// A run state (API.md "Run states"). A state this SDK does not know is kept
/// as [`RunState::Other`] rather than failing the whole answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum RunState {
    Queued,
    #[default]
    Active,
    PausedApproval,
    PausedExternalEvent,
    Done,
    Failed,
    Cancelled,
    Other(String),
}

impl RunState {
    pub fn as_str(&self) -> &str {
        match self {
            RunState::Queued => "queued",
            RunState::Active => "active",
            RunState::PausedApproval => "paused_approval",
            RunState::PausedExternalEvent => "paused_external_event",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Other(s) => s,
        }
    }

    /// `done`, `failed` or `cancelled`: nothing follows.
    pub fn is_terminal(&self) -> bool {
        matches!(self, RunState::Done | RunState::Failed | RunState::Cancelled)
    }

    pub fn is_paused(&self) -> bool {
        matches!(self, RunState::PausedApproval | RunState::PausedExternalEvent)
    }
}

impl From<&str> for RunState {
    fn from(s: &str) -> RunState {
        match s {
            "queued" => RunState::Queued,
            "active" => RunState::Active,
            "paused_approval" => RunState::PausedApproval,
            "paused_external_event" => RunState::PausedExternalEvent,
            "done" => RunState::Done,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            other => RunState::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RunState, D::Error> {
        Ok(RunState::from(String::deserialize(d)?.as_str()))
    }
}

/// Who may move the run to `done`, and when (API.md "Completion predicates").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionPredicate {
    /// The agent may finish the run.
    Always,
    /// Only the admin API may finish it; the agent's `done` is refused.
    Manual,
    /// `done` is refused to everyone.
    Never,
    /// `done` only after this capability succeeded in this run.
    CapabilitySucceeded(String),
    /// A predicate this SDK does not know, as sent.
    Other(String),
}

impl CompletionPredicate {
    pub fn parse(s: &str) -> CompletionPredicate {
        match s {
            "" | "always" => CompletionPredicate::Always,
            "manual" => CompletionPredicate::Manual,
            "never" => CompletionPredicate::Never,
            _ => match s.strip_prefix("capability_succeeded:") {
                Some(id) if !id.is_empty() => CompletionPredicate::CapabilitySucceeded(id.to_owned()),
                _ => CompletionPredicate::Other(s.to_owned()),
            },
        }
    }
}

/// What happens when a budget is used up: the supervisor's for its limits,
/// and the reference agent's for its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPolicy {
    /// The run fails.
    HardStop,
    /// The run waits in `paused_approval` until someone moves it back to `active`.
    PauseApproval,
}

impl BudgetPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPolicy::HardStop => "hard_stop",
            BudgetPolicy::PauseApproval => "pause_approval",
        }
    }
}

impl FromStr for BudgetPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<BudgetPolicy, String> {
        match s {
            "hard_stop" => Ok(BudgetPolicy::HardStop),
            "pause_approval" => Ok(BudgetPolicy::PauseApproval),
            _ => Err(format!("unknown budget policy `{s}`; expected hard_stop or pause_approval")),
        }
    }
}

/// One inbound message from `GET /v1/agent/inbox`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub sender: String,
    pub text: String,
    /// RFC 3339 UTC, as sent.
    #[serde(default)]
    pub at: String,
}

/// A capability call the supervisor allowed and that succeeded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecuteOk {
    pub step_id: String,
    #[serde(default)]
    pub output: Value,
}

/// The answer to a transition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransitionOk {
    #[serde(default)]
    pub run_id: String,
    pub previous_state: RunState,
    pub state: RunState,
}

/// `None` for a field whose value does not have the expected shape, instead
/// of failing the document around it.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_run_object_of_api_md_and_ignores_what_it_does_not_know() {
        let run: RunView = serde_json::from_value(json!({
            "id": "run_1", "session_id": "s", "goal": "say hi",
            "state": "paused_external_event", "state_reason": "awaiting_user_input",
            "agent": {"argv": ["ccos-agent"], "env": {}},
            "budget": {"max_steps": 50, "max_duration_secs": 300, "max_cpu_secs": null,
                       "max_memory_bytes": 268435456, "max_pids": 64, "max_tokens": null},
            "budget_policy": "pause_approval",
            "usage": {"steps": 2, "tokens": 0, "wall_secs": 1.5, "cpu_secs": 0.1,
                      "memory_peak_bytes": 0, "pids_peak": 0, "new_counter": 3},
            "remaining": {"steps": 48, "duration_secs": 298.5, "tokens": null},
            "completion_predicate": "capability_succeeded:chat.send",
            "brand_new_field": [1, 2]
        }))
        .unwrap();
        assert_eq!(run.state, RunState::PausedExternalEvent);
        assert!(run.state.is_paused() && !run.state.is_terminal());
        assert_eq!((run.budget.max_steps, run.budget.max_cpu_secs), (Some(50), None));
        assert_eq!(run.usage.steps, 2);
        assert_eq!(run.remaining.as_ref().and_then(|r| r.steps), Some(48));
        assert_eq!(run.predicate(), CompletionPredicate::CapabilitySucceeded("chat.send".into()));
        assert_eq!(run.policy(), Some(BudgetPolicy::PauseApproval));
        assert_eq!(run.other["brand_new_field"], json!([1, 2]));
    }

    #[test]
    fn a_minimal_run_defaults_and_an_odd_remaining_is_none() {
        let run: RunView =
            serde_json::from_value(json!({"id": "r", "state": "hibernating", "remaining": "lots"})).unwrap();
        assert_eq!(run.state, RunState::Other("hibernating".into()));
        assert_eq!(run.remaining, None);
        assert_eq!(run.predicate(), CompletionPredicate::Always);
        assert_eq!(run.policy(), None);
    }

    #[test]
    fn parses_predicates() {
        use CompletionPredicate as P;
        assert_eq!(P::parse("always"), P::Always);
        assert_eq!(P::parse("manual"), P::Manual);
        assert_eq!(P::parse("never"), P::Never);
        assert_eq!(P::parse("capability_succeeded:x.y"), P::CapabilitySucceeded("x.y".into()));
        assert_eq!(P::parse("capability_succeeded:"), P::Other("capability_succeeded:".into()));
        assert_eq!(P::parse("when_pigs_fly"), P::Other("when_pigs_fly".into()));
    }

    #[test]
    fn run_states_round_trip() {
        for s in ["queued", "active", "paused_approval", "paused_external_event", "done", "failed", "cancelled", "x"] {
            assert_eq!(serde_json::to_value(RunState::from(s)).unwrap(), json!(s));
        }
        assert!(RunState::Cancelled.is_terminal());
    }
}
