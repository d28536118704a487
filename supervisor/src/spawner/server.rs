//! The spawner process: set up once, then one poll loop over the daemon's
//! socket, a signalfd and the pidfd of every live jail. Single-threaded, so
//! `ccos_jail::spawn` may clone into new namespaces from here.
//!
//! Each turn of the loop: send what is queued for the daemon, make the next
//! run's jail ahead (once no jail is starting), poll, answer the spawns whose program started
//! (`Spawned`, see [`super::live`]), reap the jails that ended (`Exited`),
//! kill the ones past their time limit, then read and answer requests.
//! Nothing here waits on the daemon: replies queue until the socket takes
//! them (its queue holds only net.unix.max_dgram_qlen messages, 10 by
//! default). Nor on a jail's set-up: a spawn hands the run to the jail's
//! init and is answered when its set-up pipe says the program started.
//! What does block the loop is the rest of the jail work: cloning, and a
//! cgroup freeze or kill (bounded by the jail library's timeouts).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccos_jail::cgroup::{self, CgroupLimits, Cgroups};
use ccos_jail::profile::{BindMount, Limits, NetworkMode};
use ccos_jail::{EndReason, JailSpec, Profile};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::MsgFlags;
use nix::unistd::Pid;

use super::protocol::{
    self, ErrorKind, LoadedProfile, Reply, ReplyFrame, Request, RequestFrame, RequestId, SpawnRequest,
};
use ccos_jail::fdpass;
use ccos_jail::net::PreparedNetwork;
use ccos_jail::spawn::CgroupSource;

use super::live::{Answer, Live, SpawnAnswer};
use super::ready_jail::ReadyJail;
use super::{profile_set, sys, SpawnerConfig};

/// Run groups are `run-<spawner pid>-<run id>`: the pid says whose they
/// are, so a new spawner can tell a dead one's leftovers from groups that
/// another live spawner is using.
const CGROUP_PREFIX: &str = "run-";

/// Signals the spawner reads from its signalfd instead of dying of them.
/// While the daemon lives they are ignored (it decides what happens to
/// runs); SIGTERM is also how the spawner learns that the daemon died.
const HANDLED_SIGNALS: [Signal; 4] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT];

/// Requests answered per turn of the loop, so a burst of them does not
/// hold up reaping and time limits.
const REQUESTS_PER_TURN: usize = 16;

/// The spawner's `main`: never returns.
pub(super) fn run(sock: OwnedFd, config: &SpawnerConfig, daemon: Pid) -> ! {
    let code = match Server::start(&sock, config, daemon) {
        Ok((signals, cgroups, removed_stale)) => {
            let mut server = Server {
                sock,
                signals,
                daemon,
                me: nix::unistd::getpid(),
                keep_on_exit: config.keep_on_exit,
                cgroups,
                profiles: HashMap::new(),
                profiles_loaded: false,
                jails: BTreeMap::new(),
                outbox: VecDeque::new(),
                buf: vec![0u8; protocol::MAX_MESSAGE],
                spare_network: None,
                network_mode: NetworkMode::Loopback,
                spare_network_failed: false,
                ready_jail: None,
                next_run: None,
                ready_jails_made: 0,
            };
            let ready = Reply::Ready { pid: server.me.as_raw(), cgroup: server.cgroups.mode(), removed_stale };
            server.queue(None, ready, None);
            server.serve()
        }
        Err(message) => {
            eprintln!("ccos-spawner: {message}");
            let reply = Reply::Error { run_id: None, kind: ErrorKind::Start, message };
            if let Ok(bytes) = protocol::encode(&ReplyFrame { id: None, reply }) {
                let _ = fdpass::send(sock.as_fd(), &bytes, &[], MsgFlags::empty());
            }
            1
        }
    };
    // No destructors, no atexit handlers, no flushing of stdio buffers
    // copied from the daemon at fork.
    ccos_jail::sys::exit_now(code)
}

/// One message for the daemon, waiting for room in the socket.
struct Outgoing {
    bytes: Vec<u8>,
    fd: Option<OwnedFd>,
}

