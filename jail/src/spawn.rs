//! The parent side of a jail: plan, clone, parent-side steps, wait.
//!
//! A jail is made in two steps, so that one can be made ahead of the run
//! it will serve. [`prepare`] does the profile's part: plan the base of the
//! root (fails on bad input before any namespace exists), take an id range,
//! clone into new namespaces, write the id maps and release the child,
//! which builds the base of its root and its network, then waits.
//! [`Prepared::start`] does the run's part: plan the run's mounts, send
//! them with the program, its stdio and (v1) the cgroup files over the sync
//! socket, and read the set-up pipe until the program's execve (EOF) or a
//! [`SetupFailure`]; [`Prepared::begin`] stops before that read, leaving a
//! [`Starting`] for a caller that polls. [`spawn`] is both at once.
//! [`Jail::wait`] then waits on the pidfd, with the time limit and
//! forwarded signals, and turns the end into a [`Report`].

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::cgroup::{Cgroup, CgroupLimits, Cgroups, Mode};
use crate::fdpass;
use crate::handover;
use crate::idmap::{IdRange, DEFAULT_LOCK_PATH};
use crate::init::{self, ChildPlan};
use crate::mount::{self, MountOp, RootSpec};
use crate::net::{self, PreparedNetwork};
use crate::placement::CpuPlacement;
use crate::profile::{Limits, NetworkMode, Profile};
use crate::report::{ChildMessage, EndReason, Report, SetupFailure, Timings};
use crate::spec::JailSpec;
use crate::sys::{self, Forked};
use crate::Error;

/// The namespaces made at clone time. The cgroup namespace is made later by
/// the child itself, once the parent has put it in its cgroup, so that the
/// jail's cgroup (not the spawner's) is its root.
const CLONE_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWUSER
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

/// Where spawn keeps host-side state; tests point it elsewhere.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub id_lock: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths { id_lock: PathBuf::from(DEFAULT_LOCK_PATH) }
    }
}

/// A live jail: its init's pid and pidfd, and what is needed to report on it.
#[derive(Debug)]
pub struct Jail {
    pub pid: Pid,
    pub pidfd: OwnedFd,
    status: std::fs::File,
    /// When prepare was called, when its clone3 returned, when the program
    /// was asked for (start), when its execve happened; and how long the
    /// prepared jail waited for start.
    called: Instant,
    cloned: Instant,
    started: Instant,
    execed: Instant,
    waited: Duration,
    time_limit: Option<Duration>,
    profile_name: String,
    profile_hash: String,
    setup_failure: Option<SetupFailure>,
    /// Why we ended the jail ourselves, if we did.
    ended_by_us: Option<EndReason>,
    /// The jail's cgroup: limits, accounting, and a kill that reaches every
    /// process of the jail. Removed when the jail is reaped.
    cgroup: Option<Cgroup>,
    /// Whether the report reads the cgroup's usage and events.
    account: bool,
    /// Held until the jail is reaped: its outside ids are not reused before.
    _ids: IdRange,
}

/// A jail made ahead of its run: namespaces, ids, cgroup, the profile's
/// part of the root and its network are ready, and its init waits for the
/// run's part. [`Prepared::start`] starts its program; dropped unstarted,
/// it is killed and reaped and its cgroup removed.
#[derive(Debug)]
pub struct Prepared {
    /// The jail so far (`None` once started).
    jail: Option<Jail>,
    sync: OwnedFd,
    /// Taken by [`Prepared::begin`] into the [`Starting`].
    setup_read: Option<OwnedFd>,
    join_cgroup: bool,
    network: NetworkMode,
    prepared: Instant,
}

/// Where a jail's cgroup comes from.
pub enum CgroupSource<'a> {
    /// No cgroup: no limits beyond rlimits, and no accounting.
    None,
    /// A group the caller made.
    Made(Cgroup),
    /// A group spawn makes: on v2 before clone, so the child starts in it;
    /// on v1 while the child builds its root, which takes the making (five
    /// hierarchies, about half a millisecond) off the spawn's critical path.
    Make { cgroups: &'a Cgroups, name: &'a str, limits: CgroupLimits },
}

impl From<Option<Cgroup>> for CgroupSource<'_> {
    fn from(cgroup: Option<Cgroup>) -> Self {
        cgroup.map_or(CgroupSource::None, CgroupSource::Made)
    }
}

