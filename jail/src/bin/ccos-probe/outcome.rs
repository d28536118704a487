//! What one escape check found, and the JSON line it is printed as.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use std::io;

/// One line of `ccos-probe escape` output. The field order is the order the
/// tests read: `{"check", "escaped", "errno", "detail"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub check: String,
    pub escaped: bool,
    pub errno: Option<String>,
    pub detail: String,
}

impl Report {
    pub fn new(check: &str, outcome: Outcome) -> Self {
        Report {
            check: check.to_owned(),
            escaped: outcome.escaped,
            errno: outcome.errno.map(errno_name),
            detail: outcome.detail,
        }
    }
}

/// The result of one attempt, before it is named and printed.
#[derive(Debug)]
pub struct Outcome {
    pub escaped: bool,
    pub errno: Option<Errno>,
    pub detail: String,
}

impl Outcome {
    /// The attempt worked: the jail let something through.
    pub fn escaped(detail: impl Into<String>) -> Self {
        Outcome { escaped: true, errno: None, detail: detail.into() }
    }

    /// The kernel refused the attempt with `errno`.
    pub fn refused(errno: Errno, detail: impl Into<String>) -> Self {
        Outcome { escaped: false, errno: Some(errno), detail: detail.into() }
    }

    /// Nothing was refused by a call, the state is simply as it should be
    /// (e.g. no capabilities, seccomp mode 2).
    pub fn contained(detail: impl Into<String>) -> Self {
        Outcome { escaped: false, errno: None, detail: detail.into() }
    }

    /// The common case: success of `what` is the escape, any error a refusal.
    pub fn attempt<T>(result: Result<T, Errno>, what: &str) -> Self {
        match result {
            Ok(_) => Outcome::escaped(format!("{what} succeeded")),
            Err(e) => Outcome::refused(e, format!("{what} failed: {}", e.desc())),
        }
    }

    /// For calls made with arguments that the kernel rejects only after its
    /// permission check: an error in `past` proves that check was passed, so
    /// it counts as an escape (and is still reported as the errno).
    pub fn past_check<T>(result: Result<T, Errno>, past: &[Errno], what: &str) -> Self {
        match result {
            Ok(_) => Outcome::escaped(format!("{what} succeeded")),
            Err(e) if past.contains(&e) => Outcome::got_past(e, what),
            Err(e) => Outcome::refused(e, format!("{what} refused: {}", e.desc())),
        }
    }

    /// Like [`Outcome::past_check`], for calls whose post-check errors are
    /// many: only the errnos in `refusals` are refusals.
    pub fn refused_only_by<T>(result: Result<T, Errno>, refusals: &[Errno], what: &str) -> Self {
        match result {
            Ok(_) => Outcome::escaped(format!("{what} succeeded")),
            Err(e) if refusals.contains(&e) => Outcome::refused(e, format!("{what} refused: {}", e.desc())),
            Err(e) => Outcome::got_past(e, what),
        }
    }

    fn got_past(e: Errno, what: &str) -> Self {
        Outcome {
            escaped: true,
            errno: Some(e),
            detail: format!("{what} got past the permission check: {e:?} ({}) comes after it", e.desc()),
        }
    }
}

/// The symbolic name of an errno, e.g. "EPERM".
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

/// The errno behind an `io::Error` (std's socket and file calls).
pub fn errno_of(err: &io::Error) -> Errno {
    match err.raw_os_error() {
        Some(raw) => Errno::from_raw(raw),
        None if err.kind() == io::ErrorKind::TimedOut => Errno::ETIMEDOUT,
        None => Errno::EIO,
    }
}

/// `Result<T, io::Error>` to `Result<T, Errno>`.
pub fn io_res<T>(r: io::Result<T>) -> Result<T, Errno> {
    r.map_err(|e| errno_of(&e))
}
