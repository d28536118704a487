//! The wire protocol between the daemon and its spawner: one enum each way,
//! one JSON document per SEQPACKET message.
//!
//! ```text
//! daemon  -> spawner   RequestFrame { id, request: Request }
//! spawner -> daemon    ReplyFrame   { id: Some(id), reply }   the answer to request `id`
//!                      ReplyFrame   { id: None, reply }       an event: Exited, Lost
//! ```
//!
//! The conversation, in order:
//!
//! - At start the spawner sends `Ready` (id none) once its cgroup root is
//!   open, or `Error` (id none) and exits.
//! - `Spawn` is answered by `Spawned`, with the jail init's pidfd attached
//!   (SCM_RIGHTS), or by `Error` when nothing was started. A jail whose
//!   set-up failed before the program's execve is still `Spawned` (with
//!   `setup_failure`): it exists until it is reaped. Every `Spawned` run is
//!   later followed by exactly one `Exited` (or, if reaping itself failed,
//!   `Lost`), never before its `Spawned`.
//! - `LoadProfiles` is answered by `Profiles` (the whole new set, which
//!   replaces the old one) or `Error` (the old set stays).
//! - `Signal`, `Kill`, `Freeze`, `Thaw`, `SetLimits` are answered by `Ok`
//!   or `Error`;
//!   `Usage` by `Usage` or `Error`. A run is known from its `Spawned` until
//!   its `Exited`; after that it is an unknown run.
//!
//! Framing: SOCK_SEQPACKET keeps message boundaries, so a message is exactly
//! one JSON document. A message is at most [`MAX_MESSAGE`] bytes, checked by
//! [`encode`] before sending; the kernel's own limit for one AF_UNIX
//! SEQPACKET message is the sender's socket buffer (net.core.wmem_default,
//! 208 KiB by default), so 64 KiB always fits. A received message longer
//! than that is cut by the kernel (MSG_TRUNC) and refused.

use std::path::PathBuf;

use ccos_jail::cgroup::{Mode, Usage};
use ccos_jail::profile::NetworkMode;
use ccos_jail::report::SetupFailure;
use ccos_jail::Report;
use serde::{Deserialize, Serialize};

/// The largest message either side sends or accepts, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The longest run id, in bytes. A run's cgroup is named
/// `run-<spawner pid>-<run id>`, well inside the kernel's 255 bytes.
pub const MAX_RUN_ID: usize = 128;

/// Chosen by the daemon, unique among its requests in flight.
pub type RequestId = u64;

/// Daemon -> spawner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: RequestId,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Make a jail and start `argv` in it.
    Spawn(Box<SpawnRequest>),
    /// Send a signal (Linux number) to the jail's init, which passes
    /// SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to the
    /// program; SIGKILL ends the whole jail.
    Signal {
        run_id: String,
        signal: i32,
    },
    /// End the whole jail (every process of its cgroup); its `Exited` says
    /// `killed`.
    Kill {
        run_id: String,
    },
    /// Stop every process of the jail (its cgroup's freezer).
    Freeze {
        run_id: String,
    },
    Thaw {
        run_id: String,
    },
    /// What the jail's cgroup has used so far.
    Usage {
        run_id: String,
    },
    /// New memory and pids limits for the live jail's cgroup; `None` lifts
    /// a limit.
    SetLimits {
        run_id: String,
        memory_bytes: Option<u64>,
        pids: Option<u64>,
    },
    /// Load the shipped profiles and every `*.toml` in `dir` (a file's stem
    /// is its name; it overrides a shipped profile of that name), compiling
    /// their seccomp filters. All or nothing: one broken file refuses the
    /// load and the profiles in use stay. Until the first load, `Spawn`
    /// takes shipped names and profile paths, loaded on first use.
    LoadProfiles {
        dir: Option<PathBuf>,
    },
}

impl Request {
    /// The run the request is about; `None` for requests about no run.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Request::Spawn(s) => Some(&s.run_id),
            Request::Signal { run_id, .. }
            | Request::Kill { run_id }
            | Request::Freeze { run_id }
            | Request::Thaw { run_id }
            | Request::Usage { run_id }
            | Request::SetLimits { run_id, .. } => Some(run_id),
            Request::LoadProfiles { .. } => None,
        }
    }
}

/// One jail to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// The daemon's id of the run; see [`check_run_id`] for what is allowed.
    pub run_id: String,
    /// argv\[0\] is the program: an absolute path, or a name looked up on
    /// the jail's PATH.
    pub argv: Vec<String>,
    /// Variables for the program, on top of the profile's.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// A shipped profile name (`default`, `strict`) or a path to a profile
    /// `.toml` file. The spawner loads each one once and keeps it.
    pub profile: String,
    #[serde(default)]
    pub limits: RunLimits,
    /// Host paths bound into the jail, on top of the profile's.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// A file the program reads as its stdin; `None` is /dev/null.
    #[serde(default)]
    pub stdin_path: Option<PathBuf>,
    /// Files the program's stdout and stderr are appended to (created with
    /// mode 0640); `None` is /dev/null. The same path may be given for both.
    pub stdout_path: Option<PathBuf>,
    pub stderr_path: Option<PathBuf>,
    /// The jail's host name instead of the profile's.
    pub hostname: Option<String>,
    /// The jail's network instead of the profile's.
    pub network: Option<NetworkMode>,
}