/// A refused request: becomes `Reply::Error`.
struct Refusal {
    kind: ErrorKind,
    message: String,
}

fn refuse(kind: ErrorKind, message: impl Into<String>) -> Refusal {
    Refusal { kind, message: message.into() }
}

struct Server {
    sock: OwnedFd,
    signals: SignalFd,
    daemon: Pid,
    me: Pid,
    keep_on_exit: bool,
    cgroups: Cgroups,
    /// Profiles by the name (or path) they are asked for.
    profiles: HashMap<String, Arc<Profile>>,
    /// Whether `LoadProfiles` made `profiles` the whole set of names.
    profiles_loaded: bool,
    jails: BTreeMap<String, Live>,
    outbox: VecDeque<Outgoing>,
    buf: Vec<u8>,
    /// The next jail's network namespace, made while the spawner has
    /// nothing else to do (see [`PreparedNetwork`]), for the mode the last
    /// run asked for.
    spare_network: Option<PreparedNetwork>,
    network_mode: NetworkMode,
    /// Set when making one failed: jails then make their own at clone.
    spare_network_failed: bool,
    /// A jail made ahead for the next run (see [`ReadyJail`]), like the
    /// last run: its profile (as asked for), network mode and limits.
    ready_jail: Option<ReadyJail>,
    next_run: Option<(String, NetworkMode, CgroupLimits)>,
    /// Names the ready jails' cgroups: `run-<me>-ahead-<n>`.
    ready_jails_made: u64,
}

