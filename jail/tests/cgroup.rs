//! The cgroup backend for real, as root, on whichever mode `detect` finds:
//! v1 on the development machines, v2 when booted under QEMU (tests/vm).
//!
//! On a hybrid v1 host the cgroup2 mount has no controllers, but the v2 core
//! (placement, clone3 CLONE_INTO_CGROUP, cgroup.freeze, cgroup.kill, removal,
//! delegation) works there, so the tests that need no limit also run on it
//! as a second backend, "v2-core".
//!
//! Not root: the tests fail when CI=true, and skip with a message otherwise.
//! Every test uses its own group names, so they run in parallel. Children are
//! made with fork from a multi-threaded test process, so after the fork they
//! only make async-signal-safe calls (no allocation, no printing) and end
//! with _exit. They never wait for a pipe's EOF either: a sibling test's
//! child may hold any pipe's write end.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use ccos_jail::cgroup::{
    detect, Cgroup, CgroupConfig, CgroupError, CgroupLimits, Cgroups, Controller, HostCgroups, Layout, Mode,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Gating and backends

/// Whether to run: root runs; not root fails under CI=true, else skips.
fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: the cgroup tests need root, and CI=true forbids skipping them"
    );
    eprintln!("SKIP {test}: not root (run as root; with CI=true this fails instead)");
    false
}

/// CCOS_TEST_SLOW=1 (QEMU without KVM) widens time bounds.
fn slow() -> bool {
    std::env::var("CCOS_TEST_SLOW").as_deref() == Ok("1")
}

struct Backend {
    label: &'static str,
    cgroups: Cgroups,
}

/// The detected backend; with `v2_core`, also v2 without controllers on the
/// cgroup2 mount of a hybrid host.
fn backends(v2_core: bool) -> Vec<Backend> {
    static SHOW: Once = Once::new();
    let detection = detect(&CgroupConfig::default()).expect("detect");
    SHOW.call_once(|| eprintln!("detected:\n{detection}"));
    let mut out =
        vec![Backend { label: "detected", cgroups: Cgroups::open(&detection).expect("open the detected root") }];
    if v2_core && detection.mode == Mode::V1 {
        let config = CgroupConfig { mode: Some(Mode::V2), ..Default::default() };
        if let Ok(d) = detect(&config) {
            out.push(Backend {
                label: "v2-core",
                cgroups: Cgroups::open(&d).expect("open the cgroup2 root of a hybrid host"),
            });
        }
    }
    out
}

fn name(test: &str, b: &Backend) -> String {
    format!("t{}-{test}-{}", std::process::id(), b.label)
}

// ---------------------------------------------------------------------------
// Children: fork, a gate the parent opens after placement, exit

/// Ends a forked child without running destructors or atexit handlers.
fn child_exit(code: i32) -> ! {
    // SAFETY: _exit ends the calling process at once; it is async-signal-safe
    // and touches no state of the parent.
    unsafe { libc::_exit(code) }
}

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

fn pipe() -> Pipe {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    Pipe { r, w }
}

/// In the child: blocks until the parent writes a byte.
fn wait_gate(gate: &Pipe) {
    let mut b = [0u8; 1];
    while let Err(Errno::EINTR) = nix::unistd::read(gate.r.as_fd(), &mut b) {}
}

fn open_gate(gate: &Pipe) {
    nix::unistd::write(gate.w.as_fd(), b"g").expect("open the gate");
}

/// Forks a child that waits at `gate`, then runs `body` and exits with its
/// value. `body` must be async-signal-safe.
fn spawn_gated(gate: &Pipe, body: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the child runs only `wait_gate` and `body`, which by this
    // function's contract make async-signal-safe calls only, and it never
    // returns into the test harness: it ends in _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            wait_gate(gate);
            child_exit(body())
        }
    }
}

