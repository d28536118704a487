//! The API's data types, exactly as API.md names them: runs, budgets, usage,
//! exits, messages, audit events, and who acted. These are what the HTTP
//! layer serialises; the store reads and writes them; nothing here does I/O
//! except drawing random ids.
//!
//! Output types accept unknown fields when deserialised (a newer daemon may
//! add fields; old clients must still read it). The request types
//! ([`CreateRunRequest`] and its parts) refuse them (API.md: "Unknown
//! request fields: 400").

mod ids;
mod request;
mod time;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::lifecycle::{CompletionPredicate, RunState};
pub use ids::{new_id, MESSAGE_PREFIX, RUN_PREFIX};
pub use request::{
    is_profile_name, validate_session_id, AgentRequest, BudgetPatch, CreateRunRequest, NewRun, RequestError,
    RunDefaults, MAX_SESSION_ID_LEN,
};
pub use time::{Timestamp, TimestampError};

/// What runs inside the jail: the program and its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec { argv: vec!["ccos-agent".to_owned()], env: BTreeMap::new() }
    }
}

/// A run's limits. `None` (JSON `null`) means unlimited. Every field is
/// always written, so a client can tell "unlimited" from "unknown field".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub max_steps: Option<u64>,
    pub max_duration_secs: Option<u64>,
    pub max_cpu_secs: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub max_pids: Option<u64>,
    pub max_tokens: Option<u64>,
}

impl Budget {
    /// The shipped defaults: the values of API.md's example run.
    pub const DEFAULT: Budget = Budget {
        max_steps: Some(50),
        max_duration_secs: Some(300),
        max_cpu_secs: None,
        max_memory_bytes: Some(256 * 1024 * 1024),
        max_pids: Some(64),
        max_tokens: None,
    };

    pub const UNLIMITED: Budget = Budget {
        max_steps: None,
        max_duration_secs: None,
        max_cpu_secs: None,
        max_memory_bytes: None,
        max_pids: None,
        max_tokens: None,
    };

    /// `patch` laid field by field over `self`: a field the patch leaves out
    /// keeps its value here, a field given as `null` becomes unlimited, a
    /// field given a number takes it.
    pub fn merged(&self, patch: &BudgetPatch) -> Budget {
        let pick = |given: Option<Option<u64>>, current: Option<u64>| given.unwrap_or(current);
        Budget {
            max_steps: pick(patch.max_steps, self.max_steps),
            max_duration_secs: pick(patch.max_duration_secs, self.max_duration_secs),
            max_cpu_secs: pick(patch.max_cpu_secs, self.max_cpu_secs),
            max_memory_bytes: pick(patch.max_memory_bytes, self.max_memory_bytes),
            max_pids: pick(patch.max_pids, self.max_pids),
            max_tokens: pick(patch.max_tokens, self.max_tokens),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::DEFAULT
    }
}

/// What happens when a budget runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPolicy {
    /// The jail is killed and the run is `failed` (`budget_exceeded:<which>`).
    HardStop,
    /// The jail is frozen and the run is `paused_approval`.
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

impl fmt::Display for BudgetPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BudgetPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hard_stop" => Ok(BudgetPolicy::HardStop),
            "pause_approval" => Ok(BudgetPolicy::PauseApproval),
            other => Err(format!("unknown budget_policy `{other}`; expected hard_stop or pause_approval")),
        }
    }
}

/// What a run has used. `steps`, `tokens`, `wall_secs` and `cpu_secs` count
/// within the current budget window (an explicit transition to `active`
/// resets them); the peaks are for the whole run, since memory and pids are
/// kernel limits on the cgroup rather than budgets that a window renews.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub steps: u64,
    pub tokens: u64,
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub memory_peak_bytes: u64,
    pub pids_peak: u64,
}

impl Usage {
    /// The usage at the start of a fresh budget window: the window counters
    /// are zero, the whole-run peaks are kept.
    pub fn fresh_window(&self) -> Usage {
        Usage { memory_peak_bytes: self.memory_peak_bytes, pids_peak: self.pids_peak, ..Usage::default() }
    }
}

/// Why a run's jail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    Exited,
    Signalled,
    TimeLimit,
    Oom,
    PidsLimit,
    BudgetExceeded,
    Cancelled,
    SpawnFailed,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Exited => "exited",
            ExitReason::Signalled => "signalled",
            ExitReason::TimeLimit => "time_limit",
            ExitReason::Oom => "oom",
            ExitReason::PidsLimit => "pids_limit",
            ExitReason::BudgetExceeded => "budget_exceeded",
            ExitReason::Cancelled => "cancelled",
            ExitReason::SpawnFailed => "spawn_failed",
        }
    }
}

/// How a run's jail ended: `run.exit` once the jail is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: ExitReason,
}