impl Server {
    /// The spawner's set-up, in order. Returns the signalfd, the cgroup
    /// root and the stale groups removed; an error is sent to the daemon.
    fn start(sock: &OwnedFd, config: &SpawnerConfig, daemon: Pid) -> Result<(SignalFd, Cgroups, Vec<String>), String> {
        // Die with the daemon even if its end of the socket is held open
        // elsewhere. SIGTERM, not SIGKILL, so the jails are still killed.
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
        // The daemon may have died before that took effect.
        if nix::unistd::getppid() != daemon {
            ccos_jail::sys::exit_now(0);
        }
        // A session of its own: a terminal's ^C and job-control signals
        // reach the daemon, which decides what happens to runs, and not
        // the spawner directly.
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        let _ = nix::sys::prctl::set_name(c"ccos-spawner");
        // Only stdio and the socket: an fd the daemon had open at fork
        // (another spawner's socket, a listening socket) must not be held
        // here, or its other end would never see it close.
        ccos_jail::sys::close_all_from_except(3, &[sock.as_raw_fd()])
            .map_err(|e| format!("closing inherited fds (close_range): {e}"))?;
        // Signals: children stay waitable; the handled ones queue on a
        // signalfd (the jails' inits set their own mask and handlers).
        sys::default_sigchld().map_err(|e| format!("resetting SIGCHLD: {e}"))?;
        let mut handled = SigSet::empty();
        for s in HANDLED_SIGNALS {
            handled.add(s);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), None).map_err(|e| format!("blocking signals: {e}"))?;
        let signals = SignalFd::with_flags(&handled, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("signalfd: {e}"))?;
        // Room for many live jails: each holds a pidfd, a status pipe and
        // (v2) a cgroup directory fd here.
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        // The loop never waits for the daemon to read.
        let flags = fcntl(sock.as_fd(), FcntlArg::F_GETFL).map_err(|e| format!("fcntl(F_GETFL): {e}"))?;
        fcntl(sock.as_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
            .map_err(|e| format!("fcntl(F_SETFL, O_NONBLOCK): {e}"))?;
        // The cgroup root, once. On a delegated v2 subtree, opening it
        // moves this process and the daemon into its `supervisor/` leaf.
        let detection = cgroup::detect(&config.cgroup).map_err(|e| format!("detecting cgroups: {e}"))?;
        let cgroups = Cgroups::open(&detection).map_err(|e| format!("opening the cgroup root: {e}"))?;
        // Empty run groups of dead spawners (a crash, or jails kept at a
        // shutdown that have ended since). A failure here is not fatal.
        let me = nix::unistd::getpid();
        let owner_gone = |name: &str| {
            name.strip_prefix(CGROUP_PREFIX)
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<i32>().ok())
                .is_some_and(|pid| {
                    pid == me.as_raw() || nix::sys::signal::kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
                })
        };
        let removed = cgroups.remove_stale(CGROUP_PREFIX, owner_gone).unwrap_or_else(|e| {
            eprintln!("ccos-spawner: removing stale run cgroups: {e}");
            Vec::new()
        });
        Ok((signals, cgroups, removed))
    }

    /// The loop. Returns the exit code once the daemon is gone.
    fn serve(mut self) -> i32 {
        let why = loop {
            if let Err(why) = self.flush() {
                break why;
            }
            // Replies are out: time to make the next jail, and a network
            // for one made from scratch; but not while a jail starts, whose
            // set-up would share the CPUs and the kernel's namespace and
            // mount locks with it (create-to-exec). Then the spawner waits
            // in poll, free for other requests.
            if !self.jails.values().any(Live::is_starting) {
                self.prepare_ready_jail();
                self.prepare_network();
            }
            let ready = match self.wait(true) {
                Ok(ready) => ready,
                Err(e) => break format!("poll: {e}"),
            };
            if ready.signalled && self.daemon_is_gone() {
                break "the supervisor died".to_string();
            }
            for run_id in ready.started {
                self.finish_start(&run_id);
            }
            for run_id in ready.ended {
                let exited = self.reap(&run_id);
                self.queue(None, exited, None);
            }
            self.enforce_time_limits();
            if ready.sock.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                break "the supervisor closed its end of the socket".to_string();
            }
            if ready.sock.contains(PollFlags::POLLIN) {
                if let Err(why) = self.read_requests() {
                    break why;
                }
            }
        };
        self.shut_down(&why)
    }

    /// Makes the spare network namespace if there is none (or it is for
    /// another mode than the last run's).
    fn prepare_network(&mut self) {
        if self.spare_network_failed || self.spare_network.as_ref().is_some_and(|n| n.serves(self.network_mode)) {
            return;
        }
        match PreparedNetwork::make(self.network_mode) {
            Ok(net) => self.spare_network = Some(net),
            Err(e) => {
                eprintln!("ccos-spawner: making a network namespace ahead failed ({e}); jails make their own");
                self.spare_network_failed = true;
            }
        }
    }

    /// Makes a jail for the next run if there is none, like the last run.
    /// A failure is logged and not retried until the next run.
    fn prepare_ready_jail(&mut self) {
        if self.ready_jail.is_some() {
            return;
        }
        let Some((name, network, limits)) = self.next_run.take() else {
            return;
        };
        let Ok(profile) = self.profile(&name) else {
            return;
        };
        self.ready_jails_made += 1;
        let group = format!("{CGROUP_PREFIX}{}-ahead-{}", self.me, self.ready_jails_made);
        match ReadyJail::make(&profile, network, &self.cgroups, &group, limits) {
            Ok(ready) => {
                self.ready_jail = Some(ready);
                self.next_run = Some((name, network, limits));
            }
            Err(e) => eprintln!("ccos-spawner: making a jail ahead for profile {name} failed ({e}); the next run's is made from scratch"),
        }
    }

    /// Polls the signalfd, every jail's pidfd and, when `serving`, the
    /// socket, until one is ready or the nearest time limit.
    fn wait(&mut self, serving: bool) -> nix::Result<Ready> {
        let timeout = self.until_next_deadline();
        let mut sock_events = PollFlags::POLLIN;
        if !self.outbox.is_empty() {
            sock_events |= PollFlags::POLLOUT;
        }
        let mut fds = Vec::with_capacity(2 + self.jails.len());
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        if serving {
            fds.push(PollFd::new(self.sock.as_fd(), sock_events));
        }
        let first_jail = fds.len();
        fds.extend(self.jails.values().map(|l| PollFd::new(l.pidfd(), PollFlags::POLLIN)));
        let first_starting = fds.len();
        let starting: Vec<(&String, BorrowedFd<'_>)> =
            self.jails.iter().filter_map(|(k, l)| l.setup_fd().map(|fd| (k, fd))).collect();
        fds.extend(starting.iter().map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)));
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Ready::nothing()),
            Err(e) => return Err(e),
        }
        let revents = |fd: &PollFd<'_>| fd.revents().unwrap_or(PollFlags::empty());
        let ended = self
            .jails
            .keys()
            .zip(&fds[first_jail..first_starting])
            .filter(|(_, fd)| !revents(fd).is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        let started = starting
            .into_iter()
            .zip(&fds[first_starting..])
            .filter(|(_, fd)| !revents(fd).is_empty())
            .map(|((k, _), _)| k.clone())
            .collect();
        let sock = if serving { revents(&fds[1]) } else { PollFlags::empty() };
        let mut ready = Ready { signalled: !revents(&fds[0]).is_empty(), terminate: false, sock, started, ended };
        drop(fds);
        if ready.signalled {
            while let Ok(Some(info)) = self.signals.read_signal() {
                if nix::unistd::getppid() == self.daemon {
                    eprintln!(
                        "ccos-spawner: ignoring signal {} from pid {}: the supervisor decides when jails end",
                        info.ssi_signo, info.ssi_pid
                    );
                } else if [libc::SIGTERM, libc::SIGINT].contains(&(info.ssi_signo as i32))
                    // Not the daemon's death signal (PR_SET_PDEATHSIG), which
                    // the kernel sends in the dying daemon's name.
                    && info.ssi_pid as i32 != self.daemon.as_raw()
                {
                    ready.terminate = true;
                }
            }
        }
        Ok(ready)
    }

    /// Until the nearest time limit, rounded up to a millisecond so the
    /// loop does not wake just before it; forever without one.
    fn until_next_deadline(&self) -> PollTimeout {
        let Some(next) = self.jails.values().filter_map(|l| l.deadline).min() else {
            return PollTimeout::NONE;
        };
        let left = next.saturating_duration_since(Instant::now());
        let millis = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
    }

    /// The daemon died: re-parented away from it (PR_SET_PDEATHSIG sent
    /// SIGTERM), whether or not its socket end is still open somewhere.
    fn daemon_is_gone(&self) -> bool {
        nix::unistd::getppid() != self.daemon
    }

    fn enforce_time_limits(&mut self) {
        let now = Instant::now();
        for live in self.jails.values_mut() {
            if live.deadline.is_some_and(|d| d <= now) {
                live.deadline = None;
                live.jail_mut().kill(EndReason::TimeLimit);
            }
        }
    }

    /// A jail's program started (or its set-up failed): answers its spawn.
    fn finish_start(&mut self, run_id: &str) {
        let Some(live) = self.jails.remove(run_id) else { return };
        let (live, answer) = live.finish_start();
        self.jails.insert(run_id.to_string(), live);
        if let Some(Answer { request, reply, pidfd }) = answer {
            self.queue(Some(request), reply, Some(pidfd));
        }
    }

    /// Reaps a jail whose pidfd became readable: its `Exited` (or `Lost`).
    /// A jail that ended while starting has its spawn answered first.
    fn reap(&mut self, run_id: &str) -> Reply {
        self.finish_start(run_id);
        let Some(live) = self.jails.remove(run_id) else {
            return Reply::Lost { run_id: run_id.to_string(), message: "not a live run".into() };
        };
        match live.collect() {
            Ok(report) => Reply::Exited { run_id: run_id.to_string(), report },
            Err(e) => Reply::Lost { run_id: run_id.to_string(), message: format!("reaping the jail: {e}") },
        }
    }

    /// Answers up to [`REQUESTS_PER_TURN`] requests. Err: the daemon is gone.
    fn read_requests(&mut self) -> Result<(), String> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.read_requests_into(&mut buf);
        self.buf = buf;
        result
    }

    fn read_requests_into(&mut self, buf: &mut [u8]) -> Result<(), String> {
        for _ in 0..REQUESTS_PER_TURN {
            // An fd sent along with a request is closed: requests carry none.
            let got = match fdpass::recv(self.sock.as_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(got) => got,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("reading a request: {e}")),
            };
            if got.len == 0 {
                return Err("the supervisor closed its end of the socket".to_string());
            }
            if got.truncated {
                let message = format!("a request over {} bytes was cut by the kernel", protocol::MAX_MESSAGE);
                self.queue(None, Reply::Error { run_id: None, kind: ErrorKind::BadRequest, message }, None);
                continue;
            }
            self.handle(&buf[..got.len]);
        }
        Ok(())
    }

    fn handle(&mut self, bytes: &[u8]) {
        let RequestFrame { id, request } = match protocol::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                let (id, run_id) = protocol::salvage_ids(bytes);
                let reply = Reply::Error { run_id, kind: ErrorKind::BadRequest, message: e.to_string() };
                self.queue(id, reply, None);
                return;
            }
        };
        let run_id = request.run_id().map(str::to_string);
        let answer = match request {
            // Answered once the program started (see `finish_start`).
            Request::Spawn(spawn) => match self.spawn(id, *spawn) {
                Ok(()) => return,
                Err(refusal) => Err(refusal),
            },
            Request::Signal { run_id, signal } => self.signal(&run_id, signal).map(|()| (Reply::Ok { run_id }, None)),
            Request::Kill { run_id } => self.kill(&run_id).map(|()| (Reply::Ok { run_id }, None)),
            Request::Freeze { run_id } => self.freeze(&run_id, true).map(|()| (Reply::Ok { run_id }, None)),
            Request::Thaw { run_id } => self.freeze(&run_id, false).map(|()| (Reply::Ok { run_id }, None)),
            Request::Usage { run_id } => self.usage(&run_id).map(|usage| (Reply::Usage { run_id, usage }, None)),
            Request::SetLimits { run_id, memory_bytes, pids } => {
                self.set_limits(&run_id, memory_bytes, pids).map(|()| (Reply::Ok { run_id }, None))
            }
            Request::LoadProfiles { dir } => self.load_profiles(dir.as_deref()).map(|profiles| (profiles, None)),
        };
        match answer {
            Ok((reply, fd)) => self.queue(Some(id), reply, fd),
            Err(Refusal { kind, message }) => self.queue(Some(id), Reply::Error { run_id, kind, message }, None),
        }
    }

    /// Makes the run's jail: checks, profile, stdio, cgroup, spawn; the jail
    /// is then starting, and its `Spawned` (with a copy of the jail's
    /// pidfd) is sent once its program started. A refusal when nothing was
    /// started.
    fn spawn(&mut self, request: RequestId, req: SpawnRequest) -> Result<(), Refusal> {
        // Checks first: nothing is made for a request that is refused.
        protocol::check_run_id(&req.run_id).map_err(|m| refuse(ErrorKind::BadRequest, m))?;
        if self.jails.contains_key(&req.run_id) {
            return Err(refuse(ErrorKind::DuplicateRun, format!("run {} is already running", req.run_id)));
        }
        if req.argv.is_empty() {
            return Err(refuse(ErrorKind::BadRequest, "argv is empty: nothing to run"));
        }
        let time_limit = req
            .limits
            .time_limit_secs
            .map(|secs| {
                Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                    refuse(ErrorKind::BadRequest, format!("time_limit_secs {secs}: must be a number of seconds > 0"))
                })
            })
            .transpose()?;
        let profile = self.profile(&req.profile)?;

        // The jail's description; its stdio are files opened here, so the
        // program never gets a path to them.
        let profile_hash = profile.hash.clone();
        let mut spec = JailSpec::new(profile, req.argv);
        spec.env = req.env;
        spec.binds =
            req.binds.into_iter().map(|b| BindMount { src: b.src, dst: b.dst, read_only: b.read_only }).collect();
        spec.hostname = req.hostname;
        spec.network = req.network;
        spec.limits =
            Limits { memory_bytes: req.limits.memory_bytes, pids: req.limits.pids, cpus: req.limits.cpus, time_limit };
        spec.stdin = Some(open_input(req.stdin_path.as_deref())?);
        spec.stdout = Some(open_output(req.stdout_path.as_deref(), "stdout")?);
        spec.stderr = Some(open_output(req.stderr_path.as_deref(), "stderr")?);

        // The jail made ahead, if it fits this run (it is dropped if not);
        // else one made now, in its own cgroup, which the jail library
        // makes (on v1 while the jail builds its root). The time limit
        // counts from here, as the jail library's own does from its start.
        let limits = ccos_jail::spawn::cgroup_limits(&spec.limits());
        let deadline = spec.limits().time_limit.map(|t| Instant::now() + t);
        let network = spec.network();
        self.next_run = Some((req.profile.clone(), network, limits));
        let ready = self.ready_jail.take().filter(|r| r.fits(&spec.profile, network, &limits));
        let made = match ready {
            Some(ready) => ready.begin(&spec, &limits),
            None => {
                self.network_mode = network;
                spec.network_ready = self.spare_network.take_if(|n| n.serves(network));
                let name = format!("{CGROUP_PREFIX}{}-{}", self.me, req.run_id);
                let cgroup = CgroupSource::Make { cgroups: &self.cgroups, name: &name, limits };
                ccos_jail::spawn::begin(&spec, cgroup)
            }
        };
        let mut starting = made.map_err(spawn_refusal)?;
        drop(spec);

        let pidfd = match starting.jail().pidfd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                starting.jail_mut().kill(EndReason::SpawnFailed);
                let _ = starting.finish().collect();
                return Err(refuse(ErrorKind::Spawn, format!("copying the jail's pidfd: {e}")));
            }
        };
        let answer = SpawnAnswer { request, run_id: req.run_id.clone(), profile_hash, pidfd };
        self.jails.insert(req.run_id, Live::starting(starting, answer, deadline));
        Ok(())
    }

    /// A profile by name: from the set `LoadProfiles` made, or, before
    /// any load (and for paths), loaded and compiled the first time it is
    /// asked for and kept until the next load.
    fn profile(&mut self, name: &str) -> Result<Arc<Profile>, Refusal> {
        if let Some(p) = self.profiles.get(name) {
            return Ok(p.clone());
        }
        let is_path = name.contains('/') || name.ends_with(".toml");
        if self.profiles_loaded && !is_path {
            let mut known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(refuse(ErrorKind::Profile, format!("no profile {name:?} (loaded: {})", known.join(", "))));
        }
        let profile = Arc::new(Profile::resolve(name).map_err(|e| refuse(ErrorKind::Profile, e.to_string()))?);
        self.profiles.insert(name.to_string(), profile.clone());
        Ok(profile)
    }

    /// Replaces the profile set with the shipped profiles and `dir`'s
    /// files, or keeps it if any of them fails to load.
    fn load_profiles(&mut self, dir: Option<&Path>) -> Result<Reply, Refusal> {
        let loaded = profile_set::load(dir).map_err(|e| refuse(ErrorKind::Profile, e))?;
        let profiles = loaded
            .iter()
            .map(|(name, p)| LoadedProfile { name: name.clone(), origin: p.origin.clone(), hash: p.hash.clone() })
            .collect();
        self.profiles = loaded.into_iter().map(|(name, p)| (name, Arc::new(p))).collect();
        self.profiles_loaded = true;
        // Made with a profile of the old set.
        self.ready_jail = None;
        Ok(Reply::Profiles { profiles })
    }

    fn live(&mut self, run_id: &str) -> Result<&mut Live, Refusal> {
        self.jails.get_mut(run_id).ok_or_else(|| refuse(ErrorKind::UnknownRun, format!("no live run {run_id:?}")))
    }

    fn signal(&mut self, run_id: &str, signal: i32) -> Result<(), Refusal> {
        let signal = Signal::try_from(signal)
            .map_err(|_| refuse(ErrorKind::BadRequest, format!("{signal} is not a signal number")))?;
        let live = self.live(run_id)?;
        live.jail().signal(signal).map_err(|e| refuse(ErrorKind::System, e.to_string()))
    }

    /// Kills the whole jail; its `Exited` follows when it is reaped.
    /// Killing a run that is already ending is not an error.
    fn kill(&mut self, run_id: &str) -> Result<(), Refusal> {
        let live = self.live(run_id)?;
        live.deadline = None;
        live.jail_mut().kill(EndReason::Killed);
        Ok(())
    }

    fn freeze(&mut self, run_id: &str, freeze: bool) -> Result<(), Refusal> {
        let live = self.live(run_id)?;
        let group = live.jail().cgroup().ok_or_else(|| refuse(ErrorKind::Cgroup, "the run has no cgroup"))?;
        let (verb, result) = if freeze { ("freezing", group.freeze()) } else { ("thawing", group.thaw()) };
        result.map_err(|e| refuse(ErrorKind::Cgroup, format!("{verb} run {run_id}: {e}")))
    }

    fn set_limits(&mut self, run_id: &str, memory: Option<u64>, pids: Option<u64>) -> Result<(), Refusal> {
        let live = self.live(run_id)?;
        let group = live.jail().cgroup().ok_or_else(|| refuse(ErrorKind::Cgroup, "the run has no cgroup"))?;
        group
            .update_limits(memory, pids)
            .map_err(|e| refuse(ErrorKind::Cgroup, format!("changing run {run_id}'s limits: {e}")))
    }

    fn usage(&mut self, run_id: &str) -> Result<protocol::RunUsage, Refusal> {
        let live = self.live(run_id)?;
        let group = live.jail().cgroup().ok_or_else(|| refuse(ErrorKind::Cgroup, "the run has no cgroup"))?;
        let usage =
            group.usage().map_err(|e| refuse(ErrorKind::Cgroup, format!("reading run {run_id}'s usage: {e}")))?;
        Ok(usage.into())
    }

    /// Queues one message for the daemon. A reply that cannot be encoded
    /// (over the size limit) becomes an error for its request, or `Lost`
    /// for an event, so the daemon is never left waiting.
    fn queue(&mut self, id: Option<RequestId>, reply: Reply, fd: Option<OwnedFd>) {
        let bytes = match protocol::encode(&ReplyFrame { id, reply: reply.clone() }) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("ccos-spawner: {e}");
                let fallback = match reply {
                    Reply::Exited { run_id, .. } => Reply::Lost { run_id, message: e.to_string() },
                    _ => Reply::Error { run_id: None, kind: ErrorKind::System, message: e.to_string() },
                };
                let frame = ReplyFrame { id, reply: fallback };
                protocol::encode(&frame).expect("a short reply encodes")
            }
        };
        self.outbox.push_back(Outgoing { bytes, fd });
    }

    /// Sends what the socket takes now. Err: the daemon is gone.
    fn flush(&mut self) -> Result<(), String> {
        while let Some(out) = self.outbox.front() {
            match fdpass::send(
                self.sock.as_fd(),
                &out.bytes,
                &out.fd.as_ref().map(|f| f.as_fd()).into_iter().collect::<Vec<_>>(),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET) => {
                    return Err("the supervisor closed its end of the socket".to_string())
                }
                Err(e) => return Err(format!("sending to the supervisor: {e}")),
            }
        }
        Ok(())
    }

    /// The daemon is gone: kill and reap every jail, or with
    /// `keep_on_exit` stay their parent until they end. Returns the exit
    /// code.
    fn shut_down(mut self, why: &str) -> i32 {
        // Killed, reaped and its cgroup removed (the process exits without
        // running destructors).
        self.ready_jail = None;
        if self.jails.is_empty() {
            return 0;
        }
        if self.keep_on_exit {
            eprintln!(
                "ccos-spawner: {why}; {} jail(s) keep running (keep on exit), with this process as their parent \
                 until they end (SIGTERM to it ends them all)",
                self.jails.len()
            );
            if self.linger() {
                return 0;
            }
            eprintln!("ccos-spawner: asked to stop; killing {} kept jail(s)", self.jails.len());
        } else {
            eprintln!("ccos-spawner: {why}; killing {} jail(s)", self.jails.len());
        }
        let mut jails: Vec<Live> = std::mem::take(&mut self.jails).into_values().collect();
        for live in &mut jails {
            live.jail_mut().kill(EndReason::Killed);
        }
        for live in jails {
            let _ = live.collect();
        }
        0
    }

    /// Kept jails outlive the daemon only while their parent lives: each
    /// jail's init dies with its parent (PR_SET_PDEATHSIG, set by the jail
    /// library). So the spawner stays, without a socket, enforcing time
    /// limits and reaping, and logs each outcome as there is no one to
    /// send it to. Returns true once they all ended; false when SIGTERM or
    /// SIGINT asks to end the ones left (a restarted supervisor, which
    /// cannot govern them, does so) or polling fails.
    fn linger(&mut self) -> bool {
        self.outbox.clear();
        while !self.jails.is_empty() {
            let ready = match self.wait(false) {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("ccos-spawner: poll: {e}");
                    return false;
                }
            };
            for run_id in ready.started {
                self.finish_start(&run_id);
            }
            // Their `Spawned` answers have no one to go to.
            self.outbox.clear();
            for run_id in ready.ended {
                match self.reap(&run_id) {
                    Reply::Exited { report, .. } => eprintln!(
                        "ccos-spawner: kept run {run_id} ended: {:?}, exit code {:?}, signal {:?}",
                        report.reason, report.exit_code, report.signal
                    ),
                    other => eprintln!("ccos-spawner: kept run {run_id}: {other:?}"),
                }
            }
            if ready.terminate {
                return false;
            }
            self.enforce_time_limits();
        }
        true
    }
}

