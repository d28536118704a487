//! The audit chain in SQLite: appending (always inside the transaction of
//! the change it records), listing, verifying, and the capability successes
//! the completion predicate asks about.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Row, Transaction};

use super::error::SqlContext;
use super::{check_limit, Result, Store, StoreError, DEFAULT_LIMIT};
use crate::audit::{canonical_json, types, NewAuditEvent, Verification, Verifier, GENESIS_HASH};
use crate::model::{AuditEvent, Timestamp};

/// `GET /v1/audit?session_id=&run_id=&after_seq=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub session_id: Option<String>,
    pub run_id: Option<String>,
    /// Only events with `seq` strictly greater.
    pub after_seq: Option<u64>,
    /// 1..=2000.
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter { session_id: None, run_id: None, after_seq: None, limit: DEFAULT_LIMIT }
    }
}

const EVENT_COLUMNS: &str = "seq, at, type, actor, session_id, run_id, step_id, decision, detail, prev_hash, hash";

impl Store {
    /// Appends an event that records no store change of its own
    /// (`supervisor.start`, `capability.call`, `policy.load`, ...).
    pub fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let now = Timestamp::now();
        self.write(|tx| append(tx, event, now))
    }

    /// Events, latest first: the latest `limit` events that match and whose
    /// `seq` is greater than `after_seq`.
    pub fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let limit = check_limit(filter.limit)?;
        let after = i64::try_from(filter.after_seq.unwrap_or(0)).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE (?1 IS NULL OR session_id = ?1) \
             AND (?2 IS NULL OR run_id = ?2) AND seq > ?3 ORDER BY seq DESC LIMIT ?4"
        );
        self.read(|tx| {
            let mut st = tx.prepare_cached(&sql).ctx("listing audit events")?;
            let rows = st
                .query_map((&filter.session_id, &filter.run_id, after, limit), read_row)
                .ctx("listing audit events")?;
            rows.map(|row| {
                let (seq, event) = row.ctx("listing audit events")?;
                event.map_err(|reason| StoreError::Corrupt { what: "audit event", id: seq.to_string(), reason })
            })
            .collect()
        })
    }

    /// Events with `seq` strictly greater than `after_seq`, oldest first, at
    /// most `limit` (1..=2000): the pages of the live event stream.
    pub fn audit_after(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        let limit = check_limit(limit)?;
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.read(|tx| {
            let mut st = tx.prepare_cached(&sql).ctx("listing audit events")?;
            let rows = st.query_map((after, limit), read_row).ctx("listing audit events")?;
            rows.map(|row| {
                let (seq, event) = row.ctx("listing audit events")?;
                event.map_err(|reason| StoreError::Corrupt { what: "audit event", id: seq.to_string(), reason })
            })
            .collect()
        })
    }

    /// A run's `capability.call` events, latest first, at most `limit`,
    /// each with whether its step succeeded (its `capability.result`).
    pub fn capability_calls(&self, run_id: &str, limit: u32) -> Result<Vec<(AuditEvent, bool)>> {
        let calls = self.capability_call_events(run_id, limit)?;
        let succeeded: BTreeSet<String> = self.read(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT step_id FROM audit_events WHERE run_id = ?1 AND type = ?2 \
                     AND json_extract(detail, '$.success') = 1",
                )
                .ctx("reading capability results")?;
            let rows = st
                .query_map((run_id, types::CAPABILITY_RESULT), |r| r.get::<_, Option<String>>(0))
                .ctx("reading capability results")?;
            let mut steps = BTreeSet::new();
            for step in rows {
                steps.extend(step.ctx("reading capability results")?);
            }
            Ok(steps)
        })?;
        Ok(calls
            .into_iter()
            .map(|call| {
                let ok = call.step_id.as_ref().is_some_and(|s| succeeded.contains(s));
                (call, ok)
            })
            .collect())
    }

    fn capability_call_events(&self, run_id: &str, limit: u32) -> Result<Vec<AuditEvent>> {
        let limit = check_limit(limit)?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE run_id = ?1 AND type = ?2 ORDER BY seq DESC LIMIT ?3"
        );
        self.read(|tx| {
            let mut st = tx.prepare_cached(&sql).ctx("listing capability calls")?;
            let rows =
                st.query_map((run_id, types::CAPABILITY_CALL, limit), read_row).ctx("listing capability calls")?;
            rows.map(|row| {
                let (seq, event) = row.ctx("listing capability calls")?;
                event.map_err(|reason| StoreError::Corrupt { what: "audit event", id: seq.to_string(), reason })
            })
            .collect()
        })
    }

    /// Re-walks the whole chain in `seq` order (streaming: the chain is
    /// never all in memory) and names the first broken link.
    pub fn verify_audit(&self) -> Result<Verification> {
        self.read(|tx| {
            let mut st = tx
                .prepare(&format!("SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY seq"))
                .ctx("verifying the audit chain")?;
            let mut rows = st.query([]).ctx("verifying the audit chain")?;
            let mut verifier = Verifier::new();
            while let Some(row) = rows.next().ctx("verifying the audit chain")? {
                match read_row(row).ctx("verifying the audit chain")? {
                    (_, Ok(event)) => verifier.push(&event),
                    (seq, Err(_)) => {
                        let hash: String = row.get(10).unwrap_or_default();
                        verifier.push_unreadable(seq, &hash);
                    }
                }
            }
            Ok(verifier.finish())
        })
    }

    /// The capabilities that succeeded in a run (`capability.result` events
    /// with `detail.success` true; see `audit::capability_result`).
    pub fn succeeded_capabilities(&self, run_id: &str) -> Result<BTreeSet<String>> {
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT DISTINCT json_extract(detail, '$.capability_id') FROM audit_events \
                     WHERE run_id = ?1 AND type = ?2 AND json_extract(detail, '$.success') = 1",
                )
                .ctx("reading capability calls")?;
            let rows = st
                .query_map((run_id, types::CAPABILITY_RESULT), |r| r.get::<_, Option<String>>(0))
                .ctx("reading capability calls")?;
            let mut ids = BTreeSet::new();
            for id in rows {
                ids.extend(id.ctx("reading capability calls")?);
            }
            Ok(ids)
        })
    }
}

