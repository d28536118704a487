//! Planners decide the next step; the runner does everything else (the run's
//! state, pauses, the inbox, budgets, finishing). A planner sees the run
//! through a [`Context`] and hears how each step went through
//! [`Planner::on_result`]. Until it hears, it offers the same step again: that
//! is how a step refused while the run was paused is retried.

pub mod llm;
pub mod script;

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::budget::AgentBudgetExceeded;
use crate::error::ExecuteError;
use crate::types::{ExecuteOk, InboxMessage, RunView};

/// One capability call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub capability_id: String,
    #[serde(default = "empty_object")]
    pub inputs: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Step {
    pub fn new(capability_id: impl Into<String>, inputs: Value) -> Step {
        Step { capability_id: capability_id.into(), inputs }
    }
}

/// Makes capability calls for a planner that needs some to plan (the `llm`
/// planner asks a model through one). Calls go through the same gate as
/// steps: they count against the agent's own budget and the supervisor's.
pub trait Calls {
    fn call(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, CallError>;
}

/// Why a call through [`Calls`] did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    /// Refused by the agent itself, before asking the supervisor.
    #[error(transparent)]
    AgentBudget(#[from] AgentBudgetExceeded),
}

/// What a planner may look at.
pub struct Context<'a> {
    /// The run as last read.
    pub run: &'a RunView,
    /// Every inbound message received so far, oldest first (the kickoff first).
    pub messages: &'a [InboxMessage],
    /// The capabilities that have succeeded in this process.
    pub succeeded: &'a BTreeSet<String>,
    pub calls: &'a dyn Calls,
}

/// How a step went.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Succeeded {
        step_id: String,
        output: Value,
    },
    /// Refused for the step's own sake (unknown capability, invalid input,
    /// not allowed) or the capability failed.
    Failed {
        code: String,
        message: String,
    },
    /// The step lacked inputs; the user answered `answer` (also in the
    /// context's messages). The planner should offer the step again with
    /// [`fill_missing`] applied.
    Answered {
        missing: Vec<String>,
        answer: String,
    },
}

/// Why a planner cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A call the planner made to plan was refused or failed.
    #[error("the planner's call failed: {0}")]
    Call(#[from] CallError),
    /// A step failed and this planner has no way around it.
    #[error("step {number} (`{capability_id}`) failed with {code}: {message}")]
    StepFailed { number: usize, capability_id: String, code: String, message: String },
}

pub trait Planner {
    /// The next step, or `None` when the goal is reached as far as this
    /// planner can tell. Called again with the same step pending (no
    /// `on_result` since), it must offer that step again.
    fn next(&mut self, ctx: &Context) -> Result<Option<Step>, PlanError>;
    /// How the step last offered went.
    fn on_result(&mut self, step: &Step, result: &StepResult);
}

/// `inputs` with the `missing` fields filled from the user's `answer`: a JSON
/// object answer is merged in (its fields win, so the user can also correct
/// others and give typed values); any other answer is put, as text, into
/// each missing field.
pub fn fill_missing(inputs: &Value, missing: &[String], answer: &str) -> Value {
    let mut filled = match inputs {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    match serde_json::from_str::<Value>(answer.trim()) {
        Ok(Value::Object(given)) => filled.extend(given),
        _ => {
            for field in missing {
                filled.insert(field.clone(), Value::String(answer.trim().to_owned()));
            }
        }
    }
    Value::Object(filled)
}

/// Stand-ins for planner tests: a run and a [`Calls`] that answers from a list.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use std::cell::RefCell;

    pub(crate) fn context_parts() -> (RunView, BTreeSet<String>) {
        (RunView { id: "run_1".into(), goal: "say hi".into(), ..RunView::default() }, BTreeSet::new())
    }

    /// A planner that must not call anything.
    pub(crate) struct NoCalls;

    impl Calls for NoCalls {
        fn call(&self, capability_id: &str, _: Value) -> Result<ExecuteOk, CallError> {
            panic!("unexpected call to {capability_id}")
        }
    }

    /// Answers calls in order and records them.
    #[derive(Default)]
    pub(crate) struct ListCalls {
        pub answers: RefCell<Vec<Result<ExecuteOk, CallError>>>,
        pub made: RefCell<Vec<(String, Value)>>,
    }

    impl ListCalls {
        pub(crate) fn new(answers: Vec<Result<ExecuteOk, CallError>>) -> ListCalls {
            ListCalls { answers: RefCell::new(answers), made: RefCell::default() }
        }
    }

    impl Calls for ListCalls {
        fn call(&self, capability_id: &str, inputs: Value) -> Result<ExecuteOk, CallError> {
            self.made.borrow_mut().push((capability_id.to_owned(), inputs));
            self.answers.borrow_mut().remove(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_json_object_answer_is_merged_over_the_inputs() {
        let filled = fill_missing(&json!({"to": "a", "n": 1}), &["subject".into()], r#" {"subject": "hi", "n": 2} "#);
        assert_eq!(filled, json!({"to": "a", "n": 2, "subject": "hi"}));
    }

    #[test]
    fn a_text_answer_goes_into_each_missing_field() {
        let filled = fill_missing(&json!({"to": "a"}), &["subject".into(), "body".into()], " hello\n");
        assert_eq!(filled, json!({"to": "a", "subject": "hello", "body": "hello"}));
        // JSON that is not an object is text too; inputs that were not an
        // object start over as one.
        assert_eq!(fill_missing(&Value::Null, &["n".into()], "42"), json!({"n": "42"}));
    }

    #[test]
    fn steps_default_their_inputs_and_refuse_unknown_fields() {
        let step: Step = serde_json::from_value(json!({"capability_id": "run.note"})).unwrap();
        assert_eq!(step, Step::new("run.note", json!({})));
        let e = serde_json::from_value::<Step>(json!({"capability": "run.note"})).unwrap_err();
        assert!(e.to_string().contains("unknown field `capability`"), "{e}");
    }
}