/// What one poll found.
#[derive(Debug)]
struct Ready {
    signalled: bool,
    /// SIGTERM or SIGINT came once the daemon was gone: end the kept jails.
    terminate: bool,
    /// The socket's events (none when not polled).
    sock: PollFlags,
    /// Runs whose program started (or whose set-up failed).
    started: Vec<String>,
    /// Runs whose jail ended.
    ended: Vec<String>,
}

impl Ready {
    fn nothing() -> Ready {
        Ready { signalled: false, terminate: false, sock: PollFlags::empty(), started: Vec::new(), ended: Vec::new() }
    }
}

/// Maps the jail library's errors to kinds: bad input (a bind that cannot
/// be made, no program) is the caller's; the rest is the spawn's.
fn spawn_refusal(e: ccos_jail::Error) -> Refusal {
    let kind = match &e {
        ccos_jail::Error::Mount(_) | ccos_jail::Error::NoProgram => ErrorKind::BadRequest,
        ccos_jail::Error::Profile(_) => ErrorKind::Profile,
        ccos_jail::Error::Cgroup(_) => ErrorKind::Cgroup,
        _ => ErrorKind::Spawn,
    };
    refuse(kind, e.to_string())
}

/// The program's stdin: `path` opened for reading (a symlink is refused),
/// or /dev/null.
fn open_input(path: Option<&Path>) -> Result<OwnedFd, Refusal> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| refuse(ErrorKind::Output, format!("opening stdin file {}: {e}", path.display())))
}

/// The program's stdout or stderr: `path` opened for appending (made with
/// mode 0640; a symlink is refused), or /dev/null.
fn open_output(path: Option<&Path>, which: &str) -> Result<OwnedFd, Refusal> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    OpenOptions::new()
        .append(true)
        .create(path != Path::new("/dev/null"))
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| refuse(ErrorKind::Output, format!("opening {which} file {}: {e}", path.display())))
}