/// Reads exactly `buf.len()` bytes, failing the test after `timeout`.
fn read_within(fd: &OwnedFd, buf: &mut [u8], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no answer from the child within {timeout:?}");
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll: {e}"),
        }
        match nix::unistd::read(fd.as_fd(), &mut buf[got..]) {
            Ok(0) => panic!("the child closed its pipe early"),
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// In a child: writes a value to a pipe (a single small write, atomic).
fn report(p: &Pipe, value: i64) {
    let _ = nix::unistd::write(p.w.as_fd(), &value.to_ne_bytes());
}

fn read_report(p: &Pipe, timeout: Duration) -> i64 {
    let mut b = [0u8; 8];
    read_within(&p.r, &mut b, timeout);
    i64::from_ne_bytes(b)
}

/// Alive means not gone and not a zombie (a reparented zombie may wait for a
/// reaper outside this test).
fn alive(pid: Pid) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// Anonymous memory shared with forked children (a counter they bump).
fn shared_counter() -> &'static AtomicU64 {
    // SAFETY: a fresh anonymous shared mapping of one page, with no address
    // hint; the result is checked against MAP_FAILED below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    // SAFETY: the page is zeroed, page-aligned (so aligned for AtomicU64),
    // never unmapped, and only accessed atomically: a 'static reference to
    // it is sound, here and in forked children.
    unsafe { &*p.cast::<AtomicU64>() }
}

/// Touches `bytes` of fresh anonymous memory, one write per page, in a child.
fn touch_memory(bytes: usize) -> i32 {
    // SAFETY: a fresh private anonymous mapping with no address hint; checked
    // against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return 2;
    }
    let base = p.cast::<u8>();
    for off in (0..bytes).step_by(4096) {
        // SAFETY: `off < bytes`, inside the mapping just made, which is
        // writable; volatile so the write is not optimised away.
        unsafe { base.add(off).write_volatile(1) };
    }
    0
}

fn wait_exit(pid: Pid) -> WaitStatus {
    waitpid(pid, None).expect("waitpid")
}

/// Lines of /proc/<pid>/cgroup that end in the group's name.
fn proc_lines_naming(pid: Pid, group: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("read /proc/<pid>/cgroup")
        .lines()
        .filter(|l| l.ends_with(&format!("/{group}")))
        .map(String::from)
        .collect()
}

