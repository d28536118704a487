//! The daemon's log, through `tracing`, one line per event on stderr, every
//! line passed through the redactor ([`crate::redact::global`]) first.
//! Under systemd stderr is the journal's stream (`JOURNAL_STREAM` names it):
//! lines go there without our own timestamp, as the journal adds its own.
//! (Sending fields to journald natively would bypass redaction: a layer
//! cannot rewrite another layer's field values.) `CCOS_LOG` filters
//! (`info` by default; `debug`, or `ccos_supervisor::api=debug`, ...).

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::redact;

/// Where the log goes, as [`init`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journal,
    Stderr,
}

/// Installs the global subscriber, at `default_level` unless `CCOS_LOG`
/// says otherwise.
pub fn init(default_level: &str) -> LogTarget {
    let filter = EnvFilter::try_from_env("CCOS_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let writer = redact::log_writer::stderr_writer(redact::global().clone());
    // Colours only for a person at a terminal, not in files or pipes.
    let colour = std::io::stderr().is_terminal();
    let layer = tracing_subscriber::fmt::layer().with_ansi(colour).with_writer(writer);
    if stderr_is_the_journal() {
        tracing_subscriber::registry().with(filter).with(layer.without_time()).init();
        LogTarget::Journal
    } else {
        tracing_subscriber::registry().with(filter).with(layer).init();
        LogTarget::Stderr
    }
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` for the stream it connects
/// to stdout/stderr; it is the journal only if stderr is still that file
/// (not redirected by whoever started us since).
fn stderr_is_the_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr().as_fd()) {
        Ok(st) => dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino),
        Err(_) => false,
    }
}
