//! The `llm` planner: asks a model for each step through a capability
//! (`llm.complete` by default), so the supervisor holds the endpoint and the
//! key and counts the tokens. Each turn sends the whole chat history as
//! `{"messages": [{role, content}, ...]}` and reads `{"content": "...",
//! "usage": {"total_tokens": N}}`. The reply should hold one JSON object: a
//! step `{"capability_id", "inputs"}` or `{"done": true, "summary"}`. Models
//! wrap JSON in prose and fences, so the first such object anywhere in the
//! reply counts; a reply with none is recorded with `run.note` and ends the
//! plan, rather than looping on a model that does not follow the protocol.

use serde_json::{json, Value};

use super::{fill_missing, Context, PlanError, Planner, Step, StepResult};

/// The capability the planner records a final summary or a stray reply with.
pub const NOTE_CAPABILITY: &str = "run.note";

/// At most this much of a step's output goes back to the model per step.
const MAX_RESULT_CHARS: usize = 4000;

const SYSTEM_PROMPT: &str = "You are ccos-agent, an agent running one goal inside a sandbox. You act only through \
capabilities that a supervisor runs for you. Reply with exactly one JSON object and nothing else: either \
{\"capability_id\": \"<id>\", \"inputs\": {...}} to run one capability (for example run.note with {\"text\": \"...\"} \
to record a note, or chat.send with {\"text\": \"...\"} to message the user), or {\"done\": true, \"summary\": \
\"<what was achieved>\"} when the goal is reached. The result of each step comes back to you as the next message.";

#[derive(Debug, Clone)]
pub struct LlmPlanner {
    capability: String,
    history: Vec<Value>,
    /// How many of the context's messages are already in the history.
    seen: usize,
    /// The step offered until its result is heard.
    pending: Option<Step>,
    /// The model said it is done (or stopped following the protocol); only
    /// a new inbound message starts another turn.
    finished: bool,
    tokens: u64,
}

impl LlmPlanner {
    /// A planner that asks the model through `capability`.
    pub fn new(capability: impl Into<String>) -> LlmPlanner {
        LlmPlanner {
            capability: capability.into(),
            history: Vec::new(),
            seen: 0,
            pending: None,
            finished: false,
            tokens: 0,
        }
    }

    /// Tokens the model reported using, over all turns.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The chat so far, as sent to the model.
    pub fn history(&self) -> &[Value] {
        &self.history
    }

    fn say(&mut self, role: &str, content: String) {
        self.history.push(json!({"role": role, "content": content}));
    }
}

impl Planner for LlmPlanner {
    fn next(&mut self, ctx: &Context) -> Result<Option<Step>, PlanError> {
        if let Some(step) = &self.pending {
            return Ok(Some(step.clone()));
        }
        // New messages join the history before the call, so a call refused
        // (the run paused) and made again later does not add them twice.
        let fresh = ctx.messages.get(self.seen..).unwrap_or_default();
        self.seen = ctx.messages.len();
        if self.history.is_empty() {
            self.say("system", SYSTEM_PROMPT.to_owned());
            if fresh.is_empty() {
                // The kickoff message carries the goal; without it, say it.
                self.say("user", format!("Goal:\n{}", ctx.run.goal));
            }
        }
        for message in fresh {
            self.say("user", format!("{}: {}", message.sender, message.text));
        }
        if self.finished && fresh.is_empty() {
            return Ok(None);
        }
        self.finished = false;

        let answer = ctx.calls.call(&self.capability, json!({"messages": self.history}))?;
        self.tokens += answer.output.pointer("/usage/total_tokens").and_then(Value::as_u64).unwrap_or(0);
        let content = reply_text(&answer.output);
        self.say("assistant", content.clone());
        let step = match parse_reply(&content) {
            Reply::Step(step) => step,
            Reply::Done(text) | Reply::Other(text) => {
                self.finished = true;
                if text.is_empty() {
                    return Ok(None);
                }
                Step::new(NOTE_CAPABILITY, json!({"text": text}))
            }
        };
        self.pending = Some(step.clone());
        Ok(Some(step))
    }

