//! The runner's decisions against an in-memory supervisor that keeps the
//! rules of API.md that matter to an agent: the transition table, predicates,
//! a step budget with its policy, and the resume on an inbound message.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::*;
use crate::planner::llm::LlmPlanner;
use crate::planner::script::ScriptPlanner;
use crate::transport::TransportError;
use crate::types::{Budget, TransitionOk};

type Hook = Box<dyn FnMut(&mut World)>;

/// The supervisor's side of one run.
struct World {
    run: RunView,
    inbox: VecDeque<InboxMessage>,
    /// Inputs each capability requires: absent ones are `missing_input`.
    required: HashMap<String, Vec<String>>,
    /// Answers for the next calls, in order; after them, success.
    answers: VecDeque<Result<ExecuteOk, ExecuteError>>,
    /// Every execute, refused or not.
    executed: Vec<(String, Value)>,
    succeeded: Vec<String>,
    transitions: Vec<(RunState, Option<String>)>,
    /// What the user sends when the run pauses for input.
    user_answer: Option<String>,
    reads: usize,
    fail_transport: bool,
}

struct Fake {
    world: RefCell<World>,
    /// Runs on every `run()` read: the admin's moves.
    on_read: RefCell<Option<Hook>>,
}

impl Fake {
    fn new(predicate: &str) -> Fake {
        let run = RunView {
            id: "run_1".into(),
            session_id: "sess_1".into(),
            goal: "say hi".into(),
            state: RunState::Active,
            completion_predicate: Some(predicate.into()),
            budget_policy: Some("hard_stop".into()),
            ..RunView::default()
        };
        let kickoff = InboxMessage {
            id: "m0".into(),
            sender: "system".into(),
            text: "Run started (run_1). Goal:\nsay hi".into(),
            at: String::new(),
        };
        Fake {
            world: RefCell::new(World {
                run,
                inbox: VecDeque::from([kickoff]),
                required: HashMap::new(),
                answers: VecDeque::new(),
                executed: Vec::new(),
                succeeded: Vec::new(),
                transitions: Vec::new(),
                user_answer: None,
                reads: 0,
                fail_transport: false,
            }),
            on_read: RefCell::new(None),
        }
    }

    fn with(self, f: impl FnOnce(&mut World)) -> Fake {
        f(&mut self.world.borrow_mut());
        self
    }

    fn on_read(self, hook: impl FnMut(&mut World) + 'static) -> Fake {
        *self.on_read.borrow_mut() = Some(Box::new(hook));
        self
    }

    fn transitions(&self) -> Vec<(String, Option<String>)> {
        self.world.borrow().transitions.iter().map(|(s, r)| (s.to_string(), r.clone())).collect()
    }

    fn executed(&self) -> Vec<(String, Value)> {
        self.world.borrow().executed.clone()
    }
}

fn refused(capability_id: &str, message: &str) -> ExecuteError {
    ExecuteError::RunNotActive { capability_id: capability_id.into(), message: message.into() }
}

impl AgentApi for Fake {
    fn run(&self) -> Result<RunView, RequestError> {
        if let Some(hook) = self.on_read.borrow_mut().as_mut() {
            hook(&mut self.world.borrow_mut());
        }
        let mut world = self.world.borrow_mut();
        if world.fail_transport {
            return Err(TransportError::Timeout { after: Duration::from_secs(30) }.into());
        }
        world.reads += 1;
        Ok(world.run.clone())
    }

    fn inbox(&self, _wait_secs: u64) -> Result<Vec<InboxMessage>, RequestError> {
        let mut world = self.world.borrow_mut();
        if world.run.state == RunState::PausedExternalEvent {
            if let Some(text) = world.user_answer.take() {
                // API.md: an inbound message resumes a paused_external_event run.
                world.inbox.push_back(InboxMessage { sender: "user".into(), text, ..Default::default() });
                world.run.state = RunState::Active;
                world.run.state_reason = None;
            }
        }
        Ok(world.inbox.drain(..).collect())
    }