impl SpawnRequest {
    /// A request with the `default` profile, its limits and no output files.
    pub fn new(run_id: impl Into<String>, argv: Vec<String>) -> SpawnRequest {
        SpawnRequest {
            run_id: run_id.into(),
            argv,
            env: Vec::new(),
            profile: "default".into(),
            limits: RunLimits::default(),
            binds: Vec::new(),
            stdin_path: None,
            stdout_path: None,
            stderr_path: None,
            hostname: None,
            network: None,
        }
    }
}

/// Limits on top of the profile's; each one given replaces the profile's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// A fraction of CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Wall time from the spawn; the jail is killed at it and ends with
    /// reason `time_limit`. It keeps running while the jail is frozen.
    pub time_limit_secs: Option<f64>,
}

/// A host path bound into the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub src: PathBuf,
    pub dst: PathBuf,
    #[serde(default = "read_only_by_default")]
    pub read_only: bool,
}

fn read_only_by_default() -> bool {
    true
}

/// Spawner -> daemon. `id` is the request answered, `None` for events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyFrame {
    pub id: Option<RequestId>,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// First message of the spawner (id none): it is ready for requests.
    Ready {
        pid: i32,
        cgroup: Mode,
        /// Empty groups of dead spawners it removed at start.
        removed_stale: Vec<String>,
    },
    /// Answers `Spawn`; the jail init's pidfd comes with this message.
    Spawned {
        run_id: String,
        pid: i32,
        /// The hash of the profile the jail was made with
        /// (`ccos_jail::profile::Profile::hash`).
        profile_hash: String,
        setup_failure: Option<SetupFailure>,
    },
    /// Event: the jail ended and was reaped.
    Exited {
        run_id: String,
        report: Report,
    },
    /// Event: the spawner could not reap the jail and no longer tracks it
    /// (there will be no `Exited`).
    Lost {
        run_id: String,
        message: String,
    },
    /// Answers `Signal`, `Kill`, `Freeze`, `Thaw`.
    Ok {
        run_id: String,
    },
    Usage {
        run_id: String,
        usage: RunUsage,
    },
    /// Answers `LoadProfiles`: every profile now in use, by name.
    Profiles {
        profiles: Vec<LoadedProfile>,
    },
    /// The request was refused or failed; nothing was started by it.
    Error {
        run_id: Option<String>,
        kind: ErrorKind,
        message: String,
    },
}

/// One profile the spawner loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedProfile {
    pub name: String,
    /// `<shipped NAME>` or the file it came from.
    pub origin: String,
    pub hash: String,
}

/// Why a request failed, for the daemon to map onto its API's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not valid JSON, too large, a bad run id, signal or limit.
    BadRequest,
    /// No live run has this id (never spawned, or already exited).
    UnknownRun,
    /// A live run already has this id.
    DuplicateRun,
    /// The profile could not be found or loaded.
    Profile,
    /// Opening the run's stdout or stderr file.
    Output,
    /// Creating, freezing, thawing or reading the run's cgroup.
    Cgroup,
    /// The jail library refused or failed before the program's set-up.
    Spawn,
    /// A system call on a live run failed (sending it a signal).
    System,
    /// The spawner itself could not start.
    Start,
}

/// What a run's cgroup has used; a field is `None` where the kernel or the
/// cgroup version does not count it (see `ccos_jail::cgroup::Usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUsage {
    pub cpu_usec: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_peak: Option<u64>,
}

impl From<Usage> for RunUsage {
    fn from(u: Usage) -> RunUsage {
        RunUsage {
            cpu_usec: u.cpu_usec,
            memory_current: u.memory_current,
            memory_peak: u.memory_peak,
            pids_current: u.pids_current,
            pids_peak: u.pids_peak,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("a spawner message of {bytes} bytes is over the {MAX_MESSAGE}-byte limit (long argv or environment?)")]
    TooLarge { bytes: usize },
    #[error("encoding a spawner message: {0}")]
    Encode(serde_json::Error),
    #[error("decoding a spawner message: {0}")]
    Decode(serde_json::Error),
}

/// One message, checked against [`MAX_MESSAGE`].
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, ProtocolError> {
    let bytes = serde_json::to_vec(message).map_err(ProtocolError::Encode)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(ProtocolError::TooLarge { bytes: bytes.len() });
    }
    Ok(bytes)
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(bytes).map_err(ProtocolError::Decode)
}

/// The request id and run id of a message that did not decode, where they
/// can be read, so even a malformed request gets a matched answer.
pub fn salvage_ids(bytes: &[u8]) -> (Option<RequestId>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return (None, None);
    };
    let id = value.get("id").and_then(|v| v.as_u64());
    let run_id = value.get("request").and_then(|r| r.get("run_id")).and_then(|v| v.as_str()).map(str::to_string);
    (id, run_id)
}