    fn on_result(&mut self, step: &Step, result: &StepResult) {
        self.pending = None;
        let id = &step.capability_id;
        match result {
            // The closing note's result is of no interest to the model.
            StepResult::Succeeded { .. } if self.finished => {}
            StepResult::Succeeded { step_id, output } => {
                let output: String = output.to_string().chars().take(MAX_RESULT_CHARS).collect();
                self.say("user", format!("Result of `{id}` (step {step_id}): {output}"));
            }
            StepResult::Failed { code, message } => {
                self.say("user", format!("Step `{id}` failed ({code}): {message}. Choose another step, or finish."));
            }
            // The answer is among the inbound messages, which reach the
            // history on the next turn; the step is retried as it was, filled.
            StepResult::Answered { missing, answer } => {
                self.pending = Some(Step::new(id.clone(), fill_missing(&step.inputs, missing, answer)));
            }
        }
    }
}

/// The text of a completion, from the shapes a capability is likely to
/// return: `{"content"}`, a bare string, OpenAI's `choices`, or `{"text"}`.
fn reply_text(output: &Value) -> String {
    let text = match output {
        Value::String(s) => Some(s.as_str()),
        _ => output
            .get("content")
            .or_else(|| output.pointer("/choices/0/message/content"))
            .or_else(|| output.get("text"))
            .and_then(Value::as_str),
    };
    text.map(str::to_owned).unwrap_or_else(|| output.to_string())
}

#[derive(Debug, PartialEq)]
enum Reply {
    Step(Step),
    /// `{"done": true}`, with its summary (maybe empty).
    Done(String),
    /// No step and no done: the text as it was, trimmed.
    Other(String),
}

