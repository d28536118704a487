//! Budgets: which limit a run has used up, checked in API.md's order
//! (steps, duration, CPU seconds, tokens). Memory and pids are not here:
//! they are kernel limits on the run's cgroup, and hitting them ends the
//! jail (`oom`, `pids_limit`).
//!
//! Pure functions of the run's budget and usage, so the gate (one more
//! step?) and the budget watcher (still within the window?) decide alike.

use std::fmt;

use crate::lifecycle::RunState;
use crate::model::{Budget, BudgetPolicy, Usage};

/// A budget that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Steps,
    Duration,
    Cpu,
    Tokens,
}

impl Exhausted {
    pub fn as_str(self) -> &'static str {
        match self {
            Exhausted::Steps => "steps",
            Exhausted::Duration => "duration",
            Exhausted::Cpu => "cpu",
            Exhausted::Tokens => "tokens",
        }
    }

    /// The run's `state_reason`: `budget_exceeded:<which>`.
    pub fn reason(self) -> String {
        format!("budget_exceeded:{}", self.as_str())
    }
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first budget that does not allow one more step: with `max_steps =
/// N`, steps 1..N are allowed and N+1 is refused.
pub fn refuses_step(budget: &Budget, usage: &Usage) -> Option<Exhausted> {
    if budget.max_steps.is_some_and(|max| usage.steps >= max) {
        return Some(Exhausted::Steps);
    }
    exhausted(budget, usage)
}

/// The first of the budgets that run out with time alone (duration, CPU)
/// or were used up by the last step's tokens: what the watcher enforces
/// when the agent makes no call.
pub fn exhausted(budget: &Budget, usage: &Usage) -> Option<Exhausted> {
    if budget.max_duration_secs.is_some_and(|max| usage.wall_secs >= max as f64) {
        return Some(Exhausted::Duration);
    }
    if budget.max_cpu_secs.is_some_and(|max| usage.cpu_secs >= max as f64) {
        return Some(Exhausted::Cpu);
    }
    if budget.max_tokens.is_some_and(|max| usage.tokens >= max) {
        return Some(Exhausted::Tokens);
    }
    None
}

/// Where the policy sends a run whose budget ran out.
pub fn policy_target(policy: BudgetPolicy) -> RunState {
    match policy {
        BudgetPolicy::HardStop => RunState::Failed,
        BudgetPolicy::PauseApproval => RunState::PausedApproval,
    }
}

/// What is left of each budget, for the agent's view of its run; `None`
/// where there is no limit.
pub fn remaining(budget: &Budget, usage: &Usage) -> serde_json::Value {
    let left_f = |max: Option<u64>, used: f64| max.map(|m| (m as f64 - used).max(0.0));
    serde_json::json!({
        "steps": budget.max_steps.map(|m| m.saturating_sub(usage.steps)),
        "duration_secs": left_f(budget.max_duration_secs, usage.wall_secs),
        "cpu_secs": left_f(budget.max_cpu_secs, usage.cpu_secs),
        "tokens": budget.max_tokens.map(|m| m.saturating_sub(usage.tokens)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(steps: u64, wall: f64, cpu: f64, tokens: u64) -> Usage {
        Usage { steps, tokens, wall_secs: wall, cpu_secs: cpu, ..Usage::default() }
    }

    #[test]
    fn steps_one_to_n_pass_and_n_plus_one_is_refused() {
        let budget = Budget { max_steps: Some(3), ..Budget::UNLIMITED };
        for used in 0..3 {
            assert_eq!(refuses_step(&budget, &usage(used, 0.0, 0.0, 0)), None, "step {}", used + 1);
        }
        assert_eq!(refuses_step(&budget, &usage(3, 0.0, 0.0, 0)), Some(Exhausted::Steps));
        assert_eq!(refuses_step(&Budget::UNLIMITED, &usage(u64::MAX, 1e12, 1e12, u64::MAX)), None);
    }

    #[test]
    fn checked_in_order_steps_duration_cpu_tokens() {
        let all = Budget {
            max_steps: Some(1),
            max_duration_secs: Some(1),
            max_cpu_secs: Some(1),
            max_tokens: Some(1),
            ..Budget::UNLIMITED
        };
        assert_eq!(refuses_step(&all, &usage(1, 1.0, 1.0, 1)), Some(Exhausted::Steps));
        assert_eq!(refuses_step(&all, &usage(0, 1.0, 1.0, 1)), Some(Exhausted::Duration));
        assert_eq!(refuses_step(&all, &usage(0, 0.5, 1.0, 1)), Some(Exhausted::Cpu));
        assert_eq!(refuses_step(&all, &usage(0, 0.5, 0.5, 1)), Some(Exhausted::Tokens));
        assert_eq!(refuses_step(&all, &usage(0, 0.5, 0.5, 0)), None);
        // Time alone never spends steps.
        assert_eq!(exhausted(&all, &usage(5, 0.5, 0.5, 0)), None);
        assert_eq!(Exhausted::Cpu.reason(), "budget_exceeded:cpu");
    }

    #[test]
    fn remaining_is_floored_at_zero_and_null_when_unlimited() {
        let budget = Budget { max_steps: Some(2), max_duration_secs: Some(10), ..Budget::UNLIMITED };
        let left = remaining(&budget, &usage(5, 4.0, 0.0, 0));
        assert_eq!(left, serde_json::json!({"steps": 0, "duration_secs": 6.0, "cpu_secs": null, "tokens": null}));
    }
}
