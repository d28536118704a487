//! `spawn::begin` and `Prepared::begin`: a jail handed its run without
//! waiting for the program's execve, as the supervisor's spawner uses it
//! (it polls the set-up pipe and answers the spawn when it is ready). As
//! root.
//!
//! No libtest harness: spawning a jail needs a single-threaded process, so
//! the cases run one after the other in `main`.

mod common;

use std::io::Read;
use std::sync::Arc;

use ccos_jail::spawn::{Ahead, CgroupSource, HostPaths, Starting};
use ccos_jail::{EndReason, JailSpec, Profile};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag};

fn main() {
    if !common::require_root() {
        return;
    }
    the_program_runs_once_the_setup_pipe_is_ready();
    a_missing_program_is_a_setup_failure_on_the_pipe();
    a_jail_killed_while_starting_finishes_and_reports_the_kill();
    a_prepared_jail_begins_its_run();
    eprintln!("starting: ok");
}

fn profile() -> Arc<Profile> {
    Arc::new(Profile::shipped("default").expect("the shipped default profile"))
}

/// A jail running `sh -c script`, its stdout the write end of the pipe
/// returned.
fn spec(script: &str) -> (JailSpec, std::fs::File) {
    let mut spec = JailSpec::new(profile(), vec!["/bin/sh".into(), "-c".into(), script.into()]);
    let (read, write) = nix::unistd::pipe().unwrap();
    spec.stdout = Some(write);
    (spec, std::fs::File::from(read))
}

/// Polls the set-up pipe as the spawner does: it must become ready.
fn wait_until_ready(starting: &Starting, case: &str) {
    let mut fds = [PollFd::new(starting.setup_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
    assert_eq!(ready, 1, "{case}: the set-up pipe was not ready within 10 s");
}

/// Polls the set-up pipe, finishes, and waits for the program: it must
/// have started and exited with `code`.
fn expect_program_exit(starting: Starting, case: &str, code: i32) {
    wait_until_ready(&starting, case);
    let jail = starting.finish();
    assert!(jail.setup_failure().is_none(), "{case}: {:?}", jail.setup_failure());
    let report = jail.wait(None).unwrap();
    assert_eq!((report.reason, report.exit_code), (EndReason::Exited, Some(code)), "{case}: {report:?}");
}

fn read_all(mut pipe: std::fs::File) -> String {
    let mut out = String::new();
    pipe.read_to_string(&mut out).unwrap();
    out
}

/// No child of this process is left, alive or unreaped.
fn assert_no_children(case: &str) {
    assert_eq!(waitpid(None, Some(WaitPidFlag::WNOHANG)), Err(Errno::ECHILD), "{case}: a child is left");
}

fn the_program_runs_once_the_setup_pipe_is_ready() {
    let case = "runs";
    let (spec, out) = spec("echo started; exit 3");
    let starting = ccos_jail::spawn::begin(&spec, CgroupSource::None).unwrap();
    drop(spec);
    expect_program_exit(starting, case, 3);
    assert_eq!(read_all(out), "started\n", "{case}");
    assert_no_children(case);
}

fn a_missing_program_is_a_setup_failure_on_the_pipe() {
    let case = "missing";
    let spec = JailSpec::new(profile(), vec!["/no/such/program".into()]);
    let starting = ccos_jail::spawn::begin(&spec, CgroupSource::None).unwrap();
    wait_until_ready(&starting, case);
    let jail = starting.finish();
    let failure = jail.setup_failure().cloned().expect("a set-up failure");
    assert_eq!(failure.exit_code, 127, "{case}: {failure:?}");
    assert!(failure.message.contains("/no/such/program"), "{case}: the failure names the program: {failure:?}");
    let report = jail.wait(None).unwrap();
    assert_eq!(report.reason, EndReason::SpawnFailed, "{case}: {report:?}");
    assert_no_children(case);
}

fn a_jail_killed_while_starting_finishes_and_reports_the_kill() {
    let case = "killed";
    let (spec, out) = spec("echo started; exec sleep 60");
    let mut starting = ccos_jail::spawn::begin(&spec, CgroupSource::None).unwrap();
    drop(spec);
    // Killed at once, most likely before its execve: the pipe still comes
    // to its end (every process of the jail is gone), so finish returns.
    starting.jail_mut().kill(EndReason::Killed);
    wait_until_ready(&starting, case);
    let jail = starting.finish();
    let report = jail.wait(None).unwrap();
    assert_eq!(report.reason, EndReason::Killed, "{case}: {report:?}");
    assert_eq!(report.exit_code, None, "{case}: {report:?}");
    assert!(read_all(out).len() <= "started\n".len(), "{case}");
    assert_no_children(case);
}

fn a_prepared_jail_begins_its_run() {
    let case = "prepared";
    let profile = profile();
    let ahead = Ahead { profile: &profile, network: profile.network, network_ready: None };
    let prepared = ccos_jail::spawn::prepare(&ahead, &HostPaths::default(), CgroupSource::None).unwrap();
    let (mut spec, out) = spec("echo \"$0 in $(hostname)\"");
    spec.hostname = Some("begun".into());
    let starting = prepared.begin(&spec).unwrap();
    drop(spec);
    expect_program_exit(starting, case, 0);
    assert_eq!(read_all(out), "/bin/sh in begun\n", "{case}");
    assert_no_children(case);
}