/// Makes a jail and starts its program. Returns once the program's execve
/// succeeded or its set-up failed (see [`Jail::setup_failure`]).
///
/// Must be called from a single-threaded process (see [`sys::clone3_fork`]).
pub fn spawn<'a>(spec: &JailSpec, cgroup: impl Into<CgroupSource<'a>>) -> Result<Jail, Error> {
    spawn_with(spec, &HostPaths::default(), cgroup)
}

/// The cgroup limits of a jail's [`Limits`].
pub fn cgroup_limits(limits: &Limits) -> CgroupLimits {
    CgroupLimits { memory_max: limits.memory_bytes, pids_max: limits.pids, cpus: limits.cpus }
}

/// As [`spawn`], with host paths given (tests point them elsewhere).
pub fn spawn_with<'a>(spec: &JailSpec, host: &HostPaths, cgroup: impl Into<CgroupSource<'a>>) -> Result<Jail, Error> {
    Ok(begin_with(spec, host, cgroup)?.finish())
}

/// As [`spawn`], without waiting for the program's execve: see [`Starting`].
///
/// Must be called from a single-threaded process (see [`sys::clone3_fork`]).
pub fn begin<'a>(spec: &JailSpec, cgroup: impl Into<CgroupSource<'a>>) -> Result<Starting, Error> {
    begin_with(spec, &HostPaths::default(), cgroup)
}

/// As [`begin`], with host paths given.
pub fn begin_with<'a>(
    spec: &JailSpec,
    host: &HostPaths,
    cgroup: impl Into<CgroupSource<'a>>,
) -> Result<Starting, Error> {
    if spec.argv.is_empty() {
        return Err(Error::NoProgram);
    }
    let ahead = Ahead { profile: &spec.profile, network: spec.network(), network_ready: spec.network_ready.as_ref() };
    prepare(&ahead, host, cgroup)?.begin(spec)
}

/// What a jail is made ahead with: the profile and network of the runs it
/// can serve.
pub struct Ahead<'a> {
    pub profile: &'a Arc<Profile>,
    pub network: NetworkMode,
    /// A network namespace made ahead; used when it
    /// [serves](PreparedNetwork::serves) `network`, else the jail makes
    /// its own at clone.
    pub network_ready: Option<&'a PreparedNetwork>,
}

