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
