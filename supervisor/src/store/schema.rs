//! The schema and its migrations, versioned from the first release.
//!
//! The version is SQLite's `PRAGMA user_version` (in the database header, so
//! it cannot disagree with a separate table). Migration `i` (0-based) takes
//! the database from version `i` to `i + 1`; each runs in its own
//! transaction together with the version bump, so a failed migration leaves
//! the previous version intact. A database from a newer release is refused
//! before anything is written to it. Released migrations are never edited:
//! a change is a new entry at the end.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::{SqlContext, StoreError};

/// `PRAGMA application_id` of a ccos database: "ccos" in ASCII. Guards
/// against pointing --state-dir at some other program's SQLite file.
pub const APPLICATION_ID: i64 = 0x6363_6f73;

pub const MIGRATIONS: &[&str] = &[V1_INITIAL, V2_RUN_CAPABILITIES];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

// Times are the fixed-width RFC 3339 text of `Timestamp`, so they sort as
// text. JSON columns hold what the API shows as nested objects. STRICT makes
// SQLite refuse a value of the wrong type instead of storing it.
const V1_INITIAL: &str = r#"
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE runs (
    id                        TEXT PRIMARY KEY,
    session_id                TEXT NOT NULL REFERENCES sessions(id),
    goal                      TEXT NOT NULL,
    state                     TEXT NOT NULL CHECK (state IN ('queued', 'active', 'paused_approval',
                                  'paused_external_event', 'done', 'failed', 'cancelled')),
    state_reason              TEXT,
    agent                     TEXT NOT NULL,  -- JSON {argv, env}
    profile                   TEXT NOT NULL,
    profile_hash              TEXT,
    budget                    TEXT NOT NULL,  -- JSON, null fields = unlimited
    budget_policy             TEXT NOT NULL CHECK (budget_policy IN ('hard_stop', 'pause_approval')),
    usage                     TEXT NOT NULL,  -- JSON
    budget_window_started_at  TEXT,
    completion_predicate      TEXT NOT NULL,
    current_step_id           TEXT,
    exit                      TEXT,           -- JSON {code, signal, reason} once the jail ended
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL,
    started_at                TEXT,
    ended_at                  TEXT,
    metadata                  TEXT NOT NULL   -- JSON object
) STRICT;
CREATE INDEX runs_by_session ON runs (session_id, created_at);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_state ON runs (state);
-- The rule "a session has at most one active run", also held by the
-- database itself, whatever the code above it does.
CREATE UNIQUE INDEX runs_one_active_per_session ON runs (session_id) WHERE state = 'active';

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    run_id      TEXT REFERENCES runs(id),
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    sender      TEXT NOT NULL,
    text        TEXT NOT NULL,
    at          TEXT NOT NULL,
    -- inbound only: handed to the agent's inbox (each message once)
    delivered   INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1))
) STRICT;
CREATE INDEX messages_by_session ON messages (session_id, at);
CREATE INDEX messages_inbox ON messages (run_id, delivered) WHERE direction = 'in';

-- The audit chain. No foreign keys: events outlive and precede what they
-- name (supervisor.start has no run; an event about a refused request may
-- name a run that never existed).
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    type        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    session_id  TEXT,
    run_id      TEXT,
    step_id     TEXT,
    decision    TEXT,
    detail      TEXT NOT NULL,  -- JSON object, canonical form
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_session ON audit_events (session_id, seq);
CREATE INDEX audit_by_run ON audit_events (run_id, seq);
"#;

// A run's capability allowlist: a JSON array of ids, NULL for "all".
const V2_RUN_CAPABILITIES: &str = r#"
ALTER TABLE runs ADD COLUMN capabilities TEXT;
"#;

pub(crate) fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).ctx("reading the schema version")
}

/// Brings the database at `path` up to `migrations.len()`, or refuses it.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StoreError> {
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).ctx("reading the application id")?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::NotOurDatabase { path: path.to_owned(), found: app_id });
    }
    let supported = migrations.len() as i64;
    let found = user_version(conn)?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { path: path.to_owned(), found, supported });
    }
    for (index, sql) in migrations.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a migration")?;
        tx.execute_batch(sql).ctx("applying a schema migration")?;
        // The header fields are written through the same transaction: they
        // commit or roll back with the migration.
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};", index + 1))
            .ctx("recording the schema version")?;
        tx.commit().ctx("committing a schema migration")?;
    }
    Ok(())
}
