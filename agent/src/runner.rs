//! The reference agent's loop: read the run, read the inbox, ask the planner
//! for a step, execute it, and react to the answer; finish when the planner
//! has nothing left. The planner only plans: pausing for the user, waiting
//! out a pause, the agent's own budget, and how to finish under the run's
//! completion predicate are all decided here.
//!
//! The supervisor freezes a paused run's jail, so "waiting" mostly means
//! being frozen mid-request; every wait therefore re-reads the run after it
//! returns rather than trusting what it knew before.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::budget::{AgentBudget, AgentBudgetExceeded};
use crate::client::AgentApi;
use crate::error::{ExecuteError, RequestError, TransitionError};
use crate::planner::{CallError, Calls, Context, PlanError, Planner, Step, StepResult};
use crate::types::{BudgetPolicy, CompletionPredicate, ExecuteOk, InboxMessage, RunState, RunView};

/// The `state_reason` of a pause for missing inputs (API.md).
pub const AWAITING_USER_INPUT: &str = "awaiting_user_input";

/// How the runner behaves; [`Default`] is the reference agent's defaults.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The agent's own limit on capability calls per window (planner calls included).
    pub max_steps: Option<u64>,
    /// The agent's own limit on working time per window (paused time excluded).
    pub max_duration: Option<Duration>,
    /// What to do when the agent's own budget runs out; `None` follows the
    /// run's `budget_policy`, and `hard_stop` when the run has none.
    pub budget_policy: Option<BudgetPolicy>,
    /// How long one inbox long-poll may wait.
    pub inbox_wait_secs: u64,
    /// Polling a paused run starts at `poll_min` and doubles up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
}

impl Default for RunnerOptions {
    fn default() -> RunnerOptions {
        RunnerOptions {
            max_steps: None,
            max_duration: None,
            budget_policy: None,
            inbox_wait_secs: 20,
            poll_min: Duration::from_millis(200),
            poll_max: Duration::from_secs(2),
        }
    }
}

/// How the run ended, as far as this agent saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub state: RunState,
    pub reason: Option<String>,
}

impl Ended {
    /// 0 for `done`, 1 for `failed` or `cancelled`.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.state != RunState::Done)
    }
}

/// The supervisor could not be talked to, or answered outside the contract:
/// the agent cannot tell what state its run is in, so it stops.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("reading the run: {0}")]
    Read(#[from] RequestError),
    #[error("executing a step: {0}")]
    Execute(ExecuteError),
    #[error("changing the run's state: {0}")]
    Transition(TransitionError),
}

/// How to finish once the planner has nothing left, by predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Ask for `done`; if the predicate refuses it after all, do `on_refusal`.
    Done { on_refusal: Refusal },
    /// Do not ask: only the admin can end the run (`manual`), or nobody can
    /// finish it (`never`). Wait until it is no longer active.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fail the run with `predicate_unsatisfied`.
    Fail,
    /// Wait like [`Finish::Wait`].
    Wait,
}

/// The finishing decision for `predicate`, given the capabilities that
/// succeeded in this process.
pub fn finish_decision(predicate: &CompletionPredicate, succeeded: &BTreeSet<String>) -> Finish {
    match predicate {
        CompletionPredicate::Always => Finish::Done { on_refusal: Refusal::Wait },
        CompletionPredicate::CapabilitySucceeded(id) if succeeded.contains(id) => {
            Finish::Done { on_refusal: Refusal::Wait }
        }
        // It may have succeeded before this process (the supervisor knows):
        // ask, and if not, no one can finish the run, so fail it.
        CompletionPredicate::CapabilitySucceeded(_) => Finish::Done { on_refusal: Refusal::Fail },
        CompletionPredicate::Manual | CompletionPredicate::Never => Finish::Wait,
        // Unknown to this agent: the supervisor decides; a refusal is not
        // the agent's to turn into a failure.
        CompletionPredicate::Other(_) => Finish::Done { on_refusal: Refusal::Wait },
    }
}

