//! The agent's own budget, on top of the supervisor's: at most so many
//! capability calls and so much working time per window. The supervisor's
//! limits protect the host; these let whoever starts the agent stop it
//! earlier, and stop it the agent's way (a clear `state_reason`).

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// Which of the agent's own limits ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Steps,
    Duration,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Steps => "steps",
            Limit::Duration => "duration",
        })
    }
}

/// The agent's own budget is used up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentBudgetExceeded {
    #[error("the agent's own step budget is used up (--max-steps {limit})")]
    Steps { limit: u64 },
    #[error("the agent's own time budget is used up (--max-duration-secs {})", limit.as_secs())]
    Duration { limit: Duration },
}

impl AgentBudgetExceeded {
    pub fn limit(&self) -> Limit {
        match self {
            AgentBudgetExceeded::Steps { .. } => Limit::Steps,
            AgentBudgetExceeded::Duration { .. } => Limit::Duration,
        }
    }

    /// The `state_reason` the agent gives when it stops or pauses for it.
    pub fn reason(&self) -> String {
        format!("agent_budget_exceeded:{}", self.limit())
    }
}

/// Counters for one budget window. Interior mutability, so the gate that
/// planners call through can count with a shared reference.
#[derive(Debug)]
pub struct AgentBudget {
    max_steps: Option<u64>,
    max_duration: Option<Duration>,
    steps: Cell<u64>,
    window_start: Cell<Instant>,
}

impl AgentBudget {
    /// `None` is unlimited.
    pub fn new(max_steps: Option<u64>, max_duration: Option<Duration>) -> AgentBudget {
        AgentBudget { max_steps, max_duration, steps: Cell::new(0), window_start: Cell::new(Instant::now()) }
    }

    /// Ok while another capability call fits.
    pub fn check(&self) -> Result<(), AgentBudgetExceeded> {
        if let Some(limit) = self.max_steps {
            if self.steps.get() >= limit {
                return Err(AgentBudgetExceeded::Steps { limit });
            }
        }
        if let Some(limit) = self.max_duration {
            if self.window_start.get().elapsed() >= limit {
                return Err(AgentBudgetExceeded::Duration { limit });
            }
        }
        Ok(())
    }

    /// One more call the supervisor let through.
    pub fn count_step(&self) {
        self.steps.set(self.steps.get() + 1);
    }

    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    /// A fresh window, as after an approval: counters to zero, clock restarted
    /// (like the supervisor's explicit transition to `active`).
    pub fn reset_window(&self) {
        self.steps.set(0);
        self.window_start.set(Instant::now());
    }

    /// Time spent paused is not work: the window's clock skips it. (The
    /// monotonic clock keeps running while the jail is frozen.)
    pub fn exclude(&self, paused: Duration) {
        let start = self.window_start.get();
        self.window_start.set(start.checked_add(paused).map_or(start, |s| s.min(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_steps_up_to_the_limit_and_resets() {
        let b = AgentBudget::new(Some(2), None);
        b.check().unwrap();
        b.count_step();
        b.count_step();
        let e = b.check().unwrap_err();
        assert_eq!(
            (e.reason().as_str(), e.to_string().as_str()),
            ("agent_budget_exceeded:steps", "the agent's own step budget is used up (--max-steps 2)")
        );
        b.reset_window();
        assert_eq!(b.steps(), 0);
        b.check().unwrap();
    }

    #[test]
    fn the_clock_runs_out_and_paused_time_is_skipped() {
        let b = AgentBudget::new(None, Some(Duration::from_millis(30)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.check().unwrap_err().reason(), "agent_budget_exceeded:duration");
        b.exclude(Duration::from_millis(40));
        b.check().unwrap();
        AgentBudget::new(None, None).check().unwrap();
    }
}
