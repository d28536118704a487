//! The gate's bookkeeping: deciding whether a capability call may run and
//! counting it, in one write transaction, so that two concurrent calls can
//! never both take the last step (writes are serialised; the second one
//! reads the first one's count). And the budget watcher's enforcement of the
//! budgets that run out with time alone.

use rusqlite::Transaction;

use super::runs::{load_run, move_run, save_run, to_value, Move, Transitioned};
use super::{audit, Result, Store};
use crate::audit::{capability_call, capability_result, types, NewAuditEvent};
use crate::capabilities::InputError;
use crate::lifecycle::budget::{self, Exhausted};
use crate::lifecycle::RunState;
use crate::model::{Actor, Run, Timestamp, Usage};

/// A call the gate let through: counted, audited, to be executed.
#[derive(Debug, Clone)]
pub struct Step {
    pub run: Run,
    /// `<run_id>-step-<n>`.
    pub step_id: String,
}

/// Why the gate refused a call. Every refusal is audited
/// (`capability.call`, decision `deny`, `reason` its code).
#[derive(Debug, Clone)]
pub enum Refusal {
    /// 409 `run_not_active`.
    RunNotActive { state: RunState },
    /// 409 `budget_exceeded`: the budget policy was applied (`moved`).
    BudgetExceeded { which: Exhausted, moved: Box<Transitioned> },
    /// 404 `unknown_capability`.
    UnknownCapability,
    /// 403 `capability_not_allowed`: not on the run's allowlist.
    NotAllowed,
    /// 422 `missing_input` / `invalid_input`.
    Input(InputError),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RunNotActive { .. } => "run_not_active",
            Refusal::BudgetExceeded { .. } => "budget_exceeded",
            Refusal::UnknownCapability => "unknown_capability",
            Refusal::NotAllowed => "capability_not_allowed",
            Refusal::Input(InputError::Missing(_)) => "missing_input",
            Refusal::Input(InputError::Invalid { .. }) => "invalid_input",
        }
    }
}

/// What the gate knows about the capability, decided outside the store
/// (the registry and the input schema): `None` if it does not exist.
pub type CapabilityCheck = Option<std::result::Result<(), InputError>>;

