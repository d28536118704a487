//! The durable state of the daemon, and the only module with SQL: SQLite
//! (bundled) in the state directory, `<state_dir>/ccos.db`.
//!
//! Every operation that changes state runs in one `BEGIN IMMEDIATE`
//! transaction and appends its audit event(s) in that same transaction, so a
//! run's state and its audit trail commit together or not at all. The
//! connection sits behind a mutex: the store is `Send + Sync`, its calls
//! block (the async layer calls them from `spawn_blocking`), and writes are
//! serialised, which the audit chain needs anyway (each event names the one
//! before it).
//!
//! # Durability
//!
//! WAL with `synchronous = FULL`: a commit returns only after the WAL has
//! been fsync'ed, so what the daemon has acknowledged survives a SIGKILL of
//! the daemon *and* a kernel crash or power loss. (`NORMAL` with WAL would
//! also survive SIGKILL, since a committed transaction is already in the
//! kernel's page cache when `write` returns and the kernel writes it out
//! even if the process dies; but it may lose the last transactions on power
//! loss, and an audit log that forgets acknowledged decisions after a power
//! cut is not what it claims to be.) The cost is one fsync per write
//! transaction; this daemon writes at the rate of capability calls and
//! lifecycle changes, not of a database benchmark.

mod audit;
mod error;
mod messages;
mod runs;
mod schema;
mod steps;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use audit::AuditFilter;
pub use error::StoreError;
pub use messages::{Ingested, DEFAULT_SENDER, RESUMED_BY_MESSAGE, SYSTEM_SENDER};
pub use runs::{kickoff_text, RunFilter, Transitioned};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use steps::{CapabilityCheck, Meters, Refusal, Step};

use error::SqlContext;

/// The database file inside the state directory.
pub const DB_FILE: &str = "ccos.db";
/// `limit` of list operations accepts 1..=MAX_LIMIT (API.md).
pub const MAX_LIMIT: u32 = 2000;
/// The `limit` the API uses when a request gives none.
pub const DEFAULT_LIMIT: u32 = 200;
/// How long a writer waits for another (a second process, say `sqlite3` run
/// by an operator) before the call fails with `store_busy`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `dir/ccos.db`, then migrates it to this
    /// release's schema or refuses it if it is from a newer one.
    pub fn open(dir: &Path) -> Result<Store> {
        // The state holds goals and messages: owner-only, directory and file.
        // An existing directory keeps its mode (tmpfiles.d owns it).
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::StateDir { path: dir.to_owned(), source })?;
        let path = dir.join(DB_FILE);
        // Created here rather than by SQLite so it is 0600 from the start;
        // SQLite gives the -wal and -shm files the mode of the database.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::StateDir { path: path.clone(), source })?;

        let mut conn = Connection::open(&path).ctx("opening the database")?;
        conn.busy_timeout(BUSY_TIMEOUT).ctx("setting busy_timeout")?;
        conn.pragma_update(None, "foreign_keys", true).ctx("enabling foreign keys")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).ctx("setting journal_mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL").ctx("setting synchronous")?;
        schema::migrate(&mut conn, &path, schema::MIGRATIONS)?;
        Ok(Store { conn: Mutex::new(conn), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (`SCHEMA_VERSION` once open).
    pub fn schema_version(&self) -> Result<i64> {
        schema::user_version(&self.lock())
    }

    // A panic while the lock was held drops (rolls back) its transaction
    // before the mutex is poisoned, so the connection is still consistent.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one write transaction: committed if `f` succeeds, rolled
    /// back (on drop) if it fails.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a transaction")?;
        let out = f(&tx)?;
        tx.commit().ctx("committing")?;
        Ok(out)
    }

    /// Runs `f` on one consistent snapshot (a deferred read transaction).
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).ctx("starting a read")?;
        f(&tx)
    }
}

fn check_limit(limit: u32) -> Result<u32> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(StoreError::InvalidLimit { limit: limit.into(), max: MAX_LIMIT })
    }
}

/// Makes the session row exist: sessions come into being with their first
/// run or message.
fn ensure_session(tx: &Transaction<'_>, session_id: &str, now: &str) -> Result<()> {
    tx.prepare_cached("INSERT INTO sessions (id, created_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING")
        .and_then(|mut st| st.execute((session_id, now)))
        .ctx("recording the session")?;
    Ok(())
}

fn new_id(prefix: &str) -> Result<String> {
    crate::model::new_id(prefix).map_err(StoreError::RandomId)
}

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
