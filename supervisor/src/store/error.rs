//! What can go wrong in the store, each variant saying what and which object,
//! and mapping to one API error code ([`StoreError::code`]) and HTTP status.

use std::io;
use std::path::PathBuf;

use crate::lifecycle::{PredicateUnsatisfied, TransitionError};
use crate::model::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run `{run_id}` not found")]
    RunNotFound { run_id: String },

    #[error(
        "session `{session_id}` already has an active run, `{run_id}`; wait for it to end or pause, \
         or create the run with \"queue\": true"
    )]
    ActiveRunExists { session_id: String, run_id: String },

    #[error(transparent)]
    InvalidTransition(#[from] TransitionError),

    #[error(transparent)]
    PredicateUnsatisfied(#[from] PredicateUnsatisfied),

    #[error(transparent)]
    BadRequest(#[from] RequestError),

    #[error("`limit` must be between 1 and {max}, got {limit}")]
    InvalidLimit { limit: u64, max: u32 },

    #[error("run `{run_id}` already has its exit recorded")]
    ExitAlreadyRecorded { run_id: String },

    #[error(
        "{} has schema version {found}, but this ccos-supervisor supports up to version {supported}: \
         it was written by a newer release; run that release, or restore a backup",
        .path.display()
    )]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },

    #[error("{} is not a ccos-supervisor database (its application_id is {found:#x})", .path.display())]
    NotOurDatabase { path: PathBuf, found: i64 },

    #[error(
        "cannot use journal_mode=WAL on {} (SQLite left it at `{mode}`); \
         is the state directory on a local filesystem?",
        .path.display()
    )]
    NoWal { path: PathBuf, mode: String },

    #[error("cannot prepare the state directory {}: {source}", .path.display())]
    StateDir { path: PathBuf, source: io::Error },

    #[error("cannot draw a random id from /dev/urandom: {0}")]
    RandomId(io::Error),

    #[error("database error while {action}: {source}")]
    Sqlite { action: &'static str, source: rusqlite::Error },

    #[error("stored {what} of `{id}` is unreadable: {reason}")]
    Corrupt { what: &'static str, id: String, reason: String },
}

impl StoreError {
    /// The API's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::RunNotFound { .. } => "run_not_found",
            StoreError::ActiveRunExists { .. } => "active_run_exists",
            StoreError::InvalidTransition(_) => "invalid_transition",
            StoreError::PredicateUnsatisfied(_) => "predicate_unsatisfied",
            StoreError::BadRequest(_) | StoreError::InvalidLimit { .. } => "bad_request",
            StoreError::ExitAlreadyRecorded { .. } => "exit_already_recorded",
            StoreError::Sqlite { source, .. } if is_busy(source) => "store_busy",
            _ => "internal_error",
        }
    }

    /// The HTTP status that goes with [`Self::code`].
    pub fn http_status(&self) -> u16 {
        match self.code() {
            "run_not_found" => 404,
            "active_run_exists" | "invalid_transition" | "predicate_unsatisfied" | "exit_already_recorded" => 409,
            "bad_request" => 400,
            "store_busy" => 503,
            _ => 500,
        }
    }
}

// Another writer held the database past busy_timeout: worth a retry, not a
// daemon bug.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked))
}

/// `.ctx("what we were doing")` on rusqlite results.
pub(crate) trait SqlContext<T> {
    fn ctx(self, action: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, action: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { action, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::RunState;

    #[test]
    fn codes_and_statuses() {
        let cases: [(StoreError, &str, u16); 5] = [
            (StoreError::RunNotFound { run_id: "r".into() }, "run_not_found", 404),
            (StoreError::ActiveRunExists { session_id: "s".into(), run_id: "r".into() }, "active_run_exists", 409),
            (TransitionError { from: RunState::Done, to: RunState::Active }.into(), "invalid_transition", 409),
            (StoreError::InvalidLimit { limit: 0, max: 2000 }, "bad_request", 400),
            (StoreError::Corrupt { what: "x", id: "y".into(), reason: "z".into() }, "internal_error", 500),
        ];
        for (err, code, status) in cases {
            assert_eq!((err.code(), err.http_status()), (code, status), "{err}");
        }
    }
}