/// A run id is 1 to [`MAX_RUN_ID`] bytes of ASCII letters, digits, `_`,
/// `-` and `.`, starting with a letter or digit: it becomes part of a
/// cgroup directory name, so nothing that could walk out of it.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    if run_id.is_empty() || run_id.len() > MAX_RUN_ID {
        return Err(format!("run id {run_id:?}: must be 1 to {MAX_RUN_ID} bytes"));
    }
    if !run_id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("run id {run_id:?}: must start with a letter or digit"));
    }
    if let Some(c) = run_id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(format!("run id {run_id:?}: {c:?} is not allowed (letters, digits, '_', '-', '.')"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccos_jail::report::Timings;
    use ccos_jail::EndReason;

    #[test]
    fn requests_round_trip_and_read_as_documented() {
        let mut spawn = SpawnRequest::new("r1", vec!["/bin/true".into()]);
        spawn.limits.time_limit_secs = Some(1.5);
        spawn.binds.push(Bind { src: "/srv/data".into(), dst: "/data".into(), read_only: true });
        for request in [
            Request::Spawn(Box::new(spawn)),
            Request::Signal { run_id: "r1".into(), signal: 15 },
            Request::Kill { run_id: "r1".into() },
            Request::Usage { run_id: "r1".into() },
        ] {
            let frame = RequestFrame { id: 7, request };
            let bytes = encode(&frame).unwrap();
            assert_eq!(decode::<RequestFrame>(&bytes).unwrap(), frame);
        }
        let text = r#"{"id":3,"request":{"type":"kill","run_id":"r9"}}"#;
        assert_eq!(
            decode::<RequestFrame>(text.as_bytes()).unwrap(),
            RequestFrame { id: 3, request: Request::Kill { run_id: "r9".into() } }
        );
        // Optional fields may be left out; binds are read-only unless said.
        let text = r#"{"id":4,"request":{"type":"spawn","run_id":"r2","argv":["true"],"profile":"strict",
            "binds":[{"src":"/a","dst":"/b"}],"stdout_path":null,"stderr_path":null,"hostname":null,"network":null}}"#;
        let RequestFrame { request: Request::Spawn(s), .. } = decode(text.as_bytes()).unwrap() else { panic!() };
        assert!(s.binds[0].read_only && s.env.is_empty() && s.limits == RunLimits::default());
    }

    #[test]
    fn replies_round_trip() {
        let report = Report {
            exit_code: Some(3),
            signal: None,
            reason: EndReason::Exited,
            wall_secs: 0.5,
            cpu_secs: 0.01,
            memory_peak_bytes: Some(1 << 20),
            pids_peak: Some(2),
            profile: "default".into(),
            profile_hash: "sha256:x".into(),
            error: None,
            timings: Timings::default(),
        };
        for frame in [
            ReplyFrame { id: None, reply: Reply::Exited { run_id: "r1".into(), report } },
            ReplyFrame {
                id: Some(1),
                reply: Reply::Spawned {
                    run_id: "r1".into(),
                    pid: 42,
                    profile_hash: "sha256:00".into(),
                    setup_failure: None,
                },
            },
            ReplyFrame {
                id: Some(2),
                reply: Reply::Error { run_id: None, kind: ErrorKind::BadRequest, message: "x".into() },
            },
            ReplyFrame { id: None, reply: Reply::Ready { pid: 1, cgroup: Mode::V1, removed_stale: vec![] } },
        ] {
            assert_eq!(decode::<ReplyFrame>(&encode(&frame).unwrap()).unwrap(), frame);
        }
    }

    #[test]
    fn oversized_messages_are_refused_before_sending() {
        let spawn = SpawnRequest::new("r1", vec!["x".repeat(MAX_MESSAGE)]);
        let err = encode(&RequestFrame { id: 1, request: Request::Spawn(Box::new(spawn)) }).unwrap_err();
        assert!(err.to_string().contains("over the 65536-byte limit"), "{err}");
    }

    #[test]
    fn ids_are_salvaged_from_requests_that_do_not_decode() {
        assert_eq!(
            salvage_ids(br#"{"id":5,"request":{"type":"explode","run_id":"r1"}}"#),
            (Some(5), Some("r1".to_string()))
        );
        assert_eq!(salvage_ids(b"not json"), (None, None));
    }

    #[test]
    fn run_ids_that_could_escape_a_cgroup_name_are_refused() {
        for ok in ["r1", "run_2024-01-01.a", "7"] {
            check_run_id(ok).unwrap();
        }
        for bad in ["", "..", ".hidden", "-x", "a/b", "a b", "ü", &"x".repeat(MAX_RUN_ID + 1)] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_run_id("a/b").unwrap_err(),
            r#"run id "a/b": '/' is not allowed (letters, digits, '_', '-', '.')"#
        );
    }
}
