//! The daemon's log, through `tracing`: to journald when systemd connected
//! stderr to the journal (`JOURNAL_STREAM` names stderr), so that fields
//! such as `run_id` stay fields (`journalctl RUN_ID=run_…`); else to
//! stderr, one line per event. `CCOS_LOG` filters (`info` by default;
//! `debug`, or `ccos_supervisor::api=debug`, ...).

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where the log goes, as [`init`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journald,
    Stderr,
}

/// Installs the global subscriber, at `default_level` unless `CCOS_LOG`
/// says otherwise. Falls back to stderr if the journal's socket cannot be
/// reached, and says so there.
pub fn init(default_level: &str) -> LogTarget {
    let filter = EnvFilter::try_from_env("CCOS_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let journald = if stderr_is_the_journal() {
        match tracing_journald::layer() {
            Ok(layer) => Some(layer.with_syslog_identifier("ccos-supervisor".into())),
            Err(e) => {
                eprintln!("ccos-supervisor: journald is not reachable ({e}); logging to stderr");
                None
            }
        }
    } else {
        None
    };
    let target = if journald.is_some() { LogTarget::Journald } else { LogTarget::Stderr };
    // Colours only for a person at a terminal, not in files or pipes.
    let colour = std::io::stderr().is_terminal();
    let stderr =
        journald.is_none().then(|| tracing_subscriber::fmt::layer().with_ansi(colour).with_writer(std::io::stderr));
    tracing_subscriber::registry().with(filter).with(journald).with(stderr).init();
    target
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