fn read_trim(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

fn file_of(g: &Cgroup, c: Controller, file: &str) -> PathBuf {
    g.path_of(c).expect("controller directory").join(file)
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn doctor_finds_a_usable_host() {
    if !root_or_skip("doctor_finds_a_usable_host") {
        return;
    }
    let host = HostCgroups::check(&CgroupConfig::default());
    let text = host.to_string();
    assert!(host.ok(), "{text}");
    assert!(text.contains("(missing: none)"), "{text}");
    assert!(text.ends_with("can create a group: yes"), "{text}");
}

#[test]
fn limits_are_written_and_read_back() {
    if !root_or_skip("limits_are_written_and_read_back") {
        return;
    }
    for b in backends(false) {
        let limits = CgroupLimits { memory_max: Some(64 * MIB), pids_max: Some(16), cpus: Some(0.5) };
        let g = b.cgroups.create(&name("limits", &b), &limits).expect("create");
        assert_eq!(g.limits().unwrap(), limits);
        let file = |c, f| read_trim(&file_of(&g, c, f));
        match g.mode() {
            Mode::V2 => {
                assert_eq!(file(Controller::Memory, "memory.max"), "67108864");
                assert_eq!(file(Controller::Pids, "pids.max"), "16");
                assert_eq!(file(Controller::Cpu, "cpu.max"), "50000 100000");
                let swap = file_of(&g, Controller::Memory, "memory.swap.max");
                if swap.exists() {
                    assert_eq!(read_trim(&swap), "0");
                }
            }
            Mode::V1 => {
                assert_eq!(file(Controller::Memory, "memory.limit_in_bytes"), "67108864");
                assert_eq!(file(Controller::Pids, "pids.max"), "16");
                assert_eq!(file(Controller::Cpu, "cpu.cfs_quota_us"), "50000");
                assert_eq!(file(Controller::Cpu, "cpu.cfs_period_us"), "100000");
                let memsw = file_of(&g, Controller::Memory, "memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    assert_eq!(read_trim(&memsw), "67108864");
                }
            }
        }
        let paths: Vec<PathBuf> = g.paths().iter().map(|p| p.to_path_buf()).collect();
        g.remove().expect("remove");
        assert!(paths.iter().all(|p| !p.exists()));
    }
}

#[test]
fn limits_of_a_live_group_are_raised_cut_and_lifted() {
    if !root_or_skip("limits_of_a_live_group_are_raised_cut_and_lifted") {
        return;
    }
    for b in backends(false) {
        let limits = CgroupLimits { memory_max: Some(64 * MIB), pids_max: Some(16), cpus: None };
        let g = b.cgroups.create(&name("update", &b), &limits).expect("create");
        let memsw = file_of(&g, Controller::Memory, "memory.memsw.limit_in_bytes");
        // Raise (on v1 memsw must move first), cut (memory first), lift.
        for (memory, pids) in [(Some(128 * MIB), Some(32)), (Some(32 * MIB), Some(8)), (None, None)] {
            g.update_limits(memory, pids).unwrap_or_else(|e| panic!("{memory:?} {pids:?}: {e}"));
            let now = g.limits().unwrap();
            assert_eq!((now.memory_max, now.pids_max), (memory, pids));
            if g.mode() == Mode::V1 && memsw.exists() {
                assert_eq!(read_trim(&memsw), read_trim(&file_of(&g, Controller::Memory, "memory.limit_in_bytes")));
            }
        }
        let err = g.update_limits(Some(0), None).unwrap_err();
        assert!(err.to_string().contains("memory_max"), "{err}");
        g.remove().expect("remove");
    }
}

#[test]
fn a_limit_without_its_controller_fails_by_name_and_leaves_nothing() {
    if !root_or_skip("a_limit_without_its_controller_fails_by_name_and_leaves_nothing") {
        return;
    }
    let Some(b) = backends(true).into_iter().find(|b| b.label == "v2-core") else {
        eprintln!("SKIP: every controller is available here (not a hybrid host)");
        return;
    };
    let n = name("nolimit", &b);
    let limits = CgroupLimits { memory_max: Some(32 * MIB), ..Default::default() };
    let err = b.cgroups.create(&n, &limits).unwrap_err();
    assert!(matches!(err, CgroupError::ControllerMissing { controller: Controller::Memory, .. }));
    assert!(err.to_string().contains("Delegate=yes"), "{err}");
    assert!(b.cgroups.list(&n).unwrap().is_empty(), "the half-made group was removed");
}

#[test]
fn add_pid_places_a_child_before_it_runs() {
    if !root_or_skip("add_pid_places_a_child_before_it_runs") {
        return;
    }
    for b in backends(true) {
        let n = name("place", &b);
        let g = b.cgroups.create(&n, &CgroupLimits::default()).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || 0);
        g.add_pid(child).expect("add_pid");
        // The child is still at its gate: it has run nothing of its own yet.
        let lines = proc_lines_naming(child, &n);
        assert_eq!(
            lines.len(),
            g.paths().len(),
            "{}: one /proc line per hierarchy should name {n}: {lines:?}",
            b.label
        );
        assert!(g.pids().unwrap().contains(&child));
        assert!(!g.is_empty().unwrap());
        open_gate(&gate);
        assert_eq!(wait_exit(child), WaitStatus::Exited(child, 0));
        assert!(g.is_empty().unwrap(), "{}: an exited (reaped) child leaves it empty", b.label);
        g.remove().unwrap();
    }
}

#[test]
fn clone3_into_cgroup_starts_the_child_inside() {
    if !root_or_skip("clone3_into_cgroup_starts_the_child_inside") {
        return;
    }
    let mut ran = 0;
    for b in backends(true).into_iter().filter(|b| b.cgroups.mode() == Mode::V2) {
        ran += 1;
        let n = name("clone3", &b);
        let g = b.cgroups.create(&n, &CgroupLimits::default()).unwrap();
        let fd = g.clone3_fd().expect("a v2 group has an fd for clone3");
        let gate = pipe();
        // The project's own clone3 wrapper, as the jail uses it. The child
        // only waits at its gate (read) and calls _exit, both
        // async-signal-safe, so forking from the test harness is fine.
        let child = match ccos_jail::sys::clone3_fork(0, Some(fd.as_raw_fd())).expect("clone3") {
            ccos_jail::sys::Forked::Child => {
                wait_gate(&gate);
                child_exit(0);
            }
            ccos_jail::sys::Forked::Parent { pid, .. } => pid,
        };
        // The child has not passed its gate: it was born in the group.
        let lines = proc_lines_naming(child, &n);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("0::/"), "{lines:?}");
        assert!(g.pids().unwrap().contains(&child));
        open_gate(&gate);
        assert_eq!(wait_exit(child), WaitStatus::Exited(child, 0));
        g.remove().unwrap();
    }
    if ran == 0 {
        eprintln!("SKIP clone3: no cgroup v2 mount on this host");
    }
}