/// One run, as `GET /v1/runs/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub session_id: String,
    pub goal: String,
    pub state: RunState,
    pub state_reason: Option<String>,
    pub agent: AgentSpec,
    pub profile: String,
    /// The compiled profile's hash (`sha256:…`), stamped by whoever compiled
    /// the profile for this run; `None` until then.
    pub profile_hash: Option<String>,
    pub budget: Budget,
    pub budget_policy: BudgetPolicy,
    pub usage: Usage,
    /// When the current budget window opened; `None` while the run has never
    /// been active (queued).
    pub budget_window_started_at: Option<Timestamp>,
    pub completion_predicate: CompletionPredicate,
    pub current_step_id: Option<String>,
    pub exit: Option<RunExit>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub metadata: Map<String, Value>,
    /// The capabilities the run may call; `None`: every one loaded.
    pub capabilities: Option<Vec<String>>,
}

impl Run {
    /// The run with its usage as of now: an `active` run's wall time runs
    /// on between the watcher's writes (the other meters are read from its
    /// cgroup by the watcher).
    pub fn with_live_usage(mut self) -> Run {
        if let (RunState::Active, Some(start)) = (self.state, self.budget_window_started_at) {
            self.usage.wall_secs = Timestamp::now().saturating_since(start).as_secs_f64();
        }
        self
    }
}

/// A message's direction, seen from the session's user: `in` goes to the
/// agent, `out` comes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            other => Err(format!("unknown direction `{other}`; expected in or out")),
        }
    }
}

/// One message of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub direction: Direction,
    pub sender: String,
    pub text: String,
    /// The run the message went to (in) or came from (out); `None` for an
    /// inbound message that arrived while the session had no run to take it.
    pub run_id: Option<String>,
    pub at: Timestamp,
}

/// One link of the audit chain. See [`crate::audit`] for how `hash` is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub event_type: String,
    pub actor: String,
    pub session_id: Option<String>,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub decision: Option<String>,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Who asked for something: the subject of authorisation and the `actor` of
/// its audit event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A client of the admin socket, known by its peer uid (SO_PEERCRED).
    Admin { uid: u32 },
    /// The agent of a run, known by the agent socket it connected to.
    Agent { run_id: String },
    /// The supervisor itself: timers, exits, reconciliation.
    System,
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        matches!(self, Actor::Admin { .. })
    }
}

/// The audit `actor` string: `uid:<n>`, `agent:<run_id>` or `system`.
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Admin { uid } => write!(f, "uid:{uid}"),
            Actor::Agent { run_id } => write!(f, "agent:{run_id}"),
            Actor::System => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_serialises_unlimited_as_null() {
        let json = serde_json::to_value(Budget::DEFAULT).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"max_steps": 50, "max_duration_secs": 300, "max_cpu_secs": null,
                               "max_memory_bytes": 268435456, "max_pids": 64, "max_tokens": null})
        );
    }

    #[test]
    fn fresh_window_keeps_only_the_peaks() {
        let used = Usage { steps: 9, tokens: 99, wall_secs: 1.5, cpu_secs: 0.5, memory_peak_bytes: 7, pids_peak: 3 };
        assert_eq!(used.fresh_window(), Usage { memory_peak_bytes: 7, pids_peak: 3, ..Usage::default() });
    }

    #[test]
    fn enums_use_the_api_spelling() {
        assert_eq!(serde_json::to_value(BudgetPolicy::PauseApproval).unwrap(), "pause_approval");
        assert_eq!(serde_json::to_value(ExitReason::PidsLimit).unwrap(), "pids_limit");
        assert_eq!(serde_json::to_value(Direction::Out).unwrap(), "out");
        for r in [ExitReason::Exited, ExitReason::SpawnFailed, ExitReason::TimeLimit] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!("hard_stop".parse::<BudgetPolicy>(), Ok(BudgetPolicy::HardStop));
        assert!("soft".parse::<BudgetPolicy>().is_err());
    }

    #[test]
    fn actor_strings() {
        assert_eq!(Actor::Admin { uid: 0 }.to_string(), "uid:0");
        assert_eq!(Actor::Agent { run_id: "run_1".into() }.to_string(), "agent:run_1");
        assert_eq!(Actor::System.to_string(), "system");
    }

    #[test]
    fn audit_event_field_is_named_type() {
        let e = AuditEvent {
            seq: 1,
            at: Timestamp::from_unix_micros(0),
            event_type: "run.create".into(),
            actor: "system".into(),
            session_id: None,
            run_id: None,
            step_id: None,
            decision: None,
            detail: serde_json::json!({}),
            prev_hash: "0".repeat(64),
            hash: "x".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "run.create");
        assert!(v.get("event_type").is_none());
    }
}