/// Makes a jail up to its run: see [`Prepared`]. With a cgroup, the
/// program will start inside it: on v2 the whole jail is there from clone3
/// on; on v1 the jail's init moves itself into every hierarchy before it
/// forks the program, through files [`Prepared::start`] sends (see
/// [`Cgroup::self_join_files`]).
///
/// Must be called from a single-threaded process (see [`sys::clone3_fork`]).
pub fn prepare<'a>(
    ahead: &Ahead<'_>,
    host: &HostPaths,
    cgroup: impl Into<CgroupSource<'a>>,
) -> Result<Prepared, Error> {
    ensure_single_threaded()?;
    let called = Instant::now();
    let profile = ahead.profile;

    // The cgroup now (v2, or made by the caller), or once the child runs
    // (v1). A request the kernel would refuse fails here, before clone.
    let (cgroup, make_later) = match cgroup.into() {
        CgroupSource::None => (None, None),
        CgroupSource::Made(group) => (Some(group), None),
        CgroupSource::Make { cgroups, name, limits } => {
            cgroups.check_request(name, &limits)?;
            match cgroups.mode() {
                Mode::V2 => (Some(cgroups.create(name, &limits)?), None),
                Mode::V1 => (None, Some((cgroups, name, limits))),
            }
        }
    };
    let join_cgroup = make_later.is_some() || cgroup.as_ref().is_some_and(|c| c.mode() == Mode::V1);

    // The profile's part of the root, planned and checked before clone.
    let mounts = mount::plan(&RootSpec {
        uid: profile.uid,
        gid: profile.gid,
        network: ahead.network,
        tmp_size_bytes: profile.tmp_size_bytes,
        binds: &profile.binds,
        tmpfs: &profile.tmpfs,
    })?;

    // The jail's outside ids.
    let ids = IdRange::allocate(&host.id_lock)?;

    // Parent -> child: "maps written, go", then the run's part; child ->
    // parent: set-up failures (EOF at execve) and the program's exit.
    let (sync_parent, sync_child) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::os("creating the jail's sync socket", e))?;
    let (setup_read, setup_write) = pipe()?;
    let (status_read, status_write) = pipe()?;

    // On v2 clone3 starts the child in its cgroup.
    let cgroup_fd = cgroup.as_ref().and_then(|c| c.clone3_fd()).map(|fd| fd.as_raw_fd());
    let network_ready = ahead.network_ready.filter(|n| n.serves(ahead.network));
    let plan = ChildPlan {
        mounts: &mounts.ops,
        bind_source_fds: mounts.source_fd_numbers(),
        uid: profile.uid,
        gid: profile.gid,
        rlimits: &profile.rlimits,
        cwd: &profile.cwd,
        seccomp: &profile.seccomp,
        sync_fd: sync_child.as_raw_fd(),
        setup_fd: setup_write.as_raw_fd(),
        status_fd: status_write.as_raw_fd(),
        join_cgroup,
        cpus: CpuPlacement::of_caller(),
    };

    // A network namespace made ahead: the clone inherits it from this
    // thread, which returns to its own right after.
    let mut flags = CLONE_NAMESPACES;
    let home = match network_ready {
        Some(net) => {
            flags.remove(CloneFlags::CLONE_NEWNET);
            Some(net.enter().map_err(|e| Error::os("entering the jail's network namespace", e))?)
        }
        None => None,
    };
    let cloned_at = Instant::now();
    let forked = sys::clone3_fork(flags.bits() as u64, cgroup_fd);
    if let Ok(Forked::Child) = forked {
        init::run(&plan)
    }
    if let Some(home) = home {
        home.go_back();
    }
    let (pid, pidfd) = match forked {
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Ok(Forked::Child) => unreachable!("the child ran init::run, which never returns"),
        Err(e) => return Err(clone_error(e)),
    };
    drop((sync_child, setup_write, status_write));
    // Before the child runs anything, and before "G" (after which the child
    // widens its CPUs again).
    if let Some(cpus) = &plan.cpus {
        cpus.keep_child_off_ours(pid);
    }

    let mut prepared = Prepared {
        jail: Some(Jail {
            pid,
            pidfd,
            status: std::fs::File::from(status_read),
            called,
            cloned: cloned_at,
            started: cloned_at,
            execed: cloned_at,
            waited: Duration::ZERO,
            time_limit: None,
            profile_name: profile.name.clone(),
            profile_hash: profile.hash.clone(),
            setup_failure: None,
            ended_by_us: None,
            cgroup,
            account: true,
            _ids: ids,
        }),
        sync: sync_parent,
        setup_read: Some(setup_read),
        join_cgroup,
        network: ahead.network,
        prepared: cloned_at,
    };

    // Parent-side steps, then release the child. On failure the child is
    // killed (dropping `prepared`; it is still waiting for us, so it ran
    // nothing).
    let jail = prepared.jail.as_mut().expect("not started");
    jail._ids.write_maps_from_parent(pid)?;
    fdpass::send(prepared.sync.as_fd(), b"G", &[], nix::sys::socket::MsgFlags::empty())
        .map_err(|e| Error::os("releasing the jail's init", e))?;
    // v1: the group, made now if it was not, while the child builds its
    // root; and so is the network (`lo` up for a loopback jail), of a
    // namespace the clone made or of one made ahead with `lo` down.
    if let Some((cgroups, name, limits)) = make_later {
        jail.cgroup = Some(cgroups.create(name, &limits)?);
    }
    match network_ready {
        Some(net) => net.finish_for(ahead.network),
        None => net::bring_up_from_outside(pid, ahead.network),
    }
    .map_err(|e| Error::os("bringing lo up in the jail's network namespace", e))?;
    prepared.prepared = Instant::now();
    Ok(prepared)
}

impl Prepared {
    /// The jail's init (its pid in the host's pid namespace).
    pub fn pid(&self) -> Pid {
        self.jail().pid
    }