#[test]
fn memory_limit_oom_kills_and_is_counted() {
    if !root_or_skip("memory_limit_oom_kills_and_is_counted") {
        return;
    }
    for b in backends(false) {
        let limits = CgroupLimits { memory_max: Some(32 * MIB), ..Default::default() };
        let g = b.cgroups.create(&name("oom", &b), &limits).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || touch_memory(64 << 20));
        g.add_pid(child).unwrap();
        open_gate(&gate);
        assert_eq!(
            wait_exit(child),
            WaitStatus::Signaled(child, Signal::SIGKILL, false),
            "touching 64 MiB under a 32 MiB limit (and no swap) must end in the OOM killer"
        );
        let events = g.events().unwrap();
        match events.oom_kills {
            Some(n) => assert!(n >= 1, "{events:?}"),
            // Kernels before 4.13 (v1) do not count kills: the limit hits must.
            None => assert!(events.memory_max_hits.unwrap() > 0, "{events:?}"),
        }
        let usage = g.usage().unwrap();
        let peak = usage.memory_peak.expect("memory peak");
        assert!(peak <= 32 * MIB, "peak {peak} over the limit");
        assert!(peak >= 16 * MIB, "peak {peak}: the child did not get far");
        g.remove().unwrap();
    }
}

#[test]
fn pids_limit_refuses_forks_and_counts_hits() {
    if !root_or_skip("pids_limit_refuses_forks_and_counts_hits") {
        return;
    }
    for b in backends(false) {
        let limits = CgroupLimits { pids_max: Some(16), ..Default::default() };
        let g = b.cgroups.create(&name("pids", &b), &limits).unwrap();
        let (gate, answer) = (pipe(), pipe());
        let child = spawn_gated(&gate, || {
            // Fork until refused; the children sleep until killed.
            let mut forked = 0i64;
            let mut errno = 0i64;
            for _ in 0..64 {
                // SAFETY: the grandchild only calls pause, which is
                // async-signal-safe, until it is killed.
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => loop {
                        nix::unistd::pause();
                    },
                    Ok(ForkResult::Parent { .. }) => forked += 1,
                    Err(e) => {
                        errno = e as i64;
                        break;
                    }
                }
            }
            report(&answer, forked);
            report(&answer, errno);
            // Stay, so the group is measured full.
            loop {
                nix::unistd::pause();
            }
        });
        g.add_pid(child).unwrap();
        open_gate(&gate);
        let timeout = Duration::from_secs(if slow() { 60 } else { 10 });
        let forked = read_report(&answer, timeout);
        let errno = read_report(&answer, timeout);
        assert_eq!(errno, Errno::EAGAIN as i64, "forks past the limit fail with EAGAIN");
        assert_eq!(forked, 15, "the child and 15 forks make 16");
        let usage = g.usage().unwrap();
        assert!(usage.pids_current.unwrap() <= 16, "{usage:?}");
        assert!(usage.pids_peak.unwrap() <= 16, "{usage:?}");
        let events = g.events().unwrap();
        assert!(events.pids_max_hits.unwrap() >= 1, "{events:?}");
        g.kill().unwrap();
        assert_eq!(wait_exit(child), WaitStatus::Signaled(child, Signal::SIGKILL, false));
        assert!(g.is_empty().unwrap());
        g.remove().unwrap();
    }
}

