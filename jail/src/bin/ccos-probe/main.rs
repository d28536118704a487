//! `ccos-probe`: a program run *inside* a jail that tries to break out and
//! reports, for every attempt, exactly what happened (`escape`), plus small
//! bounded workloads for the jail's other tests.
//!
//! It deliberately does not use the ccos_jail library: it judges the jail
//! from the inside and must not share code (or bugs) with it.

mod escape;
mod isolate;
mod outcome;
mod stress;
mod sys;
mod workloads;

use std::process::ExitCode;
use std::str::FromStr;

const USAGE: &str = "\
usage: ccos-probe COMMAND [ARGS]
  escape [--host-pid PID] [--host-port PORT]
                      try every breakout; one JSON object per line
  exit CODE           exit with CODE
  signal SIG          kill itself with signal number SIG
  env                 the environment as a JSON object
  ids                 uid, gid, groups, pid, ppid, hostname, cwd as JSON
  fds                 open file descriptors as JSON
  mounts              print /proc/self/mountinfo
  cat FILE            print FILE
  echo-stdin          copy stdin to stdout
  stderr TEXT         write TEXT to stderr
  sleep SECS          sleep
  hog-memory MIB      allocate and touch MIB MiB, 1 MiB at a time
  fork-bomb SECS      fork sleeping children for SECS seconds, then report
  spin SECS           burn one CPU for SECS seconds, print loops done
  count               print 'COUNTER MONOTONIC_NS' every 10 ms, forever
  daemonize SECS      double-fork a setsid grandchild sleeping SECS; print its pid
  timestamp           print CLOCK_REALTIME in nanoseconds";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(Ok(code)) => code,
        // The workload ran and failed.
        Ok(Err(msg)) => {
            eprintln!("ccos-probe: {msg}");
            ExitCode::FAILURE
        }
        // The command line was wrong.
        Err(msg) => {
            eprintln!("ccos-probe: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The argument at `idx`, parsed.
fn arg<T: FromStr>(args: &[String], idx: usize, what: &str) -> Result<T, String> {
    let raw = args.get(idx).ok_or_else(|| format!("missing {what}"))?;
    raw.parse().map_err(|_| format!("bad {what}: {raw:?}"))
}

/// Outer `Err`: a usage error (exit 2). Inner: what the workload did.
fn dispatch(args: &[String]) -> Result<workloads::Outcome, String> {
    let Some(cmd) = args.first() else {
        return Err("no command".to_owned());
    };
    let want = |n: usize| {
        if args.len() == n + 1 {
            Ok(())
        } else {
            Err(format!("{cmd} takes {n} argument(s)"))
        }
    };
    let outcome = match cmd.as_str() {
        "escape" => {
            escape::run(&escape_options(&args[1..])?);
            Ok(ExitCode::SUCCESS)
        }
        "exit" => {
            want(1)?;
            workloads::exit(arg(args, 1, "CODE")?)
        }
        "signal" => {
            want(1)?;
            workloads::signal(arg(args, 1, "SIG")?)
        }
        "env" => want(0).map(|()| workloads::env())?,
        "ids" => want(0).map(|()| workloads::ids())?,
        "fds" => want(0).map(|()| workloads::fds())?,
        "mounts" => want(0).map(|()| workloads::cat("/proc/self/mountinfo"))?,
        "cat" => want(1).map(|()| workloads::cat(&args[1]))?,
        "echo-stdin" => want(0).map(|()| workloads::echo_stdin())?,
        "stderr" => want(1).map(|()| workloads::stderr(&args[1]))?,
        "sleep" => {
            want(1)?;
            workloads::sleep(arg(args, 1, "SECS")?)
        }
        "hog-memory" => {
            want(1)?;
            stress::hog_memory(arg(args, 1, "MIB")?)
        }
        "fork-bomb" => {
            want(1)?;
            stress::fork_bomb(arg(args, 1, "SECS")?)
        }
        "spin" => {
            want(1)?;
            stress::spin(arg(args, 1, "SECS")?)
        }
        "count" => want(0).map(|()| stress::count())?,
        "daemonize" => {
            want(1)?;
            stress::daemonize(arg(args, 1, "SECS")?)
        }
        "timestamp" => want(0).map(|()| workloads::timestamp())?,
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(outcome)
}

/// `--host-pid PID`, `--host-port PORT` (also `--flag=VALUE`).
fn escape_options(args: &[String]) -> Result<escape::Options, String> {
    let mut opts = escape::Options::default();
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (args[i].as_str(), None),
        };
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))?
            }
        };
        let bad = || format!("bad value for {flag}: {value:?}");
        match flag {
            "--host-pid" => opts.host_pid = Some(value.parse().map_err(|_| bad())?),
            "--host-port" => opts.host_port = Some(value.parse().map_err(|_| bad())?),
            _ => return Err(format!("unknown option {flag:?}")),
        }
        i += 1;
    }
    Ok(opts)
}
