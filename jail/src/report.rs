//! How a jail ended, and the messages its init sends to the parent.
//!
//! A jail talks back over two pipes (bubblewrap's `--json-status-fd` idea):
//! the *setup* pipe, close-on-exec, carries a [`SetupFailure`] if anything
//! fails before the program's execve, and reads EOF once execve succeeded;
//! the *status* pipe carries the program's exit as [`ChildMessage::Exited`]
//! when it ends. Both carry one JSON line per message.

use serde::{Deserialize, Serialize};

/// The step of the jail's set-up that failed, before the program ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupFailure {
    /// Which step: `wait_for_parent`, `mount`, `hostname`, `network`,
    /// `cgroup_namespace`, `rlimits`, `capabilities`, `ids`, `seccomp`,
    /// `find_program`, `exec`, ...
    pub step: String,
    /// What went wrong, naming the object (path, program, syscall).
    pub message: String,
    /// The errno, when a system call failed.
    pub errno: Option<i32>,
    /// The exit code `ccos-jail run` uses for it: 127 program not found,
    /// 126 not executable, 125 anything else (as Docker and Podman do).
    pub exit_code: i32,
}

impl std::fmt::Display for SetupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "jail set-up failed at {}: {}", self.step, self.message)
    }
}

impl std::error::Error for SetupFailure {}

/// One message from the jail's init to the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildMessage {
    SetupFailed(SetupFailure),
    /// The program ended: with an exit code, or killed by a signal.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

impl ChildMessage {
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("child message serializes");
        line.push(b'\n');
        line
    }

    /// The first complete message in `bytes`, if any.
    pub fn from_bytes(bytes: &[u8]) -> Option<ChildMessage> {
        let line = bytes.split(|b| *b == b'\n').next()?;
        serde_json::from_slice(line).ok()
    }
}

/// Why a jail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The program exited by itself.
    Exited,
    /// The program was killed by a signal it did not ask for from us.
    Signalled,
    /// The wall-time limit ran out and the jail was killed.
    TimeLimit,
    /// The kernel's OOM killer acted inside the jail's memory limit.
    Oom,
    /// The program hit the pids limit (a fork failed with EAGAIN) and ended.
    PidsLimit,
    /// Killed from outside (ccos-jail got a signal, or the caller killed it).
    Killed,
    /// The jail could not be set up; the program never ran.
    SpawnFailed,
}

/// Where one jail's time went, in milliseconds: what a jail costs, phase by
/// phase (profile and seccomp compile, cgroup, clone to the program's
/// execve, the program itself, and tearing the jail down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Making the jail's network namespace ahead of clone (set by callers
    /// that make it per run, such as ccos-jail, which loads the profile and
    /// finds the cgroups meanwhile, on a second thread).
    pub network_ms: Option<f64>,
    /// Loading the profile and compiling its seccomp filter (set by callers
    /// that load it per run, such as ccos-jail).
    pub profile_ms: Option<f64>,
    /// Finding and opening the cgroup root (likewise).
    pub cgroup_ms: Option<f64>,
    /// From the spawn call to clone3, in the parent: planning the root,
    /// opening bind sources, taking an id range and, on v2, making the
    /// jail's cgroup (on v1 it is made during `setup_ms`, in parallel).
    pub clone_ms: f64,
    /// From clone3 to the program's execve: the namespaces, the root, the
    /// cgroup placement, privileges, seccomp.
    pub setup_ms: f64,
    /// From execve to the jail's end.
    pub run_ms: f64,
    /// Reaping the jail, reading and removing its cgroup.
    pub teardown_ms: f64,
}

/// The outcome of one jail, as `--report-json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: EndReason,
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub memory_peak_bytes: Option<u64>,
    pub pids_peak: Option<u64>,
    pub profile: String,
    pub profile_hash: String,
    /// Set when the jail failed before the program's execve.
    pub error: Option<SetupFailure>,
    pub timings: Timings,
}

impl Report {
    /// The exit code a command-line wrapper should end with: the program's
    /// code, 128 + signal when it was killed, or the set-up failure's code.
    pub fn shell_exit_code(&self) -> i32 {
        if let Some(err) = &self.error {
            return err.exit_code;
        }
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 125,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = ChildMessage::SetupFailed(SetupFailure {
            step: "find_program".into(),
            message: "no such program".into(),
            errno: Some(2),
            exit_code: 127,
        });
        assert_eq!(ChildMessage::from_bytes(&m.to_line()), Some(m));
        let e = ChildMessage::Exited { code: None, signal: Some(9) };
        assert_eq!(ChildMessage::from_bytes(&e.to_line()), Some(e));
        assert_eq!(ChildMessage::from_bytes(b"garbage\n"), None);
    }

    #[test]
    fn shell_exit_codes() {
        let mut r = Report {
            exit_code: Some(3),
            signal: None,
            reason: EndReason::Exited,
            wall_secs: 0.0,
            cpu_secs: 0.0,
            memory_peak_bytes: None,
            pids_peak: None,
            profile: "default".into(),
            profile_hash: "sha256:x".into(),
            error: None,
            timings: Timings::default(),
        };
        assert_eq!(r.shell_exit_code(), 3);
        r.exit_code = None;
        r.signal = Some(15);
        assert_eq!(r.shell_exit_code(), 143);
        r.error = Some(SetupFailure { step: "exec".into(), message: "x".into(), errno: None, exit_code: 127 });
        assert_eq!(r.shell_exit_code(), 127);
    }
}
