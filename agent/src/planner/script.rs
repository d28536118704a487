//! The `script` planner: a fixed JSON list of steps, run in order, for tests
//! and demos. A step that lacks inputs is retried with the user's answer; a
//! step that fails otherwise ends the script (there is no one to improvise).

use std::path::PathBuf;

use super::{fill_missing, Context, PlanError, Planner, Step, StepResult};

/// A script that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read script file {}: {source} (--script takes a file or inline JSON starting with `[`)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "script {origin} is not valid at line {line}, column {column}: {reason}; expected a JSON list of steps \
         like [{{\"capability_id\": \"run.note\", \"inputs\": {{\"text\": \"hi\"}}}}]"
    )]
    Parse { origin: String, line: usize, column: usize, reason: String },
    #[error("script {origin}: step {number} has an empty capability_id")]
    EmptyCapability { origin: String, number: usize },
}

/// Reads `--script`: inline JSON when it starts with `[` or `{` (after
/// blanks), else the path of a file holding the JSON.
pub fn load_script(arg: &str) -> Result<Vec<Step>, ScriptError> {
    let trimmed = arg.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        return parse_script(arg, "(inline)");
    }
    let path = PathBuf::from(arg);
    let text = std::fs::read_to_string(&path).map_err(|source| ScriptError::Read { path: path.clone(), source })?;
    parse_script(&text, &path.display().to_string())
}

/// Parses a script's JSON text; `origin` names it in errors.
pub fn parse_script(text: &str, origin: &str) -> Result<Vec<Step>, ScriptError> {
    let steps: Vec<Step> = serde_json::from_str(text).map_err(|e| ScriptError::Parse {
        origin: origin.to_owned(),
        line: e.line(),
        column: e.column(),
        // serde_json's Display ends with " at line L column C": said above.
        reason: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    })?;
    if let Some(i) = steps.iter().position(|s| s.capability_id.trim().is_empty()) {
        return Err(ScriptError::EmptyCapability { origin: origin.to_owned(), number: i + 1 });
    }
    Ok(steps)
}

#[derive(Debug, Clone)]
pub struct ScriptPlanner {
    steps: Vec<Step>,
    /// The step offered until it succeeds.
    cursor: usize,
    /// Set when the current step failed: the script cannot go on.
    failure: Option<(String, String)>,
}

impl ScriptPlanner {
    pub fn new(steps: Vec<Step>) -> ScriptPlanner {
        ScriptPlanner { steps, cursor: 0, failure: None }
    }
}

impl Planner for ScriptPlanner {
    fn next(&mut self, _ctx: &Context) -> Result<Option<Step>, PlanError> {
        if let Some((code, message)) = &self.failure {
            return Err(PlanError::StepFailed {
                number: self.cursor + 1,
                capability_id: self.steps[self.cursor].capability_id.clone(),
                code: code.clone(),
                message: message.clone(),
            });
        }
        Ok(self.steps.get(self.cursor).cloned())
    }

    fn on_result(&mut self, _step: &Step, result: &StepResult) {
        match result {
            StepResult::Succeeded { .. } => self.cursor += 1,
            StepResult::Failed { code, message } => self.failure = Some((code.clone(), message.clone())),
            StepResult::Answered { missing, answer } => {
                if let Some(step) = self.steps.get_mut(self.cursor) {
                    step.inputs = fill_missing(&step.inputs, missing, answer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::tests_support::{context_parts, NoCalls};
    use serde_json::json;

    #[test]
    fn loads_inline_json_and_files() {
        let steps = load_script(r#" [{"capability_id": "run.note", "inputs": {"text": "a"}}, {"capability_id": "x"}]"#)
            .unwrap();
        assert_eq!(steps, [Step::new("run.note", json!({"text": "a"})), Step::new("x", json!({}))]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, r#"[{"capability_id": "chat.send", "inputs": {"text": "hi"}}]"#).unwrap();
        assert_eq!(load_script(path.to_str().unwrap()).unwrap(), [Step::new("chat.send", json!({"text": "hi"}))]);
        assert_eq!(load_script("[]").unwrap(), []);
    }

    #[test]
    fn bad_json_names_the_origin_and_position() {
        let e = load_script("[{\"capability_id\": \"a\"},\n {\"capability_id\": }]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "script (inline) is not valid at line 2, column 20: expected value; expected a JSON list of steps \
             like [{\"capability_id\": \"run.note\", \"inputs\": {\"text\": \"hi\"}}]"
        );
        let e = load_script(r#"{"capability_id": "a"}"#).unwrap_err();
        assert!(e.to_string().contains("line 1, column 0: invalid type: map, expected a sequence"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "[{\"capability_id\": \"a\", \"input\": {}}]").unwrap();
        let e = load_script(path.to_str().unwrap()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "script {} is not valid at line 1, column 31: unknown field `input`",
                path.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn a_missing_file_and_an_empty_capability_are_clear() {
        let e = load_script("/nonexistent/script.json").unwrap_err();
        assert!(e.to_string().starts_with("cannot read script file /nonexistent/script.json: "), "{e}");
        let e = load_script(r#"[{"capability_id": "a"}, {"capability_id": " "}]"#).unwrap_err();
        assert_eq!(e.to_string(), "script (inline): step 2 has an empty capability_id");
    }

    #[test]
    fn offers_each_step_until_it_succeeds_and_retries_with_the_answer() {
        let (run, succeeded) = context_parts();
        let ctx = Context { run: &run, messages: &[], succeeded: &succeeded, calls: &NoCalls };
        let mut p =
            ScriptPlanner::new(vec![Step::new("mail.send", json!({"to": "a"})), Step::new("run.note", json!({}))]);
        let first = p.next(&ctx).unwrap().unwrap();
        assert_eq!(p.next(&ctx).unwrap().unwrap(), first, "offered again until a result is heard");
        p.on_result(&first, &StepResult::Answered { missing: vec!["subject".into()], answer: "Hello".into() });
        let retried = p.next(&ctx).unwrap().unwrap();
        assert_eq!(retried, Step::new("mail.send", json!({"to": "a", "subject": "Hello"})));
        p.on_result(&retried, &StepResult::Succeeded { step_id: "s1".into(), output: json!(null) });
        let second = p.next(&ctx).unwrap().unwrap();
        assert_eq!(second.capability_id, "run.note");
        p.on_result(&second, &StepResult::Succeeded { step_id: "s2".into(), output: json!(null) });
        assert_eq!(p.next(&ctx).unwrap(), None);
    }

    #[test]
    fn a_failed_step_ends_the_script() {
        let (run, succeeded) = context_parts();
        let ctx = Context { run: &run, messages: &[], succeeded: &succeeded, calls: &NoCalls };
        let mut p = ScriptPlanner::new(vec![Step::new("a", json!({})), Step::new("b", json!({}))]);
        let step = p.next(&ctx).unwrap().unwrap();
        p.on_result(&step, &StepResult::Failed { code: "capability_failed".into(), message: "503".into() });
        let e = p.next(&ctx).unwrap_err();
        assert_eq!(e.to_string(), "step 1 (`a`) failed with capability_failed: 503");
    }
}