/// Places `event` at the head of the chain, inside the caller's transaction.
/// Write transactions are `IMMEDIATE` and serialised, so the head read here
/// is still the head at commit.
pub(super) fn append(tx: &Transaction<'_>, event: NewAuditEvent, now: Timestamp) -> Result<AuditEvent> {
    let head: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .ctx("reading the audit chain's head")?;
    let (last_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
    let seq = u64::try_from(last_seq).unwrap_or(0) + 1;
    // Redacted before it is hashed: what the chain holds is what may be
    // shown, and a secret that slipped into a detail never reaches the disk.
    let mut event = event;
    if let serde_json::Value::Object(detail) =
        crate::redact::global().redact_json(&serde_json::Value::Object(std::mem::take(&mut event.detail)))
    {
        event.detail = detail;
    }
    let sealed = event.seal(seq, now, &prev_hash);
    tx.prepare_cached(&format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut st| {
        st.execute(rusqlite::params![
            i64::try_from(sealed.seq).unwrap_or(i64::MAX),
            sealed.at.to_string(),
            sealed.event_type,
            sealed.actor,
            sealed.session_id,
            sealed.run_id,
            sealed.step_id,
            sealed.decision,
            canonical_json(&sealed.detail),
            sealed.prev_hash,
            sealed.hash,
        ])
    })
    .ctx("appending an audit event")?;
    Ok(sealed)
}

pub(super) fn capability_succeeded(tx: &Transaction<'_>, run_id: &str, capability_id: &str) -> Result<bool> {
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM audit_events WHERE run_id = ?1 AND type = ?2 \
         AND json_extract(detail, '$.capability_id') = ?3 AND json_extract(detail, '$.success') = 1)",
    )
    .and_then(|mut st| st.query_row((run_id, types::CAPABILITY_RESULT, capability_id), |r| r.get(0)))
    .ctx("checking a capability's success")
}

/// One row: its `seq`, and the event or why the stored text is not one.
/// Only SQL-level failures are errors; unparseable content (an edited row)
/// is data for the verifier.
fn read_row(row: &Row<'_>) -> rusqlite::Result<(u64, Result<AuditEvent, String>)> {
    // A negative seq (only possible by editing the table) reads as 0, which
    // never matches the chain's next seq.
    let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
    let at: String = row.get(1)?;
    let detail: String = row.get(8)?;
    let parsed = (|| {
        Ok(AuditEvent {
            seq,
            at: Timestamp::parse(&at).map_err(|e| e.to_string())?,
            event_type: row.get(2).map_err(|e| e.to_string())?,
            actor: row.get(3).map_err(|e| e.to_string())?,
            session_id: row.get(4).map_err(|e| e.to_string())?,
            run_id: row.get(5).map_err(|e| e.to_string())?,
            step_id: row.get(6).map_err(|e| e.to_string())?,
            decision: row.get(7).map_err(|e| e.to_string())?,
            detail: serde_json::from_str(&detail).map_err(|e| format!("detail: {e}"))?,
            prev_hash: row.get(9).map_err(|e| e.to_string())?,
            hash: row.get(10).map_err(|e| e.to_string())?,
        })
    })();
    Ok((seq, parsed))
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
