//! The spawner a previous supervisor left behind with `--on-shutdown keep`.
//!
//! Kept jails run on after the supervisor stops, with its spawner as their
//! parent, until they end. A new supervisor cannot govern them (their agent
//! sockets, pidfds and budgets were the old one's), so when it starts it
//! ends them, through that spawner (SIGTERM: kill every jail, remove their
//! cgroups, exit), before it reconciles the runs they belonged to. The
//! spawner is found by the pid (and start time, against pid reuse) each
//! supervisor records in its state directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a kept spawner gets to kill and reap its jails.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("spawner.pid")
}

/// Records this supervisor's spawner as `<pid> <start time>`.
pub fn record(state_dir: &Path, pid: Pid) -> Result<(), String> {
    let start = start_time(pid).ok_or_else(|| format!("reading /proc/{pid}/stat"))?;
    let path = record_path(state_dir);
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid} {start}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Ends the recorded spawner if it still runs (the same process: same pid
/// and start time). Returns its pid if there was one to end.
pub fn stop_previous(state_dir: &Path) -> Result<Option<Pid>, String> {
    let path = record_path(state_dir);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (fields.next(), fields.next()) else {
        return Ok(None); // a torn or foreign file: nothing of ours to stop
    };
    let pid = Pid::from_raw(pid as i32);
    let same = || start_time(pid) == Some(start);
    if !same() {
        return Ok(None);
    }
    kill(pid, Signal::SIGTERM).map_err(|e| format!("stopping the kept spawner (pid {pid}): {e}"))?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while same() {
        if Instant::now() >= deadline {
            return Err(format!(
                "the spawner of the previous supervisor (pid {pid}, kept jails) did not stop within {STOP_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(pid))
}

/// Field 22 of /proc/<pid>/stat (clock ticks since boot), read after the
/// command name, which may hold spaces and parentheses. `None` once the
/// process is gone (or a zombie, whose start time is still there: it is
/// done either way).
fn start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" {
        return None;
    }
    // `rest` starts at field 3 (state); start time is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_process_is_stopped_and_a_stale_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stop_previous(dir.path()).unwrap(), None, "no record");
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        record(dir.path(), pid).unwrap();
        // Reaped by this thread while stop_previous watches it go.
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        assert_eq!(stop_previous(dir.path()).unwrap(), Some(pid));
        assert_eq!(reaper.join().unwrap().code(), None, "ended by a signal");
        // The same record again: that process is gone now.
        assert_eq!(stop_previous(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_record_of_another_process_start_is_not_acted_on() {
        let dir = tempfile::tempdir().unwrap();
        let me = Pid::this();
        let start = start_time(me).unwrap();
        std::fs::write(record_path(dir.path()), format!("{me} {}\n", start + 1)).unwrap();
        assert_eq!(stop_previous(dir.path()).unwrap(), None);
    }
}
