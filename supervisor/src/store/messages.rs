//! Messages: inbound ones routed to a run as API.md says, outbound ones from
//! runs, and each run's inbox, which hands every inbound message to the
//! agent once.

use rusqlite::{OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::error::SqlContext;
use super::runs::{active_run_id, load_run, move_run, Move};
use super::{audit, ensure_session, new_id, Result, Store, StoreError};
use crate::audit::{types, NewAuditEvent};
use crate::lifecycle::RunState;
use crate::model::{validate_session_id, Actor, Direction, Message, RequestError, Timestamp, MESSAGE_PREFIX};

/// The sender of an inbound message that names none.
pub const DEFAULT_SENDER: &str = "user";
/// The sender of messages the supervisor writes itself (the kickoff). Refused
/// from clients, so an agent can trust that `system` is the supervisor.
pub const SYSTEM_SENDER: &str = "system";
/// The `state_reason` of a run resumed by an inbound message.
pub const RESUMED_BY_MESSAGE: &str = "message_received";
const MAX_SENDER_LEN: usize = 128;

/// The answer to an inbound message: 202 `{message_id, run_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub message_id: String,
    /// The run it went to; `None` if the session had no active or paused run.
    pub run_id: Option<String>,
    /// Whether it resumed a `paused_external_event` run to `active`.
    #[serde(skip)]
    pub resumed: bool,
}

const MESSAGE_COLUMNS: &str = "id, direction, sender, text, run_id, at";

impl Store {
    /// Stores an inbound message of a session and routes it (API.md): to the
    /// session's `active` run; else to its latest `paused_external_event`
    /// run, which is resumed to `active` without a fresh budget window; else
    /// to its latest `paused_approval` run, which stays paused; else to no
    /// run. "Latest" is the most recently created. Writes `message.ingest`
    /// (without the text, which may hold anything) and, for a resume,
    /// `run.transition`.
    pub fn ingest_message(
        &self,
        session_id: &str,
        text: &str,
        sender: Option<&str>,
        actor: &Actor,
    ) -> Result<Ingested> {
        validate_session_id(session_id)?;
        let sender = sender.unwrap_or(DEFAULT_SENDER);
        validate_sender(sender)?;
        if text.is_empty() {
            return Err(RequestError::new("text", "must not be empty").into());
        }
        let message_id = new_id(MESSAGE_PREFIX)?;
        let now = Timestamp::now();
        self.write(|tx| {
            ensure_session(tx, session_id, &now.to_string())?;
            let target = route_inbound(tx, session_id)?;
            let run_id = target.as_ref().map(|(id, _)| id.clone());
            insert(
                tx,
                session_id,
                &Message {
                    id: message_id.clone(),
                    direction: Direction::In,
                    sender: sender.to_owned(),
                    text: text.to_owned(),
                    run_id: run_id.clone(),
                    at: now,
                },
            )?;
            let resumed = matches!(target, Some((_, RunState::PausedExternalEvent)));
            let mut event = NewAuditEvent::new(types::MESSAGE_INGEST, actor)
                .session(session_id)
                .with("message_id", message_id.as_str())
                .with("sender", sender)
                .with("chars", text.chars().count())
                .with("resumed", resumed);
            event.run_id = run_id.clone();
            audit::append(tx, event, now)?;
            if let (true, Some(id)) = (resumed, &run_id) {
                let mut run = load_run(tx, id)?;
                let change =
                    Move { to: RunState::Active, reason: Some(RESUMED_BY_MESSAGE), fresh_window: false, budget: None };
                move_run(tx, &mut run, &change, actor, now)?;
            }
            Ok(Ingested { message_id, run_id, resumed })
        })
    }

    /// Stores a message a run sends to its session's user (`chat.send`), and
    /// `message.send`.
    pub fn send_message(&self, run_id: &str, text: &str, sender: &str, actor: &Actor) -> Result<Message> {
        validate_sender(sender)?;
        let message_id = new_id(MESSAGE_PREFIX)?;
        let now = Timestamp::now();
        self.write(|tx| {
            let run = load_run(tx, run_id)?;
            let message = Message {
                id: message_id,
                direction: Direction::Out,
                sender: sender.to_owned(),
                text: text.to_owned(),
                run_id: Some(run.id.clone()),
                at: now,
            };
            insert(tx, &run.session_id, &message)?;
            let event = NewAuditEvent::new(types::MESSAGE_SEND, actor)
                .run(&run.session_id, &run.id)
                .with("message_id", message.id.as_str())
                .with("sender", sender)
                .with("chars", text.chars().count());
            audit::append(tx, event, now)?;
            Ok(message)
        })
    }

