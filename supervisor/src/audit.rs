//! The audit chain: how an event is hashed, and how a chain is verified.
//!
//! # Hash
//!
//! `hash = hex(sha256(prev_hash || canonical_json(event)))`, where:
//! - `prev_hash` is the previous event's `hash` as its 64 ASCII hex
//!   characters; the first event's is [`GENESIS_HASH`] (64 zeros);
//! - `canonical_json(event)` is the JSON object of exactly these fields:
//!   `seq`, `at`, `type`, `actor`, `session_id`, `run_id`, `step_id`,
//!   `decision`, `detail`, `prev_hash` (every field of [`AuditEvent`] but
//!   `hash`), all present (absent values as `null`), written with object
//!   keys sorted by their UTF-8 bytes at every depth, no whitespace, strings
//!   escaped as RFC 8785 does (`\"`, `\\`, `\b \f \n \r \t`, other controls as
//!   `\u00xx`, everything else literal UTF-8), integers in decimal and other
//!   numbers as serde_json prints them (shortest round-trip form);
//! - `at` is the fixed-width microsecond form (`2024-05-01T12:00:00.123456Z`);
//! - `hash` is plain lowercase hex, 64 characters, no `sha256:` prefix, so
//!   every link, the genesis included, has one shape.
//!
//! `prev_hash` is both prepended and inside the object: the prefix is the
//! chain as DESIGN.md states it; inside the object, it makes a stored event
//! self-describing.
//!
//! # Verification
//!
//! [`Verifier`] walks events in `seq` order and names the first broken link:
//! a `seq` that is not the previous one plus one (a deleted event; the
//! missing `seq` is named), a `prev_hash` that is not the previous event's
//! `hash` (a link cut or reordered), or a `hash` that is not the hash of the
//! event's content (an edited event). Deleting events at the *end* of the
//! chain leaves a valid shorter chain; only a `head_hash` recorded elsewhere
//! can show that, which is why verification reports it.

use std::borrow::Borrow;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{Actor, AuditEvent, Timestamp};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Event types this crate writes or names; API.md lists them.
pub mod types {
    pub const SUPERVISOR_START: &str = "supervisor.start";
    pub const SUPERVISOR_STOP: &str = "supervisor.stop";
    pub const RUN_CREATE: &str = "run.create";
    pub const RUN_START: &str = "run.start";
    pub const RUN_TRANSITION: &str = "run.transition";
    pub const RUN_CANCEL: &str = "run.cancel";
    pub const RUN_BUDGET_EXCEEDED: &str = "run.budget_exceeded";
    pub const RUN_EXIT: &str = "run.exit";
    pub const CAPABILITY_CALL: &str = "capability.call";
    /// The outcome of an allowed call, after it ran (same `step_id`).
    pub const CAPABILITY_RESULT: &str = "capability.result";
    /// A note an agent recorded on its run (`run.note`).
    pub const RUN_NOTE: &str = "run.note";
    pub const MESSAGE_INGEST: &str = "message.ingest";
    pub const MESSAGE_SEND: &str = "message.send";
    pub const SECRET_USE: &str = "secret.use";
    /// A secret set or deleted through the admin API (its name only).
    pub const SECRET_SET: &str = "secret.set";
    /// A token a skill's answer carried, stored as a secret (opt-in).
    pub const SECRET_STORE: &str = "secret.store";
    pub const POLICY_LOAD: &str = "policy.load";
}

/// `decision` values.
pub const ALLOW: &str = "allow";
pub const DENY: &str = "deny";

/// An event to append: everything but what the chain assigns (`seq`, `at`,
/// `prev_hash`, `hash`). `detail` must be a JSON object and must never hold
/// a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub event_type: String,
    pub actor: String,
    pub session_id: Option<String>,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub decision: Option<String>,
    pub detail: Map<String, Value>,
}

impl NewAuditEvent {
    pub fn new(event_type: &str, actor: &Actor) -> NewAuditEvent {
        NewAuditEvent {
            event_type: event_type.to_owned(),
            actor: actor.to_string(),
            session_id: None,
            run_id: None,
            step_id: None,
            decision: None,
            detail: Map::new(),
        }
    }

    pub fn session(mut self, session_id: &str) -> Self {
        self.session_id = Some(session_id.to_owned());
        self
    }

    pub fn run(mut self, session_id: &str, run_id: &str) -> Self {
        self.session_id = Some(session_id.to_owned());
        self.run_id = Some(run_id.to_owned());
        self
    }

    pub fn step(mut self, step_id: &str) -> Self {
        self.step_id = Some(step_id.to_owned());
        self
    }