    /// The jail's pidfd: readable once its init is gone (a prepared jail
    /// whose set-up failed, or that was killed, is of no use).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.jail().pidfd.as_fd()
    }

    /// The jail's cgroup, if it has one (to set the run's limits on it).
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.jail().cgroup.as_ref()
    }

    /// The profile (by hash) and network mode the jail was made for.
    pub fn serves(&self, profile: &Profile, network: NetworkMode) -> bool {
        self.jail().profile_hash == profile.hash && self.network == network
    }

    fn jail(&self) -> &Jail {
        self.jail.as_ref().expect("a prepared jail is not used after start")
    }

    /// Starts the run `spec` in this jail: its binds, tmpfs and host name
    /// added to the root, its program started with its environment and
    /// stdio. `spec`'s profile and network must be the ones the jail was
    /// prepared for, and its cgroup and network-ahead settings are not used
    /// (they were the prepare's). Returns once the program's execve
    /// succeeded or its set-up failed (see [`Jail::setup_failure`]); the
    /// time limit counts from now.
    pub fn start(self, spec: &JailSpec) -> Result<Jail, Error> {
        Ok(self.begin(spec)?.finish())
    }

    /// As [`Prepared::start`], without waiting for the program's execve:
    /// the run's part is sent and the init goes on with it while the
    /// caller does other work (see [`Starting`]).
    pub fn begin(mut self, spec: &JailSpec) -> Result<Starting, Error> {
        let start_called = Instant::now();
        if spec.argv.is_empty() {
            return Err(Error::NoProgram);
        }
        if !self.serves(&spec.profile, spec.network()) {
            return Err(Error::NotPreparedFor {
                wanted: format!("profile {} with network {:?}", spec.profile.name, spec.network()),
                prepared: format!("profile {} with network {:?}", self.jail().profile_name, self.network),
            });
        }

        // The run's part, planned and checked here.
        let hostname = spec.hostname();
        let mounts = mount::plan_run(hostname, &spec.binds, &spec.tmpfs)?;
        let env = spec.environment(|k| std::env::var(k).ok());
        let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
        check_no_nul(spec.argv.iter().map(String::as_str), "argument")?;
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        check_no_nul(env.iter().map(String::as_str), "environment")?;
        // A bind's tree goes as an index into the fds sent.
        let mut ops = mounts.ops;
        let mut trees = Vec::new();
        for op in &mut ops {
            if let MountOp::Bind { src_tree: Some(tree), .. } = op {
                tree.fd = trees.len() as RawFd;
                trees.push(mounts.source_fds[trees.len()].as_fd());
            }
        }
        let join_files = match (self.join_cgroup, self.jail().cgroup.as_ref()) {
            (true, Some(group)) => group.self_join_files()?.unwrap_or_default(),
            _ => Vec::new(),
        };
        let stdio = [&spec.stdin, &spec.stdout, &spec.stderr].map(|fd| fd.as_ref().map(AsFd::as_fd));
        let part = handover::RunPart {
            hostname: hostname.to_owned(),
            argv: spec.argv.clone(),
            env,
            path_var,
            stdio: stdio.map(|fd| fd.is_some()),
            mounts: ops,
            trees: trees.len(),
            cgroup_files: join_files.len(),
        };
        let fds = handover::RunFds { stdio, trees, cgroup_files: join_files.iter().map(AsFd::as_fd).collect() };
        // A child that failed its set-up meanwhile is gone (EPIPE): its
        // failure is on the set-up pipe, read below. A send that failed
        // half way ends the child's wait with end of file instead.
        if handover::send(self.sync.as_fd(), &part, &fds).is_err() {
            let _ = nix::sys::socket::shutdown(self.sync.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        drop(fds);

        let mut jail = self.jail.take().expect("not started");
        jail.started = start_called;
        jail.waited = start_called.saturating_duration_since(self.prepared);
        jail.time_limit = spec.limits().time_limit;
        let setup_read = self.setup_read.take().expect("taken only here, once");
        Ok(Starting { jail, setup_read })
    }
}

/// A jail whose init has the run's part and is starting its program.
/// [`Starting::finish`] waits for the program's execve or the set-up's
/// failure. A caller with other work (the supervisor's spawner, which
/// meanwhile answers requests and reaps other jails) polls
/// [`Starting::setup_fd`] first, so that finish does not block.
///
/// The jail is live already: it can be killed or signalled (see
/// [`Starting::jail_mut`]); its pidfd becomes readable if it ends.
#[derive(Debug)]
pub struct Starting {
    jail: Jail,
    /// Written only on a set-up failure; end of file once every process
    /// of the jail has exec'd or exited.
    setup_read: OwnedFd,
}

impl Starting {
    /// Readable (or hung up) once [`Starting::finish`] would not block.
    pub fn setup_fd(&self) -> BorrowedFd<'_> {
        self.setup_read.as_fd()
    }

    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    pub fn jail_mut(&mut self) -> &mut Jail {
        &mut self.jail
    }

    /// Waits for the program's execve (end of file on the set-up pipe) or
    /// the set-up's failure (a message, then end of file as the init
    /// exits); the jail, with [`Jail::setup_failure`] set in the latter
    /// case. Its exec time is when this returns: for a caller that polled
    /// [`Starting::setup_fd`], when it saw the pipe ready.
    pub fn finish(mut self) -> Jail {
        let mut buf = Vec::new();
        let _ = sys::file_view(self.setup_read.as_raw_fd()).read_to_end(&mut buf);
        if let Some(ChildMessage::SetupFailed(f)) = ChildMessage::from_bytes(&buf) {
            self.jail.setup_failure = Some(f);
        }
        self.jail.execed = Instant::now();
        self.jail
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(mut jail) = self.jail.take() {
            jail.kill_and_reap();
            if let Some(group) = jail.cgroup.take() {
                let _ = group.remove();
            }
        }
    }
}