    fn execute(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, ExecuteError> {
        let mut world = self.world.borrow_mut();
        world.executed.push((capability_id.to_owned(), inputs.clone()));
        if world.run.state != RunState::Active {
            return Err(refused(capability_id, "paused"));
        }
        if let Some(max) = world.run.budget.max_steps {
            if world.run.usage.steps >= max {
                world.run.state = RunState::PausedApproval;
                world.run.state_reason = Some("budget_exceeded:steps".into());
                return Err(ExecuteError::BudgetExceeded {
                    capability_id: capability_id.into(),
                    message: "steps".into(),
                });
            }
        }
        let missing: Vec<String> = world
            .required
            .get(capability_id)
            .into_iter()
            .flatten()
            .filter(|field| inputs.get(field.as_str()).is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ExecuteError::MissingInput {
                capability_id: capability_id.into(),
                missing,
                message: "required".into(),
            });
        }
        world.run.usage.steps += 1;
        let step_id = format!("st_{}", world.run.usage.steps);
        let answer = world.answers.pop_front().unwrap_or(Ok(ExecuteOk { step_id, output: json!({"ok": true}) }));
        if answer.is_ok() {
            world.succeeded.push(capability_id.to_owned());
        }
        answer
    }

    fn transition(&self, state: RunState, reason: Option<&str>) -> Result<TransitionOk, TransitionError> {
        let mut world = self.world.borrow_mut();
        let from = world.run.state.clone();
        let allowed = match (&from, &state) {
            (RunState::Active, to) => to.is_terminal() || to.is_paused(),
            (RunState::PausedApproval | RunState::PausedExternalEvent, to) => {
                matches!(to, RunState::Active | RunState::Failed | RunState::Cancelled)
            }
            _ => false,
        };
        if !allowed {
            return Err(TransitionError::InvalidTransition { message: format!("{from} -> {state}") });
        }
        if state == RunState::Done {
            let ok = match world.run.predicate() {
                CompletionPredicate::Always => true,
                CompletionPredicate::CapabilitySucceeded(id) => world.succeeded.contains(&id),
                _ => false,
            };
            if !ok {
                return Err(TransitionError::PredicateUnsatisfied { message: "not yet".into() });
            }
        }
        world.transitions.push((state.clone(), reason.map(str::to_owned)));
        world.run.state = state.clone();
        world.run.state_reason = reason.map(str::to_owned);
        Ok(TransitionOk { run_id: "run_1".into(), previous_state: from, state })
    }
}

fn options() -> RunnerOptions {
    RunnerOptions {
        inbox_wait_secs: 0,
        poll_min: Duration::from_millis(1),
        poll_max: Duration::from_millis(2),
        ..RunnerOptions::default()
    }
}

fn script(steps: Value) -> ScriptPlanner {
    ScriptPlanner::new(serde_json::from_value(steps).unwrap())
}

fn two_notes() -> ScriptPlanner {
    script(
        json!([{"capability_id": "run.note", "inputs": {"text": "a"}}, {"capability_id": "run.note", "inputs": {"text": "b"}}]),
    )
}

fn done() -> (String, Option<String>) {
    ("done".into(), None)
}

#[test]
fn a_script_runs_in_order_and_the_run_is_done() {
    let fake = Fake::new("always");
    let ended = run_to_completion(&fake, &mut two_notes(), &options()).unwrap();
    assert_eq!((ended.state.clone(), ended.exit_code()), (RunState::Done, 0));
    let texts: Vec<Value> = fake.executed().into_iter().map(|(_, inputs)| inputs["text"].clone()).collect();
    assert_eq!(texts, [json!("a"), json!("b")]);
    assert_eq!(fake.transitions(), [done()]);
}

#[test]
fn missing_input_pauses_for_the_user_and_retries_with_the_answer() {
    let fake = Fake::new("always").with(|w| {
        w.required.insert("mail.send".into(), vec!["subject".into()]);
        w.user_answer = Some("Hello".into());
    });
    let mut planner = script(json!([{"capability_id": "mail.send", "inputs": {"to": "a@b"}}]));
    let ended = run_to_completion(&fake, &mut planner, &options()).unwrap();
    assert_eq!(ended.state, RunState::Done);
    assert_eq!(fake.transitions(), [("paused_external_event".into(), Some("awaiting_user_input".into())), done()]);
    let executed = fake.executed();
    assert_eq!(executed.len(), 2);
    assert_eq!(executed[1].1, json!({"to": "a@b", "subject": "Hello"}));
}