#[test]
fn cpu_quota_holds_a_spinner_near_its_fraction() {
    if !root_or_skip("cpu_quota_holds_a_spinner_near_its_fraction") {
        return;
    }
    for b in backends(false) {
        let limits = CgroupLimits { cpus: Some(0.2), ..Default::default() };
        let g = b.cgroups.create(&name("cpu", &b), &limits).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || loop {
            std::hint::spin_loop();
        });
        g.add_pid(child).unwrap();
        open_gate(&gate);
        // Let the first periods pass, then measure ~2 s.
        std::thread::sleep(Duration::from_millis(300));
        let (u0, t0) = (g.usage().unwrap().cpu_usec.unwrap(), Instant::now());
        std::thread::sleep(Duration::from_secs(2));
        let (u1, wall) = (g.usage().unwrap().cpu_usec.unwrap(), t0.elapsed());
        #[allow(clippy::cast_precision_loss)]
        let share = (u1 - u0) as f64 / wall.as_micros() as f64;
        let range = if slow() { 0.05..=0.40 } else { 0.10..=0.30 };
        eprintln!("{}: cpu share under cpus=0.2: {share:.3}", b.label);
        assert!(range.contains(&share), "cpu share {share:.3} outside {range:?}");
        g.kill().unwrap();
        assert_eq!(wait_exit(child), WaitStatus::Signaled(child, Signal::SIGKILL, false));
        g.remove().unwrap();
    }
}

#[test]
fn freeze_stops_a_counting_child_and_thaw_resumes_it() {
    if !root_or_skip("freeze_stops_a_counting_child_and_thaw_resumes_it") {
        return;
    }
    let counter = shared_counter();
    let wait_past = |value: u64| {
        let deadline = Instant::now() + Duration::from_secs(if slow() { 30 } else { 5 });
        while counter.load(Ordering::SeqCst) <= value {
            assert!(Instant::now() < deadline, "the counter stays at {value}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for b in backends(true) {
        counter.store(0, Ordering::SeqCst);
        let g = b.cgroups.create(&name("freeze", &b), &CgroupLimits::default()).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || loop {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        });
        g.add_pid(child).unwrap();
        open_gate(&gate);
        wait_past(0);
        g.freeze().expect("freeze");
        let frozen_at = counter.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(counter.load(Ordering::SeqCst), frozen_at, "{}: the counter moved while frozen", b.label);
        g.thaw().expect("thaw");
        wait_past(frozen_at);
        g.kill().unwrap();
        assert_eq!(wait_exit(child), WaitStatus::Signaled(child, Signal::SIGKILL, false));
        g.remove().unwrap();
    }
}

#[test]
fn kill_empties_a_group_holding_a_double_forked_daemon() {
    if !root_or_skip("kill_empties_a_group_holding_a_double_forked_daemon") {
        return;
    }
    for b in backends(true) {
        let g = b.cgroups.create(&name("kill", &b), &CgroupLimits::default()).unwrap();
        let (gate, answer) = (pipe(), pipe());
        let child = spawn_gated(&gate, || {
            // SAFETY: both forked processes below only call setsid, fork,
            // getpid, write, pause, waitpid and _exit: async-signal-safe.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let _ = nix::unistd::setsid();
                    // SAFETY: as above.
                    match unsafe { fork() } {
                        Ok(ForkResult::Child) => {
                            report(&answer, i64::from(nix::unistd::getpid().as_raw()));
                            loop {
                                nix::unistd::pause();
                            }
                        }
                        _ => child_exit(0),
                    }
                }
                Ok(ForkResult::Parent { child }) => {
                    let _ = waitpid(child, None);
                    0
                }
                Err(_) => 1,
            }
        });
        g.add_pid(child).unwrap();
        open_gate(&gate);
        let daemon = read_report(&answer, Duration::from_secs(if slow() { 60 } else { 10 }));
        let daemon = Pid::from_raw(i32::try_from(daemon).unwrap());
        assert_eq!(wait_exit(child), WaitStatus::Exited(child, 0));
        // Its parents are gone; the daemon runs on, in its own session.
        assert!(alive(daemon));
        assert_ne!(nix::unistd::getsid(Some(daemon)).unwrap(), nix::unistd::getsid(None).unwrap());
        assert_eq!(g.pids().unwrap(), vec![daemon]);
        let t = Instant::now();
        g.kill().expect("kill");
        eprintln!("{}: kill took {:?}", b.label, t.elapsed());
        assert!(g.is_empty().unwrap());
        assert!(!alive(daemon), "the daemon {daemon} survived");
        g.remove().unwrap();
    }
}

