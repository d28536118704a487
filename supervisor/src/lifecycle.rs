//! The run state machine: the states of API.md, the transition table written
//! down once as data ([`TRANSITIONS`]), and the rules that decide a run's
//! end. Everything that changes a run's state asks [`check_transition`];
//! nothing else knows the table.

pub mod budget;
mod predicate;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{ExitReason, RunExit};
pub use predicate::{CompletionPredicate, PredicateParseError, PredicateUnsatisfied};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Active,
    PausedApproval,
    PausedExternalEvent,
    Done,
    Failed,
    Cancelled,
}

use RunState::*;

/// API.md's transition table: from each state, where a run may go. A state
/// with no way out is terminal.
pub const TRANSITIONS: [(RunState, &[RunState]); 7] = [
    (Queued, &[Active, Cancelled]),
    (Active, &[PausedApproval, PausedExternalEvent, Done, Failed, Cancelled]),
    (PausedApproval, &[Active, Failed, Cancelled]),
    (PausedExternalEvent, &[Active, Failed, Cancelled]),
    (Done, &[]),
    (Failed, &[]),
    (Cancelled, &[]),
];

impl RunState {
    pub const ALL: [RunState; 7] = [Queued, Active, PausedApproval, PausedExternalEvent, Done, Failed, Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Queued => "queued",
            Active => "active",
            PausedApproval => "paused_approval",
            PausedExternalEvent => "paused_external_event",
            Done => "done",
            Failed => "failed",
            Cancelled => "cancelled",
        }
    }

    /// The states this one may move to.
    pub fn allowed_targets(self) -> &'static [RunState] {
        TRANSITIONS.iter().find(|(from, _)| *from == self).map_or(&[], |(_, to)| to)
    }

    /// Terminal states accept no transition; the jail is gone.
    pub fn is_terminal(self) -> bool {
        self.allowed_targets().is_empty()
    }

    /// Paused means frozen: the cgroup is frozen while the run is here.
    pub fn is_paused(self) -> bool {
        matches!(self, PausedApproval | PausedExternalEvent)
    }

    /// A run with a jail that may still exist: what a restarted supervisor
    /// must reconcile (queued runs have no jail yet; terminal ones none left).
    pub fn has_jail(self) -> bool {
        self == Active || self.is_paused()
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`RunState::ALL`]: 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run state `{input}`; expected one of: {}", state_list(&RunState::ALL))]
pub struct UnknownState {
    pub input: String,
}

impl FromStr for RunState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState { input: s.to_owned() })
    }
}

/// A transition the table does not allow: 409 `invalid_transition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_refusal(*.from, *.to))]
pub struct TransitionError {
    pub from: RunState,
    pub to: RunState,
}

fn describe_refusal(from: RunState, to: RunState) -> String {
    if from.is_terminal() {
        format!("cannot move the run from `{from}` to `{to}`: `{from}` is terminal")
    } else {
        format!(
            "cannot move the run from `{from}` to `{to}`; from `{from}` it may go to: {}",
            state_list(from.allowed_targets())
        )
    }
}