/// Runs the run to its end with `planner`.
pub fn run_to_completion<A: AgentApi, P: Planner + ?Sized>(
    api: &A,
    planner: &mut P,
    options: &RunnerOptions,
) -> Result<Ended, RunnerError> {
    let mut runner = Runner {
        api,
        options,
        budget: AgentBudget::new(options.max_steps, options.max_duration),
        run: api.run()?,
        messages: Vec::new(),
        succeeded: BTreeSet::new(),
        refusals: 0,
    };
    log!(
        "run {} (session {}): predicate {}, budget policy {}; goal: {}",
        runner.run.id,
        runner.run.session_id,
        runner.run.completion_predicate.as_deref().unwrap_or("always"),
        runner.run.budget_policy.as_deref().unwrap_or("unset"),
        runner.run.goal.lines().next().unwrap_or_default(),
    );
    loop {
        if let Flow::End(ended) = runner.turn(planner)? {
            log!(
                "run {} ended {}{}",
                runner.run.id,
                ended.state,
                ended.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
            return Ok(ended);
        }
    }
}

enum Flow {
    Continue,
    End(Ended),
}

struct Runner<'a, A> {
    api: &'a A,
    options: &'a RunnerOptions,
    budget: AgentBudget,
    run: RunView,
    messages: Vec<InboxMessage>,
    succeeded: BTreeSet<String>,
    /// Refusals in a row for the run's state: the backoff before retrying.
    refusals: u32,
}

/// Every capability call goes through here: the agent's own budget first,
/// then the supervisor; calls the supervisor let through are counted.
struct Gate<'a, A> {
    api: &'a A,
    budget: &'a AgentBudget,
}

impl<A: AgentApi> Calls for Gate<'_, A> {
    fn call(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, CallError> {
        self.budget.check()?;
        let result = self.api.execute(capability_id, inputs);
        // What the supervisor counts: allowed calls, failed or not.
        if matches!(result, Ok(_) | Err(ExecuteError::CapabilityFailed { .. })) {
            self.budget.count_step();
        }
        Ok(result?)
    }
}