impl Jail {
    /// The failure that kept the program from running, if any.
    pub fn setup_failure(&self) -> Option<&SetupFailure> {
        self.setup_failure.as_ref()
    }

    /// Leaves the cgroup's usage and events out of the report, for a caller
    /// that uses only the exit status (`ccos-jail run` without
    /// --report-json): on cgroup v1 that is eight files in three
    /// hierarchies, each opened and read in about 30 us, on the way out of
    /// every run (measured: 0.4-0.5 ms less per `ccos-jail run`). The
    /// report's `cpu_secs` then comes from rusage (the processes init
    /// reaped), its peaks are `None`, and an end by the OOM killer or the
    /// pids limit reads as `Signalled` or `Exited`.
    pub fn skip_accounting(&mut self) {
        self.account = false;
    }

    /// Sends `signal` to the jail's init, which passes it on to the program.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        nix::sys::signal::kill(self.pid, signal).map_err(|e| Error::os(format!("signalling jail pid {}", self.pid), e))
    }

    /// The jail's cgroup, if it has one (to freeze, thaw or read usage).
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Kills the whole jail: every process of its cgroup, and its init
    /// (whose death ends the pid namespace).
    pub fn kill(&mut self, reason: EndReason) {
        self.ended_by_us.get_or_insert(reason);
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill();
        }
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
    }

    fn kill_and_reap(&mut self) {
        self.kill(EndReason::SpawnFailed);
        let _ = sys::wait4(self.pid);
    }

    /// Waits for the jail to end, enforcing its time limit. Signals read
    /// from `signals` (the caller blocked them) are passed on to the program.
    pub fn wait(mut self, signals: Option<&SignalFd>) -> Result<Report, Error> {
        let deadline = self.time_limit.map(|t| self.started + t);
        loop {
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            if let Some(sfd) = signals {
                fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    self.kill(EndReason::TimeLimit);
                    continue;
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::os("waiting for the jail", e)),
            }
            let pid_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
            let sig_ready = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            if sig_ready {
                if let Some(Ok(Some(info))) = signals.map(|s| s.read_signal()) {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        self.ended_by_us.get_or_insert(EndReason::Killed);
                        let _ = self.signal(sig);
                    }
                }
            }
            if pid_ready {
                break;
            }
        }
        self.collect()
    }

    /// Reaps the jail and reports how it ended. Blocks until the jail's init
    /// has exited: call it once the pidfd is readable (a caller that polls
    /// many jails, like the supervisor's spawner, uses this instead of
    /// [`Jail::wait`]).
    pub fn collect(mut self) -> Result<Report, Error> {
        let ended = Instant::now();
        let (_status, usage) =
            sys::wait4(self.pid).map_err(|e| Error::os(format!("reaping jail pid {}", self.pid), e))?;
        let wall_secs = self.started.elapsed().as_secs_f64();
        let cpu = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        let cpu_secs = cpu(usage.ru_utime) + cpu(usage.ru_stime);

        let mut buf = Vec::new();
        let _ = self.status.read_to_end(&mut buf);
        let (exit_code, signal) = match ChildMessage::from_bytes(&buf) {
            Some(ChildMessage::Exited { code, signal }) => (code, signal),
            // Init was killed before the program ended (time limit, kill).
            _ => (None, Some(Signal::SIGKILL as i32)),
        };
        // The cgroup saw every process of the jail, even ones init never
        // reaped; its counters are the better account where there is one.
        let (usage, events) = match self.cgroup.take() {
            Some(cg) => {
                let read = self.account.then(|| (cg.usage().ok(), cg.events().ok()));
                let _ = cg.remove();
                read.unwrap_or((None, None))
            }
            None => (None, None),
        };
        let cpu_secs = usage.and_then(|u| u.cpu_usec).map_or(cpu_secs, |us| us as f64 / 1e6);
        let oom = events.and_then(|e| e.oom_kills).is_some_and(|n| n > 0);
        let pids_hit = events.and_then(|e| e.pids_max_hits).is_some_and(|n| n > 0);
        let failed = exit_code != Some(0);
        let reason = match (&self.setup_failure, self.ended_by_us, signal) {
            (Some(_), _, _) => EndReason::SpawnFailed,
            (None, Some(EndReason::TimeLimit), _) => EndReason::TimeLimit,
            _ if oom && failed => EndReason::Oom,
            _ if pids_hit && failed => EndReason::PidsLimit,
            // A signal we passed on (or our SIGKILL) ended it.
            (None, Some(by_us), Some(_)) => by_us,
            (None, _, Some(_)) => EndReason::Signalled,
            (None, _, None) => EndReason::Exited,
        };
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
        let timings = Timings {
            network_ms: None,
            profile_ms: None,
            cgroup_ms: None,
            clone_ms: ms(self.called, self.cloned),
            // The set-up's own time: a jail made ahead waited for its run.
            setup_ms: (ms(self.cloned, self.execed) - self.waited.as_secs_f64() * 1e3).max(0.0),
            run_ms: ms(self.execed, ended),
            teardown_ms: ms(ended, Instant::now()),
        };
        Ok(Report {
            exit_code,
            signal,
            reason,
            wall_secs,
            cpu_secs,
            memory_peak_bytes: usage.and_then(|u| u.memory_peak),
            pids_peak: usage.and_then(|u| u.pids_peak),
            profile: self.profile_name.clone(),
            profile_hash: self.profile_hash.clone(),
            error: self.setup_failure.take(),
            timings,
        })
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("creating a pipe", e))
}