#[test]
fn remove_kills_what_is_left_and_leaves_no_directory() {
    if !root_or_skip("remove_kills_what_is_left_and_leaves_no_directory") {
        return;
    }
    for b in backends(true) {
        let g = b.cgroups.create(&name("remove", &b), &CgroupLimits::default()).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || 0);
        g.add_pid(child).unwrap();
        let paths: Vec<PathBuf> = g.paths().iter().map(|p| p.to_path_buf()).collect();
        assert!(!paths.is_empty() && paths.iter().all(|p| p.is_dir()));
        g.remove().expect("remove");
        for p in &paths {
            assert!(!p.exists(), "{} is still there", p.display());
        }
        assert_eq!(wait_exit(child), WaitStatus::Signaled(child, Signal::SIGKILL, false));
    }
}

#[test]
fn drop_removes_the_group() {
    if !root_or_skip("drop_removes_the_group") {
        return;
    }
    for b in backends(true) {
        let n = name("drop", &b);
        let g = b.cgroups.create(&n, &CgroupLimits::default()).unwrap();
        let paths: Vec<PathBuf> = g.paths().iter().map(|p| p.to_path_buf()).collect();
        drop(g);
        assert!(paths.iter().all(|p| !p.exists()));
        assert!(b.cgroups.list(&n).unwrap().is_empty());
    }
}

#[test]
fn hundred_cycles_leave_no_stale_group() {
    if !root_or_skip("hundred_cycles_leave_no_stale_group") {
        return;
    }
    for b in backends(true) {
        let prefix = name("cycle", &b);
        let t = Instant::now();
        for i in 0..100 {
            let g = b.cgroups.create(&format!("{prefix}-{i}"), &CgroupLimits::default()).unwrap();
            let gate = pipe();
            let child = spawn_gated(&gate, || 0);
            g.add_pid(child).unwrap();
            g.kill().unwrap();
            assert_eq!(wait_exit(child), WaitStatus::Signaled(child, Signal::SIGKILL, false));
            g.remove().unwrap();
        }
        eprintln!("{}: 100 cycles in {:?}", b.label, t.elapsed());
        assert_eq!(b.cgroups.list(&prefix).unwrap(), Vec::<String>::new());
        assert_eq!(b.cgroups.list_stale(&prefix).unwrap(), Vec::<String>::new());
    }
}

#[test]
fn stale_groups_of_dead_owners_are_removed_and_busy_ones_kept() {
    if !root_or_skip("stale_groups_of_dead_owners_are_removed_and_busy_ones_kept") {
        return;
    }
    for b in backends(true) {
        // Names like the CLI's jail-<owner pid>.
        let prefix = format!("{}-jail-", name("stale", &b));
        let dead = {
            let gate = pipe();
            let pid = spawn_gated(&gate, || 0);
            open_gate(&gate);
            wait_exit(pid);
            pid
        };
        let me = nix::unistd::getpid();
        let none = CgroupLimits::default();
        // A crash leaves groups behind: forget the handles (no Drop).
        std::mem::forget(b.cgroups.create(&format!("{prefix}{dead}"), &none).unwrap());
        std::mem::forget(b.cgroups.create(&format!("{prefix}{me}"), &none).unwrap());
        let busy = b.cgroups.create(&format!("{prefix}{me}-busy"), &none).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || 0);
        busy.add_pid(child).unwrap();

        assert_eq!(b.cgroups.list(&prefix).unwrap().len(), 3);
        let mut empty = vec![format!("{prefix}{dead}"), format!("{prefix}{me}")];
        empty.sort();
        assert_eq!(b.cgroups.list_stale(&prefix).unwrap(), empty, "a group with a process is not stale");
        let owner_dead = |name: &str| name[prefix.len()..].parse().is_ok_and(|pid| !alive(Pid::from_raw(pid)));
        let removed = b.cgroups.remove_stale(&prefix, owner_dead).unwrap();
        assert_eq!(removed, vec![format!("{prefix}{dead}")]);
        assert_eq!(b.cgroups.list(&prefix).unwrap(), vec![format!("{prefix}{me}"), format!("{prefix}{me}-busy")]);

        // Clean up: the busy one by its handle, the forgotten one as stale.
        busy.remove().unwrap();
        assert_eq!(wait_exit(child), WaitStatus::Signaled(child, Signal::SIGKILL, false));
        b.cgroups.remove_stale(&prefix, |_| true).unwrap();
        assert!(b.cgroups.list(&prefix).unwrap().is_empty());
    }
}