impl<A: AgentApi> Runner<'_, A> {
    /// One round: look at the run, then plan and execute one step.
    fn turn<P: Planner + ?Sized>(&mut self, planner: &mut P) -> Result<Flow, RunnerError> {
        self.refresh()?;
        if self.run.state != RunState::Active {
            return self.wait_until_active();
        }
        // The agent's own budget is checked by the gate, at each call: a
        // plan that is complete may still finish with its budget used up.
        let gate = Gate { api: self.api, budget: &self.budget };
        let ctx = Context { run: &self.run, messages: &self.messages, succeeded: &self.succeeded, calls: &gate };
        let step = match planner.next(&ctx) {
            Ok(Some(step)) => step,
            Ok(None) => return self.finish(),
            Err(PlanError::Call(e)) => return self.planner_call_failed(e),
            Err(PlanError::StepFailed { number, capability_id, code, message }) => {
                log!("step {number} (`{capability_id}`) failed with {code}: {message}; the plan cannot go on");
                return self.fail(format!("step_failed:{capability_id}:{code}"));
            }
        };
        let id = step.capability_id.clone();
        match gate.call(&id, step.inputs.clone()) {
            Ok(ok) => {
                self.refusals = 0;
                log!("step {}: `{id}` succeeded", ok.step_id);
                self.succeeded.insert(id);
                planner.on_result(&step, &StepResult::Succeeded { step_id: ok.step_id, output: ok.output });
                Ok(Flow::Continue)
            }
            Err(CallError::AgentBudget(exceeded)) => self.own_budget_exhausted(exceeded),
            Err(CallError::Execute(ExecuteError::MissingInput { missing, .. })) => {
                match self.ask_user(&step, &missing)? {
                    Ok(answer) => {
                        planner.on_result(&step, &StepResult::Answered { missing, answer });
                        Ok(Flow::Continue)
                    }
                    Err(flow) => Ok(flow),
                }
            }
            Err(CallError::Execute(e)) if e.is_refused_for_run_state() => Ok(self.refused(&e)),
            Err(CallError::Execute(e)) if e.is_transport_or_protocol() => Err(RunnerError::Execute(e)),
            Err(CallError::Execute(e)) => {
                log!("{e}");
                planner.on_result(&step, &StepResult::Failed { code: e.code().to_owned(), message: e.to_string() });
                Ok(Flow::Continue)
            }
        }
    }

    /// Re-reads the run and takes any new messages, without waiting.
    fn refresh(&mut self) -> Result<(), RunnerError> {
        self.run = self.api.run()?;
        let fresh = self.inbox(0)?;
        self.messages.extend(fresh);
        Ok(())
    }

    /// New messages; a long-poll that times out (the jail was frozen through
    /// it, say) is just "none yet".
    fn inbox(&self, wait_secs: u64) -> Result<Vec<InboxMessage>, RunnerError> {
        match self.api.inbox(wait_secs) {
            Err(e) if e.is_timeout() => Ok(Vec::new()),
            result => Ok(result?),
        }
    }

    fn ended(&self) -> Ended {
        Ended { state: self.run.state.clone(), reason: self.run.state_reason.clone() }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.options.poll_min.saturating_mul(factor).min(self.options.poll_max)
    }

    /// The run is paused (or queued): poll it until it is active again or
    /// over. An approval opens a fresh window for the agent's own budget, as
    /// it does for the supervisor's; other pauses only stop the clock.
    fn wait_until_active(&mut self) -> Result<Flow, RunnerError> {
        log!(
            "run is {}{}; waiting",
            self.run.state,
            self.run.state_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
        let since = Instant::now();
        let mut approved = false;
        let mut attempt = 0;
        loop {
            approved |= self.run.state == RunState::PausedApproval;
            if self.run.state.is_terminal() {
                return Ok(Flow::End(self.ended()));
            }
            if self.run.state == RunState::Active {
                if approved {
                    self.budget.reset_window();
                } else {
                    self.budget.exclude(since.elapsed());
                }
                log!("run is active again");
                return Ok(Flow::Continue);
            }
            attempt += 1;
            std::thread::sleep(self.backoff(attempt));
            self.refresh()?;
        }
    }

    /// A step refused because the run is paused or out of budget: it was not
    /// counted, so the planner offers it again once the run is active.
    fn refused(&mut self, e: &ExecuteError) -> Flow {
        self.refusals += 1;
        log!("{e}");
        std::thread::sleep(self.backoff(self.refusals));
        Flow::Continue
    }

    /// Pauses the run for the user's answer, then waits for a message. The
    /// supervisor resumes the run when one comes in; the newest message is
    /// the answer (older ones were sent before the question). `Err` carries
    /// what to do when there is no answer to give the planner.
    fn ask_user(&mut self, step: &Step, missing: &[String]) -> Result<Result<String, Flow>, RunnerError> {
        let id = &step.capability_id;
        log!("`{id}` needs inputs that were not given: {}; pausing for the user's answer", missing.join(", "));
        match self.api.transition(RunState::PausedExternalEvent, Some(AWAITING_USER_INPUT)) {
            Ok(_) => {}
            Err(e) if e.is_transport_or_protocol() => return Err(RunnerError::Transition(e)),
            // The run moved meanwhile (paused, ended): look again.
            Err(e) => {
                log!("could not pause for input: {e}");
                self.refusals += 1;
                std::thread::sleep(self.backoff(self.refusals));
                return Ok(Err(Flow::Continue));
            }
        }
        let since = Instant::now();
        let mut attempt = 0;
        loop {
            let mut fresh = self.inbox(self.options.inbox_wait_secs)?;
            if fresh.is_empty() {
                self.run = self.api.run()?;
                if self.run.state.is_terminal() {
                    return Ok(Err(Flow::End(self.ended())));
                }
                if self.run.state == RunState::Active {
                    // The message that resumed it may have come in since the poll.
                    fresh = self.inbox(0)?;
                    if fresh.is_empty() {
                        log!("resumed without an answer; retrying `{id}` as it was");
                        self.budget.exclude(since.elapsed());
                        return Ok(Err(Flow::Continue));
                    }
                } else {
                    // A supervisor that answers the long-poll at once must
                    // not make this a busy loop.
                    attempt += 1;
                    std::thread::sleep(self.backoff(attempt));
                    continue;
                }
            }
            let answer = fresh.last().map(|m| m.text.clone()).unwrap_or_default();
            log!("answer received; retrying `{id}`");
            self.messages.extend(fresh);
            self.budget.exclude(since.elapsed());
            return Ok(Ok(answer));
        }
    }

    /// The agent's own budget ran out: fail, or pause for approval and carry
    /// on in a fresh window once approved.
    fn own_budget_exhausted(&mut self, exceeded: AgentBudgetExceeded) -> Result<Flow, RunnerError> {
        let policy = self.options.budget_policy.or_else(|| self.run.policy()).unwrap_or(BudgetPolicy::HardStop);
        log!("{exceeded}; budget policy {}", policy.as_str());
        let reason = exceeded.reason();
        if policy == BudgetPolicy::HardStop {
            return self.fail(reason);
        }
        match self.api.transition(RunState::PausedApproval, Some(&reason)) {
            Ok(answer) => {
                self.run.state = answer.state;
                self.run.state_reason = Some(reason);
                self.wait_until_active()
            }
            Err(e) if e.is_transport_or_protocol() => Err(RunnerError::Transition(e)),
            Err(e) => {
                log!("could not pause for approval: {e}");
                self.refusals += 1;
                std::thread::sleep(self.backoff(self.refusals));
                Ok(Flow::Continue)
            }
        }
    }

    /// A call the planner made to plan did not succeed.
    fn planner_call_failed(&mut self, e: CallError) -> Result<Flow, RunnerError> {
        match e {
            CallError::AgentBudget(exceeded) => self.own_budget_exhausted(exceeded),
            CallError::Execute(e) if e.is_refused_for_run_state() => Ok(self.refused(&e)),
            CallError::Execute(e) if e.is_transport_or_protocol() => Err(RunnerError::Execute(e)),
            CallError::Execute(e) => {
                log!("the planner cannot go on: {e}");
                self.fail(format!("planner_failed:{}", e.code()))
            }
        }
    }

    /// Moves the run to `failed` with `reason`.
    fn fail(&mut self, reason: String) -> Result<Flow, RunnerError> {
        log!("failing the run: {reason}");
        match self.api.transition(RunState::Failed, Some(&reason)) {
            Ok(_) => Ok(Flow::End(Ended { state: RunState::Failed, reason: Some(reason) })),
            Err(e @ TransitionError::InvalidTransition { .. }) => {
                // Already over (cancelled, say): report how it ended.
                self.run = self.api.run()?;
                if self.run.state.is_terminal() {
                    Ok(Flow::End(self.ended()))
                } else {
                    Err(RunnerError::Transition(e))
                }
            }
            Err(e) => Err(RunnerError::Transition(e)),
        }
    }

    /// The planner has nothing left: finish as the predicate allows.
    fn finish(&mut self) -> Result<Flow, RunnerError> {
        let predicate = self.run.predicate();
        let on_refusal = match finish_decision(&predicate, &self.succeeded) {
            Finish::Wait => return self.wait_for_admin(),
            Finish::Done { on_refusal } => on_refusal,
        };
        match self.api.transition(RunState::Done, None) {
            Ok(_) => Ok(Flow::End(Ended { state: RunState::Done, reason: None })),
            Err(TransitionError::PredicateUnsatisfied { message }) => {
                log!("`done` refused: {message}");
                match on_refusal {
                    Refusal::Fail => self.fail("predicate_unsatisfied".to_owned()),
                    Refusal::Wait => self.wait_for_admin(),
                }
            }
            Err(e) if e.is_transport_or_protocol() => Err(RunnerError::Transition(e)),
            // The run moved meanwhile: look again.
            Err(e) => {
                log!("could not finish: {e}");
                self.refusals += 1;
                std::thread::sleep(self.backoff(self.refusals));
                Ok(Flow::Continue)
            }
        }
    }

    /// Nothing to do and not ours to finish: wait until the run ends. A new
    /// message goes back to the planner, which may find more to do.
    fn wait_for_admin(&mut self) -> Result<Flow, RunnerError> {
        log!("plan complete; the run's predicate leaves finishing to the admin: waiting for the run to end");
        let mut attempt = 0;
        loop {
            let fresh = self.inbox(self.options.inbox_wait_secs)?;
            if !fresh.is_empty() {
                log!("{} new message(s); asking the planner again", fresh.len());
                self.messages.extend(fresh);
                return Ok(Flow::Continue);
            }
            self.run = self.api.run()?;
            if self.run.state.is_terminal() {
                return Ok(Flow::End(self.ended()));
            }
            // Only matters when the inbox answers at once instead of holding.
            attempt += 1;
            std::thread::sleep(self.backoff(attempt));
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
