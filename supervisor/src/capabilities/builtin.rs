//! The supervisor's own capabilities. They act on the supervisor's state
//! only (the run's notes, the session's outbound messages), so they need
//! no executor process: the daemon carries them out in the store.

use serde_json::json;

use super::{Capability, Executor};

/// One builtin capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `run.note {text}`: a note on the run (a `run.note` audit event).
    RunNote,
    /// `chat.send {text}`: an outbound message to the run's session.
    ChatSend,
}

/// The builtins' capability ids: no skill may take one, except the `llm`
/// builtin skill that configures `llm.complete` (see `load.rs`).
pub const IDS: &[&str] = &["run.note", "chat.send", LLM_COMPLETE];

/// The builtins that need no configuration and are always present.
pub const CONFIGLESS: &[&str] = &["run.note", "chat.send"];

/// The model call: present only when a `type = "builtin"` skill file gives
/// its endpoint (policies/skills/llm.toml), since it needs one and a key.
pub const LLM_COMPLETE: &str = "llm.complete";

/// The longest note or message text, in bytes.
pub const MAX_TEXT: u64 = 64 * 1024;

pub(super) fn all() -> Vec<Capability> {
    let text_input = |what: &str| {
        json!({
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "description": what}},
            "required": ["text"],
            "additionalProperties": false,
        })
    };
    [
        ("run.note", "Record a note on the run (kept in its audit trail)", "the note", Builtin::RunNote),
        ("chat.send", "Send a message to the run's session (read by people)", "the message", Builtin::ChatSend),
    ]
    .into_iter()
    .map(|(id, description, what, builtin)| {
        Capability::new(id, description, text_input(what), Executor::Builtin(builtin))
            .expect("the builtin schemas are valid")
    })
    .collect()
}

/// `llm.complete`'s inputs unless its skill file gives its own: the
/// OpenAI chat completions request body, minus `model` (the file sets it).
pub fn llm_complete_input_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "role": {"enum": ["system", "user", "assistant"]},
                        "content": {"type": "string"},
                    },
                    "required": ["role", "content"],
                    "additionalProperties": false,
                },
            },
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        },
        "required": ["messages"],
        "additionalProperties": false,
    })
}