#[test]
fn usage_counts_cpu_time_and_pids() {
    if !root_or_skip("usage_counts_cpu_time_and_pids") {
        return;
    }
    for b in backends(true) {
        let g = b.cgroups.create(&name("usage", &b), &CgroupLimits::default()).unwrap();
        let gate = pipe();
        let child = spawn_gated(&gate, || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(200) {
                std::hint::spin_loop();
            }
            0
        });
        g.add_pid(child).unwrap();
        let before = g.usage().unwrap();
        open_gate(&gate);
        assert_eq!(wait_exit(child), WaitStatus::Exited(child, 0));
        let after = g.usage().unwrap();
        let cpu = after.cpu_usec.unwrap() - before.cpu_usec.unwrap();
        assert!(cpu >= 50_000, "{}: only {cpu} us of CPU counted", b.label);
        if let Some(pids) = before.pids_current {
            assert_eq!(pids, 1);
            assert_eq!(after.pids_current, Some(0));
            assert!(after.pids_peak.unwrap() >= 1);
        }
        g.remove().unwrap();
    }
}

/// A systemd-style delegated subtree (the `trusted.delegate` xattr on a
/// cgroup of our own making, with a fake /proc/self/cgroup pointing at it):
/// open moves the processes at its top into `supervisor/`, enables the
/// controllers it has, and runs go under `runs/`.
#[test]
fn delegated_subtree_moves_its_processes_into_a_supervisor_leaf() {
    if !root_or_skip("delegated_subtree_moves_its_processes_into_a_supervisor_leaf") {
        return;
    }
    let forced = CgroupConfig { mode: Some(Mode::V2), ..Default::default() };
    let Ok(host) = detect(&forced) else {
        eprintln!("SKIP: no cgroup v2 mount on this host");
        return;
    };
    let Layout::V2 { mount, .. } = &host.layout else { unreachable!() };
    let rel = format!("ccos-delegated-{}", std::process::id());
    let subtree = mount.join(&rel);
    fs::create_dir(&subtree).unwrap();
    set_xattr(&subtree, c"trusted.delegate", b"1");
    let gate = pipe();
    let service = spawn_gated(&gate, || 0);
    fs::write(subtree.join("cgroup.procs"), service.to_string()).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let proc_cgroup = tmp.path().join("cgroup");
    fs::write(&proc_cgroup, format!("0::/{rel}\n")).unwrap();
    let config = CgroupConfig { proc_cgroup, ..forced };
    let d = detect(&config).expect("detect");
    eprintln!("{d}");
    assert!(d.delegated(), "{d}");
    assert!(d.to_string().contains("systemd Delegate=yes"), "{d}");

    let cgroups = Cgroups::open(&d).expect("open the delegated subtree");
    assert_eq!(read_trim(&subtree.join("cgroup.procs")), "");
    assert_eq!(read_trim(&subtree.join("supervisor/cgroup.procs")), service.to_string());
    let enabled = read_trim(&subtree.join("cgroup.subtree_control"));
    for c in &d.available {
        assert!(enabled.split(' ').any(|w| w == c.name()), "{enabled}");
    }
    let limits = CgroupLimits { pids_max: d.available.contains(&Controller::Pids).then_some(8), ..Default::default() };
    let g = cgroups.create("run-1", &limits).expect("create under runs/");
    assert_eq!(g.paths(), vec![subtree.join("runs/run-1")]);
    assert_eq!(g.limits().unwrap().pids_max, limits.pids_max);
    g.remove().unwrap();

    open_gate(&gate);
    assert_eq!(wait_exit(service), WaitStatus::Exited(service, 0));
    for dir in ["runs", "supervisor", ""] {
        fs::remove_dir(subtree.join(dir)).unwrap();
    }
}

fn set_xattr(path: &Path, name: &std::ffi::CStr, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; `value`
    // is a readable buffer of the length passed.
    let r = unsafe { libc::setxattr(cpath.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "setxattr {}: {}", path.display(), Errno::last());
}