    pub fn decision(mut self, decision: &str) -> Self {
        self.decision = Some(decision.to_owned());
        self
    }

    /// Adds `key: value` to `detail`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }

    /// The complete event once the chain has placed it.
    pub fn seal(self, seq: u64, at: Timestamp, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            seq,
            at,
            event_type: self.event_type,
            actor: self.actor,
            session_id: self.session_id,
            run_id: self.run_id,
            step_id: self.step_id,
            decision: self.decision,
            detail: Value::Object(self.detail),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        event.hash = event_hash(&event);
        event
    }
}

/// A `capability.call` event: the gate's decision on one call, before
/// anything runs. An allowed call has the step id it was counted as; a
/// refused one has none, and the caller adds `reason` (the error code).
pub fn capability_call(
    actor: &Actor,
    session_id: &str,
    run_id: &str,
    step_id: Option<&str>,
    capability_id: &str,
    allowed: bool,
) -> NewAuditEvent {
    let mut event = NewAuditEvent::new(types::CAPABILITY_CALL, actor)
        .run(session_id, run_id)
        .decision(if allowed { ALLOW } else { DENY })
        .with("capability_id", capability_id);
    event.step_id = step_id.map(str::to_owned);
    event
}

/// A `capability.result` event: how an allowed call (its step) ended. The
/// completion predicate `capability_succeeded:<id>` is decided from these
/// (`detail.success` true for `detail.capability_id` = `<id>`; see
/// `Store::succeeded_capabilities`).
pub fn capability_result(
    actor: &Actor,
    session_id: &str,
    run_id: &str,
    step_id: &str,
    capability_id: &str,
    success: bool,
) -> NewAuditEvent {
    let mut event = NewAuditEvent::new(types::CAPABILITY_RESULT, actor)
        .run(session_id, run_id)
        .with("capability_id", capability_id)
        .with("success", success);
    event.step_id = Some(step_id.to_owned());
    event
}

/// The JSON object that is hashed: every field but `hash`.
pub fn hashed_fields(event: &AuditEvent) -> Value {
    json!({
        "seq": event.seq,
        "at": event.at.to_string(),
        "type": event.event_type,
        "actor": event.actor,
        "session_id": event.session_id,
        "run_id": event.run_id,
        "step_id": event.step_id,
        "decision": event.decision,
        "detail": event.detail,
        "prev_hash": event.prev_hash,
    })
}

/// The hash an event must carry, given its `prev_hash` and content.
pub fn event_hash(event: &AuditEvent) -> String {
    let mut sha = Sha256::new();
    sha.update(event.prev_hash.as_bytes());
    sha.update(canonical_json(&hashed_fields(event)).as_bytes());
    let mut hex = String::with_capacity(64);
    for b in sha.finalize() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Sorted keys, no whitespace; see the module documentation.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json's
            // `preserve_order` feature, if any crate in the build turns it on,
            // makes maps keep insertion order instead.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The answer of `GET /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// True when every link holds.
    pub ok: bool,
    /// How many events were walked (all of them, also past a broken link).
    pub events: u64,
    /// The last event's stored `hash` ([`GENESIS_HASH`] for an empty chain):
    /// record it elsewhere to detect later truncation.
    pub head_hash: String,
    /// The first `seq` at which the chain does not hold.
    pub first_bad_seq: Option<u64>,
}

/// Walks a chain one event at a time, so a long chain need not be in memory.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_seq: u64,
    prev_hash: String,
    events: u64,
    first_bad_seq: Option<u64>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { expected_seq: 1, prev_hash: GENESIS_HASH.to_owned(), events: 0, first_bad_seq: None }
    }
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// The next event, in `seq` order.
    pub fn push(&mut self, event: &AuditEvent) {
        let bad = if event.seq != self.expected_seq {
            // A gap names the first missing seq; anything else (a repeat, a
            // step back) names the event itself.
            Some(if event.seq > self.expected_seq { self.expected_seq } else { event.seq })
        } else if event.prev_hash != self.prev_hash || event_hash(event) != event.hash {
            Some(event.seq)
        } else {
            None
        };
        self.advance(event.seq, &event.hash, bad);
    }

    /// An event whose stored row could not even be read back as an event
    /// (say, its `detail` is no longer JSON): it is bad by definition.
    pub fn push_unreadable(&mut self, seq: u64, stored_hash: &str) {
        let bad = if seq > self.expected_seq { self.expected_seq } else { seq };
        self.advance(seq, stored_hash, Some(bad));
    }

    fn advance(&mut self, seq: u64, hash: &str, bad: Option<u64>) {
        if self.first_bad_seq.is_none() {
            self.first_bad_seq = bad;
        }
        self.events += 1;
        self.expected_seq = seq.saturating_add(1);
        hash.clone_into(&mut self.prev_hash);
    }

    pub fn finish(self) -> Verification {
        Verification {
            ok: self.first_bad_seq.is_none(),
            events: self.events,
            head_hash: self.prev_hash,
            first_bad_seq: self.first_bad_seq,
        }
    }
}