#[test]
fn a_json_answer_is_merged_into_the_inputs() {
    let fake = Fake::new("always").with(|w| {
        w.required.insert("mail.send".into(), vec!["subject".into(), "body".into()]);
        w.user_answer = Some(r#"{"subject": "S", "body": "B"}"#.into());
    });
    let mut planner = script(json!([{"capability_id": "mail.send", "inputs": {"to": "a@b"}}]));
    run_to_completion(&fake, &mut planner, &options()).unwrap();
    assert_eq!(fake.executed()[1].1, json!({"to": "a@b", "subject": "S", "body": "B"}));
}

#[test]
fn under_manual_the_agent_never_asks_for_done_and_waits_for_the_admin() {
    let fake = Fake::new("manual").on_read(|w| {
        if w.reads >= 6 {
            w.run.state = RunState::Done;
        }
    });
    let ended = run_to_completion(&fake, &mut two_notes(), &options()).unwrap();
    assert_eq!((ended.exit_code(), ended.state), (0, RunState::Done));
    assert_eq!(fake.transitions(), [], "no transition attempted");
    assert_eq!(fake.executed().len(), 2);
}

#[test]
fn under_never_a_cancelled_run_exits_1() {
    let fake = Fake::new("never").on_read(|w| {
        if w.reads >= 4 {
            w.run.state = RunState::Cancelled;
            w.run.state_reason = Some("admin".into());
        }
    });
    let ended = run_to_completion(&fake, &mut two_notes(), &options()).unwrap();
    assert_eq!(ended, Ended { state: RunState::Cancelled, reason: Some("admin".into()) });
    assert_eq!(ended.exit_code(), 1);
    assert_eq!(fake.transitions(), []);
}

#[test]
fn capability_succeeded_finishes_when_it_did_and_fails_when_it_did_not() {
    let fake = Fake::new("capability_succeeded:run.note");
    assert_eq!(run_to_completion(&fake, &mut two_notes(), &options()).unwrap().state, RunState::Done);

    let fake = Fake::new("capability_succeeded:chat.send");
    let ended = run_to_completion(&fake, &mut two_notes(), &options()).unwrap();
    assert_eq!(ended, Ended { state: RunState::Failed, reason: Some("predicate_unsatisfied".into()) });
    assert_eq!(fake.transitions(), [("failed".into(), Some("predicate_unsatisfied".into()))]);
}

#[test]
fn the_finish_decision_follows_the_predicate() {
    use CompletionPredicate as P;
    let none = BTreeSet::new();
    let sent = BTreeSet::from(["chat.send".to_owned()]);
    let done = |on_refusal| Finish::Done { on_refusal };
    assert_eq!(finish_decision(&P::Always, &none), done(Refusal::Wait));
    assert_eq!(finish_decision(&P::Manual, &sent), Finish::Wait);
    assert_eq!(finish_decision(&P::Never, &sent), Finish::Wait);
    assert_eq!(finish_decision(&P::CapabilitySucceeded("chat.send".into()), &sent), done(Refusal::Wait));
    assert_eq!(finish_decision(&P::CapabilitySucceeded("chat.send".into()), &none), done(Refusal::Fail));
    assert_eq!(finish_decision(&P::Other("someday".into()), &none), done(Refusal::Wait));
}

#[test]
fn the_agents_own_step_budget_with_hard_stop_fails_the_run() {
    let fake = Fake::new("always");
    let options = RunnerOptions { max_steps: Some(1), ..options() };
    let ended = run_to_completion(&fake, &mut two_notes(), &options).unwrap();
    assert_eq!(ended, Ended { state: RunState::Failed, reason: Some("agent_budget_exceeded:steps".into()) });
    assert_eq!(fake.executed().len(), 1, "the second step was never sent");
}

#[test]
fn the_agents_own_budget_with_pause_approval_waits_and_gets_a_fresh_window() {
    let fake = Fake::new("always").on_read(|w| {
        if w.run.state == RunState::PausedApproval {
            w.run.state = RunState::Active; // the admin approves
        }
    });
    let options = RunnerOptions { max_steps: Some(1), budget_policy: Some(BudgetPolicy::PauseApproval), ..options() };
    let ended = run_to_completion(&fake, &mut two_notes(), &options).unwrap();
    assert_eq!(ended.state, RunState::Done);
    assert_eq!(fake.transitions(), [("paused_approval".into(), Some("agent_budget_exceeded:steps".into())), done()]);
    assert_eq!(fake.executed().len(), 2);
}

#[test]
fn the_own_policy_defaults_to_the_runs() {
    let fake = Fake::new("always").with(|w| w.run.budget_policy = Some("pause_approval".into())).on_read(|w| {
        if w.run.state == RunState::PausedApproval {
            w.run.state = RunState::Cancelled;
        }
    });
    let options = RunnerOptions { max_steps: Some(0), ..options() };
    let ended = run_to_completion(&fake, &mut two_notes(), &options).unwrap();
    assert_eq!(ended.state, RunState::Cancelled);
    assert_eq!(fake.transitions(), [("paused_approval".into(), Some("agent_budget_exceeded:steps".into()))]);
}

#[test]
fn a_step_refused_by_the_supervisors_budget_is_retried_after_approval() {
    let fake =
        Fake::new("always").with(|w| w.run.budget = Budget { max_steps: Some(1), ..Budget::default() }).on_read(|w| {
            if w.run.state == RunState::PausedApproval {
                // Approval: a fresh window.
                w.run.state = RunState::Active;
                w.run.usage.steps = 0;
            }
        });
    let ended = run_to_completion(&fake, &mut two_notes(), &options()).unwrap();
    assert_eq!(ended.state, RunState::Done);
    let texts: Vec<Value> = fake.executed().into_iter().map(|(_, inputs)| inputs["text"].clone()).collect();
    assert_eq!(texts, [json!("a"), json!("b"), json!("b")], "b refused once, then retried");
}

#[test]
fn a_failed_step_ends_a_script_run_as_failed() {
    let fake = Fake::new("always").with(|w| {
        w.answers
            .push_back(Err(ExecuteError::CapabilityFailed { capability_id: "run.note".into(), message: "boom".into() }))
    });
    let ended = run_to_completion(&fake, &mut two_notes(), &options()).unwrap();
    assert_eq!(ended, Ended { state: RunState::Failed, reason: Some("step_failed:run.note:capability_failed".into()) });
    assert_eq!(ended.exit_code(), 1);
    assert_eq!(fake.executed().len(), 1);
}

#[test]
fn a_run_cancelled_while_waiting_for_input_ends_the_agent() {
    let fake = Fake::new("always")
        .with(|w| {
            w.required.insert("mail.send".into(), vec!["to".into()]);
        })
        .on_read(|w| {
            if w.run.state == RunState::PausedExternalEvent {
                w.run.state = RunState::Cancelled;
            }
        });
    let mut planner = script(json!([{"capability_id": "mail.send"}]));
    let ended = run_to_completion(&fake, &mut planner, &options()).unwrap();
    assert_eq!(ended.state, RunState::Cancelled);
}

#[test]
fn losing_the_supervisor_is_an_error_not_an_ending() {
    let fake = Fake::new("always").with(|w| w.fail_transport = true);
    let e = run_to_completion(&fake, &mut two_notes(), &options()).unwrap_err();
    assert_eq!(e.to_string(), "reading the run: no answer from the supervisor within 30 s");
}

#[test]
fn the_llm_planner_runs_through_the_same_gate() {
    let completion = |content: &str| Ok(ExecuteOk { step_id: "llm".into(), output: json!({"content": content}) });
    let fake = Fake::new("always").with(|w| {
        w.answers.extend([
            completion(r#"{"capability_id": "chat.send", "inputs": {"text": "hi"}}"#),
            Ok(ExecuteOk { step_id: "st_2".into(), output: json!({"sent": true}) }),
            completion(r#"{"done": true}"#),
        ])
    });
    let options = RunnerOptions { max_steps: Some(3), ..options() };
    let ended = run_to_completion(&fake, &mut LlmPlanner::new("llm.complete"), &options).unwrap();
    assert_eq!(ended.state, RunState::Done);
    let ids: Vec<String> = fake.executed().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["llm.complete", "chat.send", "llm.complete"]);
}
