//! Resource workloads for limit, freeze and cleanup tests. Each stops by
//! itself: memory is bounded by MIB, the others by SECS (except `count`,
//! which is meant to be frozen, thawed and killed by the test).

use crate::sys;
use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, read, setsid, write, ForkResult, Pid};
use serde::Serialize;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::workloads::Outcome;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// `hog-memory MIB`: allocate and touch MIB MiB, one MiB at a time, printing
/// `allocated N MiB` after each; exit 0 once all of it is held. A memory
/// limit shows up as the OOM killer's SIGKILL, or as exit 1 with
/// `allocation failed at N MiB` if the allocator is refused first.
pub fn hog_memory(mib: usize) -> Outcome {
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(mib);
    let mut out = io::stdout().lock();
    for n in 1..=mib {
        let mut chunk: Vec<u8> = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() {
            let _ = writeln!(out, "allocation failed at {n} MiB");
            return Ok(ExitCode::FAILURE);
        }
        // resize writes every byte, so every page is really faulted in.
        chunk.resize(MIB, 0xa5);
        std::hint::black_box(&chunk);
        held.push(chunk);
        let _ = writeln!(out, "allocated {n} MiB");
        let _ = out.flush();
    }
    let touched: usize = held.iter().map(|c| c.iter().step_by(PAGE).count()).sum();
    let _ = writeln!(out, "done: holding {mib} MiB ({touched} pages)");
    Ok(ExitCode::SUCCESS)
}

/// `fork-bomb` output, in this field order.
#[derive(Serialize)]
struct ForkReport {
    forks_ok: usize,
    forks_failed: u64,
    first_errno: Option<String>,
}

/// `fork-bomb SECS`: fork sleeping children as fast as possible for SECS
/// seconds (only this process forks, so growth is linear, and every child
/// sleeps until the deadline and carries a parent-death SIGKILL), then kill
/// and reap them all and print
/// `{"forks_ok": N, "forks_failed": M, "first_errno": "EAGAIN"|null}`.
pub fn fork_bomb(secs: f64) -> Outcome {
    let span = Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + span;
    let _ = io::stdout().flush();
    let mut children: Vec<Pid> = Vec::new();
    let (mut failed, mut first_errno): (u64, Option<Errno>) = (0, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // SAFETY: this process is single-threaded; the child only sets its
        // parent-death signal, sleeps and _exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let _ = prctl::set_pdeathsig(Signal::SIGKILL);
                std::thread::sleep(left);
                sys::exit_now(0)
            }
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                failed += 1;
                first_errno.get_or_insert(e);
            }
        }
    }
    for &child in &children {
        let _ = kill(child, Signal::SIGKILL);
    }
    for &child in &children {
        while waitpid(child, None) == Err(Errno::EINTR) {}
    }
    let report = ForkReport {
        forks_ok: children.len(),
        forks_failed: failed,
        first_errno: first_errno.map(crate::outcome::errno_name),
    };
    println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

/// `spin SECS`: burn one CPU for SECS seconds of wall time and print the
/// number of loops done (a throttled CPU shows up as fewer loops).
pub fn spin(secs: f64) -> Outcome {
    let span = Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut loops: u64 = 0;
    let mut acc: u64 = 0;
    loop {
        for _ in 0..1024 {
            acc = std::hint::black_box(acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        loops += 1;
        if start.elapsed() >= span {
            break;
        }
    }
    println!("{loops}");
    Ok(ExitCode::SUCCESS)
}

/// `count`: forever, every 10 ms, print `COUNTER MONOTONIC_NS` and flush. A
/// frozen jail shows as a gap in the timestamps with no gap in the counter.
/// Stops when stdout is closed.
pub fn count() -> Outcome {
    let tick = Duration::from_millis(10);
    let start = Instant::now();
    let mut out = io::stdout().lock();
    for n in 0u64.. {
        let now = sys::clock_ns(libc::CLOCK_MONOTONIC);
        if writeln!(out, "{n} {now}").and_then(|()| out.flush()).is_err() {
            break;
        }
        // Sleep to the next absolute tick so the period does not drift.
        let ticks = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let next = start + tick * ticks;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `daemonize SECS`: the classic double fork. The grandchild calls setsid,
/// points stdin/stdout/stderr at /dev/null (as daemons do, so it holds none
/// of the jail's pipes) and sleeps SECS. The original prints the
/// grandchild's pid (as this process's pid namespace numbers it) on one line
/// and exits 0 at once.
pub fn daemonize(secs: f64) -> Outcome {
    let span = Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?;
    let _ = io::stdout().flush();
    let (rd, wr) = pipe().map_err(|e| format!("pipe: {}", e.desc()))?;
    // SAFETY: this process is single-threaded, so the child may run
    // ordinary code.
    match unsafe { fork() }.map_err(|e| format!("fork: {}", e.desc()))? {
        ForkResult::Child => {
            drop(rd);
            // SAFETY: still single-threaded (we are the only thread of the
            // first child).
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(wr);
                    let _ = setsid();
                    detach_stdio();
                    std::thread::sleep(span);
                    sys::exit_now(0)
                }
                Ok(ForkResult::Parent { child }) => {
                    let msg = format!("{child}\n");
                    let _ = write(&wr, msg.as_bytes());
                    sys::exit_now(0)
                }
                Err(_) => sys::exit_now(1),
            }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = Vec::new();
            let mut buf = [0u8; 32];
            // Read up to the newline: the grandchild closed its copy of the
            // write end, but do not depend on it.
            while !msg.ends_with(b"\n") {
                match read(&rd, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => msg.extend_from_slice(&buf[..n]),
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(format!("read: {}", e.desc())),
                }
            }
            while waitpid(child, None) == Err(Errno::EINTR) {}
            let pid = String::from_utf8_lossy(&msg).trim().to_owned();
            if pid.is_empty() {
                return Err("the intermediate child failed to fork".to_owned());
            }
            println!("{pid}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Point fds 0-2 at /dev/null or, without one, at a pipe of our own, so the
/// daemon holds none of the descriptors it was started with.
fn detach_stdio() {
    use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null");
    match null {
        Ok(null) => {
            let _ = dup2_stdin(&null);
            let _ = dup2_stdout(&null);
            let _ = dup2_stderr(&null);
        }
        Err(_) => {
            if let Ok((r, w)) = pipe() {
                let _ = dup2_stdin(&r);
                let _ = dup2_stdout(&w);
                let _ = dup2_stderr(&w);
            }
        }
    }
}