/// Verifies a chain given in `seq` order.
pub fn verify<E: Borrow<AuditEvent>>(events: impl IntoIterator<Item = E>) -> Verification {
    let mut verifier = Verifier::new();
    for event in events {
        verifier.push(event.borrow());
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let e = NewAuditEvent::new(types::RUN_CREATE, &Actor::Admin { uid: 0 })
                    .run("s", &format!("run_{seq}"))
                    .with("n", seq)
                    .seal(seq, Timestamp::from_unix_micros(seq * 1_000), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_has_no_whitespace() {
        let v = json!({"b": 1, "a": {"z": [true, null, 1.5], "y": "x\ny\"\u{1}é"}, "A": -2});
        assert_eq!(canonical_json(&v), r#"{"A":-2,"a":{"y":"x\ny\"\u0001é","z":[true,null,1.5]},"b":1}"#);
    }

    #[test]
    fn hash_is_sha256_of_prev_hash_then_canonical_fields() {
        let e = &chain(1)[0];
        let input = format!(
            "{GENESIS_HASH}{{\"actor\":\"uid:0\",\"at\":\"1970-01-01T00:00:00.001000Z\",\"decision\":null,\
             \"detail\":{{\"n\":1}},\"prev_hash\":\"{GENESIS_HASH}\",\"run_id\":\"run_1\",\"seq\":1,\
             \"session_id\":\"s\",\"step_id\":null,\"type\":\"run.create\"}}"
        );
        let digest = Sha256::digest(input.as_bytes());
        let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(e.hash, expected);
        assert_eq!(e.hash.len(), 64);
    }

    #[test]
    fn a_sound_chain_verifies() {
        let events = chain(5);
        let v = verify(&events);
        assert_eq!(v, Verification { ok: true, events: 5, head_hash: events[4].hash.clone(), first_bad_seq: None });
        let empty = verify(Vec::<AuditEvent>::new());
        assert_eq!(empty, Verification { ok: true, events: 0, head_hash: GENESIS_HASH.into(), first_bad_seq: None });
    }

    #[test]
    fn an_edited_event_is_named() {
        let mut events = chain(5);
        events[2].detail = json!({"n": 99});
        let v = verify(&events);
        assert!(!v.ok);
        assert_eq!(v.first_bad_seq, Some(3));
        assert_eq!(v.events, 5);
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let mut events = chain(5);
        events[2].actor = "uid:1000".into();
        events[2].hash = event_hash(&events[2]);
        assert_eq!(verify(&events).first_bad_seq, Some(4));
    }

    #[test]
    fn a_deleted_event_is_a_gap_named_by_its_seq() {
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify(&events).first_bad_seq, Some(2));
        let mut first_gone = chain(3);
        first_gone.remove(0);
        assert_eq!(verify(&first_gone).first_bad_seq, Some(1));
    }

    #[test]
    fn swapped_events_are_caught() {
        let mut events = chain(4);
        events.swap(1, 2);
        assert_eq!(verify(&events).first_bad_seq, Some(2));
    }

    #[test]
    fn unreadable_rows_are_bad() {
        let events = chain(3);
        let mut v = Verifier::new();
        v.push(&events[0]);
        v.push_unreadable(2, &events[1].hash);
        v.push(&events[2]);
        let v = v.finish();
        assert_eq!((v.ok, v.first_bad_seq, v.events), (false, Some(2), 3));
    }

    #[test]
    fn capability_call_and_result_detail_shape() {
        let e = capability_call(&Actor::System, "s", "run_1", Some("step_1"), "mail.send", true);
        assert_eq!(e.decision.as_deref(), Some(ALLOW));
        assert_eq!(e.step_id.as_deref(), Some("step_1"));
        assert_eq!(Value::Object(e.detail), json!({"capability_id": "mail.send"}));
        let refused = capability_call(&Actor::System, "s", "run_1", None, "mail.send", false);
        assert_eq!(refused.decision.as_deref(), Some(DENY));
        let r = capability_result(&Actor::System, "s", "run_1", "step_1", "mail.send", true);
        assert_eq!((r.event_type.as_str(), r.step_id.as_deref()), (types::CAPABILITY_RESULT, Some("step_1")));
        assert_eq!(Value::Object(r.detail), json!({"capability_id": "mail.send", "success": true}));
    }
}