impl Store {
    /// The gate, in API.md's order: the run must be `active`; the budget
    /// must allow one more step (else the policy is applied); the
    /// capability must exist, be on the run's allowlist (if it has one) and
    /// its inputs validate; then the step is counted and audited as an
    /// allowed `capability.call`.
    ///
    /// `cpu_secs` is the run's CPU time as just read from its cgroup, if it
    /// could be. Returns `Ok(Err(refusal))` for a refusal, which is
    /// committed (its audit event, and the policy's move) like a success.
    pub fn begin_step(
        &self,
        run_id: &str,
        capability_id: &str,
        cpu_secs: Option<f64>,
        capability: CapabilityCheck,
    ) -> Result<std::result::Result<Step, Refusal>> {
        let now = Timestamp::now();
        let actor = Actor::Agent { run_id: run_id.to_owned() };
        self.write(|tx| {
            let mut run = load_run(tx, run_id)?;
            let deny =
                |tx: &Transaction<'_>, run: &Run, refusal: Refusal| -> Result<std::result::Result<Step, Refusal>> {
                    let event = capability_call(&actor, &run.session_id, &run.id, None, capability_id, false)
                        .with("reason", refusal.code());
                    audit::append(tx, event, now)?;
                    Ok(Err(refusal))
                };
            if run.state != RunState::Active {
                let state = run.state;
                return deny(tx, &run, Refusal::RunNotActive { state });
            }
            refresh_meters(&mut run, cpu_secs, now);
            if let Some(which) = budget::refuses_step(&run.budget, &run.usage) {
                let moved = apply_policy(tx, &mut run, which, &actor, now)?;
                return deny(tx, &moved.run.clone(), Refusal::BudgetExceeded { which, moved: Box::new(moved) });
            }
            let allowed = run.capabilities.as_ref().map_or(true, |ids| ids.iter().any(|id| id == capability_id));
            match capability {
                None => return deny(tx, &run, Refusal::UnknownCapability),
                Some(_) if !allowed => return deny(tx, &run, Refusal::NotAllowed),
                Some(Err(input)) => return deny(tx, &run, Refusal::Input(input)),
                Some(Ok(())) => {}
            }
            run.usage.steps += 1;
            let step_id = format!("{}-step-{}", run.id, run.usage.steps);
            run.current_step_id = Some(step_id.clone());
            run.updated_at = now;
            save_run(tx, &run)?;
            let event = capability_call(&actor, &run.session_id, &run.id, Some(&step_id), capability_id, true);
            audit::append(tx, event, now)?;
            Ok(Ok(Step { run, step_id }))
        })
    }

    /// Records how an allowed step ended (`capability.result`, with the
    /// executor's error and stderr, both already summarized), adding the
    /// tokens it reports to the run's usage.
    pub fn finish_step(
        &self,
        step: &Step,
        capability_id: &str,
        success: bool,
        tokens: u64,
        error: Option<&str>,
        stderr: Option<&str>,
    ) -> Result<Run> {
        let now = Timestamp::now();
        let actor = Actor::Agent { run_id: step.run.id.clone() };
        self.write(|tx| {
            let mut run = load_run(tx, &step.run.id)?;
            if tokens > 0 && run.budget_window_started_at == step.run.budget_window_started_at {
                run.usage.tokens = run.usage.tokens.saturating_add(tokens);
                run.updated_at = now;
                save_run(tx, &run)?;
            }
            let mut event = capability_result(&actor, &run.session_id, &run.id, &step.step_id, capability_id, success);
            if tokens > 0 {
                event = event.with("tokens", tokens);
            }
            if let Some(error) = error {
                event = event.with("error", error);
            }
            if let Some(stderr) = stderr {
                event = event.with("stderr", stderr);
            }
            audit::append(tx, event, now)?;
            Ok(run)
        })
    }

    /// The budget watcher's check of an `active` run: refreshes its wall
    /// and CPU time (and the peaks), and applies the budget policy if time
    /// alone (or the last step's tokens) used a budget up. `window` is the
    /// window the reading belongs to: a reading from before a fresh window
    /// opened is dropped. Returns the move if the policy was applied.
    pub fn enforce_budget(
        &self,
        run_id: &str,
        window: Option<Timestamp>,
        meters: Meters,
    ) -> Result<(Run, Option<(Exhausted, Transitioned)>)> {
        let now = Timestamp::now();
        self.write(|tx| {
            let mut run = load_run(tx, run_id)?;
            if run.state != RunState::Active || run.budget_window_started_at != window {
                return Ok((run, None));
            }
            let before = run.usage;
            refresh_meters(&mut run, meters.cpu_secs, now);
            run.usage.memory_peak_bytes = run.usage.memory_peak_bytes.max(meters.memory_peak_bytes.unwrap_or(0));
            run.usage.pids_peak = run.usage.pids_peak.max(meters.pids_peak.unwrap_or(0));
            if let Some(which) = budget::exhausted(&run.budget, &run.usage) {
                let actor = Actor::System;
                let moved = apply_policy(tx, &mut run, which, &actor, now)?;
                return Ok((moved.run.clone(), Some((which, moved))));
            }
            if meaningfully_changed(&before, &run.usage) {
                run.updated_at = now;
                save_run(tx, &run)?;
            }
            Ok((run, None))
        })
    }
}

/// What the budget watcher read from the run's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Meters {
    pub cpu_secs: Option<f64>,
    pub memory_peak_bytes: Option<u64>,
    pub pids_peak: Option<u64>,
}

/// Wall time in the window, from its start; CPU time in the window as the
/// caller read it (never backwards).
fn refresh_meters(run: &mut Run, cpu_secs: Option<f64>, now: Timestamp) {
    if let Some(start) = run.budget_window_started_at {
        run.usage.wall_secs = now.saturating_since(start).as_secs_f64();
    }
    if let Some(cpu) = cpu_secs {
        run.usage.cpu_secs = cpu.max(run.usage.cpu_secs);
    }
}

/// Whether a watcher reading is worth a write: idle runs change nothing
/// but their wall time, which is derived on read anyway.
fn meaningfully_changed(before: &Usage, after: &Usage) -> bool {
    (after.cpu_secs - before.cpu_secs).abs() >= 0.01
        || after.memory_peak_bytes != before.memory_peak_bytes
        || after.pids_peak != before.pids_peak
}

/// The budget policy, applied in the caller's transaction:
/// `run.budget_exceeded`, then the move (`failed` or `paused_approval`,
/// reason `budget_exceeded:<which>`).
fn apply_policy(
    tx: &Transaction<'_>,
    run: &mut Run,
    which: Exhausted,
    actor: &Actor,
    now: Timestamp,
) -> Result<Transitioned> {
    let event = NewAuditEvent::new(types::RUN_BUDGET_EXCEEDED, actor)
        .run(&run.session_id, &run.id)
        .with("budget", which.as_str())
        .with("policy", run.budget_policy.as_str())
        .with("usage", to_value(&run.usage)?);
    audit::append(tx, event, now)?;
    let reason = which.reason();
    let change =
        Move { to: budget::policy_target(run.budget_policy), reason: Some(&reason), fresh_window: false, budget: None };
    let previous_state = move_run(tx, run, &change, actor, now)?;
    Ok(Transitioned { previous_state, run: run.clone() })
}