fn state_list(states: &[RunState]) -> String {
    states.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

pub fn can_transition(from: RunState, to: RunState) -> bool {
    from.allowed_targets().contains(&to)
}

pub fn check_transition(from: RunState, to: RunState) -> Result<(), TransitionError> {
    if can_transition(from, to) {
        Ok(())
    } else {
        Err(TransitionError { from, to })
    }
}

/// Where a run goes when its jail ends while the run is still `from` (not
/// terminal), and the `state_reason` it gets (API.md, "An agent process that
/// exits while its run is not terminal ends the run"). `done_allowed` says
/// whether the completion predicate lets the agent finish the run.
///
/// - exit 0: `done` (reason `agent_exited`) if the predicate allows it and
///   `done` is reachable from `from`, else `failed` with `agent_exited`;
/// - a non-zero exit or a signal: `failed` with `agent_exited:<code>`, where
///   a signal counts as 128+signal as a shell reports it;
/// - a limit the jail enforced: `failed` with that reason (`oom`,
///   `pids_limit`, `time_limit`, `budget_exceeded`, `spawn_failed`);
/// - `cancelled`: `cancelled`.
pub fn exit_outcome(from: RunState, exit: &RunExit, done_allowed: bool) -> (RunState, String) {
    match exit.reason {
        ExitReason::Exited | ExitReason::Signalled => {
            let code = exit.code.or(exit.signal.map(|s| 128 + s));
            match code {
                Some(0) if done_allowed && can_transition(from, Done) => (Done, "agent_exited".to_owned()),
                Some(0) => (Failed, "agent_exited".to_owned()),
                Some(n) => (Failed, format!("agent_exited:{n}")),
                None => (Failed, "agent_exited".to_owned()),
            }
        }
        ExitReason::Cancelled => (Cancelled, "cancelled".to_owned()),
        other => (Failed, other.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table of API.md, spelled out pair by pair independently of
    // TRANSITIONS, so a typo in either shows up here.
    const ALLOWED: &[(RunState, RunState)] = &[
        (Queued, Active),
        (Queued, Cancelled),
        (Active, PausedApproval),
        (Active, PausedExternalEvent),
        (Active, Done),
        (Active, Failed),
        (Active, Cancelled),
        (PausedApproval, Active),
        (PausedApproval, Failed),
        (PausedApproval, Cancelled),
        (PausedExternalEvent, Active),
        (PausedExternalEvent, Failed),
        (PausedExternalEvent, Cancelled),
    ];

    #[test]
    fn every_pair_is_allowed_exactly_when_the_table_says() {
        let mut allowed = 0;
        for from in RunState::ALL {
            for to in RunState::ALL {
                let expected = ALLOWED.contains(&(from, to));
                assert_eq!(can_transition(from, to), expected, "{from} -> {to}");
                assert_eq!(check_transition(from, to).is_ok(), expected, "{from} -> {to}");
                allowed += usize::from(expected);
            }
        }
        assert_eq!(allowed, ALLOWED.len());
    }

    #[test]
    fn terminal_states_accept_nothing() {
        let terminal: Vec<_> = RunState::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [Done, Failed, Cancelled]);
        for from in terminal {
            for to in RunState::ALL {
                let err = check_transition(from, to).unwrap_err();
                assert!(err.to_string().contains("is terminal"), "{err}");
            }
        }
    }

    #[test]
    fn refusal_says_what_is_allowed() {
        let err = check_transition(Queued, Done).unwrap_err();
        assert_eq!(err, TransitionError { from: Queued, to: Done });
        assert_eq!(
            err.to_string(),
            "cannot move the run from `queued` to `done`; from `queued` it may go to: active, cancelled"
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let err = "running".parse::<RunState>().unwrap_err().to_string();
        assert!(err.contains("`running`") && err.contains("paused_external_event"), "{err}");
    }

    #[test]
    fn jail_states() {
        let with_jail: Vec<_> = RunState::ALL.into_iter().filter(|s| s.has_jail()).collect();
        assert_eq!(with_jail, [Active, PausedApproval, PausedExternalEvent]);
    }

    fn exit(code: Option<i32>, signal: Option<i32>, reason: ExitReason) -> RunExit {
        RunExit { code, signal, reason }
    }

    #[test]
    fn exit_outcomes() {
        let ok = exit(Some(0), None, ExitReason::Exited);
        assert_eq!(exit_outcome(Active, &ok, true), (Done, "agent_exited".into()));
        assert_eq!(exit_outcome(Active, &ok, false), (Failed, "agent_exited".into()));
        // Paused runs cannot go to done, whatever the predicate says.
        assert_eq!(exit_outcome(PausedApproval, &ok, true), (Failed, "agent_exited".into()));
        let bad = exit(Some(3), None, ExitReason::Exited);
        assert_eq!(exit_outcome(Active, &bad, true), (Failed, "agent_exited:3".into()));
        let killed = exit(None, Some(9), ExitReason::Signalled);
        assert_eq!(exit_outcome(Active, &killed, true), (Failed, "agent_exited:137".into()));
        let oom = exit(None, Some(9), ExitReason::Oom);
        assert_eq!(exit_outcome(Active, &oom, true), (Failed, "oom".into()));
        let cancel = exit(None, Some(9), ExitReason::Cancelled);
        assert_eq!(exit_outcome(Active, &cancel, true), (Cancelled, "cancelled".into()));
        let spawn = exit(None, None, ExitReason::SpawnFailed);
        assert_eq!(exit_outcome(Active, &spawn, true), (Failed, "spawn_failed".into()));
    }
}