/// The first JSON object in `content` that is a step or a done, wherever it
/// sits (fences, prose, nested in a larger object).
fn parse_reply(content: &str) -> Reply {
    // Bounded: a long reply full of braces must not cost quadratic time.
    for (at, _) in content.match_indices('{').take(200) {
        let Some(Ok(Value::Object(object))) = serde_json::Deserializer::from_str(&content[at..]).into_iter().next()
        else {
            continue;
        };
        if let Some(id) = object.get("capability_id").and_then(Value::as_str).filter(|id| !id.trim().is_empty()) {
            let inputs = object.get("inputs").filter(|i| i.is_object()).cloned().unwrap_or_else(|| json!({}));
            return Reply::Step(Step::new(id, inputs));
        }
        if object.get("done") == Some(&Value::Bool(true)) {
            let summary = object.get("summary").and_then(Value::as_str).unwrap_or_default();
            return Reply::Done(summary.trim().to_owned());
        }
    }
    Reply::Other(content.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExecuteError;
    use crate::planner::tests_support::{context_parts, ListCalls};
    use crate::planner::CallError;
    use crate::types::{ExecuteOk, InboxMessage};

    fn completion(content: &str) -> Result<ExecuteOk, CallError> {
        Ok(ExecuteOk { step_id: "llm".into(), output: json!({"content": content, "usage": {"total_tokens": 10}}) })
    }

    fn kickoff() -> Vec<InboxMessage> {
        vec![InboxMessage {
            sender: "system".into(),
            text: "Run started (run_1). Goal:\nsay hi".into(),
            ..Default::default()
        }]
    }

    #[test]
    fn finds_steps_and_dones_in_what_models_write() {
        let fenced = "Sure!\n```json\n{\"capability_id\": \"chat.send\", \"inputs\": {\"text\": \"hi\"}}\n```";
        assert_eq!(parse_reply(fenced), Reply::Step(Step::new("chat.send", json!({"text": "hi"}))));
        let nested = r#"{"thought": "x {", "action": {"capability_id": "run.note"}}"#;
        assert_eq!(parse_reply(nested), Reply::Step(Step::new("run.note", json!({}))));
        assert_eq!(parse_reply(r#"{"done": true, "summary": " said hi "}"#), Reply::Done("said hi".into()));
        assert_eq!(parse_reply(" I cannot do that {oops "), Reply::Other("I cannot do that {oops".into()));
        assert_eq!(reply_text(&json!({"choices": [{"message": {"content": "c"}}]})), "c");
        assert_eq!(reply_text(&json!("plain")), "plain");
        assert_eq!(reply_text(&json!({"odd": 1})), r#"{"odd":1}"#);
    }

    #[test]
    fn a_turn_sends_the_history_and_a_result_comes_back_next_turn() {
        let (run, succeeded) = context_parts();
        let messages = kickoff();
        let calls = ListCalls::new(vec![
            completion(r#"{"capability_id": "chat.send", "inputs": {"text": "hi"}}"#),
            completion(r#"{"done": true, "summary": "greeted"}"#),
        ]);
        let ctx = Context { run: &run, messages: &messages, succeeded: &succeeded, calls: &calls };
        let mut p = LlmPlanner::new("llm.complete");

        let step = p.next(&ctx).unwrap().unwrap();
        assert_eq!(step, Step::new("chat.send", json!({"text": "hi"})));
        assert_eq!(p.next(&ctx).unwrap().unwrap(), step, "pending: no second model call");
        {
            let made = calls.made.borrow();
            assert_eq!(made.len(), 1);
            assert_eq!(made[0].0, "llm.complete");
            let sent = made[0].1["messages"].as_array().unwrap();
            assert_eq!(
                (sent[0]["role"].as_str(), sent[1]["content"].as_str()),
                (Some("system"), Some("system: Run started (run_1). Goal:\nsay hi"))
            );
        }
        p.on_result(&step, &StepResult::Succeeded { step_id: "st_1".into(), output: json!({"sent": true}) });

        let note = p.next(&ctx).unwrap().unwrap();
        assert_eq!(note, Step::new(NOTE_CAPABILITY, json!({"text": "greeted"})));
        let second = calls.made.borrow()[1].1["messages"].clone();
        assert_eq!(
            second.as_array().unwrap().last().unwrap()["content"],
            r#"Result of `chat.send` (step st_1): {"sent":true}"#
        );
        p.on_result(&note, &StepResult::Succeeded { step_id: "st_2".into(), output: json!(null) });
        assert_eq!(p.next(&ctx).unwrap(), None);
        assert_eq!(p.tokens(), 20);
    }

    #[test]
    fn junk_is_noted_and_ends_the_plan_until_a_new_message() {
        let (run, succeeded) = context_parts();
        let mut messages = kickoff();
        let calls = ListCalls::new(vec![completion("I'd rather not."), completion(r#"{"done": true}"#)]);
        let mut p = LlmPlanner::new("llm.complete");
        let ctx = Context { run: &run, messages: &messages, succeeded: &succeeded, calls: &calls };
        let note = p.next(&ctx).unwrap().unwrap();
        assert_eq!(note, Step::new(NOTE_CAPABILITY, json!({"text": "I'd rather not."})));
        p.on_result(&note, &StepResult::Succeeded { step_id: "s".into(), output: json!(null) });
        assert_eq!(p.next(&ctx).unwrap(), None);

        messages.push(InboxMessage { sender: "user".into(), text: "please?".into(), ..Default::default() });
        let ctx = Context { run: &run, messages: &messages, succeeded: &succeeded, calls: &calls };
        assert_eq!(p.next(&ctx).unwrap(), None, "a done without a summary notes nothing");
        assert_eq!(calls.made.borrow().len(), 2, "the new message started a turn");
    }

    #[test]
    fn failures_go_back_to_the_model_and_answers_fill_the_pending_step() {
        let (run, succeeded) = context_parts();
        let messages = kickoff();
        let calls = ListCalls::new(vec![completion(r#"{"capability_id": "mail.send", "inputs": {"to": "a"}}"#)]);
        let ctx = Context { run: &run, messages: &messages, succeeded: &succeeded, calls: &calls };
        let mut p = LlmPlanner::new("llm.complete");
        let step = p.next(&ctx).unwrap().unwrap();
        p.on_result(&step, &StepResult::Answered { missing: vec!["subject".into()], answer: "Hi".into() });
        assert_eq!(p.next(&ctx).unwrap().unwrap(), Step::new("mail.send", json!({"to": "a", "subject": "Hi"})));
        p.on_result(&step, &StepResult::Failed { code: "capability_failed".into(), message: "smtp down".into() });
        assert_eq!(
            p.history().last().unwrap()["content"],
            "Step `mail.send` failed (capability_failed): smtp down. Choose another step, or finish."
        );
    }

    #[test]
    fn a_refused_model_call_is_made_again_without_repeating_messages() {
        let (run, succeeded) = context_parts();
        let messages = kickoff();
        let refused = Err(CallError::Execute(ExecuteError::RunNotActive {
            capability_id: "llm.complete".into(),
            message: "paused".into(),
        }));
        let calls = ListCalls::new(vec![refused, completion(r#"{"done": true}"#)]);
        let ctx = Context { run: &run, messages: &messages, succeeded: &succeeded, calls: &calls };
        let mut p = LlmPlanner::new("llm.complete");
        assert!(matches!(p.next(&ctx), Err(PlanError::Call(_))));
        assert_eq!(p.next(&ctx).unwrap(), None);
        assert_eq!(calls.made.borrow()[1].1["messages"].as_array().unwrap().len(), 2, "system + kickoff, once");
    }
}