    /// The run's inbound messages not yet handed to its agent, oldest first,
    /// now marked delivered: each message is returned once. (At most once: if
    /// the answer is lost on its way to the agent, the message is not
    /// offered again.)
    pub fn take_inbox(&self, run_id: &str) -> Result<Vec<Message>> {
        self.write(|tx| {
            load_run(tx, run_id)?;
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = ?1 AND direction = 'in' AND delivered = 0 \
                 ORDER BY at, rowid"
            );
            let messages = query_messages(tx, &sql, [run_id])?;
            tx.prepare_cached(
                "UPDATE messages SET delivered = 1 WHERE run_id = ?1 AND direction = 'in' AND delivered = 0",
            )
            .and_then(|mut st| st.execute([run_id]))
            .ctx("marking inbox messages delivered")?;
            Ok(messages)
        })
    }

    /// A session's messages, oldest first, optionally of one direction. An
    /// unknown session has none.
    pub fn list_messages(&self, session_id: &str, direction: Option<Direction>) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?1 AND (?2 IS NULL OR direction = ?2) \
             ORDER BY at, rowid"
        );
        self.read(|tx| query_messages(tx, &sql, (session_id, direction.map(Direction::as_str))))
    }
}

fn validate_sender(sender: &str) -> Result<()> {
    if sender.is_empty() || sender.len() > MAX_SENDER_LEN || sender.chars().any(char::is_control) {
        return Err(RequestError::new("sender", format!("must be 1 to {MAX_SENDER_LEN} printable characters")).into());
    }
    if sender == SYSTEM_SENDER {
        return Err(RequestError::new("sender", "`system` is reserved for the supervisor").into());
    }
    Ok(())
}

/// The run an inbound message goes to, and its state, in API.md's order.
fn route_inbound(tx: &Transaction<'_>, session_id: &str) -> Result<Option<(String, RunState)>> {
    if let Some(id) = active_run_id(tx, session_id)? {
        return Ok(Some((id, RunState::Active)));
    }
    for state in [RunState::PausedExternalEvent, RunState::PausedApproval] {
        if let Some(id) = latest_in(tx, session_id, state)? {
            return Ok(Some((id, state)));
        }
    }
    Ok(None)
}

fn latest_in(tx: &Transaction<'_>, session_id: &str, state: RunState) -> Result<Option<String>> {
    tx.prepare_cached(
        "SELECT id FROM runs WHERE session_id = ?1 AND state = ?2 ORDER BY created_at DESC, rowid DESC LIMIT 1",
    )
    .and_then(|mut st| st.query_row((session_id, state.as_str()), |r| r.get(0)).optional())
    .ctx("looking for the session's paused runs")
}

pub(super) fn insert(tx: &Transaction<'_>, session_id: &str, message: &Message) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO messages (id, session_id, run_id, direction, sender, text, at, delivered) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
    )
    .and_then(|mut st| {
        st.execute((
            &message.id,
            session_id,
            &message.run_id,
            message.direction.as_str(),
            &message.sender,
            &message.text,
            message.at.to_string(),
        ))
    })
    .ctx("storing a message")?;
    Ok(())
}

fn query_messages(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Message>> {
    let mut st = tx.prepare_cached(sql).ctx("listing messages")?;
    let rows = st.query_map(params, read_row).ctx("listing messages")?;
    rows.map(|row| {
        let (id, direction, sender, text, run_id, at) = row.ctx("listing messages")?;
        let corrupt = |what: &'static str, reason: String| StoreError::Corrupt { what, id: id.clone(), reason };
        Ok(Message {
            direction: direction.parse().map_err(|e| corrupt("direction", e))?,
            at: Timestamp::parse(&at).map_err(|e| corrupt("at", e.to_string()))?,
            id: id.clone(),
            sender,
            text,
            run_id,
        })
    })
    .collect()
}

type MessageRow = (String, String, String, String, Option<String>, String);

fn read_row(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