/// execve takes C strings: a NUL byte in one is refused here, by name.
fn check_no_nul<'a>(mut items: impl Iterator<Item = &'a str>, what: &str) -> Result<(), Error> {
    match items.find(|s| s.contains('\0')) {
        Some(s) => Err(Error::os(
            format!("{what} {s:?} contains a NUL byte"),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        )),
        None => Ok(()),
    }
}

/// clone3 failures say which kernel feature is missing where we can tell.
fn clone_error(e: std::io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) => {
            "clone3 into new namespaces (too many user or pid namespaces: see /proc/sys/user/max_*_namespaces)"
        }
        Some(libc::EPERM) => {
            "clone3 into new namespaces (not permitted: run as root, or user namespaces are disabled by sysctl)"
        }
        Some(libc::ENOSYS) => "clone3 (this kernel has no clone3: Linux 5.3 or later is needed)",
        Some(libc::EINVAL) => "clone3 into new namespaces (a namespace type this kernel was built without?)",
        _ => "clone3 into new namespaces",
    };
    Error::os(hint, e)
}

/// The child of clone3 inherits only the calling thread; a lock any other
/// thread held (malloc's) would never be released there.
fn ensure_single_threaded() -> Result<(), Error> {
    let threads = thread_count().map_err(|e| Error::os("counting this process's threads", e))?;
    if threads > 1 {
        return Err(Error::MultiThreaded);
    }
    Ok(())
}

/// How many threads this process has: whoever forks and then runs Rust
/// code in the child must check it is 1. The kernel counts them into the
/// link count of /proc/self/task (2 + threads), so one stat tells, where
/// the `Threads:` line of /proc/self/status takes an open and nine reads.
pub fn thread_count() -> std::io::Result<u32> {
    let links = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata("/proc/self/task")?);
    links
        .checked_sub(2)
        .filter(|&threads| threads > 0)
        .and_then(|threads| u32::try_from(threads).ok())
        .ok_or_else(|| std::io::Error::other(format!("/proc/self/task has {links} links: not 2 + threads")))
}
